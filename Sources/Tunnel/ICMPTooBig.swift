// ICMP "packet too big" replies, for path MTU discovery through the tunnel. When a packet read from
// a TUN device does not fit the tunnel (its inner MTU is the path MTU minus the session's overhead),
// the data plane drops it and writes this reply back into the TUN device, so the sender's stack
// lowers its path MTU instead of black-holing (RFC 1191, RFC 8201).
//
//   IPv4: ICMP type 3 ("destination unreachable") code 4 ("fragmentation needed and DF set"), the
//         next-hop MTU in bytes 6-7 (RFC 1191 §4), quoting the original IP header and as much of
//         the original as keeps the reply within 576 bytes (RFC 1812 §4.3.2.3). TTL 64.
//   IPv6: ICMPv6 type 2 ("packet too big") code 0, a 32-bit MTU, quoting as much of the original as
//         keeps the reply within 1280 bytes (RFC 4443 §3.2), checksummed over the IPv6
//         pseudo-header. Hop limit 64.
//
// No reply is due (RFC 1812 §4.3.2.7, RFC 4443 §2.4 (e)) when the original fits the MTU, is IPv4
// without DF, is a non-first IPv4 fragment, is itself an ICMP error (or ICMP whose type cannot be
// read, such as a non-first fragment: the cautious reading of "never about an error"), or comes from an address that is not a unicast host (unspecified, multicast, IPv4
// 240.0.0.0/4, loopback). The reply goes to the original's source, from `source`, which must be of
// the same family. Writes into the caller's buffer; no allocation.

import UmbraCore

/// Builds ICMP / ICMPv6 "packet too big" replies.
public enum ICMPTooBig {
    /// The largest IPv4 reply (RFC 1812 §4.3.2.3).
    public static let maximumIPv4ReplyLength = 576
    /// The largest IPv6 reply (RFC 4443 §2.4 (c): the IPv6 minimum MTU).
    public static let maximumIPv6ReplyLength = 1280
    /// The smallest MTU an IPv4 reply may announce (RFC 791: every host takes 68-byte datagrams).
    public static let minimumIPv4MTU = 68
    /// The smallest MTU an IPv6 reply may announce (RFC 8200 §5).
    public static let minimumIPv6MTU = 1280

    /// Writes a "packet too big" reply to `original` into `output`, announcing `mtu`, sent from
    /// `source`. Returns the reply's length, or nil when no reply is due (see the file header), the
    /// MTU is below the family's minimum (68 / 1280) or above its field, `source` is of the other
    /// family, or `output` is too small for the reply. `output` is untouched when nil is returned.
    /// `output` must not overlap `original`.
    public static func write(
        for original: UnsafeRawBufferPointer, mtu: Int, from source: IPAddress,
        into output: UnsafeMutableRawBufferPointer
    ) -> Int? {
        let info: IPPacketInfo
        do throws(DecodeError) {
            info = try IPPacketInfo(parsing: original)
        } catch {
            return nil
        }
        guard info.totalLength > mtu, isUnicastHost(info.source) else { return nil }
        if info.isICMP, info.icmpType == nil || info.isICMPError { return nil }
        guard let originalBase = original.baseAddress, let outputBase = output.baseAddress else { return nil }

        switch (info.version, source) {
        case (.v4, .v4):
            guard info.dontFragment, info.fragmentOffset == 0, (minimumIPv4MTU...Int(UInt16.max)).contains(mtu)
            else { return nil }
            let quoted = min(info.totalLength, maximumIPv4ReplyLength - 28)
            let length = 28 + quoted
            guard output.count >= length else { return nil }
            // IPv4 header: version 4, IHL 5, no TOS, no fragmentation, TTL 64, ICMP.
            output[0] = 0x45
            output[1] = 0
            output.storeBigEndian(UInt16(length), at: 2)
            output.storeBigEndian(UInt32(0), at: 4)  // identification, flags, fragment offset
            output[8] = 64
            output[9] = IPProtocolNumber.icmp
            output.storeBigEndian(UInt16(0), at: 10)
            output.store(source, at: 12)
            output.store(info.source, at: 16)
            output.storeBigEndian(InternetChecksum.checksum(UnsafeRawBufferPointer(rebasing: output[0..<20])), at: 10)
            // ICMP: type 3, code 4, checksum, unused, next-hop MTU, then the quote.
            output[20] = 3
            output[21] = 4
            output.storeBigEndian(UInt16(0), at: 22)
            output.storeBigEndian(UInt16(0), at: 24)
            output.storeBigEndian(UInt16(mtu), at: 26)
            (outputBase + 28).copyMemory(from: originalBase, byteCount: quoted)
            output.storeBigEndian(
                InternetChecksum.checksum(UnsafeRawBufferPointer(rebasing: output[20..<length])), at: 22)
            return length

        case (.v6, .v6):
            guard mtu >= minimumIPv6MTU, mtu <= Int(UInt32.max) else { return nil }
            let quoted = min(info.totalLength, maximumIPv6ReplyLength - 48)
            let length = 48 + quoted
            guard output.count >= length else { return nil }
            // IPv6 header: version 6, no traffic class or flow label, ICMPv6, hop limit 64.
            output.storeBigEndian(UInt32(0x6000_0000), at: 0)
            output.storeBigEndian(UInt16(length - 40), at: 4)
            output[6] = IPProtocolNumber.icmpv6
            output[7] = 64
            output.store(source, at: 8)
            output.store(info.source, at: 24)
            // ICMPv6: type 2, code 0, checksum, MTU, then the quote.
            output[40] = 2
            output[41] = 0
            output.storeBigEndian(UInt16(0), at: 42)
            output.storeBigEndian(UInt32(mtu), at: 44)
            (outputBase + 48).copyMemory(from: originalBase, byteCount: quoted)
            var checksum = InternetChecksum()
            checksum.addPseudoHeader(
                source: source, destination: info.source, protocol: IPProtocolNumber.icmpv6,
                upperLayerLength: length - 40)
            checksum.add(UnsafeRawBufferPointer(rebasing: output[40..<length]))
            output.storeBigEndian(checksum.value, at: 42)
            return length

        default:
            return nil
        }
    }

    /// Whether `address` can be the source of a packet that earns an ICMP error: not unspecified,
    /// multicast, loopback, or (IPv4) in 240.0.0.0/4.
    private static func isUnicastHost(_ address: IPAddress) -> Bool {
        switch address {
        case .v4(let value):
            let top = value >> 24
            return top != 0 && top != 127 && top < 224
        case .v6(let high, let low):
            return !(high == 0 && low <= 1) && high >> 56 != 0xFF
        }
    }
}
