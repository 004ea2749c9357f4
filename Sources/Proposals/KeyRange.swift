// Ranges of the 256-bit proposal key space (`ProposalID.syncKey`) and exact sets of them: the join
// sync splits the space into ranges, responders declare which range each page covers, and the
// requester keeps the union of what it has seen in a `KeyRangeSet`. Ranges are closed ([lower,
// upper], both inclusive), so the whole space is [0, 2^256 - 1] and no bound needs 257 bits.

import UmbraCore

// MARK: - Key256 steps

extension Key256 {
    /// The largest key, all 0xFF.
    public static let max = Key256(words: (.max, .max, .max, .max))

    /// `self + 1`, or nil for `Key256.max`.
    public var successor: Key256? {
        let (w3, c3) = words.3.addingReportingOverflow(1)
        let (w2, c2) = words.2.addingReportingOverflow(c3 ? 1 : 0)
        let (w1, c1) = words.1.addingReportingOverflow(c2 ? 1 : 0)
        let (w0, c0) = words.0.addingReportingOverflow(c1 ? 1 : 0)
        return c0 ? nil : Key256(words: (w0, w1, w2, w3))
    }

    /// `self - 1`, or nil for `Key256.zero`.
    public var predecessor: Key256? {
        let (w3, b3) = words.3.subtractingReportingOverflow(1)
        let (w2, b2) = words.2.subtractingReportingOverflow(b3 ? 1 : 0)
        let (w1, b1) = words.1.subtractingReportingOverflow(b2 ? 1 : 0)
        let (w0, b0) = words.0.subtractingReportingOverflow(b1 ? 1 : 0)
        return b0 ? nil : Key256(words: (w0, w1, w2, w3))
    }
}

// MARK: - KeyRange

/// A non-empty closed range [lowerBound, upperBound] of 256-bit keys.
public struct KeyRange: Hashable, Sendable, CustomStringConvertible {
    public let lowerBound: Key256
    public let upperBound: Key256

    /// The whole key space, [0, 2^256 - 1].
    public static let full = KeyRange(unchecked: .zero, .max)

    /// The range [lowerBound, upperBound]; nil when `lowerBound > upperBound`.
    public init?(_ lowerBound: Key256, _ upperBound: Key256) {
        guard lowerBound <= upperBound else { return nil }
        self.init(unchecked: lowerBound, upperBound)
    }

    init(unchecked lowerBound: Key256, _ upperBound: Key256) {
        self.lowerBound = lowerBound
        self.upperBound = upperBound
    }

    public func contains(_ key: Key256) -> Bool { lowerBound <= key && key <= upperBound }

    public func contains(_ other: KeyRange) -> Bool {
        lowerBound <= other.lowerBound && other.upperBound <= upperBound
    }

    /// Whether the two ranges share at least one key.
    public func overlaps(_ other: KeyRange) -> Bool {
        lowerBound <= other.upperBound && other.lowerBound <= upperBound
    }

    /// Whether every key of `self` is below every key of `other` with at least one key between them
    /// (so the two cannot be merged into one range).
    func isApart(before other: KeyRange) -> Bool {
        guard upperBound < other.lowerBound, let next = upperBound.successor else { return false }
        return next < other.lowerBound
    }

    /// `count` consecutive ranges (1...65536) that tile `KeyRange.full`, split on the top 64 bits as
    /// evenly as an integer division allows.
    public static func splitting(into count: Int) -> [KeyRange] {
        let parts = UInt64(Swift.min(Swift.max(count, 1), 1 << 16))
        guard parts > 1 else { return [.full] }
        let step = UInt64.max / parts + 1
        var ranges: [KeyRange] = []
        ranges.reserveCapacity(Int(parts))
        for index in 0..<parts {
            let lower = Key256(words: (index * step, 0, 0, 0))
            let upper = index + 1 == parts ? Key256.max : Key256(words: ((index + 1) * step - 1, .max, .max, .max))
            ranges.append(KeyRange(unchecked: lower, upper))
        }
        return ranges
    }

    public var description: String { "[\(lowerBound)...\(upperBound)]" }
}

// MARK: - KeyRangeSet

/// An exact union of key ranges, kept as sorted, disjoint, non-adjacent ranges (two ranges that touch
/// are merged), so equal sets have equal `ranges` and "is everything covered" is one comparison.
public struct KeyRangeSet: Equatable, Sendable {
    /// Sorted by lower bound; no two overlap or touch.
    public private(set) var ranges: [KeyRange] = []

    public init() {}

    public init(_ ranges: some Sequence<KeyRange>) {
        for range in ranges { insert(range) }
    }

    public var isEmpty: Bool { ranges.isEmpty }

    /// Whether the set is the whole key space.
    public var isFull: Bool { ranges.count == 1 && ranges[0] == .full }

    /// Adds `range`, merging it with every range it overlaps or touches. When that would leave more
    /// than `limit` ranges the set is unchanged and the result is false.
    @discardableResult
    public mutating func insert(_ range: KeyRange, limit: Int = .max) -> Bool {
        // First stored range that is not entirely (and non-adjacently) below `range`.
        let first = partitionIndex { !$0.isApart(before: range) }
        var end = first
        var lower = range.lowerBound
        var upper = range.upperBound
        while end < ranges.count, !range.isApart(before: ranges[end]) {
            lower = Swift.min(lower, ranges[end].lowerBound)
            upper = Swift.max(upper, ranges[end].upperBound)
            end += 1
        }
        if first == end, ranges.count >= limit { return false }
        ranges.replaceSubrange(first..<end, with: CollectionOfOne(KeyRange(unchecked: lower, upper)))
        return true
    }

    /// Whether every key of `range` is in the set.
    public func contains(_ range: KeyRange) -> Bool {
        let index = partitionIndex { $0.upperBound >= range.lowerBound }
        return index < ranges.count && ranges[index].contains(range)
    }

    public func contains(_ key: Key256) -> Bool {
        let index = partitionIndex { $0.upperBound >= key }
        return index < ranges.count && ranges[index].contains(key)
    }

    /// The parts of `range` not in the set, in key order; at most `limit` of them.
    public func gaps(in range: KeyRange, limit: Int = .max) -> [KeyRange] {
        var gaps: [KeyRange] = []
        var cursor = range.lowerBound
        var index = partitionIndex { $0.upperBound >= range.lowerBound }
        while index < ranges.count, ranges[index].lowerBound <= range.upperBound, gaps.count < limit {
            let covered = ranges[index]
            if covered.lowerBound > cursor, let before = covered.lowerBound.predecessor {
                gaps.append(KeyRange(unchecked: cursor, before))
            }
            guard let next = covered.upperBound.successor, next <= range.upperBound else { return gaps }
            cursor = Swift.max(cursor, next)
            index += 1
        }
        if gaps.count < limit { gaps.append(KeyRange(unchecked: cursor, range.upperBound)) }
        return gaps
    }

    /// The first index whose range satisfies `predicate`, which must be false then true along `ranges`.
    private func partitionIndex(_ predicate: (KeyRange) -> Bool) -> Int {
        var low = 0
        var high = ranges.count
        while low < high {
            let middle = (low + high) / 2
            if predicate(ranges[middle]) { high = middle } else { low = middle + 1 }
        }
        return low
    }
}
