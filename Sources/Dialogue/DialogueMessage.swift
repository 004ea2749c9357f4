// Dialogue wire messages: the consumer↔provider conversation (DESIGN §4 "Dialogue"), carried on
// frame channel 0x40 inside the two ends' own end-to-end session (direct, hole-punched or relayed:
// the same to this code). The sender is the session's peer; no key rides in a message.
//
// One message per frame: `tag u8 | fields`, integers little-endian, addresses as
// `family u8 (4|6) | 4 or 16 bytes in network order` (no port), strings with a u16 length.
// Every message is at most `maximumSize` (1180) bytes. The decoder is total: every input is one
// message or a typed `DecodeError`, and it never allocates more than its input.
//
// | tag  | message   | fields                                                                      |
// |------|-----------|-----------------------------------------------------------------------------|
// | 0x01 | request   | requestID u64, serviceType (u16 len, printable ASCII ≤ 32), proposalSeq u64, |
// |      |           | mode u8, wantsIPv6 u8 (0/1)                                                 |
// | 0x02 | accept    | requestID u64, sessionID u64, innerIPv4 (4) + prefix u8 (≤ 32),             |
// |      |           | hasIPv6 u8 (0/1) [+ innerIPv6 (16) + prefix u8 (≤ 128)], gateway address,   |
// |      |           | dnsCount u8 (≤ 4), dns address × count, mtu u16 (≥ 576), keepalive s u16 (≥ 1) |
// | 0x03 | reject    | requestID u64, code u16, reason (u16 len, UTF-8 ≤ 128)                      |
// | 0x04 | keepalive | sessionID u64, seq u32                                                      |
// | 0x05 | status    | sessionID u64, bytesSent u64, bytesReceived u64, packetsSent u64,           |
// |      |           | packetsReceived u64                                                         |
// | 0x06 | end       | sessionID u64, code u16                                                     |

import UmbraCore

// MARK: - Codes

/// The tunnel mode a consumer asks for. Any byte decodes (a newer consumer may ask for a mode this
/// provider does not know); the server refuses modes it does not support with `unsupportedMode`.
public struct TunnelMode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// All of the consumer's traffic goes through the tunnel.
    public static let fullTunnel = TunnelMode(rawValue: 1)
    /// Only chosen routes go through the tunnel.
    public static let split = TunnelMode(rawValue: 2)

    public var description: String {
        switch self {
        case .fullTunnel: "full tunnel"
        case .split: "split tunnel"
        default: "mode \(rawValue)"
        }
    }
}

/// Why a provider refused a session request. The raw values are wire codes.
public enum RejectCode: UInt16, Sendable, CaseIterable, Hashable, CustomStringConvertible {
    /// The provider does not offer the requested service type.
    case unknownService = 1
    /// The provider carries as many sessions as its proposal's capacity.
    case noCapacity = 2
    /// The provider's access policy does not admit this consumer.
    case notAllowed = 3
    /// The provider does not support the requested tunnel mode.
    case unsupportedMode = 4
    /// The request names a proposal older than the provider's current terms.
    case outdatedProposal = 5
    /// The consumer sent too many requests.
    case rateLimited = 6
    /// The provider is shutting down.
    case shuttingDown = 7
    /// The provider's inner address pool has no free address.
    case poolExhausted = 8

    public var description: String {
        switch self {
        case .unknownService: "the provider does not offer this service"
        case .noCapacity: "the provider is at capacity"
        case .notAllowed: "the provider's access policy does not admit this consumer"
        case .unsupportedMode: "the provider does not support this tunnel mode"
        case .outdatedProposal: "the proposal is outdated; fetch the provider's current one"
        case .rateLimited: "too many session requests"
        case .shuttingDown: "the provider is shutting down"
        case .poolExhausted: "the provider has no free inner address"
        }
    }
}

/// Why a session ended. The raw values are wire codes.
public enum EndCode: UInt16, Sendable, CaseIterable, Hashable, CustomStringConvertible {
    /// The consumer closed the session (or replaced it with a new one).
    case consumerClosed = 1
    /// The provider closed the session.
    case providerClosed = 2
    /// Nothing was heard from the other end for the keepalive timeout.
    case dead = 3
    /// The session went over a byte or time limit.
    case overLimit = 4
    /// The provider is shutting down.
    case shuttingDown = 5

    public var description: String {
        switch self {
        case .consumerClosed: "closed by the consumer"
        case .providerClosed: "closed by the provider"
        case .dead: "the other end stopped answering"
        case .overLimit: "the session reached its limit"
        case .shuttingDown: "the provider is shutting down"
        }
    }
}

// MARK: - Values

