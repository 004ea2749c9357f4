// Where a peer's datagrams go: straight to a UDP endpoint, or through a relay. The session layer
// validates and roams over paths without knowing what a relay is; the node layer turns a relayed
// path into relay frames (the relay part, through the router's hook: Node/RelayPart.swift) and a
// direct one into socket sends.

import UmbraCore

/// A relayed path's name: the node layer's index into its table of (relay, remote peer) pairs.
/// Opaque to the session layer, which only compares it.
public struct RelayPathID: Hashable, Sendable, CustomStringConvertible {
    public var index: UInt32

    public init(_ index: UInt32) { self.index = index }

    public var description: String { "relay path \(index)" }
}

/// The path of a peer at the session boundary: what the session layer's datagrams are sent to and
/// received from. Only `.direct` ever names a socket address; a `.relayed` path never reaches one.
public enum PeerPath: Hashable, Sendable, CustomStringConvertible {
    /// Straight over UDP to this endpoint.
    case direct(Endpoint)
    /// Through a relay, wrapped in relay frames by the node layer.
    case relayed(RelayPathID)

    /// The endpoint of a direct path; nil for a relayed one (whose address the node does not know).
    public var directEndpoint: Endpoint? {
        if case .direct(let endpoint) = self { return endpoint }
        return nil
    }

    /// The id of a relayed path; nil for a direct one.
    public var relayPathID: RelayPathID? {
        if case .relayed(let id) = self { return id }
        return nil
    }

    public var isRelayed: Bool { relayPathID != nil }

    public var description: String {
        switch self {
        case .direct(let endpoint): endpoint.description
        case .relayed(let id): id.description
        }
    }
}

extension ByteWriter {
    /// A path as key material (path challenge tokens, cookies): an endpoint as `write(_: Endpoint)`
    /// does (family 4 or 6 first), a relayed path as `0 | index u32`, so no two paths collide.
    mutating func write(_ path: PeerPath) {
        switch path {
        case .direct(let endpoint):
            write(endpoint)
        case .relayed(let id):
            write(UInt8(0))
            write(id.index)
        }
    }
}
