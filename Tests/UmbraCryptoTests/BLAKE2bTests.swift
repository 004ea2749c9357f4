import Testing
import UmbraCrypto

@Suite("BLAKE2b (RFC 7693)")
struct BLAKE2bTests {
    @Test func rfc7693AppendixA() {
        let expected = hex(
            """
            BA80A53F981C4D0D6A2797B69F12F6E94C212F14685AC4B74B12BB6FDBFFA2D1\
            7D87C5392AAB792DC252D5DE4533CC9518D38AA8DBF1925AB92386EDD4009923
            """)
        #expect(BLAKE2b.hash(Array("abc".utf8)) == expected)
        #expect(BLAKE2b.hash([Array("a".utf8), [], Array("bc".utf8)]) == expected)
        var hasher = BLAKE2b.Hasher()
        hasher.update(Array("ab".utf8))
        hasher.update(Array("c".utf8))
        #expect(hasher.finalize() == expected)
    }

    @Test func emptyInput() {
        let expected = hex(
            """
            786a02f742015903c6c6fd852552d272912f4740e15847618a86e217f71f5419\
            d25e1031afee585313896444934eb04b903a685b1448b755d56f701afe9be2ce
            """)
        #expect(BLAKE2b.hash([UInt8]()) == expected)
        #expect(BLAKE2b.hash([[UInt8]]()) == expected)
    }

    @Test func keyedKnownAnswers() {
        // Official blake2b-kat.txt: key 00 01 .. 3f.
        let key = (0..<64).map { UInt8($0) }
        let empty = hex(
            """
            10ebb67700b1868efb4417987acf4690ae9d972fb7a590c2f02871799aaa4786\
            b5e996e8f0f4eb981fc214b005f42d2ff4233499391653df7aefcbc13fc51568
            """)
        let zeroByte = hex(
            """
            961f6dd1e4dd30f63901690c512e78e4b45e4742ed197c3c5e45c549fd25f2e4\
            187b0bc9fe30492b16b0d0bc4ef9b0f34c7003fac09a5ef1532e69430234cebd
            """)
        #expect(BLAKE2b.hash([UInt8](), key: key) == empty)
        #expect(BLAKE2b.hash([0], key: key) == zeroByte)
        var hasher = BLAKE2b.Hasher(key: key)
        hasher.update([0])
        #expect(hasher.finalize() == zeroByte)
        #expect(BLAKE2b.hash([[0]], key: key) == zeroByte)
    }

    @Test func copiedHasherForks() {
        var a = BLAKE2b.Hasher(outputLength: 32)
        a.update([1, 2, 3])
        var b = a
        b.update([4])
        a.update([5])
        #expect(a.finalize() == BLAKE2b.hash([1, 2, 3, 5], outputLength: 32))
        #expect(b.finalize() == BLAKE2b.hash([1, 2, 3, 4], outputLength: 32))
    }

    @Test func streamingMatchesOneShotAcrossBlockBoundaries() {
        let data = (0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let oneShot = BLAKE2b.hash(data, outputLength: 48)
        var hasher = BLAKE2b.Hasher(outputLength: 48)
        var index = 0
        var step = 1
        while index < data.count {
            let end = min(index + step, data.count)
            data[index..<end].withUnsafeBytes { hasher.update($0) }
            index = end
            step = step * 2 + 1
        }
        #expect(hasher.finalize() == oneShot)
        #expect(oneShot.count == 48)
    }
}
