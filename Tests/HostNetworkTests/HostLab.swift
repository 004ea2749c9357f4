// A throwaway network lab for the host-network tests: a "node" namespace whose only uplink is a
// veth pair to a "router" namespace that holds its default gateway, so route lookups, host routes
// and NAT are real. Nothing touches the host's own namespace: links are created inside the
// namespaces (`ip -n NODE link add … peer … netns ROUTER`), and both namespaces and the temporary
// directory are deleted by `destroy()` (callers `defer` it).
//
//   node (umbra-hn-XXXX-n)                          router (umbra-hn-XXXX-r)
//   veth0 192.0.2.2/24, default via 192.0.2.1  ───  veth1 192.0.2.1/24, lo 198.51.100.1/32
//
// IPv6 is disabled in both, so no link-local address or DAD state changes between snapshots.

import Glibc
import HostNetwork
import NodeRuntime
import Testing
import UmbraCore

struct HostLab {
    let node: String
    let router: String
    let directory: String

    static let nodeAddress = "192.0.2.2"
    static let routerAddress = "192.0.2.1"
    static let routerExtraAddress = "198.51.100.1"
    /// The key every test journal is authenticated with (a node derives its own from its identity).
    static let key = HostJournalKey(secret: Array(repeating: 7, count: 32))

    /// Root, /dev/net/tun, ip and nft: what the privileged tests need.
    static var available: Bool {
        getuid() == 0 && access("/dev/net/tun", R_OK | W_OK) == 0 && HostLab.hasTool("ip") && HostLab.hasTool("nft")
            && HostLab.hasTool("ping") && HostLab.hasTool("sysctl")
    }
    static let unavailableComment: Comment =
        "needs root, /dev/net/tun and ip/nft/ping/sysctl: run the tests as root on Linux"

    static func hasTool(_ name: String) -> Bool {
        ["/usr/sbin/", "/sbin/", "/usr/bin/", "/bin/"].contains { access($0 + name, X_OK) == 0 }
    }

    var host: HostCommand { HostCommand() }
    var inNode: HostCommand { HostCommand(namespace: node) }
    var inRouter: HostCommand { HostCommand(namespace: router) }
    var journalPath: String { directory + "/" + HostJournal.fileName }

    static func make() throws -> HostLab {
        let tag = String(UInt32.random(in: 0...UInt32.max), radix: 16)
        var template = Array("/tmp/umbra-hn-\(tag)-XXXXXX".utf8CString)
        let directory = template.withUnsafeMutableBufferPointer { buffer -> String? in
            guard let base = buffer.baseAddress, mkdtemp(base) != nil else { return nil }
            return String(cString: base)
        }
        let lab = HostLab(node: "umbra-hn-\(tag)-n", router: "umbra-hn-\(tag)-r", directory: try #require(directory))
        do {
            try lab.build()
        } catch {
            lab.destroy()
            throw error
        }
        return lab
    }

    private func build() throws {
        let host = host
        for namespace in [node, router] {
            try host.run(["ip", "netns", "add", namespace])
            let inside = HostCommand(namespace: namespace)
            try inside.run(["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"])
            try inside.run(["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"])
            try host.run(["ip", "-n", namespace, "link", "set", "lo", "up"])
        }
        try host.run([
            "ip", "-n", node, "link", "add", "veth0", "type", "veth", "peer", "name", "veth1", "netns", router,
        ])
        try host.run(["ip", "-n", node, "addr", "add", "\(Self.nodeAddress)/24", "dev", "veth0"])
        try host.run(["ip", "-n", router, "addr", "add", "\(Self.routerAddress)/24", "dev", "veth1"])
        try host.run(["ip", "-n", router, "addr", "add", "\(Self.routerExtraAddress)/32", "dev", "lo"])
        try host.run(["ip", "-n", node, "link", "set", "veth0", "up"])
        try host.run(["ip", "-n", router, "link", "set", "veth1", "up"])
        try host.run(["ip", "-n", node, "route", "add", "default", "via", Self.routerAddress])
        // Wait for the veth carrier (it changes `ip addr` output) by pinging the router.
        for _ in 0..<5 where !ping(Self.routerAddress) {}
        #expect(ping(Self.routerAddress), "the lab's node cannot reach its router")
    }

    /// Deletes the namespaces (and with them every link, route and table in them) and the directory.
    func destroy() {
        for namespace in [node, router] {
            _ = try? host.runAllowingFailure(["ip", "netns", "del", namespace])
        }
        _ = try? host.runAllowingFailure(["rm", "-rf", directory])
    }

    /// One ping from the node namespace (1 s at most).
    func ping(_ address: String) -> Bool {
        (try? inNode.runAllowingFailure(["ping", "-n", "-c1", "-W1", address]).succeeded) ?? false
    }

    // MARK: - Snapshots

    struct Snapshot: Equatable, CustomStringConvertible {
        var routes: String
        var rules: String
        var addresses: String
        var ruleset: String
        var forwarding: String
        var resolvConf: [UInt8]?

        var description: String {
            "routes:\n\(routes)\nrules:\n\(rules)\naddresses:\n\(addresses)\nruleset:\n\(ruleset)\nip_forward: \(forwarding)\n"
                + "resolv.conf: \(resolvConf.map { String(decoding: $0, as: UTF8.self) } ?? "(none)")"
        }
    }

    /// Everything an `up` may change in the node namespace, as text.
    func snapshot(resolvConf: String? = nil) throws -> Snapshot {
        Snapshot(
            routes: try host.run(["ip", "-n", node, "route", "show", "table", "all"]).outputText,
            rules: try host.run(["ip", "-n", node, "rule", "show"]).outputText,
            addresses: try host.run(["ip", "-n", node, "addr"]).outputText,
            ruleset: try inNode.run(["nft", "list", "ruleset"]).outputText,
            forwarding: try inNode.run(["cat", "/proc/sys/net/ipv4/ip_forward"]).outputText,
            resolvConf: resolvConf.flatMap { readFile($0) })
    }

    func readFile(_ path: String) -> [UInt8]? {
        guard let file = fopen(path, "rb") else { return nil }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = fread(&buffer, 1, buffer.count, file)
            if count == 0 { return bytes }
            bytes += buffer[0..<count]
        }
    }

