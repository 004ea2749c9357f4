// The dialogue wire format: every message kind round-trips with its documented layout, and the
// decoder refuses unknown tags and codes, truncation, trailing bytes, oversized input, too many DNS
// servers, long or non-ASCII service types, long reasons, bad families, prefixes, mtu and keepalive.

import Testing
import UmbraCore

@testable import Dialogue

private let report = StatusReport(bytesSent: 1, bytesReceived: 2, packetsSent: 3, packetsReceived: .max)

/// One message of every kind, with the edge shapes of the list- and string-carrying ones.
private let samples: [DialogueMessage] =
    [
        .request(requestID: 0, serviceType: "ip-tunnel", proposalSeq: 7, mode: .fullTunnel, wantsIPv6: false),
        .request(requestID: .max, serviceType: "", proposalSeq: .max, mode: .split, wantsIPv6: true),
        .request(
            requestID: 1, serviceType: String(repeating: "x", count: 32), proposalSeq: 0,
            mode: TunnelMode(rawValue: 200), wantsIPv6: false),
        .accept(requestID: 1, sessionID: 2, grant: sampleGrant),
        .accept(
            requestID: 3, sessionID: .max,
            grant: SessionGrant(
                innerIPv4: InterfaceAddress(address: inner(1, 9), prefixLength: 24), gateway: sampleV6, dnsServers: [],
                mtu: 576, keepaliveSeconds: 1)),
        .accept(
            requestID: 4, sessionID: 5,
            grant: SessionGrant(
                innerIPv4: InterfaceAddress(address: inner(0, 2), prefixLength: 32),
                innerIPv6: InterfaceAddress(address: sampleV6, prefixLength: 128), gateway: inner(0, 1),
                dnsServers: [sampleV6, sampleV6, sampleV6, sampleV6], mtu: .max, keepaliveSeconds: .max)),
        .reject(requestID: 9, code: .noCapacity, reason: ""),
        .reject(requestID: 9, code: .notAllowed, reason: String(repeating: "é", count: 64)),
        .keepalive(sessionID: 1, seq: 0),
        .keepalive(sessionID: .max, seq: .max),
        .status(sessionID: 8, report: report),
    ]
    + RejectCode.allCases.map { .reject(requestID: 1, code: $0, reason: $0.description) }
    + EndCode.allCases.map { .end(sessionID: 6, code: $0) }

extension DialogueMessage: CustomTestStringConvertible {
    public var testDescription: String { "\(tag)" }
}

private func hex(_ text: String) -> [UInt8] {
    let digits = Array(text.filter { !$0.isWhitespace })
    return stride(from: 0, to: digits.count, by: 2).map { UInt8(String(digits[$0...$0 + 1]), radix: 16)! }
}

@Suite struct DialogueMessageTests {
    @Test(arguments: samples)
    func everyMessageRoundTrips(message: DialogueMessage) throws {
        let bytes = message.encoded()
        #expect(bytes.count <= DialogueMessage.maximumSize)
        #expect(bytes.first == message.tag.rawValue)
        let decoded = try DialogueMessage(decoding: bytes)
        #expect(decoded == message)
        #expect(decoded.encoded() == bytes)
    }

    @Test func everyTagIsCovered() {
        #expect(Set(samples.map(\.tag)) == Set(DialogueMessage.Tag.allCases))
        #expect(DialogueMessage.Tag.allCases.map(\.rawValue) == Array(1...6))
        #expect(RejectCode.allCases.map(\.rawValue) == Array(1...8))
        #expect(EndCode.allCases.map(\.rawValue) == Array(1...5))
    }

