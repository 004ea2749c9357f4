// Frames from untrusted bytes: a decoded frame re-encodes to exactly its input; errors are short.

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
        require(frame.encoded() == input, "\(frame) re-encodes differently")
    } catch {
        require(error.description.utf8.count < 400, "error message too long")
    }
    return 0
}
