import Testing

@testable import UmbraCore

@Suite("ByteWriter / ByteReader")
struct ByteCodecTests {
    @Test("integers are little-endian and round-trip")
    func integersRoundTrip() throws {
        var writer = ByteWriter()
        writer.write(UInt8(0xAB))
        writer.write(UInt16(0x1234))
        writer.write(UInt32(0xDEAD_BEEF))
        writer.write(UInt64(0x0102_0304_0506_0708))
        writer.write(true)
        writer.write(false)
        #expect(
            writer.bytes == [
                0xAB, 0x34, 0x12, 0xEF, 0xBE, 0xAD, 0xDE, 0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, 1, 0,
            ]
        )
        #expect(writer.count == 17)

        var reader = ByteReader(writer.bytes)
        #expect(try reader.readUInt8() == 0xAB)
        #expect(try reader.readUInt16() == 0x1234)
        #expect(try reader.readUInt32() == 0xDEAD_BEEF)
        #expect(try reader.readUInt64() == 0x0102_0304_0506_0708)
        #expect(try reader.readBool() == true)
        #expect(try reader.readBool() == false)
        #expect(reader.isAtEnd)
        try reader.expectEnd()
    }

    @Test("extreme integer values round-trip", arguments: [UInt64.min, 1, 0xFF, 0x100, UInt64(UInt32.max), .max])
    func extremes(value: UInt64) throws {
        var writer = ByteWriter()
        writer.write(value)
        writer.write(UInt32(truncatingIfNeeded: value))
        writer.write(UInt16(truncatingIfNeeded: value))
        var reader = ByteReader(writer.bytes)
        #expect(try reader.readUInt64() == value)
        #expect(try reader.readUInt32() == UInt32(truncatingIfNeeded: value))
        #expect(try reader.readUInt16() == UInt16(truncatingIfNeeded: value))
        try reader.expectEnd()
    }

    @Test("raw, length-prefixed and string fields round-trip")
    func fieldsRoundTrip() throws {
        var writer = ByteWriter()
        writer.write(raw: [1, 2, 3])
        writer.write(lengthPrefixed: [9, 8])
        writer.write(string: "héllo ☂")
        writer.write(lengthPrefixed: [UInt8]())
        writer.write(raw: [7, 7])
        var reader = ByteReader(writer.bytes)
        #expect(try reader.readBytes(3) == [1, 2, 3])
        #expect(try reader.readLengthPrefixed(limit: 2) == [9, 8])
        #expect(try reader.readString(limit: 100) == "héllo ☂")
        #expect(try reader.readLengthPrefixed(limit: 0) == [])
        #expect(reader.remaining == 2)
        #expect(reader.readRemaining() == [7, 7])
        #expect(reader.isAtEnd)
        #expect(reader.readRemaining() == [])
    }

    @Test("a reader over a slice starts at the slice's first byte")
    func readerFromSlice() throws {
        let bytes: [UInt8] = [0, 0, 0x34, 0x12]
        var reader = ByteReader(bytes[2...])
        #expect(try reader.readUInt16() == 0x1234)
    }

    @Test("truncated input reports where and how much is missing")
    func truncated() {
        var reader = ByteReader([1, 2, 3])
        #expect(throws: DecodeError.truncated(offset: 0, needed: 1)) { try reader.readUInt32() }
        #expect(throws: DecodeError.truncated(offset: 0, needed: 5)) { try reader.readUInt64() }
        #expect(throws: DecodeError.truncated(offset: 0, needed: 2)) { try reader.readBytes(5) }
        _ = try? reader.readUInt16()
        #expect(throws: DecodeError.truncated(offset: 2, needed: 1)) { try reader.readUInt16() }
        _ = try? reader.readUInt8()
        #expect(throws: DecodeError.truncated(offset: 3, needed: 1)) { try reader.readUInt8() }
        #expect(throws: DecodeError.truncated(offset: 3, needed: 1)) { try reader.readBool() }
        // A negative count is refused rather than trapping.
        #expect(throws: DecodeError.self) { try reader.readBytes(-1) }
    }

    @Test("a length prefix promising more than is there is truncated, not an allocation")
    func truncatedLengthPrefixed() {
        var reader = ByteReader([0xFF, 0x00, 1, 2])
        #expect(throws: DecodeError.truncated(offset: 2, needed: 253)) { try reader.readLengthPrefixed(limit: 1000) }
    }

    @Test("a length above the limit is lengthTooLarge at the prefix's offset")
    func lengthTooLarge() {
        var writer = ByteWriter()
        writer.write(UInt8(0))
        writer.write(lengthPrefixed: [1, 2, 3, 4])
        var reader = ByteReader(writer.bytes)
        _ = try? reader.readUInt8()
        #expect(throws: DecodeError.lengthTooLarge(offset: 1, length: 4, limit: 3)) {
            try reader.readLengthPrefixed(limit: 3)
        }
        var stringReader = ByteReader(writer.bytes.dropFirst())
        #expect(throws: DecodeError.lengthTooLarge(offset: 0, length: 4, limit: 2)) {
            try stringReader.readString(limit: 2)
        }
    }

    @Test("trailing bytes are counted")
    func trailing() throws {
        var reader = ByteReader([1, 2, 3])
        _ = try reader.readUInt8()
        #expect(throws: DecodeError.trailingBytes(count: 2)) { try reader.expectEnd() }
    }

    @Test("a boolean byte other than 0 or 1 is invalid", arguments: [UInt8(2), 0x80, 0xFF])
    func badBool(byte: UInt8) {
        var reader = ByteReader([byte])
        #expect(throws: DecodeError.invalid(field: "flag", reason: "boolean byte \(byte) is neither 0 nor 1")) {
            try reader.readBool(field: "flag")
        }
    }

    @Test(
        "invalid UTF-8 is refused",
        arguments: [[0xFF], [0xC3], [0xE2, 0x82], [0xC0, 0x80], [0xED, 0xA0, 0x80]] as [[UInt8]]
    )
    func invalidUTF8(raw: [UInt8]) {
        var writer = ByteWriter()
        writer.write(lengthPrefixed: raw)
        var reader = ByteReader(writer.bytes)
        #expect(throws: DecodeError.invalid(field: "name", reason: "not valid UTF-8")) {
            try reader.readString(limit: 16, field: "name")
        }
    }

    @Test("every error has a description naming the problem")
    func descriptions() {
        #expect(
            DecodeError.truncated(offset: 3, needed: 2).description == "input ends at byte 3, 2 more byte(s) needed")
        #expect(
            DecodeError.lengthTooLarge(offset: 0, length: 9, limit: 4).description.contains("exceeds the limit of 4"))
        #expect(DecodeError.trailingBytes(count: 5).description.contains("5 unexpected"))
        #expect(DecodeError.unknownTag(field: "address family", value: 9).description == "unknown address family 9")
        #expect(DecodeError.invalid(field: "port", reason: "zero").description == "invalid port: zero")
    }
}

