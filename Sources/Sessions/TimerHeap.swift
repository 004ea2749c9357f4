// The session layer's timer table: a min-heap of (deadline, peer), so that `nextDeadline` is O(1)
// and `tick` touches only the peers whose timers are due (quinn-proto's timer table, DESIGN §1).
// The heap is swift-collections' `Heap`, the project's one priority queue (docs/architecture.md,
// "Shared pieces"); this file only says how its entries are ordered.
//
// Invalidation is lazy: a peer records the deadline of its live entry (`Peer.timerDue`); an entry
// whose deadline differs from it (or whose peer is gone) is stale and skipped when it surfaces. A
// peer's live entry is never later than its real next timer (an entry may be early: the tick then
// finds nothing to do for it and re-arms), so no timer is ever missed.

import HeapModule
import UmbraCore

/// The timer table: `min` is the earliest entry (O(1)), `popMin` removes it (O(log n)), and
/// `TimerHeap(entries)` rebuilds it in one O(n) pass (used to drop stale entries).
typealias TimerHeap = Heap<TimerEntry>

/// One armed timer: a peer and the deadline its live entry was armed for.
struct TimerEntry: Sendable, Comparable {
    let due: Instant
    let key: PublicKey

    /// Deadline first; the key's bytes break ties so the order (and the simulator) is deterministic.
    static func < (lhs: TimerEntry, rhs: TimerEntry) -> Bool {
        lhs.due != rhs.due ? lhs.due < rhs.due : lhs.key.bytes.lexicographicallyPrecedes(rhs.key.bytes)
    }
}
