// The 10-byte `struct virtio_net_hdr` (Linux include/uapi/linux/virtio_net.h) that a TUN device
// opened with IFF_VNET_HDR puts in front of every packet it returns from read(2) and expects in front
// of every packet written to it. With TUNSETOFFLOAD(TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6) the kernel
// may hand over a TCP "super-packet" of up to 64 KiB to be cut into segments (TSOSplitter), or a
// packet whose transport checksum is only partial; in the other direction it accepts such
// super-packets (GROCoalescer).
//
//   offset 0  flags        u8   NEEDS_CSUM: finish the checksum at csum_start + csum_offset
//          1  gso_type     u8   NONE, TCPV4, UDP, TCPV6, optionally | ECN
//          2  hdr_len      u16  bytes of IP + transport headers (a hint: see TSOSplitter)
//          4  gso_size     u16  payload bytes per segment
//          6  csum_start   u16  where checksumming starts (the transport header)
//          8  csum_offset  u16  where the checksum field is, from csum_start
//
// The u16 fields are in host byte order (the TUN default without TUNSETVNETLE/BE), so they are read
// and written natively here.

import UmbraCore

/// A `virtio_net_hdr`, as read from or written to a TUN device opened with IFF_VNET_HDR.
public struct VirtioNetHeader: Equatable, Sendable {
    /// The header's size in bytes.
    public static let size = 10

    // MARK: flags
    /// VIRTIO_NET_HDR_F_NEEDS_CSUM: the checksum at csum_start + csum_offset holds only the
    /// pseudo-header sum; it must be completed over the bytes from csum_start.
    public static let needsChecksum: UInt8 = 1
    /// VIRTIO_NET_HDR_F_DATA_VALID: the checksum has been verified.
    public static let dataValid: UInt8 = 2

    // MARK: gso_type
    public static let gsoNone: UInt8 = 0
    public static let gsoTCPv4: UInt8 = 1
    public static let gsoUDP: UInt8 = 3
    public static let gsoTCPv6: UInt8 = 4
    /// Or-ed into a TCP gso_type: the segments may carry ECN's CWR (on the first one only).
    public static let gsoECN: UInt8 = 0x80

    public var flags: UInt8
    public var gsoType: UInt8
    public var headerLength: UInt16
    public var gsoSize: UInt16
    public var checksumStart: UInt16
    public var checksumOffset: UInt16

    /// A header; the zero header (the default) says "a plain packet, nothing to do".
    public init(
        flags: UInt8 = 0, gsoType: UInt8 = VirtioNetHeader.gsoNone, headerLength: UInt16 = 0, gsoSize: UInt16 = 0,
        checksumStart: UInt16 = 0, checksumOffset: UInt16 = 0
    ) {
        self.flags = flags
        self.gsoType = gsoType
        self.headerLength = headerLength
        self.gsoSize = gsoSize
        self.checksumStart = checksumStart
        self.checksumOffset = checksumOffset
    }

    /// Reads the header from the first 10 bytes of `bytes`. Refuses only a buffer shorter than that:
    /// the values are checked by whoever acts on them.
    public init(decoding bytes: UnsafeRawBufferPointer) throws(DecodeError) {
        guard bytes.count >= Self.size, let base = bytes.baseAddress else {
            throw .truncated(offset: 0, needed: Self.size)
        }
        flags = bytes[0]
        gsoType = bytes[1]
        headerLength = base.loadUnaligned(fromByteOffset: 2, as: UInt16.self)
        gsoSize = base.loadUnaligned(fromByteOffset: 4, as: UInt16.self)
        checksumStart = base.loadUnaligned(fromByteOffset: 6, as: UInt16.self)
        checksumOffset = base.loadUnaligned(fromByteOffset: 8, as: UInt16.self)
    }

    /// Writes the header into the first 10 bytes of `bytes`. Precondition: `bytes.count >= 10`.
    public func encode(into bytes: UnsafeMutableRawBufferPointer) {
        precondition(bytes.count >= Self.size, "a virtio_net_hdr needs 10 bytes")
        bytes[0] = flags
        bytes[1] = gsoType
        bytes.storeBytes(of: headerLength, toByteOffset: 2, as: UInt16.self)
        bytes.storeBytes(of: gsoSize, toByteOffset: 4, as: UInt16.self)
        bytes.storeBytes(of: checksumStart, toByteOffset: 6, as: UInt16.self)
        bytes.storeBytes(of: checksumOffset, toByteOffset: 8, as: UInt16.self)
    }
}