@Suite("SeededRandom")
struct SeededRandomTests {
    @Test("the same seed gives the same sequence", arguments: [UInt64(0), 1, 42, .max])
    func deterministic(seed: UInt64) {
        var a = SeededRandom(seed: seed)
        var b = SeededRandom(seed: seed)
        let first = (0..<64).map { _ in a.next() }
        let second = (0..<64).map { _ in b.next() }
        #expect(first == second)
        #expect(Set(first).count == first.count, "64 draws should not repeat")
    }

    @Test("different seeds give different sequences")
    func differentSeeds() {
        var sequences: Set<[UInt64]> = []
        for seed in UInt64(0)..<32 {
            var rng = SeededRandom(seed: seed)
            sequences.insert((0..<4).map { _ in rng.next() })
        }
        #expect(sequences.count == 32)
    }

    @Test("seed 0 gives the reference xoshiro256** outputs (SplitMix64 seeding), so a change is caught")
    func pinned() {
        var rng = SeededRandom(seed: 0)
        #expect(rng.next() == 0x99EC_5F36_CB75_F2B4)
        #expect(rng.next() == 0xBF6E_1F78_4956_452A)
        #expect(rng.next() == 0x1A5F_849D_4933_E6E0)
    }

    @Test(
        "bytes(count) is deterministic, the right length, and a prefix of a longer draw",
        arguments: [0, 1, 7, 8, 9, 33])
    func bytes(count: Int) {
        var a = SeededRandom(seed: 7)
        var b = SeededRandom(seed: 7)
        let short = a.bytes(count)
        #expect(short.count == count)
        #expect(Array(b.bytes(count + 8).prefix(count)) == short)
    }

    @Test("random(in:) driven by a seed replays")
    func standardLibraryUse() {
        var a = SeededRandom(seed: 99)
        var b = SeededRandom(seed: 99)
        let x = (0..<20).map { _ in Int.random(in: 0..<1000, using: &a) }
        let y = (0..<20).map { _ in Int.random(in: 0..<1000, using: &b) }
        #expect(x == y)
        #expect(x.allSatisfy { (0..<1000).contains($0) })
    }
}

@Suite("Instant")
struct InstantTests {
    @Test("adding and subtracting durations")
    func arithmetic() {
        let t = Instant(nanoseconds: 5_000_000_000)
        #expect(t + .seconds(1) == Instant(nanoseconds: 6_000_000_000))
        #expect(t - .milliseconds(500) == Instant(nanoseconds: 4_500_000_000))
        #expect(t + .seconds(-2) == Instant(nanoseconds: 3_000_000_000))
        #expect((t + .seconds(3)).since(t) == .seconds(3))
        #expect(t < t + .nanoseconds(1))
    }

    @Test("addition saturates at the maximum instead of wrapping")
    func saturatesHigh() {
        let late = Instant(nanoseconds: .max - 10)
        #expect(late + .nanoseconds(11) == Instant(nanoseconds: .max))
        #expect(late + .seconds(1_000_000_000_000) == Instant(nanoseconds: .max))
        #expect(Instant(nanoseconds: .max) + .seconds(Int64.max) == Instant(nanoseconds: .max))
    }

    @Test("subtraction saturates at zero")
    func saturatesLow() {
        #expect(Instant(nanoseconds: 10) - .nanoseconds(11) == .zero)
        #expect(Instant.zero - .seconds(5) == .zero)
        #expect(Instant(nanoseconds: 10) + .seconds(-1) == .zero)
    }

    @Test("since() is zero when the other instant is later, and clamps huge spans")
    func since() {
        #expect(Instant(nanoseconds: 1).since(Instant(nanoseconds: 2)) == .zero)
        #expect(Instant(nanoseconds: 2).since(Instant(nanoseconds: 2)) == .zero)
        #expect(Instant(nanoseconds: .max).since(.zero) == .nanoseconds(Int64.max))
    }

    @Test("nanosecondsClamped clamps durations beyond Int64 nanoseconds")
    func clamped() {
        #expect(Duration.seconds(Int64.max).nanosecondsClamped == .max)
        #expect(Duration.seconds(Int64.min).nanosecondsClamped == .min)
        #expect(Duration.milliseconds(1500).nanosecondsClamped == 1_500_000_000)
        #expect(Duration.milliseconds(1500).seconds == 1.5)
    }
}