    @Test func theLayoutsAreTheDocumentedOnes() {
        #expect(
            DialogueMessage.request(
                requestID: 0x0102, serviceType: "ip", proposalSeq: 3, mode: .split, wantsIPv6: true
            ).encoded() == hex("01 0201000000000000 0200 6970 0300000000000000 02 01"))
        #expect(
            DialogueMessage.accept(
                requestID: 1, sessionID: 2,
                grant: SessionGrant(
                    innerIPv4: InterfaceAddress(address: inner(0, 2), prefixLength: 16), gateway: inner(0, 1),
                    dnsServers: [.v4(0x0101_0101)], mtu: 1420, keepaliveSeconds: 5)
            ).encoded()
                == hex("02 0100000000000000 0200000000000000 0AB60002 10 00 04 0AB60001 01 04 01010101 8C05 0500"))
        #expect(
            DialogueMessage.reject(requestID: 1, code: .poolExhausted, reason: "no").encoded()
                == hex("03 0100000000000000 0800 0200 6E6F"))
        #expect(
            DialogueMessage.keepalive(sessionID: 1, seq: 2).encoded() == hex("04 0100000000000000 02000000"))
        #expect(DialogueMessage.end(sessionID: 1, code: .dead).encoded() == hex("06 0100000000000000 0300"))
        #expect(DialogueMessage.status(sessionID: 1, report: report).encoded().count == 1 + 8 + 32)
    }

    @Test func theLargestAcceptFitsTheBudget() {
        let largest = DialogueMessage.accept(
            requestID: .max, sessionID: .max,
            grant: SessionGrant(
                innerIPv4: InterfaceAddress(address: inner(0, 2), prefixLength: 16),
                innerIPv6: InterfaceAddress(address: sampleV6, prefixLength: 64), gateway: sampleV6,
                dnsServers: Array(repeating: sampleV6, count: 4), mtu: 1420, keepaliveSeconds: 5))
        #expect(largest.encoded().count < DialogueMessage.maximumSize)
    }

    // MARK: - Refusals

    @Test func anUnknownTagIsRefused() {
        for tag: UInt8 in [0, 7, 0xFF] {
            #expect(throws: DecodeError.unknownTag(field: "dialogue message", value: UInt64(tag))) {
                try DialogueMessage(decoding: [tag] + [UInt8](repeating: 0, count: 16))
            }
        }
    }

    @Test func unknownCodesAreRefused() {
        var reject = DialogueMessage.reject(requestID: 1, code: .noCapacity, reason: "").encoded()
        reject[9] = 9
        #expect(throws: DecodeError.unknownTag(field: "reject code", value: 9)) {
            try DialogueMessage(decoding: reject)
        }
        var end = DialogueMessage.end(sessionID: 1, code: .dead).encoded()
        end[9] = 0
        #expect(throws: DecodeError.unknownTag(field: "end code", value: 0)) { try DialogueMessage(decoding: end) }
    }

    @Test(arguments: samples)
    func everyTruncationIsRefused(message: DialogueMessage) {
        let bytes = message.encoded()
        for length in 0..<bytes.count {
            #expect(throws: DecodeError.self) { try DialogueMessage(decoding: Array(bytes.prefix(length))) }
        }
    }

    @Test(arguments: samples)
    func trailingBytesAreRefused(message: DialogueMessage) {
        #expect(throws: DecodeError.trailingBytes(count: 1)) { try DialogueMessage(decoding: message.encoded() + [0]) }
    }

    @Test func oversizedInputIsRefused() {
        let bytes = [UInt8](repeating: 1, count: DialogueMessage.maximumSize + 1)
        #expect(throws: DecodeError.lengthTooLarge(offset: 0, length: 1181, limit: 1180)) {
            try DialogueMessage(decoding: bytes)
        }
    }

    @Test func moreThanFourDNSServersAreRefused() {
        // Patch the count byte of a 4-server accept to 5 and append a fifth server.
        let grant = SessionGrant(
            innerIPv4: InterfaceAddress(address: inner(0, 2), prefixLength: 16), gateway: inner(0, 1),
            dnsServers: Array(repeating: .v4(0x0101_0101), count: 4), mtu: 1420, keepaliveSeconds: 5)
        var bytes = DialogueMessage.accept(requestID: 1, sessionID: 2, grant: grant).encoded()
        let countOffset = 1 + 8 + 8 + 5 + 1 + 5
        #expect(bytes[countOffset] == 4)
        bytes[countOffset] = 5
        bytes.insert(contentsOf: [4, 1, 1, 1, 1], at: countOffset + 1)
        #expect(throws: DecodeError.lengthTooLarge(offset: countOffset, length: 5, limit: 4)) {
            try DialogueMessage(decoding: bytes)
        }
    }

    @Test func aReasonAboveTheLimitIsRefused() {
        var bytes: [UInt8] = [3] + [UInt8](repeating: 0, count: 8) + [1, 0]
        bytes += [129, 0] + [UInt8](repeating: 0x61, count: 129)
        #expect(throws: DecodeError.lengthTooLarge(offset: 11, length: 129, limit: 128)) {
            try DialogueMessage(decoding: bytes)
        }
        #expect(DialogueMessage.truncatedReason(String(repeating: "é", count: 100)).utf8.count == 128)
    }

    @Test func badServiceTypesAreRefused() {
        let head: [UInt8] = [1] + [UInt8](repeating: 0, count: 8)
        let tail: [UInt8] = [UInt8](repeating: 0, count: 8) + [1, 0]
        let long = head + [33, 0] + [UInt8](repeating: 0x61, count: 33) + tail
        #expect(throws: DecodeError.lengthTooLarge(offset: 9, length: 33, limit: 32)) {
            try DialogueMessage(decoding: long)
        }
        for bad: UInt8 in [0x20, 0x00, 0x7F, 0xC3] {
            #expect(throws: DecodeError.invalid(field: "service type", reason: "not printable ASCII")) {
                try DialogueMessage(decoding: head + [2, 0, 0x61, bad] + tail)
            }
        }
    }

    @Test func badAcceptFieldsAreRefused() throws {
        let good = DialogueMessage.accept(
            requestID: 1, sessionID: 2,
            grant: SessionGrant(
                innerIPv4: InterfaceAddress(address: inner(0, 2), prefixLength: 16), gateway: inner(0, 1),
                dnsServers: [], mtu: 1420, keepaliveSeconds: 5)
        ).encoded()
        #expect(try DialogueMessage(decoding: good).tag == .accept)
        func patched(_ offset: Int, _ value: UInt8) -> [UInt8] {
            var bytes = good
            bytes[offset] = value
            return bytes
        }
        #expect(throws: DecodeError.invalid(field: "prefix length", reason: "33 exceeds 32")) {
            try DialogueMessage(decoding: patched(21, 33))
        }
        #expect(throws: DecodeError.invalid(field: "hasIPv6", reason: "boolean byte 2 is neither 0 nor 1")) {
            try DialogueMessage(decoding: patched(22, 2))
        }
        #expect(throws: DecodeError.unknownTag(field: "address family", value: 5)) {
            try DialogueMessage(decoding: patched(23, 5))
        }
        var lowMTU = good
        lowMTU.replaceSubrange(29..<31, with: [0x3F, 0x02])  // 575
        #expect(throws: DecodeError.invalid(field: "mtu", reason: "575 is below 576")) {
            try DialogueMessage(decoding: lowMTU)
        }
        var noKeepalive = good
        noKeepalive.replaceSubrange(31..<33, with: [0, 0])
        #expect(throws: DecodeError.invalid(field: "keepalive interval", reason: "0 seconds")) {
            try DialogueMessage(decoding: noKeepalive)
        }
    }

    @Test func invalidUTF8InAReasonIsRefused() {
        let bytes: [UInt8] = [3] + [UInt8](repeating: 0, count: 8) + [1, 0, 2, 0, 0xC3, 0x28]
        #expect(throws: DecodeError.invalid(field: "reject reason", reason: "not valid UTF-8")) {
            try DialogueMessage(decoding: bytes)
        }
    }
}
