// Sliding-window replay protection for transport counters (RFC 6479's bitmap ring, as in
// WireGuard). The window accepts any counter not seen before that is at most `windowSize` below
// the highest counter accepted so far.

/// A replay window of `ReplayWindow.windowSize` counters.
///
/// NOTE: Call `check` before authenticating a packet (cheap early drop) and `accept` only after
/// the packet authenticated, so forged packets cannot advance the window.
public struct ReplayWindow: Sendable {
    /// How far below the highest accepted counter a late packet may still arrive.
    public static let windowSize: UInt64 = 2048
    private static let wordBits: UInt64 = 64
    /// One spare word so the full `windowSize` stays addressable while the ring advances.
    private static let wordCount = Int(windowSize / wordBits) + 1
    private static let ringBits = UInt64(wordCount) * wordBits

    private var highest: UInt64 = 0
    private var hasAccepted = false
    private var ring: [UInt64]

    public init() { ring = [UInt64](repeating: 0, count: Self.wordCount) }

    /// Whether `counter` could be accepted (not too old, not seen).
    public func check(_ counter: UInt64) -> Bool {
        if !hasAccepted || counter > highest { return true }
        if highest - counter >= Self.windowSize { return false }
        let (word, bit) = Self.position(counter)
        return ring[word] & (1 << bit) == 0
    }

    /// Records `counter` as received. Returns false (and changes nothing) for a replay.
    @discardableResult
    public mutating func accept(_ counter: UInt64) -> Bool {
        guard check(counter) else { return false }
        if !hasAccepted || counter > highest {
            let oldWord = hasAccepted ? highest / Self.wordBits : 0
            let newWord = counter / Self.wordBits
            if !hasAccepted {
                for index in ring.indices { ring[index] = 0 }
            } else {
                // Clear the words the window slid past (at most the whole ring).
                let steps = min(newWord - oldWord, UInt64(Self.wordCount))
                var step: UInt64 = 1
                while step <= steps {
                    ring[Int((oldWord + step) % UInt64(Self.wordCount))] = 0
                    step += 1
                }
            }
            highest = counter
            hasAccepted = true
        }
        let (word, bit) = Self.position(counter)
        ring[word] |= 1 << bit
        return true
    }

    private static func position(_ counter: UInt64) -> (word: Int, bit: UInt64) {
        let index = counter % ringBits
        return (Int(index / wordBits), index % wordBits)
    }
}
