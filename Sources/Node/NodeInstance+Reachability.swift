// The node's side of the reachability rule (Relay/Reachability.swift holds the rule itself): it
// feeds the core what only the node knows — where each peer's session comes from, which sessions
// came in unasked, the addresses we sent handshakes to — and answers dial-back requests.

import Relay
import UmbraCore

extension NodeInstance {
    /// A direct session with `key` came up at `endpoint`: unsolicited inbound evidence when we never
    /// sent a handshake to its address and it did not grow out of a relayed (punched) session.
    mutating func reachabilitySessionUp(
        _ key: PublicKey, endpoint: Endpoint, now: Instant, rng: inout some RandomNumberGenerator,
        into effects: inout [NodeEffect]
    ) {
        guard config.relay.reachabilityMode == .auto else { return }
        applyReachability(
            relay.reachability.sessionUp(
                key, address: endpoint.address, punched: relay.links[key] != nil, now: now, rng: &rng),
            now: now, rng: &rng, into: &effects)
    }

    /// `reporter` sees us at `endpoint`; its own address is where its direct session comes from.
    /// Reports over relayed sessions say nothing about our address and are dropped.
    mutating func reachabilityObserved(
        _ endpoint: Endpoint, reporter: PublicKey, now: Instant, rng: inout some RandomNumberGenerator,
        into effects: inout [NodeEffect]
    ) {
        let path = sessions.path(of: reporter)
        guard !endpoint.address.isDiscardOnly, path?.isRelayed != true else { return }
        applyReachability(
            relay.reachability.observed(
                endpoint, reporter: reporter, reporterAddress: path?.directEndpoint?.address, now: now, rng: &rng),
            now: now, rng: &rng, into: &effects)
    }

    /// A handshake initiation leaves for `endpoint` (every direct send passes here; only initiations
    /// are remembered, so this costs one byte compare on the data path).
    mutating func noteDirectSend(_ bytes: [UInt8], to endpoint: Endpoint) {
        if bytes.first == 1 { relay.reachability.sentInitiation(to: endpoint.address) }
    }

    /// `key` asks to be dialled back. The core rate-limits before anything else; the prober is a
    /// random one of the peers it already tracks that we hold a direct session with and that are in
    /// our routing table (DHT servers, i.e. nodes known to be public) — no scan of all sessions.
    mutating func reachabilityDialBackRequest(
        nonce: UInt64, endpoint: Endpoint, from key: PublicKey, now: Instant,
        rng: inout some RandomNumberGenerator, into effects: inout [NodeEffect]
    ) {
        let source = directEndpoint(of: key)
        // The closure reads copies of the session and routing tables; they must be gone before
        // `applyReachability` sends (and so mutates the session table), or that mutation copies
        // every peer: work per request would grow with the table.
        let reachabilityEffects: [ReachabilityEffect]
        do {
            let sessions = self.sessions
            let table = dht.table
            let candidates = relay.reachability.peers
            reachabilityEffects = relay.reachability.handleDialBackRequest(
                from: key, nonce: nonce, endpoint: endpoint, observedSource: source, now: now, peers: candidates,
                isEligible: { peer in
                    sessions.isEstablished(peer) && sessions.path(of: peer)?.directEndpoint != nil
                        && table.contains(peer.nodeID)
                }, rng: &rng)
        }
        applyReachability(reachabilityEffects, now: now, rng: &rng, into: &effects)
    }
}
