// The market part of the node: gossip of signed service proposals, the proposal store, join sync
// and the provider role. Being written.

import Gossip
import Proposals
import UmbraCore

public struct MarketConfig: Sendable {
    public init() {}
}

struct MarketState: Sendable {
    init(identity: Identity, config: MarketConfig) {}
}

extension NodeInstance {
    mutating func marketStart(now: Instant, rng: inout some RandomNumberGenerator, into effects: inout [NodeEffect]) {}
    mutating func marketTick(now: Instant, rng: inout some RandomNumberGenerator, into effects: inout [NodeEffect]) {}
    var marketDeadline: Instant? { nil }
    mutating func marketPeerUp(
        _ key: PublicKey, now: Instant, rng: inout some RandomNumberGenerator, into effects: inout [NodeEffect]
    ) {}
    mutating func marketPeerDown(
        _ key: PublicKey, now: Instant, rng: inout some RandomNumberGenerator, into effects: inout [NodeEffect]
    ) {}
    mutating func marketGossip(
        _ payload: [UInt8], from key: PublicKey, now: Instant, rng: inout some RandomNumberGenerator,
        into effects: inout [NodeEffect]
    ) {}
    mutating func marketSync(
        _ payload: [UInt8], from key: PublicKey, now: Instant, rng: inout some RandomNumberGenerator,
        into effects: inout [NodeEffect]
    ) {}
}
