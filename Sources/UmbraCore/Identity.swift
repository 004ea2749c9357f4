// A node's one identity key (DESIGN §1.3): Ed25519 signs; its X25519 form is the Noise static key.
// The key file format lives here as pure text encode/decode; the runtime does the file I/O (0600,
// refusing group/world-readable files).

import UmbraCrypto

/// Why an identity could not be built from a seed.
public enum IdentityError: Error, Equatable, Sendable, CustomStringConvertible {
    case wrongSeedLength(Int)
    case keyDerivationFailed(String)

    public var description: String {
        switch self {
        case .wrongSeedLength(let count): "an identity seed is \(Identity.seedByteCount) bytes, not \(count)"
        case .keyDerivationFailed(let reason): "key derivation failed: \(reason)"
        }
    }
}

/// A node's secret identity: the Ed25519 key pair and the X25519 static key derived from it.
/// `description` and `dump` show only the address, never secret bytes.
public struct Identity: Sendable, CustomStringConvertible, CustomReflectable {
    public static let seedByteCount = Ed25519.seedBytes

    public let keyPair: Ed25519.KeyPair
    /// The X25519 secret (libsodium's ed25519→curve25519 conversion): the Noise static secret.
    public let x25519SecretKey: [UInt8]
    /// The X25519 public key matching `x25519SecretKey`: the Noise static public key.
    public let x25519PublicKey: [UInt8]
    public let publicKey: PublicKey

    /// Derives everything from a 32-byte Ed25519 seed.
    public init(seed: [UInt8]) throws(IdentityError) {
        guard seed.count == Self.seedByteCount else { throw .wrongSeedLength(seed.count) }
        do {
            keyPair = try Ed25519.KeyPair(seed: seed)
            x25519SecretKey = try Ed25519.x25519SecretKey(fromEd25519: keyPair.secretKey)
            x25519PublicKey = try Ed25519.x25519PublicKey(fromEd25519: keyPair.publicKey)
            publicKey = try PublicKey(bytes: keyPair.publicKey)
        } catch {
            throw .keyDerivationFailed("\(error)")
        }
    }

    /// A new identity whose seed is 32 bytes from `rng` (the runtime passes a CSPRNG; tests a
    /// seeded generator).
    public static func generate(using rng: inout some RandomNumberGenerator) -> Identity {
        do {
            return try Identity(seed: rng.bytes(seedByteCount))
        } catch {
            preconditionFailure("a \(seedByteCount)-byte seed always derives an identity: \(error)")
        }
    }

    /// The 32-byte seed everything is derived from (secret).
    public var seed: [UInt8] { keyPair.seed }

    public var nodeID: NodeID { publicKey.nodeID }

    public var address: NodeAddress { NodeAddress(publicKey: publicKey) }

    /// A detached 64-byte Ed25519 signature over `message`.
    public func sign(_ message: [UInt8]) -> [UInt8] { keyPair.sign(message) }

    public var description: String { "Identity(\(address))" }

    public var customMirror: Mirror { Mirror(self, children: ["address": address.description]) }
}

// MARK: - Key file

/// Why an identity file was refused. Line numbers are 1-based.
public enum IdentityFileError: Error, Equatable, Sendable, CustomStringConvertible {
    case tooLarge(Int)
    case missingHeader
    case unsupportedVersion(String)
    case malformedLine(line: Int)
    case unknownKey(line: Int, key: String)
    case duplicateKey(line: Int, key: String)
    case missingField(String)
    case invalidSeed(String)
    case invalidAddress(AddressParseError)
    case addressMismatch(inFile: NodeAddress, fromSeed: NodeAddress)
    case identity(IdentityError)

