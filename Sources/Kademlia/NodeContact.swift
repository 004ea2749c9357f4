// A DHT contact: who (public key, and the node id derived from it) and where (UDP endpoint).

import UmbraCore

/// A node as the DHT knows it. The node id is derived from the key, never taken from the wire.
public struct NodeContact: Hashable, Sendable, CustomStringConvertible {
    public let publicKey: PublicKey
    public var endpoint: Endpoint
    public let id: NodeID

    public init(publicKey: PublicKey, endpoint: Endpoint) {
        self.publicKey = publicKey
        self.endpoint = endpoint
        self.id = publicKey.nodeID
    }

    public static func == (lhs: NodeContact, rhs: NodeContact) -> Bool {
        lhs.publicKey == rhs.publicKey && lhs.endpoint == rhs.endpoint
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(publicKey)
        hasher.combine(endpoint)
    }

    public var description: String { "\(NodeAddress(publicKey: publicKey))@\(endpoint)" }

    /// Whether this contact may be put into a routing table or handed to others: an endpoint that
    /// every decoder accepts (port not 0) and that is a possible destination at all (not
    /// unspecified, multicast, broadcast or the discard-only 100::/64, see `AddressScope.unusable`).
    public var isShareable: Bool { endpoint.scope != .unusable }
}

extension ByteWriter {
    /// `public key (32) | endpoint (7 or 19)`.
    public mutating func write(_ contact: NodeContact) {
        write(raw: contact.publicKey.bytes)
        write(contact.endpoint)
    }
}

extension ByteReader {
    public mutating func readNodeContact() throws(DecodeError) -> NodeContact {
        let key = try readPublicKey()
        return NodeContact(publicKey: key, endpoint: try readEndpoint())
    }

    /// One contact of a list: the whole entry is consumed, and nil comes back for a well-formed
    /// entry that is not `isShareable` (port 0, discard-only, unspecified, multicast), so one bad
    /// contact drops that contact, not the message. Malformed entries (unknown family, truncation)
    /// still throw: their length is unknown.
    public mutating func readShareableNodeContact() throws(DecodeError) -> NodeContact? {
        let key = try readPublicKey()
        let family = try readUInt8()
        let length: Int
        switch family {
        case 4: length = 4
        case 6: length = 16
        default: throw .unknownTag(field: "address family", value: UInt64(family))
        }
        let address = try readBytes(length)
        let port = try readUInt16()
        guard port != 0 else { return nil }
        // Re-read the endpoint from its own bytes through the one endpoint codec.
        var bytes = [family] + address
        bytes.append(UInt8(truncatingIfNeeded: port))
        bytes.append(UInt8(truncatingIfNeeded: port >> 8))
        var entry = ByteReader(bytes)
        let contact = NodeContact(publicKey: key, endpoint: try entry.readEndpoint())
        return contact.isShareable ? contact : nil
    }
}
