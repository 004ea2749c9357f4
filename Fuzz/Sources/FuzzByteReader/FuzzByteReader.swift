// Drives a ByteReader with a program taken from the input: the first byte says how many of the next
// bytes are opcodes, the rest is the data they read. Properties: reads never trap; the offset only
// grows and stays in bounds; every successful read re-encodes with ByteWriter to exactly the bytes
// it consumed (the codec is canonical); every error is consistent with the reader's state.

import FuzzSupport
import UmbraCore

@main enum Main {
    static func main() { LibFuzzer.run { fuzz($0, $1) } }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = LibFuzzer.bytes(data, size)
    guard let header = input.first else { return 0 }
    let opCount = min(Int(header & 0x3F), input.count - 1)
    let ops = input[1..<1 + opCount]
    var reader = ByteReader(input[(1 + opCount)...])
    let bytes = reader.bytes

    for op in ops {
        let start = reader.offset
        var writer = ByteWriter()
        do throws(DecodeError) {
            switch op % 13 {
            case 0: writer.write(try reader.readUInt8())
            case 1: writer.write(try reader.readUInt16())
            case 2: writer.write(try reader.readUInt32())
            case 3: writer.write(try reader.readUInt64())
            case 4: writer.write(try reader.readBool())
            case 5:
                let count = Int(op >> 4)
                let raw = try reader.readBytes(count)
                require(raw.count == count, "readBytes(\(count)) returned \(raw.count)")
                writer.write(raw: raw)
            case 6:
                let limit = Int(op >> 4) * 8
                let field = try reader.readLengthPrefixed(limit: limit)
                require(field.count <= limit, "field of \(field.count) above limit \(limit)")
                writer.write(lengthPrefixed: field)
            case 7:
                let string = try reader.readString(limit: 512)
                writer.write(string: string)
            case 8:
                let endpoint = try reader.readEndpoint()
                writer.write(endpoint)
                let reparsed = try? Endpoint(parsing: endpoint.description)
                require(reparsed == endpoint, "\(endpoint) does not survive its text form")
            case 9: writer.write(try reader.readKey256())
            case 10: writer.write(try reader.readPublicKey())
            case 11: writer.write(raw: reader.readRemaining())
            default:
                do throws(DecodeError) {
                    try reader.expectEnd()
                    require(reader.isAtEnd, "expectEnd passed with \(reader.remaining) bytes left")
                } catch {
                    require(error == .trailingBytes(count: reader.remaining), "expectEnd threw \(error)")
                }
            }
        } catch {
            check(error, reader: reader, start: start)
            return 0
        }
        require(reader.offset >= start && reader.offset <= bytes.count, "offset \(reader.offset) out of bounds")
        require(
            writer.bytes == Array(bytes[start..<reader.offset]),
            "op \(op % 13) consumed \(bytes[start..<reader.offset]) but re-encodes as \(writer.bytes)"
        )
    }
    return 0
}

/// An error must describe the reader's real state.
func check(_ error: DecodeError, reader: ByteReader, start: Int) {
    require(reader.offset >= start && reader.offset <= reader.bytes.count, "offset out of bounds after \(error)")
    require(!error.description.isEmpty, "empty error description")
    switch error {
    case .truncated(let offset, let needed):
        require(needed > 0 && offset >= start && offset <= reader.bytes.count, "inconsistent \(error)")
    case .lengthTooLarge(_, let length, let limit):
        require(length > limit, "inconsistent \(error)")
    case .trailingBytes(let count):
        require(count > 0, "inconsistent \(error)")
    case .unknownTag, .invalid:
        break
    }
}
