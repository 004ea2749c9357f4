import ArgumentParser
import Foundation
import Node
import NodeAPI
import NodeRuntime
import Relay
import UmbraCore

/// `umbra up` options of the relay part: relaying for others, reachability, test limits.
struct RelayUpOptions: ParsableArguments {
    @Flag(help: "Relay for nodes behind NAT (run it on a publicly reachable node; one UDP port, the --listen one).")
    var relay = false

    @Option(
        help: ArgumentHelp(
            "Whether others can dial this node: auto (find out by dial-back), public, private.",
            valueName: "auto|public|private"))
    var reachability = ReachabilityMode.auto.rawValue

    @Option(help: .hidden) var relayCircuitBytes: UInt64?
    @Option(help: .hidden) var relayCircuitSeconds: Int?
    @Option(help: .hidden) var relayReservationsPerIp: Int?

    /// The relay settings for a node listening on `listen`.
    func config(listen: Endpoint) throws -> RelayNodeConfig {
        guard let mode = ReachabilityMode(rawValue: reachability) else {
            throw CLIError("umbra up: unknown --reachability '\(reachability)'; use auto, public or private")
        }
        var config = RelayNodeConfig()
        config.isRelay = relay
        config.reachabilityMode = mode
        if listen.address != .v4(0), listen.address != .v6(high: 0, low: 0) {
            config.localEndpoints = [listen]
        } else {
            // Bound to every interface: each interface address is one of our socket endpoints.
            config.interfaceEndpoints = InterfaceAddresses.endpoints(
                port: listen.port, includeIPv6: listen.address != .v4(0))
        }
        if let bytes = relayCircuitBytes { config.server.circuitByteLimit = bytes }
        if let seconds = relayCircuitSeconds { config.server.circuitDurationLimit = .seconds(seconds) }
        if let count = relayReservationsPerIp { config.server.maximumReservationsPerIP = max(1, count) }
        return config
    }
}

/// The relay part of `umbra status`.
func printRelayStatus(_ relay: RelayStatusReport) {
    var reachability = relay.reachability
    if let endpoint = relay.publicEndpoint { reachability += " at \(endpoint)" }
    if relay.reachabilityMode != "auto" { reachability += " (forced)" }
    if let basis = relay.reachabilityBasis { reachability += " (\(basis))" }
    reachability += relay.dhtServer ? ", DHT server" : ", DHT client"
    if let observed = relay.observedEndpoint { reachability += "; peers see us at \(observed)" }
    print("reachable   \(reachability)")
    for reservation in relay.reservations {
        print(
            "reserved    on \(reservation.relay)@\(reservation.endpoint), expires in "
                + Format.duration(reservation.expiresInSeconds) + (reservation.connected ? "" : " (reconnecting)"))
    }
    if relay.reservations.isEmpty, relay.reachability == "private" {
        print("reserved    nothing yet (\(relay.relayCandidates.count) relays known)")
    }
    if relay.relay {
        print(
            "relaying    \(relay.hostedReservations.count) reservations, \(relay.circuits.count) circuits, "
                + Format.bytes(relay.counters["relay_bytes_relayed"] ?? 0) + " relayed")
        for circuit in relay.circuits {
            print(
                "  circuit   \(circuit.initiator) -> \(circuit.target): \(Format.bytes(circuit.bytes)) in "
                    + "\(circuit.datagrams) datagrams, open \(Format.duration(circuit.ageSeconds))")
        }
    }
    for session in relay.sessions {
        var line = "session     \(session.peer) \(session.path)"
        if session.path == "relayed", let via = session.relay { line += " via \(via)" }
        if session.path != "relayed", let endpoint = session.endpoint { line += " at \(endpoint)" }
        if let after = session.upgradedAfterMs { line += String(format: " (upgraded after %.0f ms)", after) }
        if session.path == "relayed", let phase = session.punchPhase {
            line += " (punch \(phase), \(session.punchAttempts) attempts)"
        }
        if let code = session.lastCircuitCode { line += " [relay: \(code)]" }
        print(line)
    }
}
