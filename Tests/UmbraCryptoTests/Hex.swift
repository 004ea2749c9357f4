/// Hex helpers for test vectors. Whitespace in the input is ignored so vectors can be typed as in the RFCs.
func hex(_ string: String) -> [UInt8] {
    let digits = string.unicodeScalars.filter { !$0.properties.isWhitespace }.map { Character($0) }
    precondition(digits.count % 2 == 0, "odd number of hex digits")
    var bytes: [UInt8] = []
    bytes.reserveCapacity(digits.count / 2)
    var index = 0
    while index < digits.count {
        guard let byte = UInt8(String(digits[index...index + 1]), radix: 16) else {
            preconditionFailure("bad hex digits \(digits[index])\(digits[index + 1])")
        }
        bytes.append(byte)
        index += 2
    }
    return bytes
}

extension Array where Element == UInt8 {
    var hexString: String {
        map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()
    }

    /// A copy with one bit flipped.
    func flippingBit(at byteIndex: Int, bit: Int = 0) -> [UInt8] {
        var copy = self
        copy[byteIndex] ^= UInt8(1) << UInt8(bit)
        return copy
    }
}