/// An interface address: an address and the prefix length of its network (10.182.0.2/16).
public struct InterfaceAddress: Hashable, Sendable, CustomStringConvertible {
    public var address: IPAddress
    public var prefixLength: UInt8

    public init(address: IPAddress, prefixLength: UInt8) {
        self.address = address
        self.prefixLength = prefixLength
    }

    public var description: String { "\(address)/\(prefixLength)" }
}

/// The consumer's own meters, as reported in `status` (for billing checks and `umbra status`).
public struct StatusReport: Hashable, Sendable {
    public var bytesSent: UInt64
    public var bytesReceived: UInt64
    public var packetsSent: UInt64
    public var packetsReceived: UInt64

    public init(bytesSent: UInt64, bytesReceived: UInt64, packetsSent: UInt64, packetsReceived: UInt64) {
        self.bytesSent = bytesSent
        self.bytesReceived = bytesReceived
        self.packetsSent = packetsSent
        self.packetsReceived = packetsReceived
    }
}

/// What a provider grants with `accept`.
public struct SessionGrant: Hashable, Sendable {
    /// The consumer's inner IPv4 address and the pool's prefix length.
    public var innerIPv4: InterfaceAddress
    /// The consumer's inner IPv6 address, when the provider offers one.
    public var innerIPv6: InterfaceAddress?
    /// The provider's own inner address (the consumer's next hop).
    public var gateway: IPAddress
    /// Resolvers the consumer should use (at most `DialogueMessage.maximumDNSServers`).
    public var dnsServers: [IPAddress]
    public var mtu: UInt16
    /// How often each end sends a keepalive, in seconds.
    public var keepaliveSeconds: UInt16

    public init(
        innerIPv4: InterfaceAddress, innerIPv6: InterfaceAddress? = nil, gateway: IPAddress,
        dnsServers: [IPAddress], mtu: UInt16, keepaliveSeconds: UInt16
    ) {
        self.innerIPv4 = innerIPv4
        self.innerIPv6 = innerIPv6
        self.gateway = gateway
        self.dnsServers = dnsServers
        self.mtu = mtu
        self.keepaliveSeconds = keepaliveSeconds
    }
}

// MARK: - Messages

public enum DialogueMessage: Hashable, Sendable {
    /// `0x01 | requestID u64 | serviceType (u16 len, printable ASCII ≤ 32) | proposalSeq u64 |
    /// mode u8 | wantsIPv6 u8` — consumer → provider: open a session under the proposal with this seq.
    case request(requestID: UInt64, serviceType: String, proposalSeq: UInt64, mode: TunnelMode, wantsIPv6: Bool)
    /// `0x02 | requestID u64 | sessionID u64 | innerIPv4 (4) | prefix u8 (≤ 32) | hasIPv6 u8 |
    /// [innerIPv6 (16) | prefix u8 (≤ 128)] | gateway (family u8 + 4|16) | dnsCount u8 (≤ 4) |
    /// dns (family u8 + 4|16) × count | mtu u16 (≥ 576) | keepalive seconds u16 (≥ 1)` —
    /// provider → consumer: the session is open.
    case accept(requestID: UInt64, sessionID: UInt64, grant: SessionGrant)
    /// `0x03 | requestID u64 | code u16 | reason (u16 len, UTF-8 ≤ 128)` — provider → consumer.
    case reject(requestID: UInt64, code: RejectCode, reason: String)
    /// `0x04 | sessionID u64 | seq u32` — either way, every keepalive interval.
    case keepalive(sessionID: UInt64, seq: UInt32)
    /// `0x05 | sessionID u64 | bytesSent u64 | bytesReceived u64 | packetsSent u64 |
    /// packetsReceived u64` — consumer → provider: the consumer's meters.
    case status(sessionID: UInt64, report: StatusReport)
    /// `0x06 | sessionID u64 | code u16` — either way: the session is over.
    case end(sessionID: UInt64, code: EndCode)

    public enum Tag: UInt8, Sendable, CaseIterable {
        case request = 0x01, accept, reject, keepalive, status, end
    }

    /// The byte budget of one dialogue message (the frame's channel byte not included).
    public static let maximumSize = 1180
    public static let maximumServiceTypeLength = 32
    public static let maximumReasonLength = 128
    public static let maximumDNSServers = 4
    /// The smallest MTU an accept may carry (IPv4's minimum datagram size).
    public static let minimumMTU: UInt16 = 576

    public var tag: Tag {
        switch self {
        case .request: .request
        case .accept: .accept
        case .reject: .reject
        case .keepalive: .keepalive
        case .status: .status
        case .end: .end
        }
    }

    /// Whether `text` is a valid service type: at most 32 bytes of printable ASCII (no spaces).
    public static func isValidServiceType(_ text: String) -> Bool {
        text.utf8.count <= maximumServiceTypeLength && text.utf8.allSatisfy { (0x21...0x7E).contains($0) }
    }

