// Routing of the channels whose payloads other cores decode (gossip, proposal sync, relay).

import UmbraCore

extension NodeInstance {
    mutating func handleChannel(
        _ channel: FrameChannel, _ payload: [UInt8], from key: PublicKey, now: Instant,
        rng: inout some RandomNumberGenerator, into effects: inout [NodeEffect]
    ) {
        counters.framesRejected += 1
        effects.append(.event(.frameRejected(key, reason: "channel \(channel) not handled")))
    }
}
