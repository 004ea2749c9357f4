import Testing

@testable import UmbraCore

private let address = NodeAddress(publicKey: sampleKey).description

private func otherAddress(_ seed: UInt64) -> String {
    var rng = SeededRandom(seed: seed)
    return NodeAddress(publicKey: try! PublicKey(bytes: rng.bytes(32))).description
}

@Suite("Contact")
struct ContactTests {
    @Test(
        "contacts parse and print back",
        arguments: [
            ("@1.2.3.4:4747", Contact.Host.ip(.v4(0x0102_0304)), 4747, "@1.2.3.4:4747"),
            ("@[::1]:4747", .ip(.v6(high: 0, low: 1)), 4747, "@[::1]:4747"),
            ("@[2001:DB8::0:1]:1", .ip(.v6(high: 0x2001_0DB8_0000_0000, low: 1)), 1, "@[2001:db8::1]:1"),
            ("@seed.umbra.example:4747", .name("seed.umbra.example"), 4747, "@seed.umbra.example:4747"),
            ("@Seed-1.Example.ORG:65535", .name("seed-1.example.org"), 65535, "@seed-1.example.org:65535"),
            ("@localhost:4747", .name("localhost"), 4747, "@localhost:4747"),
            ("@a1:4747", .name("a1"), 4747, "@a1:4747"),
            ("@1a.2b:4747", .name("1a.2b"), 4747, "@1a.2b:4747"),
        ] as [(String, Contact.Host, UInt16, String)]
    )
    func parse(suffix: String, host: Contact.Host, port: UInt16, canonicalSuffix: String) throws {
        let contact = try Contact(parsing: address + suffix)
        #expect(contact.publicKey == sampleKey)
        #expect(contact.host == host)
        #expect(contact.port == port)
        #expect(contact.description == address + canonicalSuffix)
        #expect(try Contact(parsing: contact.description) == contact)
    }

    @Test("an uppercase address is accepted and printed lowercase")
    func uppercaseAddress() throws {
        let contact = try Contact(parsing: address.uppercased() + "@1.2.3.4:4747")
        #expect(contact.description == address + "@1.2.3.4:4747")
    }

    @Test("endpoint is available for IP hosts only")
    func endpoint() throws {
        #expect(try Contact(parsing: address + "@1.2.3.4:9").endpoint == Endpoint(address: .v4(0x0102_0304), port: 9))
        #expect(try Contact(parsing: address + "@example.com:9").endpoint == nil)
    }

    static let longLabel = String(repeating: "a", count: 64)
    static let longName = Array(repeating: String(repeating: "a", count: 63), count: 4).joined(separator: ".")

    @Test(
        "bad contacts say exactly what is wrong",
        arguments: [
            ("1.2.3.4:4747", ContactParseError.missingAt, "no '@'"),
            ("umbra1abc@1.2.3.4:4747", .address(.wrongLength(3)), "has 3 characters after umbra1, expected 52"),
            ("@1.2.3.4:4747", .address(.missingPrefix), "must start with umbra1"),
            ("\(address)@", .missingHost, "missing host"),
            ("\(address)@:4747", .missingHost, "missing host"),
            ("\(address)@1.2.3.4", .endpoint(.missingPort), "missing port"),
            ("\(address)@example.com", .endpoint(.missingPort), "missing port"),
            ("\(address)@example.com:", .endpoint(.missingPort), "missing port"),
            ("\(address)@1.2.3.4:70000", .endpoint(.portOutOfRange("70000")), "port 70000 is out of range 1-65535"),
            ("\(address)@1.2.3.4:0", .endpoint(.portOutOfRange("0")), "port 0 is out of range"),
            ("\(address)@1.2.3.4:x1", .endpoint(.invalidPort("x1")), "'x1' is not a port number"),
            ("\(address)@1.2.3:4747", .endpoint(.invalidIPv4("1.2.3")), "'1.2.3' is not an IPv4 address"),
            ("\(address)@1.2.3.4.5:4747", .endpoint(.invalidIPv4("1.2.3.4.5")), "is not an IPv4 address"),
            ("\(address)@::1:4747", .endpoint(.ipv6NeedsBrackets), "IPv6 addresses need brackets, like [::1]:4747"),
            ("\(address)@[::1:4747", .endpoint(.unclosedBracket), "not closed"),
            ("\(address)@[::x]:4747", .endpoint(.invalidIPv6("::x")), "'::x' is not an IPv6 address"),
            (
                "\(address)@exa_mple.com:1",
                .invalidHostName(
                    "exa_mple.com", reason: "character '_' at position 4 is not allowed (only a-z, 0-9, '-', '.')"),
                "'_' at position 4"
            ),
            (
                "\(address)@a..b:1",
                .invalidHostName("a..b", reason: "it has an empty label (two dots, or a dot at either end)"),
                "empty label"
            ),
            (
                "\(address)@example.com.:1",
                .invalidHostName("example.com.", reason: "it has an empty label (two dots, or a dot at either end)"),
                "empty label"
            ),
            (
                "\(address)@-a.com:1", .invalidHostName("-a.com", reason: "label '-a' starts with '-'"),
                "starts with '-'"
            ),
            ("\(address)@a-.com:1", .invalidHostName("a-.com", reason: "label 'a-' ends with '-'"), "ends with '-'"),
            (
                "\(address)@\(longLabel).com:1",
                .invalidHostName(
                    clipped("\(longLabel).com"), reason: "label '\(longLabel)' is 64 characters, the limit is 63"),
                "64 characters, the limit is 63"
            ),
            (
                "\(address)@\(longName).com:1",
                .invalidHostName(clipped("\(longName).com"), reason: "it is longer than 253 characters"),
                "longer than 253"
            ),
            (
                "\(address)@ex ample:1",
                .invalidHostName(
                    "ex ample", reason: "character ' ' at position 3 is not allowed (only a-z, 0-9, '-', '.')"),
                "' ' at position 3"
            ),
            (
                "\(address)@exämple:1",
                .invalidHostName(
                    "exämple", reason: "character 'ä' at position 3 is not allowed (only a-z, 0-9, '-', '.')"),
                "'ä' at position 3"
            ),
        ] as [(String, ContactParseError, String)]
    )
    func parseErrors(text: String, error: ContactParseError, message: String) {
        #expect(throws: error) { try Contact(parsing: text) }
        #expect(error.description.contains(message), "\(error.description)")
    }

