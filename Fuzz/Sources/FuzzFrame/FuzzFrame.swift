// Frames from untrusted bytes: a decoded frame re-encodes to exactly its input, except that a DHT
// or relay payload may drop well-formed entries nobody may use (contacts or punch candidates with
// port 0 or a relay path): then it re-encodes shorter, and that form is a fixed point. Errors are
// short.

import FuzzSupport
import Node
import UmbraCore

@main enum Main {
    static func main() { LibFuzzer.run { fuzz($0, $1) } }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = LibFuzzer.bytes(data, size)
    do throws(DecodeError) {
        let frame = try Frame(decoding: input)
        let reencoded = frame.encoded()
        require(reencoded == input || reencoded.count < input.count, "\(frame) re-encodes differently")
        require((try? Frame(decoding: reencoded)) == frame, "\(frame) re-encodes to another frame")
        require(
            (try? Frame(decoding: reencoded))?.encoded() == reencoded,
            "\(frame): the re-encoded form is not a fixed point")
    } catch {
        require(error.description.utf8.count < 400, "error message too long")
    }
    return 0
}
