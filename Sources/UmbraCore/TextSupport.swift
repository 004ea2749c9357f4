// Small text helpers shared by the parsers in this target: hex, ASCII classes, and clipping of
// untrusted input before it is quoted in an error message (so an error never holds a megabyte line).

/// Lowercase hexadecimal, total in both directions.
public enum Hex {
    private static let digits: [UInt8] = Array("0123456789abcdef".utf8)

    /// Lowercase hex of `bytes`, two characters per byte.
    public static func encode(_ bytes: some Sequence<UInt8>) -> String {
        var utf8: [UInt8] = []
        utf8.reserveCapacity(bytes.underestimatedCount * 2)
        for byte in bytes {
            utf8.append(digits[Int(byte >> 4)])
            utf8.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: utf8, as: UTF8.self)
    }

    /// The bytes of an even-length hex string (either case); `nil` for anything else.
    public static func decode(_ text: some StringProtocol) -> [UInt8]? {
        let utf8 = text.utf8
        guard utf8.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(utf8.count / 2)
        var high: UInt8?
        for unit in utf8 {
            guard let nibble = ASCII.hexValue(unit) else { return nil }
            if let pending = high {
                out.append(pending << 4 | nibble)
                high = nil
            } else {
                high = nibble
            }
        }
        return out
    }
}

/// ASCII character classes on UTF-8 code units.
enum ASCII {
    static func isDigit(_ unit: UInt8) -> Bool { unit >= 0x30 && unit <= 0x39 }

    static func hexValue(_ unit: UInt8) -> UInt8? {
        switch unit {
        case 0x30...0x39: unit - 0x30
        case 0x61...0x66: unit - 0x61 + 10
        case 0x41...0x46: unit - 0x41 + 10
        default: nil
        }
    }

    /// `unit` lowercased if it is an ASCII capital letter.
    static func lowercased(_ unit: UInt8) -> UInt8 { (unit >= 0x41 && unit <= 0x5A) ? unit + 0x20 : unit }
}

/// `text` cut to at most `limit` Unicode scalars (with a trailing "…" when cut), for quoting
/// untrusted input inside error messages. Scalars, not Characters: one Character can be made of
/// thousands of combining scalars.
func clipped(_ text: some StringProtocol, limit: Int = 64) -> String {
    var scalars = String.UnicodeScalarView()
    for scalar in text.unicodeScalars {
        if scalars.count == limit { return String(scalars) + "…" }
        scalars.append(scalar)
    }
    return String(scalars)
}

/// A character from untrusted input, clipped for an error message.
func shown(_ character: Character) -> String { clipped(String(character), limit: 8) }
