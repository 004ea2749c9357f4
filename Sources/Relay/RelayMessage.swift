// Relay wire messages, carried in the relay frame channel (0x30) of an authenticated session
// (docs/protocol.md §Relay). One message per frame: `tag u8 | fields`, integers little-endian,
// endpoints in the UmbraCore endpoint codec (`family u8 (4|6) | address (4|16, network order) |
// port u16`, 7 or 19 bytes), keys as their 32 raw bytes. The sender is the session's peer.
//
// Three families share the one enum:
// - reservations and circuits (node ↔ relay): `reserve`, `reserveResult`, `unreserve`, `forward`,
//   `deliver`, `circuitStatus`;
// - reachability by dial-back (node ↔ helper ↔ prober): `dialBackRequest`, `dialBackOrder`,
//   `dialBackProbe`, `dialBackRefused`;
// - hole punching, inside the two ends' own end-to-end session: `punchConnect`,
//   `punchConnectReply`, `punchSync`.
//
// Every message is at most `maximumSize` (1400) bytes, so a relayed datagram of up to
// `maximumForwardBytes` fits one frame. The decoder is total: every input is one message or a typed
// `DecodeError`, and it never allocates more than its input.

import UmbraCore

/// A relay's answer to `reserve`. The raw values are wire codes.
public enum ReservationStatus: UInt8, Sendable, CaseIterable, Hashable, CustomStringConvertible {
    /// Reserved (or renewed) for `ttl` seconds, with the circuit limits in the message.
    case ok = 0
    /// The relay holds its maximum number of reservations.
    case refusedFull = 1
    /// The relay holds its maximum number of reservations for the requester's IP address.
    case refusedPerIP = 2
    /// The requester asked too often (reservation requests per peer per minute).
    case refusedPerPeer = 3
    /// This node does not relay (it was not started with `--relay`).
    case notARelay = 4

    public var isSuccess: Bool { self == .ok }

    public var description: String {
        switch self {
        case .ok: "reserved"
        case .refusedFull: "the relay is full"
        case .refusedPerIP: "too many reservations from this IP address"
        case .refusedPerPeer: "too many reservation requests from this peer"
        case .notARelay: "the peer is not a relay"
        }
    }
}

/// Why a circuit was refused or closed (`circuitStatus`). The raw values are wire codes.
public enum CircuitCode: UInt8, Sendable, CaseIterable, Hashable, CustomStringConvertible {
    /// The target holds no live reservation with this relay.
    case noReservation = 1
    /// The target is not connected to the relay (or just disconnected).
    case targetGone = 2
    /// The circuit carried its byte limit and was closed.
    case overByteLimit = 3
    /// The circuit reached its duration limit and was closed.
    case overTimeLimit = 4
    /// A datagram was dropped: the circuit exceeded its forwarding rate. The circuit stays open.
    case rateLimited = 5
    /// One end closed the circuit.
    case closed = 6
    /// The relay carries its maximum number of circuits (in total or for one of the two ends).
    case tooManyCircuits = 7

    /// Whether the circuit no longer exists after this status.
    public var closesCircuit: Bool { self != .rateLimited }

    /// A short description for `umbra ping` and logs.
    public var description: String {
        switch self {
        case .noReservation: "the target has no reservation on this relay"
        case .targetGone: "the target is not connected to the relay"
        case .overByteLimit: "the circuit reached its byte limit"
        case .overTimeLimit: "the circuit reached its time limit"
        case .rateLimited: "the relay dropped a datagram over the circuit's rate limit"
        case .closed: "the circuit was closed by the other end"
        case .tooManyCircuits: "the relay carries too many circuits"
        }
    }
}

/// Why a helper refused a dial-back request. The raw values are wire codes.
public enum DialBackRefusal: UInt8, Sendable, CaseIterable, Hashable, CustomStringConvertible {
    /// The endpoint's IP address is not the one the request came from (anti-reflection).
    case addressMismatch = 1
    /// The requester (or everyone, in total) asked too often.
    case rateLimited = 2
    /// The helper knows no other peer to dial back from.
    case noPeers = 3
    /// The endpoint is not a public unicast address.
    case notPublic = 4

