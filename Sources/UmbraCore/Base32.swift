// RFC 4648 §6 base32 in lowercase without padding, as used in node addresses. Total in both
// directions: encoding never fails, and decoding any text returns bytes or a typed error.

/// Lowercase, unpadded RFC 4648 base32 (alphabet `a-z2-7`).
public enum Base32 {
    private static let alphabet: [UInt8] = Array("abcdefghijklmnopqrstuvwxyz234567".utf8)

    /// Why a base32 text was refused.
    public enum DecodeError: Error, Equatable, Sendable, CustomStringConvertible {
        /// `character` at 0-based `offset` (in characters) is not in the alphabet.
        case invalidCharacter(Character, offset: Int)
        /// No byte string encodes to this many characters (a count of 1, 3 or 6 modulo 8).
        case invalidLength(Int)
        /// The unused low bits of the last character are not zero, so the text is not canonical.
        case nonZeroPadding

        public var description: String {
            switch self {
            case .invalidCharacter(let character, let offset):
                "character '\(shown(character))' at offset \(offset) is not base32"
            case .invalidLength(let count): "\(count) characters cannot be base32 of whole bytes"
            case .nonZeroPadding: "non-zero padding bits"
            }
        }
    }

    /// The number of characters that encode `byteCount` bytes.
    public static func encodedLength(byteCount: Int) -> Int { (byteCount * 8 + 4) / 5 }

    /// Lowercase base32 of `bytes`, without padding.
    public static func encode(_ bytes: some Sequence<UInt8>) -> String {
        var out: [UInt8] = []
        var buffer: UInt32 = 0
        var bits = 0
        for byte in bytes {
            buffer = buffer << 8 | UInt32(byte)
            bits += 8
            while bits >= 5 {
                bits -= 5
                out.append(alphabet[Int(buffer >> UInt32(bits) & 0x1F)])
            }
            buffer &= (1 << UInt32(bits)) - 1
        }
        if bits > 0 { out.append(alphabet[Int(buffer << UInt32(5 - bits) & 0x1F)]) }
        return String(decoding: out, as: UTF8.self)
    }

    /// Decodes unpadded base32 in either case. Refuses characters outside the alphabet, impossible
    /// lengths and non-zero padding bits, so each byte string has exactly one accepted text per case.
    public static func decode(_ text: some StringProtocol) throws(DecodeError) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count * 5 / 8)
        var buffer: UInt32 = 0
        var bits = 0
        var count = 0
        for character in text {
            guard let value = value(of: character) else { throw .invalidCharacter(character, offset: count) }
            count += 1
            buffer = buffer << 5 | UInt32(value)
            bits += 5
            if bits >= 8 {
                bits -= 8
                out.append(UInt8(truncatingIfNeeded: buffer >> UInt32(bits)))
                buffer &= (1 << UInt32(bits)) - 1
            }
        }
        // Leftover bits are padding: fewer than 5 of them, and all zero.
        guard bits < 5 else { throw .invalidLength(count) }
        guard buffer == 0 else { throw .nonZeroPadding }
        return out
    }

    /// The 5-bit value of an alphabet character in either case.
    static func value(of character: Character) -> UInt8? {
        guard let ascii = character.asciiValue else { return nil }
        switch ASCII.lowercased(ascii) {
        case let letter where letter >= 0x61 && letter <= 0x7A: return letter - 0x61
        case let digit where digit >= 0x32 && digit <= 0x37: return digit - 0x32 + 26
        default: return nil
        }
    }
}
