// DHT RPCs, carried in the DHT frame channel of an authenticated session (docs/protocol.md §DHT).
// Every message: `type u8 | request id u64 | flags u8 | body`. A response echoes the request id.
// Every message fits one control datagram (≤ 1200 bytes with the channel byte). Contact lists carry
// only shareable contacts (`NodeContact.isShareable`): the encoder leaves others out, and the decoder
// skips a well-formed entry that is not shareable (port 0, a discard-only address) instead of refusing the
// whole answer.

import UmbraCore

/// Bits of the `flags` byte, sent in requests and responses alike.
public struct DHTFlags: OptionSet, Sendable, Hashable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    /// The sender is publicly reachable and answers DHT requests (a "server"); otherwise it is a
    /// client and must not be put into routing tables.
    public static let server = DHTFlags(rawValue: 1)
}

/// The outcome of a STORE, as sent on the wire.
public enum StoreStatus: UInt8, Sendable, CaseIterable, Codable {
    case stored = 0
    case unchanged = 1
    case forged = 2
    case stale = 3
    case expired = 4
    case oversized = 5
    case overQuota = 6
    case wrongKey = 7
    case tooFarInFuture = 8
    case malformedValue = 9
    case storeFull = 10

    public var isSuccess: Bool { self == .stored || self == .unchanged }
}

public struct DHTMessage: Equatable, Sendable {
    public enum Body: Equatable, Sendable {
        case ping
        /// `observed` is the requester's endpoint as the responder sees it (its reflexive address).
        case pong(observed: Endpoint)
        case findNode(target: Key256)
        case nodes(contacts: [NodeContact])
        case findValue(key: Key256, page: UInt16)
        /// One page of the records under the key, the number of pages, and closer contacts.
        case values(page: UInt16, pages: UInt16, records: [SignedRecord], contacts: [NodeContact])
        case store(record: SignedRecord)
        case stored(status: StoreStatus)
    }

    public enum Tag: UInt8, Sendable {
        case ping = 1, pong, findNode, nodes, findValue, values, store, stored
    }

    public var id: UInt64
    public var flags: DHTFlags
    public var body: Body

    public init(id: UInt64, flags: DHTFlags, body: Body) {
        self.id = id
        self.flags = flags
        self.body = body
    }

    /// Most contacts in one NODES / VALUES message.
    public static let maximumContacts = 20
    /// Most records in one VALUES message (also bounded by the byte budget).
    public static let maximumRecords = 16
    /// The byte budget of a DHT message: a control frame minus the channel byte.
    public static let maximumSize = 1199
    /// Bytes of `type | id | flags`.
    public static let headerSize = 10

    public var isRequest: Bool {
        switch body {
        case .ping, .findNode, .findValue, .store: true
        case .pong, .nodes, .values, .stored: false
        }
    }

    public var tag: Tag {
        switch body {
        case .ping: .ping
        case .pong: .pong
        case .findNode: .findNode
        case .nodes: .nodes
        case .findValue: .findValue
        case .values: .values
        case .store: .store
        case .stored: .stored
        }
    }

    public func encoded() -> [UInt8] {
        var writer = ByteWriter(capacity: 128)
        writer.write(tag.rawValue)
        writer.write(id)
        writer.write(flags.rawValue)
        switch body {
        case .ping: break
        case .pong(let observed): writer.write(observed)
        case .findNode(let target): writer.write(target)
        case .nodes(let contacts): Self.write(contacts, &writer)
        case .findValue(let key, let page):
            writer.write(key)
            writer.write(page)
        case .values(let page, let pages, let records, let contacts):
            writer.write(page)
            writer.write(pages)
            writer.write(UInt8(records.count))
            for record in records { writer.write(raw: record.encoded()) }
            Self.write(contacts, &writer)
        case .store(let record): writer.write(raw: record.encoded())
        case .stored(let status): writer.write(status.rawValue)
        }
        return writer.bytes
    }

    public init(decoding bytes: [UInt8]) throws(DecodeError) {
        guard bytes.count <= Self.maximumSize else {
            throw .lengthTooLarge(offset: 0, length: bytes.count, limit: Self.maximumSize)
        }
        var reader = ByteReader(bytes)
        let rawTag = try reader.readUInt8()
        guard let tag = Tag(rawValue: rawTag) else { throw .unknownTag(field: "DHT message", value: UInt64(rawTag)) }
        id = try reader.readUInt64()
        flags = DHTFlags(rawValue: try reader.readUInt8())
        switch tag {
        case .ping: body = .ping
        case .pong: body = .pong(observed: try reader.readEndpoint())
        case .findNode: body = .findNode(target: try reader.readKey256())
        case .nodes: body = .nodes(contacts: try Self.readContacts(&reader))
        case .findValue: body = .findValue(key: try reader.readKey256(), page: try reader.readUInt16())
        case .values:
            let page = try reader.readUInt16()
            let pages = try reader.readUInt16()
            let count = Int(try reader.readUInt8())
            guard count <= Self.maximumRecords else {
                throw .lengthTooLarge(offset: reader.offset - 1, length: count, limit: Self.maximumRecords)
            }
            var records: [SignedRecord] = []
            for _ in 0..<count { records.append(try SignedRecord.decode(from: &reader)) }
            body = .values(page: page, pages: pages, records: records, contacts: try Self.readContacts(&reader))
        case .store: body = .store(record: try SignedRecord.decode(from: &reader))
        case .stored:
            let raw = try reader.readUInt8()
            guard let status = StoreStatus(rawValue: raw) else {
                throw .unknownTag(field: "store status", value: UInt64(raw))
            }
            body = .stored(status: status)
        }
        try reader.expectEnd()
    }

    /// Encoded size of a contact list.
    static func contactsSize(_ contacts: [NodeContact]) -> Int {
        1 + contacts.filter(\.isShareable).reduce(0) { $0 + 32 + (($1.endpoint.address.isV4) ? 7 : 19) }
    }

    /// Writes the shareable contacts only (`NodeContact.isShareable`): the encoder never produces a
    /// contact that a decoder refuses or that nobody can dial.
    private static func write(_ contacts: [NodeContact], _ writer: inout ByteWriter) {
        let shareable = contacts.filter(\.isShareable)
        writer.write(UInt8(shareable.count))
        for contact in shareable { writer.write(contact) }
    }

    private static func readContacts(_ reader: inout ByteReader) throws(DecodeError) -> [NodeContact] {
        let count = Int(try reader.readUInt8())
        guard count <= maximumContacts else {
            throw .lengthTooLarge(offset: reader.offset - 1, length: count, limit: maximumContacts)
        }
        var contacts: [NodeContact] = []
        contacts.reserveCapacity(count)
        for _ in 0..<count {
            if let contact = try reader.readShareableNodeContact() { contacts.append(contact) }
        }
        return contacts
    }
}

extension IPAddress {
    var isV4: Bool { if case .v4 = self { true } else { false } }
}
