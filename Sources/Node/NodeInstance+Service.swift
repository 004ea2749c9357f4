// The node's commands and queries for the service: dialogues (DialoguePart) and the tunnel data
// plane (TunnelPart). Each hands the command to its part and carries out what the part queued.

import Dialogue
import Kademlia
import Proposals
import Sessions
import Tunnel
import UmbraCore

extension NodeInstance {
    // MARK: - Dialogue

    /// Opens a dialogue with `provider` for `serviceType` (its proposal's seq, when known). The
    /// outcome comes back as `.event(.dialogue(.opened | .failed))`. The caller makes the provider
    /// reachable first (`reach`). A dialogue already open or opening with it is left alone.
    public mutating func openDialogue(
        with provider: PublicKey, serviceType: String = "ip-tunnel", proposalSeq: UInt64 = 0,
        mode: TunnelMode = .fullTunnel, startedAt: Instant? = nil, now: Instant,
        rng: inout some RandomNumberGenerator
    ) -> [NodeEffect] {
        var effects: [NodeEffect] = []
        dialogue.open(
            with: provider, serviceType: serviceType, proposalSeq: proposalSeq, mode: mode, startedAt: startedAt,
            &kernel, now: now, rng: &rng)
        drain(now: now, rng: &rng, into: &effects)
        return effects
    }

    /// Makes `provider` reachable from the contacts of its proposal: directly, else (or when the
    /// direct endpoint does not answer within a second) through one of its relays (`dial`).
    public mutating func reach(
        _ provider: PublicKey, contacts: ServiceProposal.Contacts, now: Instant, rng: inout some RandomNumberGenerator
    ) -> [NodeEffect] {
        let direct = Array(
            contacts.direct.filter { !$0.address.isDiscardOnly }.prefix(PeerRecordValue.maximumEndpoints))
        let relays = contacts.relays.prefix(PeerRecordValue.maximumRelays).map {
            NodeContact(publicKey: $0.publicKey, endpoint: $0.endpoint)
        }
        let record = direct.isEmpty && relays.isEmpty ? nil : PeerRecordValue(endpoints: direct, relays: relays)
        return dial(provider, record: record, now: now, rng: &rng)
    }

    /// Records a stage the shell measured (lookup, dial) for the dialogue with `provider`.
    public mutating func markDialogueStage(_ stage: DialogueStage, provider: PublicKey, at instant: Instant) {
        dialogue.clients[provider]?.markStage(stage, at: instant)
    }

    /// Ends the dialogue with `provider` (sends `end`).
    public mutating func closeDialogue(
        with provider: PublicKey, now: Instant, rng: inout some RandomNumberGenerator
    ) -> [NodeEffect] {
        var effects: [NodeEffect] = []
        dialogue.close(with: provider, &kernel, now: now, rng: &rng)
        drain(now: now, rng: &rng, into: &effects)
        return effects
    }

    /// On a clean stop: every consumer session served is ended with `shuttingDown`, every dialogue
    /// of ours closed.
    public mutating func endDialogues(now: Instant, rng: inout some RandomNumberGenerator) -> [NodeEffect] {
        var effects: [NodeEffect] = []
        dialogue.endAll(&kernel, now: now, rng: &rng)
        drain(now: now, rng: &rng, into: &effects)
        return effects
    }

    public var dialogueStatus: DialogueStatus { dialogue.status }

    // MARK: - Tunnel

    /// Consumer: routes packets read from the TUN device to the provider of `session` (an open
    /// dialogue). Replaces any previous tunnel.
    public mutating func attachTunnel(_ session: ClientSession, now: Instant) {
        tunnel.attach(session, now: now)
    }

    /// Consumer: stops routing packets (the shell has torn the TUN device down).
    public mutating func detachTunnel() {
        tunnel.detach()
    }

    /// The shell finished a `.host` request (HostRequests.swift). An unknown token is ignored.
    public mutating func hostCompleted(
        _ token: HostToken, _ outcome: HostOutcome, now: Instant, rng: inout some RandomNumberGenerator
    ) -> [NodeEffect] {
        guard let request = kernel.hostRequests.removeValue(forKey: token) else { return [] }
        var effects: [NodeEffect] = []
        kernel.notify(.hostCompleted(request, outcome))
        drain(now: now, rng: &rng, into: &effects)
        return effects
    }