    /// A reason cut to at most `maximumReasonLength` UTF-8 bytes on a character boundary.
    public static func truncatedReason(_ text: String) -> String {
        var result = ""
        var length = 0
        for character in text {
            let size = character.utf8.count
            guard length + size <= maximumReasonLength else { break }
            result.append(character)
            length += size
        }
        return result
    }

    /// The wire bytes. Preconditions (the cores only build such messages): a valid service type, a
    /// reason of at most 128 UTF-8 bytes, and a grant whose inner IPv4 is `.v4` with a prefix
    /// ≤ 32, inner IPv6 `.v6` with a prefix ≤ 128, at most 4 DNS servers, mtu ≥ 576 and keepalive ≥ 1.
    public func encoded() -> [UInt8] {
        var writer = ByteWriter(capacity: 64)
        writer.write(tag.rawValue)
        switch self {
        case .request(let requestID, let serviceType, let proposalSeq, let mode, let wantsIPv6):
            precondition(Self.isValidServiceType(serviceType), "an invalid service type")
            writer.write(requestID)
            writer.write(string: serviceType)
            writer.write(proposalSeq)
            writer.write(mode.rawValue)
            writer.write(wantsIPv6)
        case .accept(let requestID, let sessionID, let grant):
            writer.write(requestID)
            writer.write(sessionID)
            guard case .v4 = grant.innerIPv4.address, grant.innerIPv4.prefixLength <= 32 else {
                preconditionFailure("the inner IPv4 address is not an IPv4 interface address")
            }
            writer.write(raw: grant.innerIPv4.address.bytes)
            writer.write(grant.innerIPv4.prefixLength)
            if let inner6 = grant.innerIPv6 {
                guard case .v6 = inner6.address, inner6.prefixLength <= 128 else {
                    preconditionFailure("the inner IPv6 address is not an IPv6 interface address")
                }
                writer.write(true)
                writer.write(raw: inner6.address.bytes)
                writer.write(inner6.prefixLength)
            } else {
                writer.write(false)
            }
            writer.writeAddress(grant.gateway)
            precondition(grant.dnsServers.count <= Self.maximumDNSServers, "too many DNS servers")
            writer.write(UInt8(grant.dnsServers.count))
            for server in grant.dnsServers { writer.writeAddress(server) }
            precondition(grant.mtu >= Self.minimumMTU && grant.keepaliveSeconds >= 1, "an invalid mtu or keepalive")
            writer.write(grant.mtu)
            writer.write(grant.keepaliveSeconds)
        case .reject(let requestID, let code, let reason):
            precondition(reason.utf8.count <= Self.maximumReasonLength, "a reject reason above the limit")
            writer.write(requestID)
            writer.write(code.rawValue)
            writer.write(string: reason)
        case .keepalive(let sessionID, let seq):
            writer.write(sessionID)
            writer.write(seq)
        case .status(let sessionID, let report):
            writer.write(sessionID)
            writer.write(report.bytesSent)
            writer.write(report.bytesReceived)
            writer.write(report.packetsSent)
            writer.write(report.packetsReceived)
        case .end(let sessionID, let code):
            writer.write(sessionID)
            writer.write(code.rawValue)
        }
        return writer.bytes
    }

