// Identity files from untrusted text. Properties: never traps; a decoded identity encodes to a
// file that decodes to the same identity; and any 32 input bytes used as a seed make an identity
// that survives encode/decode.

import FuzzSupport
import UmbraCore

@main enum Main {
    static func main() { LibFuzzer.run { fuzz($0, $1) } }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = LibFuzzer.bytes(data, size)
    let text = String(decoding: input, as: UTF8.self)

    do throws(IdentityFileError) {
        let identity = try IdentityFile.decode(text)
        roundTrip(identity)
    } catch {
        require(!error.description.isEmpty && error.description.utf8.count < 600, "bad error message")
    }

    if input.count >= 32, let identity = try? Identity(seed: Array(input.prefix(32))) {
        roundTrip(identity)
    }
    return 0
}

func roundTrip(_ identity: Identity) {
    let file = IdentityFile.encode(identity)
    guard let again = try? IdentityFile.decode(file) else { fatalError("an encoded identity file does not decode") }
    require(again.seed == identity.seed && again.publicKey == identity.publicKey, "identity changed in a round trip")
    require(IdentityFile.encode(again) == file, "encoding is not stable")
}
