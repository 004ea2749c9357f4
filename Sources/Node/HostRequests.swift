// Host requests: the node asks the shell to change the host (a TUN device, routes, DNS, a kill
// switch) with `NodeEffect.host(request)`; the shell performs it off the packet path, in the order
// asked, and answers with `NodeInstance.hostCompleted(token, outcome)`. The node never touches the
// host itself, so the simulator can answer these requests (or fail them) like a disk answers
// storage requests, and the connect flow — choose, open, set up the host, fail — stays pure.
//
// The shell must answer every request it is given; the node keeps no timeout on them (a host
// change is local, bounded by the shell's own command timeouts).

import Dialogue
import UmbraCore

/// Names one host request (chosen by the node, unique for its life).
public struct HostToken: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var value: UInt64
    public init(_ value: UInt64) { self.value = value }
    public static func < (lhs: HostToken, rhs: HostToken) -> Bool { lhs.value < rhs.value }
    public var description: String { "host#\(value)" }
}

/// Which traffic a consumer tunnel carries.
public enum TunnelRoutes: Sendable, Equatable {
    /// Everything (0.0.0.0/1 and 128.0.0.0/1).
    case full
    /// Only these IPv4 CIDR blocks.
    case split([String])

    public var prefixes: [String] {
        switch self {
        case .full: ["0.0.0.0/1", "128.0.0.0/1"]
        case .split(let prefixes): prefixes
        }
    }
}

/// How the consumer wants its host set up around a tunnel (`umbra connect`'s flags).
public struct ConsumerTunnelOptions: Sendable, Equatable {
    public var routes: TunnelRoutes
    /// DNS servers to use while the tunnel is up (empty: leave DNS alone).
    public var dns: [String]
    /// Drop everything that would leave outside the tunnel, also while it is down.
    public var killSwitch: Bool

    public init(routes: TunnelRoutes = .full, dns: [String] = [], killSwitch: Bool = false) {
        self.routes = routes
        self.dns = dns
        self.killSwitch = killSwitch
    }
}

/// Everything the shell needs to set up the consumer side of a tunnel.
public struct ConsumerTunnelPlan: Sendable, Equatable {
    /// The open dialogue: provider, inner address, gateway, MTU.
    public var session: ClientSession
    public var options: ConsumerTunnelOptions
    /// Where the session's datagrams go now (the provider's address, or its relay's), only checked
    /// against by the host (the node's own socket is marked and bypasses the tunnel; nothing is
    /// routed to it).
    public var underlay: IPAddress?

    public init(session: ClientSession, options: ConsumerTunnelOptions, underlay: IPAddress?) {
        self.session = session
        self.options = options
        self.underlay = underlay
    }

    public var provider: PublicKey { session.provider }
}

/// A change the node asks of the host.
public enum HostAction: Sendable, Equatable {
    /// Create the consumer's TUN device with the session's inner address, its routes, DNS and kill
    /// switch, and start moving its packets through the node (replacing nothing: the node tears a
    /// previous tunnel down first).
    case setUpConsumerTunnel(ConsumerTunnelPlan)
    /// Undo everything the last set-up changed, exactly (a set-up that failed changed nothing).
    case tearDownConsumerTunnel
}

public struct HostRequest: Sendable, Equatable {
    public var token: HostToken
    public var action: HostAction

    public init(token: HostToken, action: HostAction) {
        self.token = token
        self.action = action
    }
}

/// How the shell answered a host request.
public enum HostOutcome: Sendable, Equatable {
    case done
    /// Nothing was changed (or everything changed was undone); `reason` says what went wrong, for
    /// the operator.
    case failed(String)
}

/// What the host holds for the consumer's tunnel, as far as the node asked (TunnelPart).
public enum ConsumerHost: Sendable, Equatable {
    /// Nothing set up.
    case none
    /// A set-up was asked for and not answered yet.
    case settingUp(HostToken, ConsumerTunnelPlan)
    /// The host carries the tunnel's routes (packets flow while the dialogue lives; once it ends
    /// the routes stay — with the kill switch nothing leaves — until a disconnect).
    case up(ConsumerTunnelPlan)
    /// A tear-down was asked for and not answered yet.
    case tearingDown(HostToken, provider: PublicKey)

    /// The provider the host is (being) set up for.
    public var provider: PublicKey? {
        switch self {
        case .none: nil
        case .settingUp(_, let plan), .up(let plan): plan.provider
        case .tearingDown(_, let provider): provider
        }
    }

    public var plan: ConsumerTunnelPlan? {
        switch self {
        case .settingUp(_, let plan), .up(let plan): plan
        case .none, .tearingDown: nil
        }
    }
}