    public var description: String {
        switch self {
        case .addressMismatch: "the endpoint is not at the requester's own IP address"
        case .rateLimited: "too many dial-back requests"
        case .noPeers: "the helper has no other peer to dial from"
        case .notPublic: "the endpoint is not a public address"
        }
    }
}

/// Per-circuit limits a relay grants with a reservation.
public struct CircuitLimits: Equatable, Hashable, Sendable {
    /// Most bytes (both directions together) one circuit may carry.
    public var bytes: UInt64
    /// Longest time one circuit may stay open, in seconds.
    public var seconds: UInt32

    public init(bytes: UInt64, seconds: UInt32) {
        self.bytes = bytes
        self.seconds = seconds
    }

    public static let none = CircuitLimits(bytes: 0, seconds: 0)
}

public enum RelayMessage: Hashable, Sendable {
    /// `0x01 | requestID u32` — node → relay: reserve (or renew) a slot so others can reach me here.
    case reserve(requestID: UInt32)
    /// `0x02 | requestID u32 | status u8 | ttl seconds u32 | circuit bytes u64 | circuit seconds u32`
    /// — relay → node: the answer to `reserve` (ttl and limits are 0 unless status is `ok`).
    case reserveResult(requestID: UInt32, status: ReservationStatus, ttlSeconds: UInt32, limits: CircuitLimits)
    /// `0x03` — node → relay: drop my reservation (open circuits stay until their limits).
    case unreserve
    /// `0x04 | peer (32) | length u16 (0...1365) | bytes` — node → relay: pass these bytes (the two
    /// ends' own end-to-end session datagram) to `peer`.
    case forward(peer: PublicKey, bytes: [UInt8])
    /// `0x05 | peer (32) | length u16 (0...1365) | bytes` — relay → node: `peer` sent these bytes.
    case deliver(peer: PublicKey, bytes: [UInt8])
    /// `0x06 | peer (32) | code u8` — relay → node: the circuit with `peer` was refused or closed
    /// (or a datagram dropped, for `rateLimited`); node → relay with `closed`: close that circuit.
    case circuitStatus(peer: PublicKey, code: CircuitCode)
    /// `0x07 | nonce u64 | endpoint` — node → helper: have another peer dial me at `endpoint`
    /// (which must be at the IP address this request came from).
    case dialBackRequest(nonce: UInt64, endpoint: Endpoint)
    /// `0x08 | target (32) | endpoint | nonce u64` — helper → prober: dial `target` at `endpoint`
    /// and send it `dialBackProbe(nonce)`.
    case dialBackOrder(target: PublicKey, endpoint: Endpoint, nonce: UInt64)
    /// `0x09 | nonce u64` — prober → node, as 0-RTT data of a fresh handshake: the dial-back worked.
    case dialBackProbe(nonce: UInt64)
    /// `0x0A | nonce u64 | reason u8` — helper → node: the dial-back request was refused.
    case dialBackRefused(nonce: UInt64, reason: DialBackRefusal)
    /// `0x0B | nonce u64 | count u8 (0...8) | endpoint × count` — initiator → responder, inside
    /// their end-to-end session: let us punch; these are my candidate endpoints.
    case punchConnect(nonce: UInt64, candidates: [Endpoint])
    /// `0x0C | nonce u64 | count u8 (0...8) | endpoint × count` — responder → initiator: mine.
    case punchConnectReply(nonce: UInt64, candidates: [Endpoint])
    /// `0x0D | nonce u64` — initiator → responder: punch now (the initiator punches RTT/2 later).
    case punchSync(nonce: UInt64)
    /// `0x0E` — relay → any peer it has a direct session with: I relay, reserve here if you need to
    /// (relay discovery without the DHT; sent when the session comes up or the relay turns public).
    case relayAvailable

    public enum Tag: UInt8, Sendable, CaseIterable {
        case reserve = 0x01, reserveResult, unreserve, forward, deliver, circuitStatus
        case dialBackRequest, dialBackOrder, dialBackProbe, dialBackRefused
        case punchConnect, punchConnectReply, punchSync
        case relayAvailable
    }

