import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle

/// The node as a long-running `Service`: binds on `run()`, closes on graceful shutdown.
public struct NodeService: Service {
    public let host: NodeDriver
    public let listenHost: String
    public let listenPort: Int
    private let logger: Logger
    /// Undone at stop: the tunnel's host changes.
    private let tunnel: TunnelController?

    public init(host: NodeDriver, listenHost: String, listenPort: Int, logger: Logger, tunnel: TunnelController? = nil)
    {
        self.host = host
        self.listenHost = listenHost
        self.listenPort = listenPort
        self.logger = logger
        self.tunnel = tunnel
    }

    public func run() async throws {
        try await host.start(host: listenHost, port: listenPort)
        let endpoint = await host.snapshot().listen
        logger.info("listening", metadata: ["listen": "\(endpoint)"])
        // Wait for SIGTERM/SIGINT or `umbra down`, then close the socket.
        try? await gracefulShutdown()
        logger.info("shutting down")
        await tunnel?.stop()
        await host.stop()
    }
}
