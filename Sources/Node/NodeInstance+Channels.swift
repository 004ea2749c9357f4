// Routing of the channels whose payloads other cores decode: the parts' channels go to the part
// that declared them (NodeInstance+Parts.swift).

import UmbraCore

extension NodeInstance {
    mutating func handleChannel(
        _ channel: FrameChannel, _ payload: [UInt8], from key: PublicKey, now: Instant,
        rng: inout some RandomNumberGenerator, into effects: inout [NodeEffect]
    ) {
        switch channel {
        case .gossip, .proposalSync, .dialogue, .tunnel, .ledger, .ledgerSync, .relay:
            deliverToPart(channel, payload, from: key, now: now, rng: &rng, into: &effects)
        case .ping, .pong, .dht:
            counters.framesRejected += 1
            effects.append(.event(.frameRejected(key, reason: "channel \(channel) is not opaque")))
        }
    }

    /// Sends a frame on `channel` to `peer` over its session (handshaking first if needed).
    mutating func sendFrame(
        _ channel: FrameChannel, _ payload: [UInt8], to peer: PublicKey, early: Bool = false, now: Instant,
        rng: inout some RandomNumberGenerator, into effects: inout [NodeEffect]
    ) {
        let frame = Frame.opaque(channel, payload).encoded()
        absorb(sessions.send(frame, to: peer, early: early, now: now, rng: &rng), now: now, rng: &rng, into: &effects)
    }
}
