// The real shell around NodeInstance: one UDP socket (SwiftNIO, batched reads via recvmmsg and
// batched writes flushed once per batch, which NIO turns into sendmmsg), one timer, and the CSPRNG.
//
// Threading: every method that touches `instance` runs on the channel's event loop. The control API
// reaches in through `withInstance`, which hops onto that loop; nothing else shares the state.
// Storage requests go to the `NodeStore` (SQLite on its own queue); their completions hop back
// onto the event loop and into the node (`storageCompleted`).

import Dialogue
import HostNetwork
import Kademlia
import Logging
import NIOCore
import NIOPosix
import Node
import Sessions
import UmbraCore
import UmbraCrypto

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A point-in-time copy of what the node knows, for the control API.
public struct NodeSnapshot: Sendable {
    public var address: NodeAddress
    public var listen: Endpoint
    public var startedAt: Instant
    public var now: Instant
    public var sessionCounters: SessionCounters
    public var nodeCounters: NodeCounters
    public var peers: [PeerStatus]
    public var knownPeerCount: Int
    public var establishedPeerCount: Int
}

public final class NodeHost: @unchecked Sendable {
    // @unchecked: all mutable state below is confined to `eventLoop` (asserted in debug builds).
    public let eventLoop: any EventLoop
    public let clock: RuntimeClock
    private let logger: Logger
    private var instance: NodeInstance
    private var rng = SecureRandomGenerator()
    private var channel: (any Channel)?
    private var timer: Scheduled<Void>?
    private var timerDeadline: Instant?
    /// Commands given to the node and not completed yet (`run`).
    private var pendingCommands: [CommandID: EventLoopPromise<CommandResult>] = [:]
    private var nextCommandID: UInt64 = 1
    public private(set) var listenEndpoint: Endpoint?
    /// The fwmark on the UDP socket (SO_MARK, set when the process may: CAP_NET_ADMIN), nil if
    /// unmarked. The consumer tunnel's policy rules let only marked packets bypass the tunnel.
    public private(set) var socketMark: UInt32?

