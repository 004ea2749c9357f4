// Node addresses, contacts and base32 from untrusted text. Properties: whatever parses prints
// canonically and parses back to the same value; an accepted address is the lowercase of its
// input; base32 decode/encode are inverse; error messages stay short.

import FuzzSupport
import UmbraCore

@main enum Main {
    static func main() { LibFuzzer.run { fuzz($0, $1) } }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = LibFuzzer.bytes(data, size)
    let text = String(decoding: input, as: UTF8.self)

    do throws(AddressParseError) {
        let address = try NodeAddress(parsing: text)
        let canonical = address.description
        require(canonical == asciiLowercased(text), "'\(text)' accepted but printed as \(canonical)")
        require((try? NodeAddress(parsing: canonical)) == address, "\(canonical) does not parse back")
    } catch {
        require(error.description.utf8.count < 400, "long error message")
    }

    do throws(ContactParseError) {
        let contact = try Contact(parsing: text)
        let canonical = contact.description
        let reparsed = try? Contact(parsing: canonical)
        require(reparsed == contact, "\(canonical) does not parse back")
        require(reparsed?.description == canonical, "\(canonical) is not a fixed point")
        if case .name(let name) = contact.host {
            require(name.utf8.count <= 253 && name == asciiLowercased(name), "bad stored host name \(name)")
        }
    } catch {
        require(error.description.utf8.count < 600, "long error message: \(error.description.utf8.count) bytes")
    }

    do throws(Base32.DecodeError) {
        let bytes = try Base32.decode(text)
        require(Base32.encode(bytes) == asciiLowercased(text), "base32 '\(text)' is not canonical")
    } catch {
        require(error.description.utf8.count < 200, "long error message")
    }
    let encoded = Base32.encode(input)
    require((try? Base32.decode(encoded)) == input, "base32 round trip failed for \(input)")
    require(encoded.utf8.count == Base32.encodedLength(byteCount: input.count), "wrong encoded length")
    return 0
}

func asciiLowercased(_ text: String) -> String {
    String(decoding: text.utf8.map { $0 >= 0x41 && $0 <= 0x5A ? $0 + 0x20 : $0 }, as: UTF8.self)
}
