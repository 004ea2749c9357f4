// The local control API: HTTP/1.1 + JSON over a unix socket in the data dir (mode 0600), so only
// the node's own user can talk to it (docs/api.md). No TCP listener, no passwords.

import Foundation
import Kademlia
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NodeRuntime
import ServiceLifecycle
import UmbraCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A request the router understands.
public struct APIRequest: Sendable {
    public var method: HTTPMethod
    public var path: String
    public var query: [String: String]
}

/// A response: status and a JSON body.
public struct APIResponse: Sendable {
    public var status: HTTPResponseStatus
    public var body: [UInt8]
}

/// Maps requests to the node.
public struct ControlRouter: Sendable {
    public let host: NodeDriver
    /// Called by `POST /v1/shutdown`.
    public let requestShutdown: @Sendable () -> Void
    /// The host side of the tunnel (nil: `umbra connect` is refused).
    public let tunnel: TunnelController?

    public init(
        host: NodeDriver, tunnel: TunnelController? = nil, requestShutdown: @escaping @Sendable () -> Void
    ) {
        self.host = host
        self.tunnel = tunnel
        self.requestShutdown = requestShutdown
    }

    public func handle(_ request: APIRequest) async -> APIResponse {
        do {
            if let response = try await relayRoute(request) { return response }
            if let response = try await tunnelRoute(request) { return response }
            if let response = try await ledgerRoute(request) { return response }
            switch (request.method, request.path) {
            case (.GET, "/v1/status"):
                var report = StatusReport(await host.snapshot())
                report.relay = try await relayReport()
                report.tunnel = try await tunnelReport(connectMs: nil)
                return try json(report)
            case (.GET, "/v1/peers"):
                let snapshot = await host.snapshot()
                return try json(PeersReport(peers: snapshot.peers.map { PeerReport($0, now: snapshot.now) }))
            case (.GET, "/v1/dht"):
                // Built on the event loop: a copy of the DHT taken out would make the loop copy the
                // whole table and record store at its next write.
                return try json(await host.withInstance { DHTStatusReport($0.dht) })
            case (.GET, "/v1/dht/lookup"):
                guard let text = request.query["target"], let target = Self.parseTarget(text) else {
                    return try json(
                        ErrorReport(error: "target must be a node address (umbra1…) or 64 hex digits"),
                        status: .badRequest)
                }
                let report = try await host.lookup(target, kind: .node)
                return try json(LookupResultReport(report, now: host.clock.now))
            case (.GET, "/v1/dht/get"):
                guard let name = request.query["key"], !name.isEmpty, name.utf8.count <= TextRecordValue.maximumName
                else {
                    return try json(
                        ErrorReport(error: "key must be 1 to \(TextRecordValue.maximumName) bytes"), status: .badRequest
                    )
                }
                let report = try await host.lookup(RecordKey.text(name), kind: .value)
                return try json(LookupResultReport(report, now: host.clock.now))
            case (.POST, "/v1/dht/put"):
                guard let name = request.query["key"], let text = request.query["value"],
                    let value = try? TextRecordValue(name: name, text: text)
                else {
                    return try json(
                        ErrorReport(
                            error: "put needs key (1 to \(TextRecordValue.maximumName) bytes) and value (text, at most "
                                + "\(TextRecordValue.maximumText) bytes)"), status: .badRequest)
                }
                let report = try await host.publish(kind: .text, key: RecordKey.text(name), value: value.encoded())
                return try json(PutResultReport(report))
            case (.GET, "/v1/proposals"):
                let (report, problem) = try await proposals(request.query)
                guard let report else {
                    return try json(ErrorReport(error: problem ?? "bad query"), status: .badRequest)
                }
                return try json(report)
            case (.GET, "/v1/market"):
                let now = host.clock.now
                return try json(MarketReport(await host.withInstance { $0.marketStatus }, now: now))
            case (.POST, "/v1/sessions"):
                let (report, problem) = try await openSession(request.query)
                guard let report else {
                    return try json(ErrorReport(error: problem ?? "bad request"), status: .badRequest)
                }
                return try json(report)
            case (.GET, "/v1/sessions"):
                return try json(try await sessionsReport())
            case (.POST, "/v1/sessions/close"):
                guard let text = request.query["provider"], let provider = try? NodeAddress(parsing: text).publicKey
                else {
                    return try json(
                        ErrorReport(error: "provider must be a node address (umbra1…)"), status: .badRequest)
                }
                let existed = try await host.closeDialogue(with: provider)
                return try json(["status": existed ? "closed" : "no session was open"])
            case (.POST, "/v1/shutdown"):
                requestShutdown()
                return try json(["status": "shutting down"])
            case (_, "/v1/status"), (_, "/v1/peers"), (_, "/v1/shutdown"), (_, "/v1/dht"), (_, "/v1/dht/lookup"),
                (_, "/v1/dht/get"), (_, "/v1/dht/put"), (_, "/v1/proposals"), (_, "/v1/market"),
                (_, "/v1/sessions"), (_, "/v1/sessions/close"):
                return try json(
                    ErrorReport(error: "method \(request.method) not allowed on \(request.path)"),
                    status: .methodNotAllowed)
            default:
                return try json(
                    ErrorReport(error: "no such endpoint: \(request.path) (see docs/api.md)"),
                    status: .notFound)
            }
        } catch {
            return (try? json(ErrorReport(error: "\(error)"), status: .internalServerError))
                ?? APIResponse(status: .internalServerError, body: [])
        }
    }

