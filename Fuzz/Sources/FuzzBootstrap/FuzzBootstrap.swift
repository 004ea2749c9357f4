// Bootstrap lists from untrusted text. Properties: never traps; keeps at most 1024 distinct
// contacts; error line numbers are real and increasing; writing the kept contacts back out one per
// line and parsing again gives the same list with no errors.

import FuzzSupport
import UmbraCore

@main enum Main {
    static func main() { LibFuzzer.run { fuzz($0, $1) } }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let text = String(decoding: LibFuzzer.bytes(data, size), as: UTF8.self)
    let result = BootstrapList.parse(text)
    let lineCount = text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }).count

    require(result.contacts.count <= BootstrapList.maximumContacts, "kept \(result.contacts.count) contacts")
    require(Set(result.contacts).count == result.contacts.count, "duplicates kept")
    var previous = 0
    for error in result.errors {
        require(error.line > previous && error.line <= lineCount, "error line \(error.line) of \(lineCount)")
        require(!error.message.isEmpty && error.message.utf8.count < 600, "bad message for line \(error.line)")
        previous = error.line
    }

    let written = result.contacts.map(\.description).joined(separator: "\n")
    let again = BootstrapList.parse(written)
    require(again.errors.isEmpty, "re-parsing written contacts failed: \(again.errors.map(\.message))")
    require(again.contacts == result.contacts, "written contacts parse to a different list")
    return 0
}
