// The session layer's timer table: a binary min-heap of (deadline, peer), so that `nextDeadline` is
// O(1) and `tick` touches only the peers whose timers are due (quinn-proto's timer table, DESIGN §1).
//
// Invalidation is lazy: a peer records the deadline of its live entry (`Peer.timerDue`); an entry
// whose deadline differs from it (or whose peer is gone) is stale and skipped when it surfaces. A
// peer's live entry is never later than its real next timer (an entry may be early: the tick then
// finds nothing to do for it and re-arms), so no timer is ever missed.

import UmbraCore

struct TimerHeap: Sendable {
    struct Entry: Sendable, Equatable {
        let due: Instant
        let key: PublicKey

        /// Deadline first; the key breaks ties so the order (and the simulator) is deterministic.
        static func precedes(_ lhs: Entry, _ rhs: Entry) -> Bool {
            lhs.due != rhs.due ? lhs.due < rhs.due : lhs.key.bytes.lexicographicallyPrecedes(rhs.key.bytes)
        }
    }

    private(set) var entries: [Entry] = []

    var count: Int { entries.count }
    var min: Entry? { entries.first }

    mutating func push(_ entry: Entry) {
        entries.append(entry)
        var child = entries.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard Entry.precedes(entries[child], entries[parent]) else { break }
            entries.swapAt(child, parent)
            child = parent
        }
    }

    @discardableResult
    mutating func popMin() -> Entry? {
        guard !entries.isEmpty else { return nil }
        entries.swapAt(0, entries.count - 1)
        let top = entries.removeLast()
        siftDown(from: 0)
        return top
    }

    /// Replaces the contents (used to drop stale entries in one O(n) pass).
    mutating func rebuild(_ newEntries: [Entry]) {
        entries = newEntries
        var index = entries.count / 2
        while index > 0 {
            index -= 1
            siftDown(from: index)
        }
    }

    private mutating func siftDown(from start: Int) {
        var parent = start
        while true {
            let left = 2 * parent + 1
            guard left < entries.count else { return }
            var smallest = left
            if left + 1 < entries.count, Entry.precedes(entries[left + 1], entries[left]) { smallest = left + 1 }
            guard Entry.precedes(entries[smallest], entries[parent]) else { return }
            entries.swapAt(parent, smallest)
            parent = smallest
        }
    }
}