    func writeFile(_ path: String, _ text: String) throws {
        let file = try #require(fopen(path, "wb"))
        defer { fclose(file) }
        let bytes = Array(text.utf8)
        #expect(fwrite(bytes, 1, bytes.count, file) == bytes.count)
    }
}

// MARK: - Packets

/// A minimal IPv4 ICMP echo packet, for writing into and recognizing on a TUN device.
struct EchoPacket: Equatable {
    var source: UInt32
    var destination: UInt32
    var isRequest: Bool
    var identifier: UInt16
    var sequence: UInt16

    func encoded() -> [UInt8] {
        let payload = Array("umbra-hn".utf8)
        var icmp: [UInt8] = [isRequest ? 8 : 0, 0, 0, 0]
        icmp += Self.bigEndian(identifier) + Self.bigEndian(sequence) + payload
        icmp.replaceSubrange(2..<4, with: Self.bigEndian(Self.checksum(icmp)))
        var header: [UInt8] = [0x45, 0] + Self.bigEndian(UInt16(20 + icmp.count)) + [0, 0, 0x40, 0, 64, 1, 0, 0]
        header += Self.bigEndian32(source) + Self.bigEndian32(destination)
        header.replaceSubrange(10..<12, with: Self.bigEndian(Self.checksum(header)))
        return header + icmp
    }

    /// Parses an IPv4 ICMP echo request or reply; nil for anything else.
    init?(parsing bytes: ArraySlice<UInt8>) {
        let bytes = Array(bytes)
        guard bytes.count >= 28, bytes[0] >> 4 == 4, bytes[9] == 1 else { return nil }
        let headerLength = Int(bytes[0] & 0x0f) * 4
        guard bytes.count >= headerLength + 8, bytes[headerLength] == 8 || bytes[headerLength] == 0 else { return nil }
        source = Self.word32(bytes, 12)
        destination = Self.word32(bytes, 16)
        isRequest = bytes[headerLength] == 8
        identifier = UInt16(bytes[headerLength + 4]) << 8 | UInt16(bytes[headerLength + 5])
        sequence = UInt16(bytes[headerLength + 6]) << 8 | UInt16(bytes[headerLength + 7])
    }

    init(source: String, destination: String, isRequest: Bool, identifier: UInt16, sequence: UInt16 = 1) {
        guard case .v4(let from)? = IPAddress(parsingIPv4: source),
            case .v4(let to)? = IPAddress(parsingIPv4: destination)
        else { preconditionFailure("test addresses are IPv4 literals") }
        self.source = from
        self.destination = to
        self.isRequest = isRequest
        self.identifier = identifier
        self.sequence = sequence
    }

    static func checksum(_ bytes: [UInt8]) -> UInt16 {
        var sum: UInt32 = 0
        var index = 0
        while index + 1 < bytes.count {
            sum += UInt32(bytes[index]) << 8 | UInt32(bytes[index + 1])
            index += 2
        }
        if index < bytes.count { sum += UInt32(bytes[index]) << 8 }
        while sum >> 16 != 0 { sum = (sum & 0xffff) + (sum >> 16) }
        return ~UInt16(sum)
    }

    static func bigEndian(_ value: UInt16) -> [UInt8] { [UInt8(value >> 8), UInt8(value & 0xff)] }
    static func bigEndian32(_ value: UInt32) -> [UInt8] {
        (0..<4).map { UInt8(truncatingIfNeeded: value >> (24 - 8 * $0)) }
    }
    static func word32(_ bytes: [UInt8], _ offset: Int) -> UInt32 {
        (0..<4).reduce(0) { $0 << 8 | UInt32(bytes[offset + $1]) }
    }
}

extension TunDevice {
    /// Reads packets for up to `milliseconds` until one is an ICMP echo matching `predicate`.
    func awaitEcho(within milliseconds: Int, where predicate: (EchoPacket) -> Bool) -> EchoPacket? {
        var buffer = [UInt8](repeating: 0, count: 2048)
        let deadline = ContinuousClock.now + .milliseconds(milliseconds)
        while ContinuousClock.now < deadline {
            guard waitReadable(timeoutMilliseconds: 100) else { continue }
            while let count = buffer.withUnsafeMutableBytes({ read(into: $0) }) {
                if let packet = EchoPacket(parsing: buffer[0..<count]), predicate(packet) { return packet }
            }
        }
        return nil
    }

    func write(_ bytes: [UInt8]) -> Bool { bytes.withUnsafeBytes { write($0) } }
}