    // Tunnel data plane (TunnelPump.swift).
    private var device: (any PacketDevice)?
    private var writer: TunnelWriter?
    private var reader: TunnelReader?
    /// One datagram is copied here and opened in place.
    private let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 65_536, alignment: 16)
    /// The last destination's socket address (building one allocates).
    private var addressCache: (endpoint: Endpoint, address: SocketAddress)?
    private var tunnelEffects: [NodeEffect] = []
    private var sealedDatagrams: [(start: Int, length: Int, destination: Endpoint)] = []
    private var outBuffer: ByteBuffer?
    /// UDP GSO and GRO are on (Linux: UDP_SEGMENT, UDP_GRO).
    private var gsoEnabled = false
    /// UDP GSO limits: segments per send (the kernel's UDP_MAX_SEGMENTS is 64 on older kernels)
    /// and bytes per send (an IP packet's payload).
    static let maximumSegments = 64
    static let maximumSegmentedBytes = 65_000

    /// Performs the node's `.storage` requests (nil: the node must run with storage off).
    private let store: NodeStore?

    public init(
        instance: NodeInstance, eventLoop: any EventLoop, logger: Logger, clock: RuntimeClock = RuntimeClock(),
        store: NodeStore? = nil
    ) {
        self.instance = instance
        self.eventLoop = eventLoop
        self.logger = logger
        self.clock = clock
        self.store = store
    }

    deinit { scratch.deallocate() }

    // MARK: - Tunnel data plane

    /// Starts moving packets between `device` (a TUN device set up by the caller) and the node's
    /// sessions. A device attached before is detached first.
    public func attachDevice(_ device: any PacketDevice, mtu: Int) async throws {
        await detachDevice()
        let reader = TunnelReader(device: device, mtu: mtu)
        try await eventLoop.submit { [self] in
            self.device = device
            self.writer = TunnelWriter(device: device)
            self.reader = reader
        }.get()
        reader.start { [self] batch in
            eventLoop.execute { [self] in
                tunnelBatch(batch)
                reader.finished(batch)
            }
        }
    }

    /// Stops the reader thread; packets from the network are no longer written anywhere.
    public func detachDevice() async {
        let reader: TunnelReader? = try? await eventLoop.submit { [self] in
            defer {
                self.reader = nil
                self.device = nil
                self.writer = nil
            }
            return self.reader
        }.get()
        reader?.stop()
    }

    /// Packets read from the TUN device (event loop).
    private func tunnelBatch(_ batch: PacketBatch) {
        eventLoop.assertInEventLoop()
        guard let channel, device != nil, batch.count > 0 else { return }
        let now = clock.now
        tunnelEffects.removeAll(keepingCapacity: true)
        // The previous batch's buffer, once NIO has sent its slices, is reused (no allocation).
        var out = outBuffer ?? channel.allocator.buffer(capacity: 0)
        outBuffer = nil
        out.clear(minimumCapacity: batch.count * (batch.slotSize + WireSize.transportMinimum))
        // Seal everything first, then slice: a slice taken earlier would share the storage and
        // make every later write copy the whole buffer (copy on write).
        sealedDatagrams.removeAll(keepingCapacity: true)
        for index in 0..<batch.count {
            let frame = batch.frame(index)
            let start = out.writerIndex
            var destination: Endpoint?
            out.writeWithUnsafeMutableBytes(minimumWritableBytes: frame.count + WireSize.transportMinimum) {
                output in
                guard
                    let sealed = instance.tunnelOutbound(
                        frame: frame, into: output, now: now, rng: &rng, effects: &tunnelEffects)
                else { return 0 }
                destination = sealed.endpoint
                return sealed.length
            }
            if let destination { sealedDatagrams.append((start, out.writerIndex - start, destination)) }
        }
        // UDP GSO: a run of equal-sized datagrams to one destination (a TCP burst split into
        // full-sized segments), with at most one shorter last one, leaves in one write; the kernel
        // segments it (one pass through the UDP/IP stack per run instead of per datagram).
        var index = 0
        while index < sealedDatagrams.count {
            let first = sealedDatagrams[index]
            var end = index + 1
            var total = first.length
            if gsoEnabled {
                while end < sealedDatagrams.count, end - index < Self.maximumSegments,
                    sealedDatagrams[end].destination == first.destination,
                    sealedDatagrams[end].start == first.start + total,
                    sealedDatagrams[end].length <= first.length,
                    total + sealedDatagrams[end].length <= Self.maximumSegmentedBytes
                {
                    total += sealedDatagrams[end].length
                    end += 1
                    if sealedDatagrams[end - 1].length < first.length { break }
                }
            }
            if let slice = out.getSlice(at: first.start, length: total) {
                let metadata: AddressedEnvelope<ByteBuffer>.Metadata? =
                    end - index > 1
                    ? .init(ecnState: .transportNotCapable, packetInfo: nil, segmentSize: first.length) : nil
                channel.write(
                    AddressedEnvelope(remoteAddress: socketAddress(first.destination), data: slice, metadata: metadata),
                    promise: nil)
            }
            index = end
        }
        if !tunnelEffects.isEmpty { apply(tunnelEffects) }
        flush()
        outBuffer = out
    }

    private func socketAddress(_ endpoint: Endpoint) -> SocketAddress {
        if let cached = addressCache, cached.endpoint == endpoint { return cached.address }
        let address = SocketAddress(endpoint)
        addressCache = (endpoint, address)
        return address
    }

    /// A storage request finished on the store's queue: hand it to the node on the event loop.
    private func storageCompleted(_ completion: StorageCompletion) {
        eventLoop.execute { [self] in
            if case .failed(let reason) = completion.outcome {
                logger.error("a storage request failed", metadata: ["error": "\(reason)"])
            }
            guard channel != nil else { return }  // stopped: the node is gone
            let wasReady = instance.storageIsReady
            apply(instance.storageCompleted(completion, now: clock.now, rng: &rng))
            flush()
            if !wasReady, instance.storageIsReady {
                let counters = instance.storageCounters
                logger.info(
                    "loaded the node store",
                    metadata: [
                        "records.restored": "\(counters.recordsRestored)",
                        "records.rejected": "\(counters.recordsRejected)",
                        "contacts": "\(counters.contactsLoaded)", "failures": "\(counters.failures)",
                    ])
            }
        }
    }

    /// Binds the UDP socket and dials the bootstrap peers.
    public func start(host: String, port: Int) async throws {
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
            .channelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(DatagramHandler(host: self))
                }
            }
        let channel = try await bootstrap.bind(host: host, port: port).get()
        if offload {
            do {
                try await channel.setOption(.datagramReceiveOffload, value: true).get()
                try await channel.setOption(.datagramReceiveSegmentSize, value: true).get()
                try await eventLoop.submit { [self] in gsoEnabled = true }.get()
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
        try await eventLoop.submit { [self, mark] in
            self.channel = channel
            self.socketMark = mark
            self.listenEndpoint = channel.localAddress?.endpoint
            let now = clock.now
            let effects = instance.start(now: now, rng: &rng)
            apply(effects)
            flush()
        }.get()
    }

    /// Closes the socket and cancels the timer. A provider first publishes the tombstone of its
    /// proposal and gives the datagrams a moment to leave.
    public func stop() async {
        let withdrew: Bool =
            (try? await eventLoop.submit { [self] in
                let effects =
                    instance.endDialogues(now: clock.now, rng: &rng) + instance.withdraw(now: clock.now, rng: &rng)
                apply(effects)
                flush()
                return !effects.isEmpty
            }.get()) ?? false
        if withdrew { try? await Task.sleep(for: .milliseconds(200)) }
        await detachDevice()
        let channel: (any Channel)? = try? await eventLoop.submit { [self] in
            timer?.cancel()
            timer = nil
            for promise in pendingCommands.values { promise.fail(ChannelError.ioOnClosedChannel) }
            pendingCommands.removeAll()
            defer { self.channel = nil }
            return self.channel
        }.get()
        try? await channel?.close()
        // Every write the node issued lands before the process exits.
        await store?.close()
    }

    /// Runs `body` on the event loop with the node state (for status queries and commands).
    public func withInstance<T: Sendable>(_ body: @escaping @Sendable (NodeInstance) -> T) async throws -> T {
        try await eventLoop.submit { [self] in body(instance) }.get()
    }

    /// Runs a command on the node state on the event loop and performs the effects it returns
    /// (`body` gets the state, the current time and the RNG).
    public func perform<T: Sendable>(
        _ body: @escaping @Sendable (inout NodeInstance, Instant, inout SecureRandomGenerator) -> (T, [NodeEffect])
    ) async throws -> T {
        try await eventLoop.submit { [self] in
            let (result, effects) = body(&instance, clock.now, &rng)
            apply(effects)
            flush()
            return result
        }.get()
    }

    public func snapshot() async throws -> NodeSnapshot {
        try await eventLoop.submit { [self] in
            NodeSnapshot(
                address: instance.identity.address, listen: listenEndpoint ?? NetworkDefaults.unspecified,
                startedAt: clock.startedAt, now: clock.now, sessionCounters: instance.sessions.counters,
                nodeCounters: instance.counters, peers: instance.peers, knownPeerCount: instance.sessions.peerCount,
                establishedPeerCount: instance.establishedPeerCount)
        }.get()
    }

    /// Adds a peer to keep connected and dials it.
    public func connect(_ target: DialTarget) async throws {
        try await eventLoop.submit { [self] in
            apply(instance.addDialTarget(target, now: clock.now, rng: &rng))
            flush()
        }.get()
    }

    /// Gives the node a command and waits for its completion (`NodeEffect.completed`).
    public func run(_ command: NodeCommand) async throws -> CommandResult {
        let future: EventLoopFuture<CommandResult> = try await eventLoop.submit { [self] in
            let id = CommandID(nextCommandID)
            nextCommandID += 1
            let promise = eventLoop.makePromise(of: CommandResult.self)
            pendingCommands[id] = promise
            apply(instance.submit(command, id: id, now: clock.now, rng: &rng))
            flush()
            return promise.futureResult
        }.get()
        return try await future.get()
    }

    /// Pings a known peer and waits for the pong (or the timeout).
    public func ping(_ peer: PublicKey, timeout: Duration) async throws -> Duration {
        switch try await run(.ping(peer, timeout: timeout)) {
        case .pong(let rtt): return rtt
        case .failed(.timedOut): throw PingTimeout()
        case let other: throw CommandFailed(other)
        }
    }

    /// Runs a DHT lookup and waits for its report.
    public func lookup(_ target: Key256, kind: LookupKind) async throws -> LookupReport {
        guard case .lookup(let report) = try await run(.lookup(target, kind)) else {
            throw CommandFailed(.failed(.timedOut))
        }
        return report
    }

    /// Signs and stores a record of ours in the DHT and waits for the stores to be answered.
    public func publish(kind: SignedRecord.Kind, key: Key256, value: [UInt8]) async throws -> PutReport {
        guard case .put(let report) = try await run(.publish(kind, key: key, value: value)) else {
            throw CommandFailed(.failed(.timedOut))
        }
        return report
    }

    /// Finds providers of `serviceType` in `country` through the DHT's provider index and fetches
    /// the offers of those this node does not hold yet (`NodeCommand.discoverProviders`).
    /// Returns (providers indexed, offers fetched).
    public func discoverProviders(serviceType: String, country: String) async throws -> (indexed: Int, fetched: Int) {
        let result = try await run(.discoverProviders(serviceType: serviceType, country: country))
        guard case .providersDiscovered(let indexed, let fetched) = result else { throw CommandFailed(result) }
        return (indexed, fetched)
    }

    /// Fetches `provider`'s offer of `serviceType` straight from the provider
    /// (`NodeCommand.fetchProposal`); true once the offer is held.
    public func fetchProposal(of provider: PublicKey, serviceType: String) async throws -> Bool {
        let result = try await run(.fetchProposal(provider: provider, serviceType: serviceType))
        guard case .proposalFetched(let held) = result else { throw CommandFailed(result) }
        return held
    }

    /// Reaches a provider and opens a dialogue with it, waiting for the accept (or the reject, or
    /// the client's timeout).
    public func openDialogue(_ request: DialogueRequest) async throws -> ClientSession {
        switch try await run(.openDialogue(request)) {
        case .dialogueOpened(let session): return session
        case .failed(.dialogue(let failure)): throw DialogueFailed(failure: failure)
        case let other: throw CommandFailed(other)
        }
    }

    /// Closes the dialogue with `provider`.
    public func closeDialogue(with provider: PublicKey) async throws {
        try await eventLoop.submit { [self] in
            apply(instance.closeDialogue(with: provider, now: clock.now, rng: &rng))
            flush()
        }.get()
    }

    public struct DialogueFailed: Error, CustomStringConvertible {
        public var failure: DialogueFailure
        public var description: String { "\(failure)" }
    }

    public struct PingTimeout: Error, CustomStringConvertible {
        public var description: String { "no pong within the timeout" }
    }

    /// A command ended other than the caller expected.
    public struct CommandFailed: Error, CustomStringConvertible {
        public var result: CommandResult
        public init(_ result: CommandResult) { self.result = result }
        public var description: String {
            if case .failed(let failure) = result { "\(failure)" } else { "unexpected result \(result)" }
        }
    }

    // MARK: - Event loop side

    func receive(_ envelope: AddressedEnvelope<ByteBuffer>) {
        eventLoop.assertInEventLoop()
        guard let source = envelope.remoteAddress.endpoint else { return }
        let count = envelope.data.readableBytes
        guard count <= scratch.count else { return }
        envelope.data.withUnsafeReadableBytes { scratch.copyMemory(from: $0) }
        // UDP GRO: the kernel may hand over several datagrams from one source glued together, each
        // `segmentSize` long but the last.
        let segment = envelope.metadata?.segmentSize.flatMap { $0 > 0 ? $0 : nil } ?? count
        let writer = self.writer
        let now = clock.now
        var offset = 0
        repeat {  // at least once: an empty datagram is counted (and dropped) too
            let length = min(segment, count - offset)
            let datagram = UnsafeMutableRawBufferPointer(rebasing: scratch[offset..<(offset + length)])
            let effects = instance.receive(datagram: datagram, from: source, now: now, rng: &rng) { packet in
                writer?.write(packet)
            }
            if !effects.isEmpty { apply(effects) }
            offset += length
        } while offset < count
    }

    func flush() {
        writer?.flush()
        channel?.flush()
        armTimer()
    }

    private func fire() {
        eventLoop.assertInEventLoop()
        timer = nil
        timerDeadline = nil
        let effects = instance.tick(now: clock.now, rng: &rng)
        apply(effects)
        flush()
    }

    private func apply(_ effects: [NodeEffect]) {
        guard let channel else { return }
        for effect in effects {
            switch effect {
            case .send(let bytes, let endpoint):
                var buffer = channel.allocator.buffer(capacity: bytes.count)
                buffer.writeBytes(bytes)
                channel.write(AddressedEnvelope(remoteAddress: socketAddress(endpoint), data: buffer), promise: nil)
            case .tunnelPacket(let packet):
                packet.withUnsafeBytes { writer?.write($0) }
            case .completed(let id, let result):
                pendingCommands.removeValue(forKey: id)?.succeed(result)
            case .event(let event):
                log(event)
            case .storage(let request):
                guard let store else {
                    logger.error("the node issued a storage request but runs without a store")
                    continue
                }
                store.submit(request) { [self] completion in storageCompleted(completion) }
            }
        }
    }

    private func log(_ event: NodeEvent) {
        switch event {
        case .peerUp(let key, let endpoint):
            logger.info("peer up", metadata: ["peer.address": "\(key)", "peer.endpoint": "\(endpoint)"])
        case .peerDown(let key):
            logger.info("peer down", metadata: ["peer.address": "\(key)"])
        case .peerUnreachable(let key):
            logger.info("peer unreachable", metadata: ["peer.address": "\(key)"])
        case .endpointChanged(let key, let endpoint):
            logger.info("peer roamed", metadata: ["peer.address": "\(key)", "peer.endpoint": "\(endpoint)"])
        case .pong(_, _, let rtt):
            logger.trace("pong", metadata: ["rtt.us": "\(rtt.nanosecondsClamped / 1000)"])
        case .frameRejected(let key, let reason):
            logger.debug("frame rejected", metadata: ["peer.address": "\(key)", "reason": "\(reason)"])
        case .lookupFinished(let report):
            logger.debug("lookup finished", metadata: ["target": "\(report.target)", "found": "\(report.found)"])
        case .putFinished(let report):
            logger.debug("put finished", metadata: ["key": "\(report.key)", "stored": "\(report.stored)"])
        case .observedAddress(let endpoint, let reporter):
            logger.trace("observed address", metadata: ["endpoint": "\(endpoint)", "peer.address": "\(reporter)"])
        case .dialogue(let dialogueEvent):
            logger.info("dialogue", metadata: ["event": "\(dialogueEvent)"])
        }
    }

    private func armTimer() {
        guard let deadline = instance.nextDeadline else {
            timer?.cancel()
            timer = nil
            timerDeadline = nil
            return
        }
        if let armed = timerDeadline, armed <= deadline, timer != nil { return }
        timer?.cancel()
        let now = clock.now
        let delay = TimerRule.fireTime(for: deadline, now: now).since(now)
        timerDeadline = deadline
        timer = eventLoop.scheduleTask(in: .nanoseconds(delay.nanosecondsClamped)) { [self] in fire() }
    }
}

/// Feeds datagrams from the channel to the host; flushes writes once per read batch.
final class DatagramHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    private let host: NodeHost

    init(host: NodeHost) { self.host = host }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        host.receive(unwrapInboundIn(data))
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        host.flush()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // ICMP errors (port unreachable) surface here on Linux; the session timers handle them.
    }
}

public enum NetworkDefaults {
    public static let port: UInt16 = 4747
    public static let unspecified = Endpoint(address: .v4(0), port: 0)
}
