import Testing
import UmbraCore

@testable import Proposals

private func key(_ top: UInt64, _ low: UInt64 = 0) -> Key256 { Key256(words: (top, 0, 0, low)) }

private func range(_ lower: Key256, _ upper: Key256) -> KeyRange {
    guard let range = KeyRange(lower, upper) else { fatalError("\(lower) > \(upper)") }
    return range
}

@Suite("Key ranges")
struct KeyRangeTests {
    @Test("successor and predecessor carry across words and stop at the ends")
    func steps() {
        #expect(Key256.max.successor == nil)
        #expect(Key256.zero.predecessor == nil)
        #expect(Key256.zero.successor == Key256(words: (0, 0, 0, 1)))
        #expect(Key256.max.predecessor == Key256(words: (.max, .max, .max, .max - 1)))
        let carry = Key256(words: (0, .max, .max, .max))
        #expect(carry.successor == Key256(words: (1, 0, 0, 0)))
        #expect(Key256(words: (1, 0, 0, 0)).predecessor == carry)
    }

    @Test("a range needs lower ≤ upper; a single key is a range")
    func construction() {
        #expect(KeyRange(key(2), key(1)) == nil)
        #expect(KeyRange(.max, .max) != nil)
        #expect(KeyRange.full.contains(.zero) && KeyRange.full.contains(.max))
        #expect(range(key(1), key(3)).contains(range(key(1), key(1))))
        #expect(!range(key(1), key(3)).contains(range(key(0), key(1))))
        #expect(range(key(1), key(3)).overlaps(range(key(3), key(9))))
        #expect(!range(key(1), key(3)).overlaps(range(key(3, 1), key(9))))
    }

    @Test("splitting tiles the whole space with no gap or overlap", arguments: [1, 2, 3, 4, 7, 16, 100])
    func splitting(count: Int) {
        let parts = KeyRange.splitting(into: count)
        #expect(parts.count == count)
        #expect(parts.first?.lowerBound == .zero)
        #expect(parts.last?.upperBound == .max)
        for (left, right) in zip(parts, parts.dropFirst()) { #expect(left.upperBound.successor == right.lowerBound) }
        #expect(KeyRangeSet(parts).isFull)
    }
}

@Suite("Key range sets")
struct KeyRangeSetTests {
    @Test("adjacent ranges merge, including at zero and at the top of the space")
    func mergesAtEdges() {
        var set = KeyRangeSet()
        set.insert(range(.zero, .zero))
        set.insert(range(.max, .max))
        #expect(set.ranges.count == 2)
        #expect(!set.isFull)
        set.insert(range(Key256.zero.successor!, Key256.max.predecessor!))
        #expect(set.ranges == [.full])
        #expect(set.isFull)
    }

    @Test("ranges one key apart stay apart; the missing key is the gap")
    func oneKeyApart() {
        var set = KeyRangeSet([range(.zero, key(5)), range(key(5, 2), .max)])
        #expect(set.ranges.count == 2)
        #expect(set.gaps(in: .full) == [range(key(5, 1), key(5, 1))])
        #expect(!set.contains(key(5, 1)))
        #expect(set.contains(key(5, 2)) && set.contains(key(5)))
        set.insert(range(key(5, 1), key(5, 1)))
        #expect(set.isFull)
    }

    @Test("inserting merges every overlapped or touching range and keeps order")
    func mergesMany() {
        var set = KeyRangeSet()
        for top in stride(from: UInt64(10), through: 90, by: 20) { set.insert(range(key(top), key(top + 5))) }
        #expect(set.ranges.count == 5)
        set.insert(range(key(12), key(52)))
        #expect(set.ranges == [range(key(10), key(55)), range(key(70), key(75)), range(key(90), key(95))])
        set.insert(range(key(56), key(69)))
        #expect(set.ranges.count == 4)
        set.insert(range(key(55).successor!, key(70).predecessor!))
        #expect(set.ranges == [range(key(10), key(75)), range(key(90), key(95))])
        set.insert(range(key(0), key(1)))
        #expect(set.ranges.first == range(key(0), key(1)))
    }

    @Test("gaps inside a range, at its edges and at the edges of the space")
    func gaps() {
        let set = KeyRangeSet([range(key(10), key(20)), range(key(30), key(40))])
        #expect(set.gaps(in: range(key(10), key(20))).isEmpty)
        #expect(
            set.gaps(in: range(key(5), key(35))) == [
                range(key(5), key(10).predecessor!), range(key(20).successor!, key(30).predecessor!),
            ])
        #expect(
            set.gaps(in: range(key(15), key(45))) == [
                range(key(20).successor!, key(30).predecessor!), range(key(40).successor!, key(45)),
            ])
        #expect(
            set.gaps(in: .full) == [
                range(.zero, key(10).predecessor!), range(key(20).successor!, key(30).predecessor!),
                range(key(40).successor!, .max),
            ])
        #expect(set.gaps(in: .full, limit: 1) == [range(.zero, key(10).predecessor!)])
        #expect(KeyRangeSet().gaps(in: .full) == [.full])
        let top = KeyRangeSet([range(key(50), .max)])
        #expect(top.gaps(in: range(key(60), .max)).isEmpty)
        #expect(top.gaps(in: .full) == [range(.zero, key(50).predecessor!)])
        #expect(top.contains(range(key(60), .max)))
        #expect(!top.contains(.full))
    }

    @Test("the range limit refuses a new disjoint range but still allows merges")
    func limit() {
        var set = KeyRangeSet([range(key(1), key(2)), range(key(5), key(6))])
        let refused = set.insert(range(key(10), key(11)), limit: 2)
        #expect(!refused)
        #expect(set.ranges.count == 2)
        let merged = set.insert(range(key(2), key(5)), limit: 2)
        #expect(merged)
        #expect(set.ranges == [range(key(1), key(6))])
    }

    @Test("random inserts match a brute-force model over a small key space", arguments: [UInt64(1), 2, 3])
    func matchesModel(seed: UInt64) {
        var rng = SeededRandom(seed: seed)
        var set = KeyRangeSet()
        var model = [Bool](repeating: false, count: 64)
        let small = { (value: Int) in Key256(words: (0, 0, 0, UInt64(value))) }
        for _ in 0..<200 {
            let a = Int(rng.next() % 64)
            let b = Int(rng.next() % 64)
            set.insert(range(small(min(a, b)), small(max(a, b))))
            for index in min(a, b)...max(a, b) { model[index] = true }
            // Rebuild the model's maximal runs and compare exactly.
            var runs: [KeyRange] = []
            var index = 0
            while index < 64 {
                guard model[index] else { index += 1; continue }
                let first = index
                while index < 64, model[index] { index += 1 }
                runs.append(range(small(first), small(index - 1)))
            }
            #expect(set.ranges == runs)
            let window = range(small(0), small(63))
            let gapKeys = set.gaps(in: window).flatMap { gap in
                (Int(gap.lowerBound.words.3)...Int(gap.upperBound.words.3)).map { $0 }
            }
            #expect(gapKeys == (0..<64).filter { !model[$0] })
        }
    }
}
