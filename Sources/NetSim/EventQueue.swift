import HeapModule

/// A min-heap of timed events with a sequence number as tie-breaker, so events at the same
/// virtual instant run in the order they were scheduled (the simulator must be deterministic).
/// The heap is swift-collections' `Heap`, the project's one priority queue.
struct EventQueue<Payload> {
    private struct Entry: Comparable {
        var time: UInt64
        var sequence: UInt64
        var payload: Payload

        /// Time first, then scheduling order; sequence numbers are unique, so the order is total.
        static func < (lhs: Entry, rhs: Entry) -> Bool {
            lhs.time != rhs.time ? lhs.time < rhs.time : lhs.sequence < rhs.sequence
        }

        static func == (lhs: Entry, rhs: Entry) -> Bool { lhs.time == rhs.time && lhs.sequence == rhs.sequence }
    }

    private var heap = Heap<Entry>()
    private var nextSequence: UInt64 = 0

    var count: Int { heap.count }
    var isEmpty: Bool { heap.isEmpty }
    var nextTime: UInt64? { heap.min?.time }

    mutating func push(_ payload: Payload, at time: UInt64) {
        heap.insert(Entry(time: time, sequence: nextSequence, payload: payload))
        nextSequence += 1
    }

    mutating func pop() -> (time: UInt64, payload: Payload)? {
        guard let top = heap.popMin() else { return nil }
        return (top.time, top.payload)
    }
}
