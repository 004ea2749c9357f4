// Session-level control messages: path validation (docs/protocol.md §Session control). They ride in
// ordinary transport data, as a frame whose first (channel) byte is 0x00, a channel the node layer
// never uses (node frames start with 0x01...0x50; an empty frame is a keepalive). The session layer
// consumes them; they are never delivered to the node.

import UmbraCore

/// A session control frame: `0x00 | type(1) | token(8, little-endian)`.
enum SessionControl: Equatable, Sendable {
    /// Sent to a new address of a peer: "are you there?" (QUIC's PATH_CHALLENGE).
    case pathChallenge(token: UInt64)
    /// The peer's answer, sent to the address the challenge came from (QUIC's PATH_RESPONSE).
    case pathResponse(token: UInt64)

    /// The channel byte reserved for session control.
    static let channel: UInt8 = 0x00
    static let size = 10

    func encoded() -> [UInt8] {
        var writer = ByteWriter(capacity: Self.size)
        writer.write(Self.channel)
        switch self {
        case .pathChallenge(let token):
            writer.write(UInt8(1))
            writer.write(token)
        case .pathResponse(let token):
            writer.write(UInt8(2))
            writer.write(token)
        }
        return writer.bytes
    }

    /// Decodes a plaintext frame that starts with the control channel byte; nil when malformed.
    init?(frame: UnsafeRawBufferPointer) {
        guard frame.count == Self.size, frame[0] == Self.channel else { return nil }
        var token: UInt64 = 0
        for byte in frame[2..<10].reversed() { token = token << 8 | UInt64(byte) }  // little-endian
        switch frame[1] {
        case 1: self = .pathChallenge(token: token)
        case 2: self = .pathResponse(token: token)
        default: return nil
        }
    }

    /// True when a plaintext frame is on the session control channel (and so is not the node's).
    static func isControl(_ frame: UnsafeRawBufferPointer) -> Bool { !frame.isEmpty && frame[0] == channel }
}
