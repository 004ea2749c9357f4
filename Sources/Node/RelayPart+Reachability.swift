// The node's side of the reachability rule (Relay/Reachability.swift holds the rule itself): it
// feeds the core what only the node knows — where each peer's session comes from, which sessions
// came in unasked, the addresses we sent handshakes to — and answers dial-back requests.

import Relay
import UmbraCore

extension RelayPart {
    /// A direct session with `key` came up at `endpoint`: unsolicited inbound evidence when we never
    /// sent a handshake to its address and it did not grow out of a relayed (punched) session.
    mutating func reachabilitySessionUp(
        _ key: PublicKey, endpoint: Endpoint, now: Instant, rng: inout some RandomNumberGenerator,
        node: inout NodeKernel
    ) {
        guard config.relay.reachabilityMode == .auto else { return }
        applyReachability(
            reachability.sessionUp(
                key, address: endpoint.address, punched: links[key] != nil, now: now, rng: &rng),
            now: now, rng: &rng, node: &node)
    }

    /// `reporter` sees us at `endpoint`; its own address is where its direct session comes from.
    /// Reports over relayed sessions say nothing about our address and are dropped.
    mutating func reachabilityObserved(
        _ endpoint: Endpoint, reporter: PublicKey, now: Instant, rng: inout some RandomNumberGenerator,
        node: inout NodeKernel
    ) {
        let path = node.sessions.path(of: reporter)
        guard !endpoint.address.isDiscardOnly, path?.isRelayed != true else { return }
        applyReachability(
            reachability.observed(
                endpoint, reporter: reporter, reporterAddress: path?.directEndpoint?.address, now: now, rng: &rng),
            now: now, rng: &rng, node: &node)
    }

    /// `key` asks to be dialled back. The core rate-limits before anything else; the prober is a
    /// random one of the peers it already tracks that we hold a direct session with and that are in
    /// our routing table (DHT servers, i.e. nodes known to be public) — no scan of all sessions.
    mutating func reachabilityDialBackRequest(
        nonce: UInt64, endpoint: Endpoint, from key: PublicKey, now: Instant,
        rng: inout some RandomNumberGenerator, node: inout NodeKernel
    ) {
        let source = node.directEndpoint(of: key)
        // The closure reads copies of the session and routing tables; they must be gone before
        // `applyReachability` sends (and so mutates the session table), or that mutation copies
        // every peer: work per request would grow with the table.
        let reachabilityEffects: [ReachabilityEffect]
        do {
            let sessions = node.sessions
            let table = node.dht.table
            let candidates = reachability.peers
            reachabilityEffects = reachability.handleDialBackRequest(
                from: key, nonce: nonce, endpoint: endpoint, observedSource: source, now: now, peers: candidates,
                isEligible: { peer in
                    sessions.isEstablished(peer) && sessions.path(of: peer)?.directEndpoint != nil
                        && table.contains(peer.nodeID)
                }, rng: &rng)
        }
        applyReachability(reachabilityEffects, now: now, rng: &rng, node: &node)
    }
}
