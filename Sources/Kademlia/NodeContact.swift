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
}