    @Test("a host name of exactly 253 characters with 63-character labels is accepted")
    func longestName() throws {
        let name = Array(repeating: String(repeating: "b", count: 63), count: 4).joined(separator: ".").dropLast(2)
        #expect(name.count == 253)
        let contact = try Contact(parsing: "\(address)@\(name):1")
        #expect(contact.host == .name(String(name)))
    }
}

@Suite("BootstrapList")
struct BootstrapListTests {
    @Test("comments, blank lines, duplicates and bad lines")
    func mixed() {
        let second = otherAddress(2)
        let text = """
            # Umbra bootstrap peers
            \(address)@1.2.3.4:4747

               \(second)@[2001:db8::1]:4747   # trailing comment
            \(address)@1.2.3.4:4747
            \(address)@seed.example.net:4747
            not a contact
            \t
            \(address)@1.2.3.4:0
            # \(address)@9.9.9.9:1
            \(address)@1.2.3.4:4748#no space before comment
            """
        let result = BootstrapList.parse(text)
        #expect(
            result.contacts.map(\.description) == [
                "\(address)@1.2.3.4:4747",
                "\(second)@[2001:db8::1]:4747",
                "\(address)@seed.example.net:4747",
                "\(address)@1.2.3.4:4748",
            ])
        #expect(result.errors.map(\.line) == [7, 9])
        #expect(result.errors.first?.message.contains("no '@'") == true)
        #expect(result.errors.last?.message == "port 0 is out of range 1-65535")
    }

    @Test("CRLF line ends are handled and line numbers still count")
    func crlf() {
        let text = "# peers\r\n\(address)@1.2.3.4:1\r\n\r\nbad\r\n\(address)@1.2.3.4:2\r\n"
        let result = BootstrapList.parse(text)
        #expect(result.contacts.map(\.port) == [1, 2])
        #expect(result.errors.map(\.line) == [4])
    }

    @Test("empty and comment-only input give nothing", arguments: ["", "\n\n", "# only\n   # comments\n"])
    func empty(text: String) {
        let result = BootstrapList.parse(text)
        #expect(result.contacts.isEmpty)
        #expect(result.errors.isEmpty)
    }

    @Test("at most 1024 contacts are kept; the rest are reported with their lines")
    func cap() {
        let lines = (1...1030).map { "\(address)@10.0.\($0 / 256).\($0 % 256):4747" }
        let duplicates = ["\(address)@10.0.0.1:4747"]  // a duplicate after the cap is still just dropped
        let result = BootstrapList.parse((lines + duplicates).joined(separator: "\n"))
        #expect(result.contacts.count == BootstrapList.maximumContacts)
        #expect(result.contacts.last?.description == "\(address)@10.0.4.0:4747")
        #expect(result.errors.map(\.line) == Array(1025...1030))
        #expect(result.errors.allSatisfy { $0.message.contains("limited to 1024") })
    }
}
