// The relay part of the node: relaying for others (`--relay`), reservations on relays when this
// node is not reachable, reachability by dial-back, relayed sessions (virtual relay paths, see
// `Endpoint.relayPath`) and hole punching. Being written.

import Relay
import UmbraCore

/// Settings of the relay part.
public struct RelayNodeConfig: Sendable {
    public init() {}
}

/// State of the relay part.
struct RelayState: Sendable {
    init(config: RelayNodeConfig, now: Instant) {}
}

extension NodeInstance {
    mutating func relayStart(now: Instant, rng: inout some RandomNumberGenerator, into effects: inout [NodeEffect]) {}

    mutating func relayTick(now: Instant, rng: inout some RandomNumberGenerator, into effects: inout [NodeEffect]) {}

    var relayDeadline: Instant? { nil }

    mutating func relayPeerUp(
        _ key: PublicKey, endpoint: Endpoint, now: Instant, rng: inout some RandomNumberGenerator,
        into effects: inout [NodeEffect]
    ) {}

    mutating func relayPeerDown(
        _ key: PublicKey, now: Instant, rng: inout some RandomNumberGenerator, into effects: inout [NodeEffect]
    ) {}

    mutating func relayEndpointChanged(
        _ key: PublicKey, endpoint: Endpoint, now: Instant, rng: inout some RandomNumberGenerator,
        into effects: inout [NodeEffect]
    ) {}

    mutating func relayObservedAddress(
        _ endpoint: Endpoint, reporter: PublicKey, now: Instant, rng: inout some RandomNumberGenerator,
        into effects: inout [NodeEffect]
    ) {}

    /// A datagram the session layer addressed to a relay path: dropped until relaying is wired.
    mutating func relaySend(
        _ bytes: [UInt8], path: Endpoint, now: Instant, rng: inout some RandomNumberGenerator,
        into effects: inout [NodeEffect]
    ) {}

    mutating func relayFrame(
        _ payload: [UInt8], from key: PublicKey, now: Instant, rng: inout some RandomNumberGenerator,
        into effects: inout [NodeEffect]
    ) {
        counters.framesRejected += 1
        effects.append(.event(.frameRejected(key, reason: "relay frames are not handled yet")))
    }
}
