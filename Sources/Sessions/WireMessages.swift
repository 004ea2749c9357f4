// The four datagram kinds of the session layer, byte for byte (docs/protocol.md §Datagrams).
// Every datagram starts with a one-byte type and three reserved zero bytes, WireGuard-style, so a
// receiver can classify and size-check a datagram before touching any cryptography.

import UmbraCore

/// The first byte of every Umbra datagram.
public enum MessageType: UInt8, Sendable {
    case handshakeInitiation = 1
    case handshakeResponse = 2
    case cookieReply = 3
    case transportData = 4
}

/// Sizes of the fixed-layout messages.
public enum WireSize {
    public static let header = 4
    public static let mac = 16
    /// Noise IK message 1: e (32) + encrypted s (32 + 16) + encrypted payload.
    public static let initiationPayload = 32 + 8  // Ed25519 identity key + timestamp (+ early data)
    public static let noiseInitiation = 32 + 48 + initiationPayload + 16
    /// An initiation without early data (the minimum size).
    public static let initiation = header + 4 + noiseInitiation + 2 * mac
    /// Most bytes of early data (a 0-RTT frame) an initiation may carry.
    public static let maximumEarlyData = 1200
    /// Early data is preceded by its u16 length, and an initiation that carries any is padded to at
    /// least this size, which buys the responder's reply room under its anti-amplification limit.
    public static let earlyDataLengthPrefix = 2
    public static let minimumEarlyInitiation = 400
    public static let maximumInitiation = initiation + earlyDataLengthPrefix + maximumEarlyData
    /// Noise IK message 2: e (32) + encrypted empty payload (16).
    public static let noiseResponse = 32 + 16
    public static let response = header + 4 + 4 + noiseResponse + 2 * mac
    public static let cookieNonce = 24
    public static let cookieReply = header + 4 + cookieNonce + 16 + 16
    /// Transport header: type, reserved, receiver index, counter.
    public static let transportHeader = header + 4 + 8
    public static let transportMinimum = transportHeader + 16
    /// The largest datagram the node reads or writes.
    public static let maximumDatagram = 65_535
}

/// Handshake initiation: `type(1) reserved(3) sender(4) noise(136 + n) mac1(16) mac2(16)`, where n ≤ 1200
/// bytes of early data (a first frame, 0-RTT) ride encrypted in the Noise payload.
public struct HandshakeInitiation: Equatable, Sendable {
    public var senderIndex: UInt32
    public var noiseMessage: [UInt8]
    public var mac1: [UInt8]
    public var mac2: [UInt8]

    public init(senderIndex: UInt32, noiseMessage: [UInt8], mac1: [UInt8], mac2: [UInt8]) {
        self.senderIndex = senderIndex
        self.noiseMessage = noiseMessage
        self.mac1 = mac1
        self.mac2 = mac2
    }

    /// Bytes covered by mac1 (everything before it), for an initiation without early data.
    public static let mac1Offset = WireSize.initiation - 2 * WireSize.mac
    /// Bytes covered by mac2 (everything before it), for an initiation without early data.
    public static let mac2Offset = WireSize.initiation - WireSize.mac

    /// Where mac1 starts in an initiation of `length` bytes.
    public static func mac1Offset(length: Int) -> Int { length - 2 * WireSize.mac }

    public func encoded() -> [UInt8] {
        var writer = ByteWriter(capacity: 8 + noiseMessage.count + 2 * WireSize.mac)
        writeHeader(&writer, .handshakeInitiation)
        writer.write(senderIndex)
        writer.write(raw: noiseMessage)
        writer.write(raw: mac1)
        writer.write(raw: mac2)
        return writer.bytes
    }

    public init(decoding bytes: [UInt8]) throws(DecodeError) {
        guard (WireSize.initiation...WireSize.maximumInitiation).contains(bytes.count) else {
            throw .invalid(
                field: "initiation",
                reason: "length \(bytes.count), expected \(WireSize.initiation)...\(WireSize.maximumInitiation)")
        }
        var reader = ByteReader(bytes)
        try readHeader(&reader, .handshakeInitiation)
        senderIndex = try reader.readUInt32()
        noiseMessage = try reader.readBytes(bytes.count - 8 - 2 * WireSize.mac)
        mac1 = try reader.readBytes(WireSize.mac)
        mac2 = try reader.readBytes(WireSize.mac)
        try reader.expectEnd()
    }
}

/// Handshake response: `type(1) reserved(3) sender(4) receiver(4) noise(48) mac1(16) mac2(16)`.
public struct HandshakeResponse: Equatable, Sendable {
    public var senderIndex: UInt32
    public var receiverIndex: UInt32
    public var noiseMessage: [UInt8]
    public var mac1: [UInt8]
    public var mac2: [UInt8]

    public init(senderIndex: UInt32, receiverIndex: UInt32, noiseMessage: [UInt8], mac1: [UInt8], mac2: [UInt8]) {
        self.senderIndex = senderIndex
        self.receiverIndex = receiverIndex
        self.noiseMessage = noiseMessage
        self.mac1 = mac1
        self.mac2 = mac2
    }

