// The message cache (GossipSub "mcache"): the messages of the last `historyLength` heartbeats,
// served to IWANTs, with the ids of the newest `gossipWindow` heartbeats announced in IHAVE.
// Bounded: beyond `capacity` messages the oldest window loses entries first.

import UmbraCore

struct MessageCache: Sendable {
    struct Entry: Sendable {
        var topic: Topic
        var data: [UInt8]
        /// Times the message was sent to each peer through IWANT (capped by gossipRetransmission).
        var served: [GossipPeer: Int] = [:]
        /// Peers known to have the message (they sent it to us); not told about it again.
        var holders: [GossipPeer] = []
    }

    /// Most holders remembered per message.
    static let maximumHolders = 16

    let historyLength: Int
    let gossipWindow: Int
    let capacity: Int
    private(set) var entries: [MessageID: Entry] = [:]
    /// `windows[0]` holds the ids cached since the last shift, in arrival order.
    private var windows: [[MessageID]]

    init(historyLength: Int, gossipWindow: Int, capacity: Int) {
        self.historyLength = max(1, historyLength)
        self.gossipWindow = min(max(1, gossipWindow), self.historyLength)
        self.capacity = max(1, capacity)
        self.windows = Array(repeating: [], count: self.historyLength)
    }

    var count: Int { entries.count }

    subscript(id: MessageID) -> Entry? { entries[id] }

    mutating func put(_ id: MessageID, topic: Topic, data: [UInt8]) {
        guard entries[id] == nil else { return }
        while entries.count >= capacity, evictOldest() {}
        entries[id] = Entry(topic: topic, data: data)
        windows[0].append(id)
    }

    /// Records one more IWANT answer of `id` to `peer`; returns how many it has had, this one included.
    mutating func noteServed(_ id: MessageID, to peer: GossipPeer) -> Int {
        guard entries[id] != nil else { return 0 }
        let count = (entries[id]!.served[peer] ?? 0) + 1
        entries[id]!.served[peer] = count
        return count
    }

    mutating func noteHolder(_ id: MessageID, _ peer: GossipPeer) {
        guard let entry = entries[id], entry.holders.count < Self.maximumHolders, !entry.holders.contains(peer)
        else { return }
        entries[id]!.holders.append(peer)
    }

    /// The ids of `topic` in the gossip window, newest heartbeat first.
    func gossipIDs(topic: Topic) -> [MessageID] {
        var ids: [MessageID] = []
        for window in windows.prefix(gossipWindow) {
            for id in window where entries[id]?.topic == topic { ids.append(id) }
        }
        return ids
    }

    /// Starts a new heartbeat window; the oldest window's messages leave the cache.
    mutating func shift() {
        for id in windows.removeLast() { entries[id] = nil }
        windows.insert([], at: 0)
    }

    private mutating func evictOldest() -> Bool {
        guard let index = windows.lastIndex(where: { !$0.isEmpty }) else { return false }
        entries[windows[index].removeLast()] = nil
        return true
    }
}
