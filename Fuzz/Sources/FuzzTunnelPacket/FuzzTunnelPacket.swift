// The tunnel's packet logic on untrusted bytes: the parser, the egress verdict, the inbound filter
// and the "packet too big" builder must never crash or read outside the buffer (AddressSanitizer
// watches), and what they report must be consistent: a parsed packet fits its buffer; a forwarded
// length is the parsed total length; a reply, when one is written, is a well-formed ICMP error
// addressed to the original's source with correct checksums. The first input byte picks the MTU
// and whether the session address is the packet's own source (to get past anti-spoofing); the rest
// is the packet. The input as text also goes to the CIDR parser, whose output must round-trip.

import FuzzSupport
import Tunnel
import UmbraCore

@main enum Main {
    static func main() { LibFuzzer.run { fuzz($0, $1) } }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = LibFuzzer.bytes(data, size)
    guard let control = input.first else { return 0 }
    let packet = Array(input.dropFirst())
    packet.withUnsafeBytes { check(packet: $0, control: control) }
    checkPrefix(String(decoding: input, as: UTF8.self))
    return 0
}

func check(packet: UnsafeRawBufferPointer, control: UInt8) {
    let info = try? IPPacketInfo(parsing: packet)
    if let info {
        require(info.totalLength <= packet.count, "total length \(info.totalLength) > buffer \(packet.count)")
        require(info.payloadOffset <= info.totalLength, "payload offset past the packet")
        require(info.totalLength >= (info.version == .v4 ? 20 : 40), "total length below the header")
        require((info.sourcePort == nil) == (info.destinationPort == nil), "one port without the other")
        if info.destinationPort != nil { require(info.payloadOffset + 4 <= info.totalLength, "ports past the end") }
        if info.icmpType != nil { require(info.isICMP && info.payloadOffset + 2 <= info.totalLength, "ICMP type") }
    }

    // Egress: from a session that owns the source (when control's low bit says so) or not.
    let session: IPAddress =
        if control & 1 == 1, let info { info.source } else { .v4(0x0AB6_0002) }
    switch EgressPolicy.default.verdict(packet, sessionAddress: session) {
    case .forward(let length):
        require(info?.totalLength == length, "forwarded \(length) bytes, parsed \(String(describing: info))")
        require(info?.source == session, "forwarded a packet from someone else")
        if let info { require(EgressPolicy.default.blockedCategory(of: info.destination) == nil, "blocked forwarded") }
    case .drop(let reason):
        if info == nil { require(reason == .malformed, "unparsable dropped as \(reason)") }
    }

    // Inbound.
    if let info {
        let verdict = InboundFilter.verdict(packet, innerAddress: info.destination)
        require(verdict == .deliver(length: info.totalLength), "own packet refused: \(verdict)")
    } else {
        require(InboundFilter.verdict(packet, innerAddress: session) == .drop(.malformed), "unparsable delivered")
    }

    // Packet too big, with an MTU just under the packet's size or a fixed one.
    guard let info else { return }
    let mtu = control & 2 == 0 ? info.totalLength - 1 - Int(control >> 2) : (info.version == .v4 ? 576 : 1280)
    let source: IPAddress = info.version == .v4 ? .v4(0x0AB6_0001) : .v6(high: 0x2001_0DB8_00B6_0000, low: 1)
    var output = [UInt8](repeating: 0, count: 1400)
    let written = output.withUnsafeMutableBytes { ICMPTooBig.write(for: packet, mtu: mtu, from: source, into: $0) }
    guard let written else { return }
    checkReply(Array(output[..<written]), original: info, source: source, mtu: mtu)
}

func checkReply(_ reply: [UInt8], original: IPPacketInfo, source: IPAddress, mtu: Int) {
    let parsed = reply.withUnsafeBytes { try? IPPacketInfo(parsing: $0) }
    guard let parsed else {
        require(false, "the reply does not parse: \(reply.prefix(64))")
        return
    }
    require(parsed.totalLength == reply.count, "reply length \(reply.count), declared \(parsed.totalLength)")
    require(parsed.isICMPError, "reply is not an ICMP error")
    require(parsed.source == source && parsed.destination == original.source, "reply misaddressed")
    require(original.totalLength > mtu, "reply although the packet fits")
    require(!original.isICMPError, "reply to an ICMP error")
    var checksum = InternetChecksum()
    switch parsed.version {
    case .v4:
        require(reply.count <= 576, "IPv4 reply of \(reply.count) bytes")
        require(parsed.icmpType == 3 && parsed.icmpCode == 4, "IPv4 reply type")
        require(original.dontFragment && original.fragmentOffset == 0, "reply to a DF-clear or later fragment")
        reply.withUnsafeBytes {
            require(InternetChecksum.checksum(UnsafeRawBufferPointer(rebasing: $0[..<20])) == 0, "IP checksum")
        }
        reply[20...].withUnsafeBytes { checksum.add($0) }
    case .v6:
        require(reply.count <= 1280, "IPv6 reply of \(reply.count) bytes")
        require(parsed.icmpType == 2 && parsed.icmpCode == 0, "IPv6 reply type")
        checksum.addPseudoHeader(
            source: parsed.source, destination: parsed.destination, protocol: 58, upperLayerLength: reply.count - 40)
        reply[40...].withUnsafeBytes { checksum.add($0) }
    }
    require(checksum.value == 0, "ICMP checksum")
}

func checkPrefix(_ text: String) {
    do throws(IPPrefixParseError) {
        let prefix = try IPPrefix(parsing: text)
        let canonical = prefix.description
        require((try? IPPrefix(parsing: canonical)) == prefix, "\(canonical) does not parse back")
        require(prefix.contains(prefix.address), "\(canonical) does not contain its own address")
    } catch {
        require(error.description.utf8.count < 400, "error message of \(error.description.utf8.count) bytes")
    }
}
