// The CLI's side of the control API: one short HTTP/1.1 request over the unix socket, with a
// timeout, reading a bounded response. Plain POSIX sockets: the CLI needs no event loop for this.

import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

public enum ControlClient {
    /// Largest response the client reads.
    public static let maximumResponse = 4 << 20

    /// Sends `method path` and returns the decoded JSON body, or throws `ControlError`.
    public static func request<T: Decodable>(
        _ type: T.Type, method: String, path: String, socket socketPath: String, timeoutSeconds: Int = 10
    ) throws -> T {
        let (status, body) = try raw(method: method, path: path, socket: socketPath, timeoutSeconds: timeoutSeconds)
        guard (200..<300).contains(status) else {
            let message =
                (try? ControlJSON.decoder.decode(ErrorReport.self, from: Data(body)))?.error
                ?? String(decoding: body, as: UTF8.self)
            throw ControlError.server(status: status, message: message)
        }
        do { return try ControlJSON.decoder.decode(T.self, from: Data(body)) } catch {
            throw ControlError.badResponse("\(error)")
        }
    }

    /// Sends a request and returns the status code and the raw body.
    public static func raw(
        method: String, path: String, socket socketPath: String, timeoutSeconds: Int = 10
    ) throws -> (status: Int, body: [UInt8]) {
        let fd = try connect(socketPath, timeoutSeconds: timeoutSeconds)
        defer { close(fd) }
        let request = "\(method) \(path) HTTP/1.1\r\nHost: umbra\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        let bytes = Array(request.utf8)
        var sent = 0
        while sent < bytes.count {
            let count = bytes[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard count > 0 else { throw ControlError.badResponse("write failed: \(String(cString: strerror(errno)))") }
            sent += count
        }
        var response: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16 * 1024)
        while response.count <= maximumResponse {
            let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count == 0 { break }
            guard count > 0 else {
                throw ControlError.badResponse("read failed: \(String(cString: strerror(errno)))")
            }
            response += chunk[..<count]
        }
        return try parse(response)
    }

    /// Whether something accepts connections on `path`.
    public static func isListening(_ path: String) -> Bool {
        guard let fd = try? connect(path, timeoutSeconds: 1) else { return false }
        close(fd)
        return true
    }

    static func parse(_ response: [UInt8]) throws -> (status: Int, body: [UInt8]) {
        let separator: [UInt8] = [13, 10, 13, 10]
        guard let end = response.indices.first(where: { response[$0...].starts(with: separator) }) else {
            throw ControlError.badResponse("no HTTP header in \(response.count) bytes")
        }
        let head = String(decoding: response[..<end], as: UTF8.self)
        let statusLine = head.split(separator: "\r\n").first ?? ""
        let parts = statusLine.split(separator: " ")
        guard parts.count >= 2, let status = Int(parts[1]) else {
            throw ControlError.badResponse("bad status line '\(statusLine)'")
        }
        return (status, Array(response[(end + 4)...]))
    }

    static func connect(_ path: String, timeoutSeconds: Int) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ControlError.notRunning(path: path, reason: String(cString: strerror(errno))) }
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let pathBytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard pathBytes.count < capacity else {
            close(fd)
            throw ControlError.notRunning(
                path: path, reason: "the path is longer than \(capacity - 1) bytes; use a shorter --data-dir")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: pathBytes)
            raw[pathBytes.count] = 0
        }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard result == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw ControlError.notRunning(path: path, reason: reason)
        }
        return fd
    }
}
