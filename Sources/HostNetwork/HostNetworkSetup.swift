// Shared by ConsumerNetwork and ProviderNetwork: IPv4 prefixes, the error type, and the one way
// either of them changes the host — `HostNetworkSetup.change`: journal the undo action durably, make
// the change, and drop the undo action again if the change was refused (so a rollback never
// removes something that was there before and is not ours). If `up` fails midway, everything done
// so far is rolled back from the journal before the error is thrown.

#if os(Linux)
import UmbraCore

/// An IPv4 network in CIDR notation, e.g. `10.182.0.0/16`.
public struct IPv4Prefix: Hashable, Sendable, CustomStringConvertible {
    /// The network address (host bits zero), big-endian packed like `IPAddress.v4`.
    public var network: UInt32
    public var length: Int

    /// Parses `a.b.c.d/n` (or a bare address as /32). Host bits must be zero.
    public init?(parsing text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2, case .v4(let address)? = IPAddress(parsingIPv4: parts[0]) else { return nil }
        var length = 32
        if parts.count == 2 {
            guard let value = Int(parts[1]), (0...32).contains(value),
                parts[1].allSatisfy({ $0.isASCII && $0.isNumber })
            else {
                return nil
            }
            length = value
        }
        let prefix = IPv4Prefix(network: address, length: length)
        guard prefix.network == address else { return nil }
        self = prefix
    }

    /// The prefix of `length` bits containing `address` (host bits cleared).
    public init(network address: UInt32, length: Int) {
        self.length = min(max(length, 0), 32)
        self.network = address & Self.mask(self.length)
    }

    static func mask(_ length: Int) -> UInt32 { length == 0 ? 0 : UInt32.max << UInt32(32 - length) }

    public func contains(_ address: UInt32) -> Bool { address & Self.mask(length) == network }
    public func contains(_ other: IPv4Prefix) -> Bool { other.length >= length && contains(other.network) }

    public var description: String { "\(IPAddress.v4(network))/\(length)" }
}

/// A consumer or provider set-up that is up: its TUN device and how to undo it. `down()` closes the
/// TUN (the kernel drops its addresses and routes) and rolls back the journal's entries of this
/// set-up's scope; undo actions that failed stay journaled for `HostJournal.recover`.
public final class HostNetworkHandle<Config: Sendable>: Sendable {
    public let tun: TunDevice
    public let config: Config
    private let journal: HostJournal
    private let runner: HostCommand
    private let scope: String

    init(tun: TunDevice, config: Config, journal: HostJournal, runner: HostCommand, scope: String) {
        self.tun = tun
        self.config = config
        self.journal = journal
        self.runner = runner
        self.scope = scope
    }

    @discardableResult
    public func down() -> HostRollbackReport {
        tun.close()
        return journal.rollback(scope: scope, runner: runner)
    }
}

public enum HostNetworkError: Error, Sendable, CustomStringConvertible {
    /// The configuration is wrong; nothing was changed.
    case invalidConfiguration(String)
    /// Setting up failed; what had been done was rolled back (see the report).
    case setupFailed(reason: String, rollback: HostRollbackReport)

    public var description: String {
        switch self {
        case .invalidConfiguration(let reason): "invalid tunnel configuration: \(reason); nothing was changed"
        case .setupFailed(let reason, let rollback):
            rollback.isComplete
                ? "setting up the tunnel failed: \(reason); every change was undone"
                : "setting up the tunnel failed: \(reason); undoing it failed too, the journal keeps the rest "
                    + "for the next start:\n\(rollback)"
        }
    }
}

/// A step of an `up` that failed outside a command (reported inside `setupFailed`).
struct HostChangeError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// The steps of an `up`, journaled one at a time.
struct HostNetworkSetup {
    let journal: HostJournal
    let runner: HostCommand
    let scope: String

    /// Journals `undo`, then makes the change. If the change throws, the undo entry is discarded
    /// (nothing to undo) and the error is rethrown.
    @discardableResult
    func change<T>(undo: HostUndoAction, _ body: () throws -> T) throws -> T {
        try journal.record(undo, scope: scope)
        do {
            return try body()
        } catch {
            // If even this write fails the entry stays; undoing a change that never happened is
            // tolerated, and the change's own error is the one worth reporting.
            try? journal.discard(undo, scope: scope)
            throw error
        }
    }

    /// Runs `body`; if it throws, rolls back this scope and throws `setupFailed`.
    func atomically<T>(_ body: () throws -> T) throws(HostNetworkError) -> T {
        do {
            return try body()
        } catch {
            let report = journal.rollback(scope: scope, runner: runner)
            throw .setupFailed(reason: "\(error)", rollback: report)
        }
    }

    /// Throws unless `runner` and `namespace` agree (a TUN created in one namespace and routes added
    /// in another would be a mess).
    static func checkNamespace(_ namespace: String?, runner: HostCommand) throws(HostNetworkError) {
        guard runner.namespace == namespace else {
            throw .invalidConfiguration(
                "the config's namespace (\(namespace ?? "none")) differs from the command runner's "
                    + "(\(runner.namespace ?? "none"))")
        }
    }

    static func checkInterfaceName(_ name: String) throws(HostNetworkError) {
        let bytes = Array(name.utf8)
        guard !bytes.isEmpty, bytes.count < 16,
            bytes.allSatisfy({ $0 > 0x20 && $0 < 0x7f && $0 != UInt8(ascii: "/") && $0 != UInt8(ascii: "\"") })
        else { throw .invalidConfiguration("\"\(name)\" is not a valid interface name (1 to 15 printable bytes)") }
    }

    static func checkMTU(_ mtu: Int) throws(HostNetworkError) {
        guard (576...65535).contains(mtu) else {
            throw .invalidConfiguration("MTU \(mtu) is outside 576...65535")
        }
    }
}
#endif
