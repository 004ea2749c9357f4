// IWANT promises (GossipSub v1.1 "gossip tracer"): when we ask a peer for messages it announced,
// one of the ids is tracked; if that message has not arrived (from anyone) by the deadline, the
// peer broke its promise and gets a behaviour penalty. Bounded by `capacity`.

import UmbraCore

struct Promises: Sendable {
    let capacity: Int
    private(set) var byID: [MessageID: [GossipPeer: Instant]] = [:]
    private(set) var count = 0

    init(capacity: Int) { self.capacity = max(0, capacity) }

    /// Tracks that `peer` promised `id` by `deadline` (an earlier promise by the same peer stands).
    mutating func add(_ id: MessageID, peer: GossipPeer, deadline: Instant) {
        guard byID[id]?[peer] == nil, count < capacity else { return }
        byID[id, default: [:]][peer] = deadline
        count += 1
    }

    /// The message arrived: every promise of it is kept. Returns the peers that promised it.
    mutating func fulfil(_ id: MessageID) -> [GossipPeer] {
        guard let peers = byID.removeValue(forKey: id) else { return [] }
        count -= peers.count
        return Array(peers.keys)
    }

    mutating func removePeer(_ peer: GossipPeer) {
        for id in Array(byID.keys) where byID[id]?[peer] != nil {
            byID[id]![peer] = nil
            count -= 1
            if byID[id]!.isEmpty { byID[id] = nil }
        }
    }

    /// Removes the promises past their deadline; returns how many each peer broke.
    mutating func expire(now: Instant) -> [GossipPeer: Int] {
        var broken: [GossipPeer: Int] = [:]
        for id in Array(byID.keys) {
            for (peer, deadline) in byID[id]! where deadline <= now {
                broken[peer, default: 0] += 1
                byID[id]![peer] = nil
                count -= 1
            }
            if byID[id]!.isEmpty { byID[id] = nil }
        }
        return broken
    }
}
