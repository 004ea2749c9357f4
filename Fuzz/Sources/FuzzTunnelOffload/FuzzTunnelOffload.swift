// The tunnel's TUN offload code on untrusted bytes: TSOSplitter and GROCoalescer must never crash or
// touch memory outside their buffers (AddressSanitizer watches), and what they produce must hold
// together. The first input byte picks the split layout; the rest is a TUN read (virtio_net_hdr +
// packet). A split must stay inside its slots and, for GSO, give packets whose checksums verify.
// The coalescer then gets the split's packets followed by the input cut into packets by 1-byte
// length prefixes; cutting its super-packets again with the splitter must give back exactly the
// packets it was given (up to the IPv4 identification and checksums, which a super-packet
// regenerates), and its plain writes must be the packets as given.

import FuzzSupport
import Tunnel
import UmbraCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The split's output, reused (filled with 0xEE before each split) and a pristine copy to compare
/// with: the unoptimized, sanitized build is too slow to build and scan large arrays per input.
let outputCapacity = 64 * 2048
nonisolated(unsafe) let output = UnsafeMutableRawBufferPointer.allocate(byteCount: outputCapacity, alignment: 16)
nonisolated(unsafe) let pristine: UnsafeMutableRawBufferPointer = {
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: outputCapacity, alignment: 16)
    memset(buffer.baseAddress!, 0xEE, outputCapacity)
    return buffer
}()

@main enum Main {
    static func main() { LibFuzzer.run { fuzz($0, $1) } }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = LibFuzzer.bytes(data, size)
    guard let control = input.first else { return 0 }
    let read = Array(input.dropFirst())
    var packets = split(read, control: control)
    var rest = read[...]
    while let length = rest.first {
        rest = rest.dropFirst()
        packets.append(Array(rest.prefix(Int(length))))
        rest = rest.dropFirst(Int(length))
    }
    coalesce(packets)
    return 0
}

/// Splits `read` and returns the packets, after checking the layout and the checksums.
func split(_ read: [UInt8], control: UInt8) -> [[UInt8]] {
    let stride = [1500, 1400, 2048, 200][Int(control & 3)]
    let leadingSpace = Int(control >> 2 & 1)
    let maximumSegments = control & 8 == 0 ? 64 : 3
    let outputSize = control & 16 == 0 ? stride * maximumSegments : stride * 2 + 100
    let buffer = UnsafeMutableRawBufferPointer(rebasing: output[..<outputSize])
    memset(buffer.baseAddress!, 0xEE, outputSize)
    let result = read.withUnsafeBytes { input in
        Result { () throws(DecodeError) in
            try TSOSplitter.split(
                input, into: buffer, segmentStride: stride, leadingSpace: leadingSpace,
                maximumSegments: maximumSegments)
        }
    }
    guard case .success(let segments) = result else {
        require(memcmp(buffer.baseAddress!, pristine.baseAddress!, outputSize) == 0, "a refused split wrote")
        return []
    }
    require(segments.count >= 1 && segments.count <= maximumSegments, "\(segments.count) segments")
    var packets: [[UInt8]] = []
    var end = 0
    for index in 0..<segments.count {
        let start = segments.offset(of: index)
        let length = segments.length(of: index)
        require(length <= stride - leadingSpace && start + length <= outputSize, "segment \(index) out of its slot")
        // Between the packets (slack and leading space) nothing was written.
        require(memcmp(buffer.baseAddress! + end, pristine.baseAddress!, start - end) == 0, "wrote between slots")
        end = start + length
        packets.append(Array(UnsafeRawBufferPointer(rebasing: buffer[start..<end])))
    }
    require(memcmp(buffer.baseAddress! + end, pristine.baseAddress!, outputSize - end) == 0, "wrote past the end")
    let gsoType = read[1] & 0x7F
    if gsoType != 0 {
        require(read.count - 10 >= segments.lastSegmentLength, "segments longer than the read")
        for packet in packets { require(transportChecksumVerifies(packet), "segment checksum") }
    }
    return packets
}