    /// The byte budget of one relay message (the frame's channel byte not included).
    public static let maximumSize = 1400
    /// Most bytes one `forward` / `deliver` carries: the budget minus tag, key and length.
    public static let maximumForwardBytes = maximumSize - 1 - PublicKey.byteCount - 2
    /// Most candidate endpoints in one punch message.
    public static let maximumCandidates = 8

    public var tag: Tag {
        switch self {
        case .reserve: .reserve
        case .reserveResult: .reserveResult
        case .unreserve: .unreserve
        case .forward: .forward
        case .deliver: .deliver
        case .circuitStatus: .circuitStatus
        case .dialBackRequest: .dialBackRequest
        case .dialBackOrder: .dialBackOrder
        case .dialBackProbe: .dialBackProbe
        case .dialBackRefused: .dialBackRefused
        case .punchConnect: .punchConnect
        case .punchConnectReply: .punchConnectReply
        case .punchSync: .punchSync
        case .relayAvailable: .relayAvailable
        }
    }

    /// The wire bytes. Precondition: forwarded bytes are at most `maximumForwardBytes` and candidate
    /// lists at most `maximumCandidates` long (the cores only build such messages; a shell checks a
    /// datagram's size before wrapping it in `forward`).
    public func encoded() -> [UInt8] {
        var writer = ByteWriter(capacity: 48)
        writer.write(tag.rawValue)
        switch self {
        case .reserve(let requestID):
            writer.write(requestID)
        case .reserveResult(let requestID, let status, let ttl, let limits):
            writer.write(requestID)
            writer.write(status.rawValue)
            writer.write(ttl)
            writer.write(limits.bytes)
            writer.write(limits.seconds)
        case .unreserve, .relayAvailable:
            break
        case .forward(let peer, let bytes), .deliver(let peer, let bytes):
            precondition(bytes.count <= Self.maximumForwardBytes, "a relayed datagram above the size limit")
            writer.write(peer)
            writer.write(lengthPrefixed: bytes)
        case .circuitStatus(let peer, let code):
            writer.write(peer)
            writer.write(code.rawValue)
        case .dialBackRequest(let nonce, let endpoint):
            writer.write(nonce)
            writer.write(endpoint)
        case .dialBackOrder(let target, let endpoint, let nonce):
            writer.write(target)
            writer.write(endpoint)
            writer.write(nonce)
        case .dialBackProbe(let nonce), .punchSync(let nonce):
            writer.write(nonce)
        case .dialBackRefused(let nonce, let reason):
            writer.write(nonce)
            writer.write(reason.rawValue)
        case .punchConnect(let nonce, let candidates), .punchConnectReply(let nonce, let candidates):
            // Only candidates a decoder takes and someone could send to (not port 0, not discard-only).
            let sendable = candidates.filter(Self.isCandidate)
            precondition(sendable.count <= Self.maximumCandidates, "too many punch candidates")
            writer.write(nonce)
            writer.write(UInt8(sendable.count))
            for endpoint in sendable { writer.write(endpoint) }
        }
        return writer.bytes
    }