    public static let mac1Offset = WireSize.response - 2 * WireSize.mac
    public static let mac2Offset = WireSize.response - WireSize.mac

    public func encoded() -> [UInt8] {
        var writer = ByteWriter(capacity: WireSize.response)
        writeHeader(&writer, .handshakeResponse)
        writer.write(senderIndex)
        writer.write(receiverIndex)
        writer.write(raw: noiseMessage)
        writer.write(raw: mac1)
        writer.write(raw: mac2)
        return writer.bytes
    }

    public init(decoding bytes: [UInt8]) throws(DecodeError) {
        guard bytes.count == WireSize.response else {
            throw .invalid(field: "response", reason: "length \(bytes.count), expected \(WireSize.response)")
        }
        var reader = ByteReader(bytes)
        try readHeader(&reader, .handshakeResponse)
        senderIndex = try reader.readUInt32()
        receiverIndex = try reader.readUInt32()
        noiseMessage = try reader.readBytes(WireSize.noiseResponse)
        mac1 = try reader.readBytes(WireSize.mac)
        mac2 = try reader.readBytes(WireSize.mac)
        try reader.expectEnd()
    }
}

/// Cookie reply: `type(1) reserved(3) receiver(4) nonce(24) encrypted cookie(16 + 16)`.
public struct CookieReply: Equatable, Sendable {
    public var receiverIndex: UInt32
    public var nonce: [UInt8]
    public var encryptedCookie: [UInt8]

    public init(receiverIndex: UInt32, nonce: [UInt8], encryptedCookie: [UInt8]) {
        self.receiverIndex = receiverIndex
        self.nonce = nonce
        self.encryptedCookie = encryptedCookie
    }

    public func encoded() -> [UInt8] {
        var writer = ByteWriter(capacity: WireSize.cookieReply)
        writeHeader(&writer, .cookieReply)
        writer.write(receiverIndex)
        writer.write(raw: nonce)
        writer.write(raw: encryptedCookie)
        return writer.bytes
    }

    public init(decoding bytes: [UInt8]) throws(DecodeError) {
        guard bytes.count == WireSize.cookieReply else {
            throw .invalid(field: "cookie reply", reason: "length \(bytes.count), expected \(WireSize.cookieReply)")
        }
        var reader = ByteReader(bytes)
        try readHeader(&reader, .cookieReply)
        receiverIndex = try reader.readUInt32()
        nonce = try reader.readBytes(WireSize.cookieNonce)
        encryptedCookie = try reader.readBytes(32)
        try reader.expectEnd()
    }
}

/// The fixed header of a transport datagram: `type(1) reserved(3) receiver(4) counter(8)`,
/// followed by the AEAD ciphertext of the frame (at least the 16-byte tag).
public struct TransportHeader: Equatable, Sendable {
    public var receiverIndex: UInt32
    public var counter: UInt64

    public init(receiverIndex: UInt32, counter: UInt64) {
        self.receiverIndex = receiverIndex
        self.counter = counter
    }

    /// Parses the header of a transport datagram without copying its payload.
    public init(decoding bytes: UnsafeRawBufferPointer) throws(DecodeError) {
        guard bytes.count >= WireSize.transportMinimum else {
            throw .truncated(offset: bytes.count, needed: WireSize.transportMinimum - bytes.count)
        }
        guard bytes[0] == MessageType.transportData.rawValue else {
            throw .unknownTag(field: "message type", value: UInt64(bytes[0]))
        }
        guard bytes[1] == 0, bytes[2] == 0, bytes[3] == 0 else {
            throw .invalid(field: "reserved", reason: "reserved bytes must be zero")
        }
        receiverIndex = bytes.loadUnaligned(fromByteOffset: 4, as: UInt32.self).littleEndian
        counter = bytes.loadUnaligned(fromByteOffset: 8, as: UInt64.self).littleEndian
    }

    /// Writes the 16 header bytes at the start of `buffer`.
    public func write(into buffer: UnsafeMutableRawBufferPointer) {
        buffer[0] = MessageType.transportData.rawValue
        buffer[1] = 0
        buffer[2] = 0
        buffer[3] = 0
        buffer.storeBytes(of: receiverIndex.littleEndian, toByteOffset: 4, as: UInt32.self)
        buffer.storeBytes(of: counter.littleEndian, toByteOffset: 8, as: UInt64.self)
    }
}

private func writeHeader(_ writer: inout ByteWriter, _ type: MessageType) {
    writer.write(type.rawValue)
    writer.write(raw: [0, 0, 0] as [UInt8])
}

private func readHeader(_ reader: inout ByteReader, _ type: MessageType) throws(DecodeError) {
    let byte = try reader.readUInt8()
    guard byte == type.rawValue else { throw .unknownTag(field: "message type", value: UInt64(byte)) }
    guard try reader.readBytes(3) == [0, 0, 0] else {
        throw .invalid(field: "reserved", reason: "reserved bytes must be zero")
    }
}