/// Coalesces `packets` and checks the writes against them.
func coalesce(_ packets: [[UInt8]]) {
    var coalescer = GROCoalescer(maximumPackets: 16, maximumFlows: 4)
    let flat = packets.flatMap { $0 }
    var given: [[UInt8]] = []
    var got: [[UInt8]] = []
    flat.withUnsafeBytes { all in
        var offset = 0
        for packet in packets {
            let slice = UnsafeRawBufferPointer(rebasing: all[offset..<offset + packet.count])
            offset += packet.count
            if !coalescer.add(slice) {
                coalescer.flush { got += resplit($0) }
                guard coalescer.add(slice) else {
                    require(packet.count > 65535, "an empty batch refused a packet")
                    continue
                }
            }
            given.append(packet)
        }
        coalescer.flush { got += resplit($0) }
    }
    require(got.count == given.count, "\(given.count) packets in, \(got.count) out")
    require(
        given.map(normalized).sorted(by: lexicographic) == got.map(normalized).sorted(by: lexicographic),
        "the writes do not carry the packets given")
}

/// What the kernel would make of one write: the packet itself, or a super-packet's segments.
func resplit(_ write: UnsafeRawBufferPointer) -> [[UInt8]] {
    require(write.count >= 10, "a write without a virtio header")
    if write[1] == 0 {
        require(write[0] == 0 && write[2..<10].allSatisfy { $0 == 0 }, "a plain write with a non-zero header")
        return [Array(write[10...])]
    }
    var output = [UInt8](repeating: 0, count: 64 * 1600)
    let segments = output.withUnsafeMutableBytes { output in
        try? TSOSplitter.split(write, into: output, segmentStride: 1600, maximumSegments: 64)
    }
    guard let segments else {
        require(false, "a super-packet the splitter refuses")
        return []
    }
    require(segments.count >= 2, "a super-packet of one segment")
    return (0..<segments.count).map { index in
        Array(output[segments.offset(of: index)..<segments.offset(of: index) + segments.length(of: index)])
    }
}

/// The packet cut to its declared IP length, with the fields a super-packet regenerates zeroed: the
/// IPv4 identification and header checksum, and the TCP checksum (0x0000 and 0xFFFF are both valid).
func normalized(_ packet: [UInt8]) -> [UInt8] {
    guard let info = packet.withUnsafeBytes({ try? IPPacketInfo(parsing: $0) }), info.protocol == 6,
        !info.isFragment, info.payloadOffset + 20 <= info.totalLength
    else { return packet }
    var copy = Array(packet[..<info.totalLength])
    if info.version == .v4 {
        copy[4] = 0
        copy[5] = 0
        copy[10] = 0
        copy[11] = 0
    }
    copy[info.payloadOffset + 16] = 0
    copy[info.payloadOffset + 17] = 0
    return copy
}

func lexicographic(_ a: [UInt8], _ b: [UInt8]) -> Bool { a.lexicographicallyPrecedes(b) }

/// Whether the TCP or UDP checksum of a packet (and an IPv4 header checksum) verify.
func transportChecksumVerifies(_ packet: [UInt8]) -> Bool {
    packet.withUnsafeBytes { buffer in
        let isIPv4 = buffer[0] >> 4 == 4
        let ipHeaderLength = isIPv4 ? Int(buffer[0] & 0x0F) * 4 : 40
        if isIPv4, InternetChecksum.checksum(UnsafeRawBufferPointer(rebasing: buffer[..<ipHeaderLength])) != 0 {
            return false
        }
        var checksum = InternetChecksum()
        checksum.add(UnsafeRawBufferPointer(rebasing: buffer[(isIPv4 ? 12..<20 : 8..<40)]))
        checksum.add(UInt16(isIPv4 ? buffer[9] : buffer[6]))
        checksum.add(UInt16(buffer.count - ipHeaderLength))
        checksum.add(UnsafeRawBufferPointer(rebasing: buffer[ipHeaderLength...]))
        return checksum.value == 0
    }
}