    /// Host requests asked of the shell and not answered yet, oldest first.
    public var hostRequestsInFlight: [HostRequest] {
        kernel.hostRequests.keys.sorted().map { kernel.hostRequests[$0]! }
    }

    public var tunnelStatus: TunnelStatus {
        let served = tunnel.served.keys.sorted(by: Self.keyOrder).compactMap { key -> ServedTunnel? in
            guard let entry = tunnel.served[key], let session = dialogue.server?.session(of: key),
                session.sessionID == entry.sessionID
            else { return nil }
            return ServedTunnel(
                consumer: key, sessionID: entry.sessionID, innerAddress: session.address, account: entry.account,
                consumerReport: session.lastReport)
        }
        return TunnelStatus(
            consumer: tunnel.consumer, host: tunnel.host,
            consumerPath: tunnel.consumer.flatMap { sessions.path(of: $0.provider) },
            served: served, counters: tunnel.counters)
    }

    /// A packet read from the TUN device. `frame` is the tunnel frame: the channel byte 0x50, then
    /// the IP packet. On a direct path with keys the frame is sealed into `output` and the datagram
    /// (length, destination) returned for the shell to send; otherwise the outcome (a frame-path
    /// send, an ICMP reply for the TUN device, a drop) is in `effects` and the result is nil.
    /// `output` needs `frame.count + WireSize.transportMinimum` bytes.
    public mutating func tunnelOutbound(
        frame: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer, now: Instant,
        rng: inout some RandomNumberGenerator, effects: inout [NodeEffect]
    ) -> (length: Int, endpoint: Endpoint)? {
        guard let sealed = tunnel.outbound(frame: frame, into: output, &kernel, now: now, rng: &rng) else {
            drain(now: now, rng: &rng, into: &effects)
            return nil
        }
        switch sealed.path {
        case .direct(let endpoint):
            return (sealed.length, endpoint)
        case .relayed(let id):
            // Sealed on keys whose path is relayed (a responder's newest keypair, from an initiation
            // that came through a relay): it leaves as a relay frame, never to the socket.
            let datagram = Array(UnsafeRawBufferPointer(rebasing: output[..<sealed.length]))
            relay.sendRelayed(datagram, path: id, node: &kernel, now: now, rng: &rng)
            drain(now: now, rng: &rng, into: &effects)
            return nil
        }
    }

    /// A tunnel frame's payload (an IP packet) from `key`: the number of leading bytes to write to
    /// the TUN device (the IP total length), or nil when the packet must not pass.
    public mutating func tunnelInbound(_ packet: UnsafeRawBufferPointer, from key: PublicKey, now: Instant) -> Int? {
        tunnel.inbound(packet, from: key, now: now)
    }

    /// Handles one datagram from the network in place. Transport data is opened where it lies; a
    /// tunnel packet that may pass is handed to `tunnel` (the shell writes it to the TUN device)
    /// without a copy. Everything else takes the ordinary path.
    public mutating func receive(
        datagram: UnsafeMutableRawBufferPointer, from source: Endpoint, now: Instant,
        rng: inout some RandomNumberGenerator, tunnel deliver: (UnsafeRawBufferPointer) -> Void
    ) -> [NodeEffect] {
        guard datagram.count >= WireSize.transportMinimum, datagram[0] == MessageType.transportData.rawValue else {
            return receive(Array(datagram), from: source, now: now, rng: &rng)
        }
        var sessionEffects: [SessionEffect] = []
        let result = sessions.receiveTransport(datagram, from: .direct(source), now: now, effects: &sessionEffects)
        var effects: [NodeEffect] = []
        if case .frame(let key, let range) = result, !range.isEmpty {
            if datagram[range.lowerBound] == FrameChannel.tunnel.rawValue {
                kernel.counters.framesReceived += 1
                let packet = UnsafeRawBufferPointer(rebasing: datagram[(range.lowerBound + 1)..<range.upperBound])
                if let length = tunnel.inbound(packet, from: key, now: now) {
                    deliver(UnsafeRawBufferPointer(rebasing: packet[..<length]))
                }
            } else {
                sessionEffects.append(.deliver(peer: key, frame: Array(datagram[range])))
            }
        }
        if !sessionEffects.isEmpty { absorb(sessionEffects, now: now, rng: &rng, into: &effects) }
        return effects
    }
}