    public var description: String {
        switch self {
        case .tooLarge(let count):
            "identity file is \(count) bytes, the limit is \(IdentityFile.maximumSize)"
        case .missingHeader:
            "not an umbra identity file: the first line must be '\(IdentityFile.header)'"
        case .unsupportedVersion(let version):
            "identity file version '\(version)' is not supported (this build reads v1)"
        case .malformedLine(let line): "line \(line) is not 'key: value'"
        case .unknownKey(let line, let key): "line \(line): unknown key '\(key)' (expected seed or address)"
        case .duplicateKey(let line, let key): "line \(line): '\(key)' appears a second time"
        case .missingField(let key): "missing '\(key):' line"
        case .invalidSeed(let reason): "bad seed: \(reason)"
        case .invalidAddress(let error): "bad address: \(error)"
        case .addressMismatch(let inFile, let fromSeed):
            "the address \(inFile) does not match the seed, which belongs to \(fromSeed): the file was altered"
        case .identity(let error): "\(error)"
        }
    }
}

/// The identity key file, as text:
///
///     # umbra identity v1 — keep secret
///     seed: <64 lowercase hex digits>
///     address: umbra1…
///
/// Blank lines and further `#` lines are ignored; `\r\n` line ends are accepted. The address is
/// redundant with the seed and checked against it, so a damaged or hand-edited file is caught.
public enum IdentityFile {
    public static let header = "# umbra identity v1 — keep secret"
    static let headerPrefix = "# umbra identity "
    public static let maximumSize = 4096

    public static func encode(_ identity: Identity) -> String {
        "\(header)\nseed: \(Hex.encode(identity.seed))\naddress: \(identity.address)\n"
    }

    public static func decode(_ text: String) throws(IdentityFileError) -> Identity {
        guard text.utf8.count <= maximumSize else { throw .tooLarge(text.utf8.count) }
        let lines = text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" })
            .map { trimmed($0) }
        guard let first = lines.first, first.hasPrefix(headerPrefix) else { throw .missingHeader }
        let version = first.dropFirst(headerPrefix.count).prefix(while: { $0 != " " })
        guard version == "v1" else { throw .unsupportedVersion(clipped(version)) }

        var seedText: Substring?
        var addressText: Substring?
        for (index, line) in lines.enumerated().dropFirst() where !line.isEmpty && line.first != "#" {
            let number = index + 1
            guard let colon = line.firstIndex(of: ":") else { throw .malformedLine(line: number) }
            let key = trimmed(line[..<colon])
            let value = trimmed(line[line.index(after: colon)...])
            switch key {
            case "seed":
                guard seedText == nil else { throw .duplicateKey(line: number, key: "seed") }
                seedText = value
            case "address":
                guard addressText == nil else { throw .duplicateKey(line: number, key: "address") }
                addressText = value
            default:
                throw .unknownKey(line: number, key: clipped(key))
            }
        }
        guard let seedText else { throw .missingField("seed") }
        guard let addressText else { throw .missingField("address") }

        let expectedDigits = Identity.seedByteCount * 2
        guard seedText.count == expectedDigits else {
            throw .invalidSeed("expected \(expectedDigits) hex digits, found \(seedText.count) characters")
        }
        if let bad = seedText.first(where: { $0.asciiValue.flatMap(ASCII.hexValue) == nil || $0.utf8.count != 1 }) {
            throw .invalidSeed("'\(shown(bad))' is not a hex digit")
        }
        guard let seed = Hex.decode(seedText) else { throw .invalidSeed("not hex") }

        let address: NodeAddress
        do throws(AddressParseError) {
            address = try NodeAddress(parsing: addressText)
        } catch {
            throw .invalidAddress(error)
        }
        let identity: Identity
        do throws(IdentityError) {
            identity = try Identity(seed: seed)
        } catch {
            throw .identity(error)
        }
        guard identity.address == address else { throw .addressMismatch(inFile: address, fromSeed: identity.address) }
        return identity
    }

    private static func trimmed(_ text: Substring) -> Substring {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\r" }
        guard let first = text.firstIndex(where: { !isSpace($0) }), let last = text.lastIndex(where: { !isSpace($0) })
        else { return "" }
        return text[first...last]
    }
}
