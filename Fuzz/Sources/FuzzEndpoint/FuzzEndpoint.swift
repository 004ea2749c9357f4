// Endpoints from untrusted bytes, both forms. Binary: a decoded endpoint re-encodes to exactly the
// bytes it came from, and its text form parses back to it. Text: a parsed endpoint or address
// prints canonically (printing and parsing again is a fixed point); errors have short messages.

import FuzzSupport
import UmbraCore

@main enum Main {
    static func main() { LibFuzzer.run { fuzz($0, $1) } }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = LibFuzzer.bytes(data, size)

    // Binary.
    var reader = ByteReader(input)
    do throws(DecodeError) {
        let endpoint = try reader.readEndpoint()
        var writer = ByteWriter()
        writer.write(endpoint)
        require(writer.bytes == Array(input[..<reader.offset]), "\(endpoint) re-encodes differently")
        require(reader.offset == 7 || reader.offset == 19, "endpoint consumed \(reader.offset) bytes")
        require(endpoint.port != 0, "decoded port 0")
        checkText(endpoint)
    } catch {
        require(!error.description.isEmpty, "empty error description")
    }

    // Text.
    let text = String(decoding: input, as: UTF8.self)
    do throws(EndpointParseError) {
        checkText(try Endpoint(parsing: text))
    } catch {
        require(error.description.utf8.count < 400, "error message of \(error.description.utf8.count) bytes")
    }
    if let address = IPAddress(parsing: text) {
        let canonical = address.description
        require(IPAddress(parsing: canonical) == address, "\(canonical) does not parse back")
        require(IPAddress(parsing: canonical)?.description == canonical, "\(canonical) is not a fixed point")
        require(text.utf8.count <= IPAddress.maximumTextLength, "accepted \(text.utf8.count) characters")
        if case .v4 = address { require(canonical == text, "IPv4 '\(text)' printed as \(canonical)") }
    }
    return 0
}

func checkText(_ endpoint: Endpoint) {
    let canonical = endpoint.description
    let reparsed = try? Endpoint(parsing: canonical)
    require(reparsed == endpoint, "\(canonical) does not parse back to the same endpoint")
    require(reparsed?.description == canonical, "\(canonical) is not a fixed point")
}