    /// A lookup target: a node address (its node id is looked up) or a 256-bit key in hex.
    static func parseTarget(_ text: String) -> Key256? {
        if let address = try? NodeAddress(parsing: text) { return address.publicKey.nodeID }
        return Key256(hex: text)
    }

    private func json(_ value: some Encodable, status: HTTPResponseStatus = .ok) throws -> APIResponse {
        APIResponse(status: status, body: Array(try ControlJSON.encoder.encode(value)))
    }
}

public enum ControlJSON {
    public static var encoder: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        return encoder
    }

    public static var decoder: JSONDecoder {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return decoder
    }
}

enum DataDirectoryPath {
    static func parent(of file: String) -> String {
        guard let slash = file.lastIndex(of: "/") else { return "." }
        return slash == file.startIndex ? "/" : String(file[..<slash])
    }
}

/// Serves the control API on a unix socket for as long as the service group runs. Only root and
/// the data dir's owner may talk to it (SO_PEERCRED), on top of the socket's 0600 mode.
public struct ControlService: Service {
    public let socketPath: String
    public let router: ControlRouter
    private let logger: Logger
    private let group: any EventLoopGroup

    public init(socketPath: String, router: ControlRouter, group: any EventLoopGroup, logger: Logger) {
        self.socketPath = socketPath
        self.router = router
        self.group = group
        self.logger = logger
    }

    public func run() async throws {
        try Self.removeStaleSocket(socketPath)
        let router = self.router
        let directoryOwner = Self.owner(of: DataDirectoryPath.parent(of: socketPath))
        let logger = self.logger
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 16)
            .childChannelInitializer { channel in
                // Mode bits are not the only guard: the peer's credentials (SO_PEERCRED) must be
                // root's or the data dir owner's, whatever the socket's or directory's mode became.
                Self.peerUID(of: channel).flatMap { uid in
                    guard let uid, Self.mayControl(peerUID: uid, directoryOwner: directoryOwner) else {
                        logger.warning(
                            "refused a control connection",
                            metadata: ["peer.uid": "\(uid.map { "\($0)" } ?? "unknown")"])
                        return channel.close()
                    }
                    return channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                        try channel.pipeline.syncOperations.addHandler(ControlHTTPHandler(router: router))
                    }
                }
            }
        // The socket is created by bind(); a restrictive umask means it is never briefly open to others.
        let previous = umask(0o177)
        let channel: any Channel
        do {
            channel = try await bootstrap.bind(unixDomainSocketPath: socketPath).get()
            umask(previous)
        } catch {
            umask(previous)
            throw error
        }
        chmod(socketPath, 0o600)
        logger.info("control API listening", metadata: ["socket": "\(socketPath)"])
        try? await gracefulShutdown()
        try? await channel.close()
        unlink(socketPath)
    }

    /// Who may use the control API: root, and the owner of the data dir (nil owner: root only).
    public static func mayControl(peerUID: UInt32, directoryOwner: UInt32?) -> Bool {
        peerUID == 0 || peerUID == directoryOwner
    }

    static func owner(of path: String) -> UInt32? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return UInt32(info.st_uid)
    }

    /// The connected peer's uid (SO_PEERCRED), nil if the kernel does not say.
    static func peerUID(of channel: any Channel) -> EventLoopFuture<UInt32?> {
        #if os(Linux)
        guard let provider = channel as? any SocketOptionProvider else {
            return channel.eventLoop.makeSucceededFuture(nil)
        }
        let credentials: EventLoopFuture<PeerCredentials> = provider.unsafeGetSocketOption(
            level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(SO_PEERCRED))
        return credentials.map { credentials -> UInt32? in credentials.uid }.recover { _ -> UInt32? in nil }
        #else
        return channel.eventLoop.makeSucceededFuture(nil)
        #endif
    }

    /// `struct ucred` (Linux), which Swift's Glibc module leaves out (it is behind _GNU_SOURCE).
    struct PeerCredentials: Sendable {
        var pid: Int32 = 0
        var uid: UInt32 = 0
        var gid: UInt32 = 0
    }

    /// A socket file nobody listens on (left by a crash) is removed; a live one is an error.
    static func removeStaleSocket(_ path: String) throws {
        guard access(path, F_OK) == 0 else { return }
        if ControlClient.isListening(path) {
            throw ControlError.alreadyRunning(path: path)
        }
        unlink(path)
    }
}