    /// Decodes one message. Refuses (with a typed error) input above `maximumSize`, an unknown tag,
    /// reject or end code, truncation, trailing bytes, a service type that is not printable ASCII
    /// or is above 32 bytes, a reason above 128 bytes or not UTF-8, more than 4 DNS servers, an
    /// address family other than 4 or 6, a prefix length beyond the address, an mtu below 576 and
    /// a keepalive interval of 0. Tunnel modes are not checked here (the server refuses them).
    public init(decoding bytes: [UInt8]) throws(DecodeError) {
        guard bytes.count <= Self.maximumSize else {
            throw .lengthTooLarge(offset: 0, length: bytes.count, limit: Self.maximumSize)
        }
        var reader = ByteReader(bytes)
        let rawTag = try reader.readUInt8()
        guard let tag = Tag(rawValue: rawTag) else {
            throw .unknownTag(field: "dialogue message", value: UInt64(rawTag))
        }
        switch tag {
        case .request:
            let requestID = try reader.readUInt64()
            let raw = try reader.readLengthPrefixed(limit: Self.maximumServiceTypeLength)
            guard raw.allSatisfy({ (0x21...0x7E).contains($0) }) else {
                throw .invalid(field: "service type", reason: "not printable ASCII")
            }
            let serviceType = String(decoding: raw, as: UTF8.self)
            let proposalSeq = try reader.readUInt64()
            let mode = TunnelMode(rawValue: try reader.readUInt8())
            let wantsIPv6 = try reader.readBool(field: "wantsIPv6")
            self = .request(
                requestID: requestID, serviceType: serviceType, proposalSeq: proposalSeq, mode: mode,
                wantsIPv6: wantsIPv6)
        case .accept:
            let requestID = try reader.readUInt64()
            let sessionID = try reader.readUInt64()
            let inner4 = InterfaceAddress(
                address: try reader.readRawAddress(family: 4), prefixLength: try Self.readPrefix(limit: 32, &reader))
            var inner6: InterfaceAddress?
            if try reader.readBool(field: "hasIPv6") {
                inner6 = InterfaceAddress(
                    address: try reader.readRawAddress(family: 6),
                    prefixLength: try Self.readPrefix(limit: 128, &reader))
            }
            let gateway = try reader.readAddress()
            let count = Int(try reader.readUInt8())
            guard count <= Self.maximumDNSServers else {
                throw .lengthTooLarge(offset: reader.offset - 1, length: count, limit: Self.maximumDNSServers)
            }
            var dns: [IPAddress] = []
            for _ in 0..<count { dns.append(try reader.readAddress()) }
            let mtu = try reader.readUInt16()
            guard mtu >= Self.minimumMTU else {
                throw .invalid(field: "mtu", reason: "\(mtu) is below \(Self.minimumMTU)")
            }
            let keepalive = try reader.readUInt16()
            guard keepalive >= 1 else { throw .invalid(field: "keepalive interval", reason: "0 seconds") }
            self = .accept(
                requestID: requestID, sessionID: sessionID,
                grant: SessionGrant(
                    innerIPv4: inner4, innerIPv6: inner6, gateway: gateway, dnsServers: dns, mtu: mtu,
                    keepaliveSeconds: keepalive))
        case .reject:
            let requestID = try reader.readUInt64()
            let code = try Self.readCode(RejectCode.self, field: "reject code", &reader)
            let reason = try reader.readString(limit: Self.maximumReasonLength, field: "reject reason")
            self = .reject(requestID: requestID, code: code, reason: reason)
        case .keepalive:
            self = .keepalive(sessionID: try reader.readUInt64(), seq: try reader.readUInt32())
        case .status:
            let sessionID = try reader.readUInt64()
            let report = StatusReport(
                bytesSent: try reader.readUInt64(), bytesReceived: try reader.readUInt64(),
                packetsSent: try reader.readUInt64(), packetsReceived: try reader.readUInt64())
            self = .status(sessionID: sessionID, report: report)
        case .end:
            let sessionID = try reader.readUInt64()
            self = .end(sessionID: sessionID, code: try Self.readCode(EndCode.self, field: "end code", &reader))
        }
        try reader.expectEnd()
    }

    private static func readCode<Code: RawRepresentable<UInt16>>(
        _: Code.Type, field: String, _ reader: inout ByteReader
    ) throws(DecodeError) -> Code {
        let raw = try reader.readUInt16()
        guard let code = Code(rawValue: raw) else { throw .unknownTag(field: field, value: UInt64(raw)) }
        return code
    }

    private static func readPrefix(limit: UInt8, _ reader: inout ByteReader) throws(DecodeError) -> UInt8 {
        let prefix = try reader.readUInt8()
        guard prefix <= limit else { throw .invalid(field: "prefix length", reason: "\(prefix) exceeds \(limit)") }
        return prefix
    }
}

// MARK: - Address codec

extension ByteWriter {
    /// `family u8 (4|6) | 4 or 16 address bytes in network order`.
    mutating func writeAddress(_ address: IPAddress) {
        switch address {
        case .v4: write(UInt8(4))
        case .v6: write(UInt8(6))
        }
        write(raw: address.bytes)
    }
}

extension ByteReader {
    /// An address written by `writeAddress`: an unknown family is `.unknownTag`.
    mutating func readAddress() throws(DecodeError) -> IPAddress {
        let family = try readUInt8()
        guard family == 4 || family == 6 else { throw .unknownTag(field: "address family", value: UInt64(family)) }
        return try readRawAddress(family: family)
    }

    /// 4 (family 4) or 16 (family 6) address bytes in network order, without a family byte.
    mutating func readRawAddress(family: UInt8) throws(DecodeError) -> IPAddress {
        if family == 4 {
            var value: UInt32 = 0
            for byte in try readBytes(4) { value = value << 8 | UInt32(byte) }
            return .v4(value)
        }
        let raw = try readBytes(16)
        var high: UInt64 = 0
        var low: UInt64 = 0
        for byte in raw[0..<8] { high = high << 8 | UInt64(byte) }
        for byte in raw[8..<16] { low = low << 8 | UInt64(byte) }
        return .v6(high: high, low: low)
    }
}
