// The DHT routing table on disk: `<data dir>/routing-table.txt`, in the bootstrap-list format
// (one `umbra1…@host:port` contact per line), so a restarted node rejoins from the peers it knew
// without any bootstrap list, and an operator can read or reuse the file.

import Kademlia
import Node
import UmbraCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

public enum RoutingTableFile {
    public static let fileName = "routing-table.txt"

    /// Writes the contacts atomically (temporary file, fsync, rename), mode 0600.
    public static func save(_ contacts: [NodeContact], in directory: DataDirectory, now: Instant) throws {
        var text = "# umbra routing table, written by the node; one contact per line (bootstrap-list format)\n"
        text += "# \(contacts.count) contacts at unix time \(now.nanoseconds / 1_000_000_000)\n"
        for contact in contacts.prefix(BootstrapList.maximumContacts) {
            text += "\(NodeAddress(publicKey: contact.publicKey))@\(contact.endpoint)\n"
        }
        let path = directory.path + "/" + fileName
        let temporary = path + ".tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw FileError(path: temporary, reason: String(cString: strerror(errno))) }
        let bytes = Array(text.utf8)
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        let synced = fsync(fd) == 0
        close(fd)
        guard written == bytes.count, synced, rename(temporary, path) == 0 else {
            unlink(temporary)
            throw FileError(path: path, reason: String(cString: strerror(errno)))
        }
    }

    /// The saved contacts, or none when there is no file. Bad lines are skipped.
    public static func load(from directory: DataDirectory) -> [DialTarget] {
        let path = directory.path + "/" + fileName
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return [] }
        defer { close(fd) }
        let limit = 256 * 1024
        var buffer = [UInt8](repeating: 0, count: limit)
        let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard count > 0 else { return [] }
        let text = String(decoding: buffer[..<count], as: UTF8.self)
        return BootstrapList.parse(text).contacts.compactMap { contact in
            contact.endpoint.map { DialTarget(publicKey: contact.publicKey, endpoint: $0) }
        }
    }

    public struct FileError: Error, CustomStringConvertible {
        public var path: String
        public var reason: String
        public var description: String { "cannot write \(path): \(reason)" }
    }
}