public enum ControlError: Error, CustomStringConvertible {
    case alreadyRunning(path: String)
    case notRunning(path: String, reason: String)
    case badResponse(String)
    case server(status: Int, message: String)

    public var description: String {
        switch self {
        case .alreadyRunning(let path):
            "another node is already running with this data dir (its control socket \(path) answers); "
                + "stop it with `umbra down` or use another --data-dir"
        case .notRunning(let path, let reason):
            "no node is running with this data dir (cannot connect to \(path): \(reason)); start one with `umbra up`"
        case .badResponse(let detail): "the node sent an unreadable answer: \(detail)"
        case .server(let status, let message): "the node answered \(status): \(message)"
        }
    }
}

final class ControlHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let router: ControlRouter
    private var head: HTTPRequestHead?
    private var bodySize = 0

    init(router: ControlRouter) { self.router = router }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            bodySize = 0
        case .body(let buffer):
            bodySize += buffer.readableBytes
            if bodySize > 64 * 1024 { context.close(promise: nil) }  // bounded: no endpoint takes a body yet
        case .end:
            guard let head else { return }
            self.head = nil
            let (path, query) = Self.split(head.uri)
            let request = APIRequest(method: head.method, path: path, query: query)
            let router = self.router
            let keepAlive = head.isKeepAlive
            let version = head.version
            let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
            context.eventLoop.makeFutureWithTask { await router.handle(request) }.whenSuccess { response in
                let context = bound.value
                var headers = HTTPHeaders()
                headers.add(name: "Content-Type", value: "application/json")
                headers.add(name: "Content-Length", value: String(response.body.count))
                headers.add(name: "Connection", value: keepAlive ? "keep-alive" : "close")
                context.write(
                    NIOAny(
                        HTTPServerResponsePart.head(
                            HTTPResponseHead(
                                version: version, status: response.status,
                                headers: headers))), promise: nil)
                var buffer = context.channel.allocator.buffer(capacity: response.body.count)
                buffer.writeBytes(response.body)
                context.write(NIOAny(HTTPServerResponsePart.body(.byteBuffer(buffer))), promise: nil)
                context.writeAndFlush(NIOAny(HTTPServerResponsePart.end(nil))).whenComplete { _ in
                    if !keepAlive { bound.value.close(promise: nil) }
                }
            }
        }
    }

    static func split(_ uri: String) -> (String, [String: String]) {
        guard let mark = uri.firstIndex(of: "?") else { return (uri, [:]) }
        var query: [String: String] = [:]
        for pair in uri[uri.index(after: mark)...].split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1)
            let key = String(parts[0]).removingPercentEncoding ?? String(parts[0])
            let value = parts.count > 1 ? (String(parts[1]).removingPercentEncoding ?? String(parts[1])) : ""
            query[key] = value
        }
        return (String(uri[..<mark]), query)
    }
}
