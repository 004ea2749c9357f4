// How to reach a node you know by key: `<address>@<host>:<port>`, as in bootstrap lists and on the
// command line. The host is an IPv4 address, a bracketed IPv6 address, or a DNS name (resolved by
// the runtime, never here).

/// A node's public key plus where to dial it.
public struct Contact: Hashable, Sendable, CustomStringConvertible {
    /// Where to dial: an IP address, or a DNS host name (RFC 1123, stored lowercase).
    public enum Host: Hashable, Sendable, CustomStringConvertible {
        case ip(IPAddress)
        case name(String)

        /// An IPv4 address, a bracketed IPv6 address, or the name.
        public var description: String {
            switch self {
            case .ip(let address):
                if case .v6 = address { return "[\(address)]" }
                return address.description
            case .name(let name): return name
            }
        }
    }

    public var publicKey: PublicKey
    public var host: Host
    public var port: UInt16

    public init(publicKey: PublicKey, host: Host, port: UInt16) {
        self.publicKey = publicKey
        self.host = host
        self.port = port
    }

    public var address: NodeAddress { NodeAddress(publicKey: publicKey) }

    /// The endpoint, when the host is an IP address (a name needs resolving first).
    public var endpoint: Endpoint? {
        guard case .ip(let address) = host else { return nil }
        return Endpoint(address: address, port: port)
    }

    /// `umbra1…@host:port`.
    public var description: String { "\(address)@\(host):\(port)" }

    /// Parses `<address>@<host>:<port>`: host is an IPv4 address, `[IPv6]`, or an RFC 1123 host name.
    public init(parsing text: some StringProtocol) throws(ContactParseError) {
        let text = String(text)[...]
        guard let at = text.firstIndex(of: "@") else { throw .missingAt }
        do throws(AddressParseError) {
            publicKey = try NodeAddress(parsing: text[..<at]).publicKey
        } catch {
            throw .address(error)
        }
        let parts: HostPortText.Parts
        do throws(EndpointParseError) {
            parts = try HostPortText.split(text[text.index(after: at)...])
        } catch {
            throw error == .empty ? .missingHost : .endpoint(error)
        }
        if parts.bracketed {
            guard let v6 = IPAddress(parsingIPv6: parts.host) else {
                throw .endpoint(.invalidIPv6(clipped(parts.host)))
            }
            host = .ip(v6)
        } else if parts.host.isEmpty {
            throw .missingHost
        } else if HostPortText.looksLikeIPv4(parts.host) {
            guard let v4 = IPAddress(parsingIPv4: parts.host) else {
                throw .endpoint(.invalidIPv4(clipped(parts.host)))
            }
            host = .ip(v4)
        } else {
            host = .name(try HostName.validate(parts.host))
        }
        do throws(EndpointParseError) {
            port = try HostPortText.port(parts.portText)
        } catch {
            throw .endpoint(error)
        }
    }
}

/// Why a contact text was refused. Each `description` says what was wrong.
public enum ContactParseError: Error, Equatable, Sendable, CustomStringConvertible {
    /// No `@` between the address and the host.
    case missingAt
    /// The part before `@` is not a node address.
    case address(AddressParseError)
    case missingHost
    /// The host is not an IP address in the right form, or the port is missing or wrong.
    case endpoint(EndpointParseError)
    /// The host looks like a DNS name but breaks RFC 1123; `reason` says how.
    case invalidHostName(String, reason: String)

    public var description: String {
        switch self {
        case .missingAt: "expected <address>@<host>:<port>, but there is no '@'"
        case .address(let error): "bad node address: \(error)"
        case .missingHost: "missing host after '@'"
        case .endpoint(let error): "\(error)"
        case .invalidHostName(let name, let reason): "'\(name)' is not a valid host name: \(reason)"
        }
    }
}

/// RFC 1123 host names: dot-separated labels of 1-63 characters from a-z, 0-9 and '-', not starting
/// or ending with '-', at most 253 characters in all. Upper case is accepted and lowercased.
enum HostName {
    static let maximumLength = 253
    static let maximumLabelLength = 63

    static func validate(_ text: Substring) throws(ContactParseError) -> String {
        func fail(_ reason: String) -> ContactParseError { .invalidHostName(clipped(text), reason: reason) }
        var lowered: [UInt8] = []
        for (offset, character) in text.enumerated() {
            guard let ascii = character.asciiValue, character.utf8.count == 1 else {
                throw fail(
                    "character '\(shown(character))' at position \(offset + 1) is not allowed (only a-z, 0-9, '-', '.')"
                )
            }
            let unit = ASCII.lowercased(ascii)
            guard ASCII.isDigit(unit) || (unit >= 0x61 && unit <= 0x7A) || unit == 0x2D || unit == 0x2E else {
                throw fail(
                    "character '\(shown(character))' at position \(offset + 1) is not allowed (only a-z, 0-9, '-', '.')"
                )
            }
            lowered.append(unit)
            if lowered.count > maximumLength {
                throw fail("it is longer than \(maximumLength) characters")
            }
        }
        for label in lowered.split(separator: 0x2E, omittingEmptySubsequences: false) {
            let name = String(decoding: label, as: UTF8.self)
            guard !label.isEmpty else { throw fail("it has an empty label (two dots, or a dot at either end)") }
            guard label.count <= maximumLabelLength else {
                throw fail("label '\(clipped(name))' is \(label.count) characters, the limit is \(maximumLabelLength)")
            }
            guard label.first != 0x2D else { throw fail("label '\(name)' starts with '-'") }
            guard label.last != 0x2D else { throw fail("label '\(name)' ends with '-'") }
        }
        return String(decoding: lowered, as: UTF8.self)
    }
}

// MARK: - Bootstrap list

/// `bootstrap-peers.txt`: one contact per line; `#` starts a comment (whole line or trailing);
/// blank lines are ignored; duplicates are dropped; at most `maximumContacts` entries are kept.
public enum BootstrapList {
    public static let maximumContacts = 1024

    /// Every valid, distinct contact in order of first appearance, and for every refused line its
    /// 1-based line number and what was wrong with it. Never fails as a whole.
    public static func parse(_ text: String) -> (contacts: [Contact], errors: [(line: Int, message: String)]) {
        var contacts: [Contact] = []
        var seen: Set<Contact> = []
        var errors: [(line: Int, message: String)] = []
        var lineNumber = 0
        // "\r\n" is one Character in Swift, so it is a separator of its own.
        for rawLine in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }) {
            lineNumber += 1
            var line = rawLine[...]
            if let hash = line.firstIndex(of: "#") { line = line[..<hash] }
            line = trimmed(line)
            guard !line.isEmpty else { continue }
            let contact: Contact
            do throws(ContactParseError) {
                contact = try Contact(parsing: line)
            } catch {
                errors.append((lineNumber, error.description))
                continue
            }
            guard !seen.contains(contact) else { continue }
            guard contacts.count < maximumContacts else {
                errors.append((lineNumber, "ignored: the bootstrap list is limited to \(maximumContacts) contacts"))
                continue
            }
            seen.insert(contact)
            contacts.append(contact)
        }
        return (contacts, errors)
    }

    /// `line` without leading and trailing spaces, tabs and carriage returns.
    private static func trimmed(_ line: Substring) -> Substring {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\r" || $0 == "\r\n" }
        guard let first = line.firstIndex(where: { !isSpace($0) }),
            let last = line.lastIndex(where: { !isSpace($0) })
        else { return "" }
        return line[first...last]
    }
}