    /// Decodes one message. Refuses (with a typed error) input above `maximumSize`, an unknown tag
    /// or code, truncation, trailing bytes, a datagram above `maximumForwardBytes`, more than
    /// `maximumCandidates` candidates, and malformed endpoints.
    public init(decoding bytes: [UInt8]) throws(DecodeError) {
        guard bytes.count <= Self.maximumSize else {
            throw .lengthTooLarge(offset: 0, length: bytes.count, limit: Self.maximumSize)
        }
        var reader = ByteReader(bytes)
        let rawTag = try reader.readUInt8()
        guard let tag = Tag(rawValue: rawTag) else {
            throw .unknownTag(field: "relay message", value: UInt64(rawTag))
        }
        switch tag {
        case .reserve:
            self = .reserve(requestID: try reader.readUInt32())
        case .reserveResult:
            let requestID = try reader.readUInt32()
            let status = try Self.readCode(ReservationStatus.self, field: "reservation status", &reader)
            let ttl = try reader.readUInt32()
            let limits = CircuitLimits(bytes: try reader.readUInt64(), seconds: try reader.readUInt32())
            self = .reserveResult(requestID: requestID, status: status, ttlSeconds: ttl, limits: limits)
        case .unreserve:
            self = .unreserve
        case .relayAvailable:
            self = .relayAvailable
        case .forward:
            let peer = try reader.readPublicKey()
            self = .forward(peer: peer, bytes: try reader.readLengthPrefixed(limit: Self.maximumForwardBytes))
        case .deliver:
            let peer = try reader.readPublicKey()
            self = .deliver(peer: peer, bytes: try reader.readLengthPrefixed(limit: Self.maximumForwardBytes))
        case .circuitStatus:
            let peer = try reader.readPublicKey()
            self = .circuitStatus(peer: peer, code: try Self.readCode(CircuitCode.self, field: "circuit code", &reader))
        case .dialBackRequest:
            let nonce = try reader.readUInt64()
            self = .dialBackRequest(nonce: nonce, endpoint: try reader.readEndpoint())
        case .dialBackOrder:
            let target = try reader.readPublicKey()
            let endpoint = try reader.readEndpoint()
            self = .dialBackOrder(target: target, endpoint: endpoint, nonce: try reader.readUInt64())
        case .dialBackProbe:
            self = .dialBackProbe(nonce: try reader.readUInt64())
        case .dialBackRefused:
            let nonce = try reader.readUInt64()
            let reason = try Self.readCode(DialBackRefusal.self, field: "dial-back refusal", &reader)
            self = .dialBackRefused(nonce: nonce, reason: reason)
        case .punchConnect:
            let nonce = try reader.readUInt64()
            self = .punchConnect(nonce: nonce, candidates: try Self.readCandidates(&reader))
        case .punchConnectReply:
            let nonce = try reader.readUInt64()
            self = .punchConnectReply(nonce: nonce, candidates: try Self.readCandidates(&reader))
        case .punchSync:
            self = .punchSync(nonce: try reader.readUInt64())
        }
        try reader.expectEnd()
    }

    private static func readCode<Code: RawRepresentable<UInt8>>(
        _: Code.Type, field: String, _ reader: inout ByteReader
    ) throws(DecodeError) -> Code {
        let raw = try reader.readUInt8()
        guard let code = Code(rawValue: raw) else { throw .unknownTag(field: field, value: UInt64(raw)) }
        return code
    }

    /// Whether an endpoint can travel as a punch candidate: one with a port, outside the
    /// discard-only 100::/64 (RFC 6666).
    public static func isCandidate(_ endpoint: Endpoint) -> Bool {
        endpoint.port != 0 && !endpoint.address.isDiscardOnly
    }

    /// A candidate list. A well-formed entry that is not a candidate (port 0, a discard-only address) is
    /// skipped, not the message: one bad candidate must not cost the punch.
    private static func readCandidates(_ reader: inout ByteReader) throws(DecodeError) -> [Endpoint] {
        let count = Int(try reader.readUInt8())
        guard count <= maximumCandidates else {
            throw .lengthTooLarge(offset: reader.offset - 1, length: count, limit: maximumCandidates)
        }
        var candidates: [Endpoint] = []
        candidates.reserveCapacity(count)
        for _ in 0..<count {
            let family = try reader.readUInt8()
            let length: Int
            switch family {
            case 4: length = 4
            case 6: length = 16
            default: throw .unknownTag(field: "address family", value: UInt64(family))
            }
            var entry = [family] + (try reader.readBytes(length))
            let port = try reader.readUInt16()
            guard port != 0 else { continue }
            entry += [UInt8(truncatingIfNeeded: port), UInt8(truncatingIfNeeded: port >> 8)]
            var single = ByteReader(entry)
            let endpoint = try single.readEndpoint()
            if isCandidate(endpoint) { candidates.append(endpoint) }
        }
        return candidates
    }
}
