// The node's UDP socket (SwiftNIO): batched reads through recvmmsg (and UDP GRO where the kernel
// has it), writes flushed once per batch (sendmmsg), runs of equal-sized datagrams to one
// destination sent as one UDP GSO write, large socket buffers, and the bypass fwmark.
//
// `UDPTransport` is owned by the driver (NodeDriver) and only used on its event loop: it is not
// Sendable, so the compiler keeps it there.

import HostNetwork
import Logging
import NIOCore
import NIOPosix
import UmbraCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A bound socket, as `UDPTransport.bind` leaves it.
struct BoundSocket: Sendable {
    var channel: any Channel
    /// UDP GSO and GRO are on (Linux: UDP_SEGMENT, UDP_GRO).
    var offload: Bool
    /// The fwmark on the socket (SO_MARK, set when the process may: CAP_NET_ADMIN), nil if unmarked.
    var mark: UInt32?
}

/// One sealed datagram in a batch buffer.
struct SealedDatagram {
    var start: Int
    var length: Int
    var destination: Endpoint
}

final class UDPTransport {
    /// UDP GSO limits: segments per send (the kernel's UDP_MAX_SEGMENTS is 64 on older kernels)
    /// and bytes per send (an IP packet's payload).
    static let maximumSegments = 64
    static let maximumSegmentedBytes = 65_000

    let channel: any Channel
    let gsoEnabled: Bool
    let mark: UInt32?
    let localEndpoint: Endpoint?
    /// The last destination's socket address (building one allocates).
    private var addressCache: (endpoint: Endpoint, address: SocketAddress)?

    init(_ socket: BoundSocket) {
        channel = socket.channel
        gsoEnabled = socket.offload
        mark = socket.mark
        localEndpoint = socket.channel.localAddress?.endpoint
    }

    var allocator: ByteBufferAllocator { channel.allocator }

    /// Binds `host:port` on `eventLoop`; `handler` makes the inbound handler (on the loop).
    static func bind(
        host: String, port: Int, eventLoop: any EventLoop, logger: Logger,
        handler: @escaping @Sendable () -> any ChannelHandler & Sendable
    ) async throws -> BoundSocket {
        // UDP GRO (Linux ≥ 5.10): one receive may hold up to 64 KiB of datagrams glued together, so
        // each of the 16 messages of a recvmmsg gets 64 KiB. Without GRO: 64 messages of 4 KiB,
        // above any datagram the node sends.
        let offload = System.supportsUDPReceiveOffload && System.supportsUDPSegmentationOffload
        let messages = offload ? 16 : 64
        let bootstrap = DatagramBootstrap(group: eventLoop)
            .channelOption(.datagramVectorReadMessageCount, value: messages)
            .channelOption(
                .recvAllocator,
                value: FixedSizeRecvByteBufferAllocator(capacity: messages * (offload ? 65_536 : 4096))
            )
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(handler())
                }
            }
        let channel = try await bootstrap.bind(host: host, port: port).get()
        var offloadOn = false
        if offload {
            do {
                try await channel.setOption(.datagramReceiveOffload, value: true).get()
                try await channel.setOption(.datagramReceiveSegmentSize, value: true).get()
                offloadOn = true
            } catch {
                logger.notice(
                    "UDP GRO is not available; datagrams are read one by one", metadata: ["error": "\(error)"])
            }
        }
        // Large socket buffers: with the default ~208 KiB a burst overflows the receive queue
        // (DESIGN §5). The FORCE variants pass rmem_max when we may (CAP_NET_ADMIN); else ask politely.
        for (force, plain) in [(SO_RCVBUFFORCE, SO_RCVBUF), (SO_SNDBUFFORCE, SO_SNDBUF)] {
            let size: SocketOptionValue = 7 << 20
            do {
                try await channel.setOption(.socketOption(.init(rawValue: force)), value: size).get()
            } catch {
                try? await channel.setOption(.socketOption(.init(rawValue: plain)), value: size).get()
            }
        }
        // The bypass mark (ConsumerNetwork): only this socket's datagrams may leave outside a
        // consumer tunnel. Needs CAP_NET_ADMIN, as the tunnel itself does.
        var mark: UInt32?
        #if os(Linux)
        let value = SocketOptionValue(Int32(bitPattern: ConsumerNetwork.bypassMark))
        if (try? await channel.setOption(.socketOption(.init(rawValue: SO_MARK)), value: value).get()) != nil {
            mark = ConsumerNetwork.bypassMark
        }
        #endif
        return BoundSocket(channel: channel, offload: offloadOn, mark: mark)
    }

    /// Queues one datagram (sent at the next `flush`). With `promise`, learns when it was written.
    func send(_ bytes: [UInt8], to endpoint: Endpoint, promise: EventLoopPromise<Void>? = nil) {
        var buffer = channel.allocator.buffer(capacity: bytes.count)
        buffer.writeBytes(bytes)
        channel.write(AddressedEnvelope(remoteAddress: socketAddress(endpoint), data: buffer), promise: promise)
    }

    /// Queues the datagrams sealed into `buffer`. UDP GSO: a run of equal-sized datagrams to one
    /// destination (a TCP burst split into full-sized segments), with at most one shorter last one,
    /// leaves in one write; the kernel segments it (one pass through the UDP/IP stack per run
    /// instead of per datagram).
    func send(sealed datagrams: [SealedDatagram], in buffer: ByteBuffer) {
        var index = 0
        while index < datagrams.count {
            let first = datagrams[index]
            var end = index + 1
            var total = first.length
            if gsoEnabled {
                while end < datagrams.count, end - index < Self.maximumSegments,
                    datagrams[end].destination == first.destination,
                    datagrams[end].start == first.start + total,
                    datagrams[end].length <= first.length,
                    total + datagrams[end].length <= Self.maximumSegmentedBytes
                {
                    total += datagrams[end].length
                    end += 1
                    if datagrams[end - 1].length < first.length { break }
                }
            }
            if let slice = buffer.getSlice(at: first.start, length: total) {
                let metadata: AddressedEnvelope<ByteBuffer>.Metadata? =
                    end - index > 1
                    ? .init(ecnState: .transportNotCapable, packetInfo: nil, segmentSize: first.length) : nil
                channel.write(
                    AddressedEnvelope(remoteAddress: socketAddress(first.destination), data: slice, metadata: metadata),
                    promise: nil)
            }
            index = end
        }
    }

    func flush() { channel.flush() }

    private func socketAddress(_ endpoint: Endpoint) -> SocketAddress {
        if let cached = addressCache, cached.endpoint == endpoint { return cached.address }
        let address = SocketAddress(endpoint)
        addressCache = (endpoint, address)
        return address
    }
}

/// Feeds datagrams from the channel to the driver; flushes writes once per read batch. It runs on
/// the driver's event loop, which is the driver's executor, so it enters the driver's isolation
/// synchronously (checked at run time by `assumeIsolated`), with no hop.
final class DatagramHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    private let driver: NodeDriver

    init(driver: NodeDriver) { self.driver = driver }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        driver.assumeIsolated { $0.receive(envelope) }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        driver.assumeIsolated { $0.flush() }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // ICMP errors (port unreachable) surface here on Linux; the session timers handle them.
    }
}
