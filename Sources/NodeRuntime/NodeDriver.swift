// The driver: the real shell's interpreter of the pure node. It feeds NodeInstance its inputs
// (datagrams, packets from the TUN device, the timer, commands, storage and host completions) and
// carries out the effects it returns, through parts that each own one concern:
//   UDPTransport (UDPTransport.swift)     the socket: batched reads and writes, GSO/GRO, fwmark;
//   TunnelReader/Writer (TunnelPump.swift) the TUN device;
//   NodeStore (NodeStore.swift)            storage requests (SQLite, on its own queue);
//   HostNetworkHandler                     host requests (TunnelController: devices, routes, DNS),
//                                          performed one at a time in the order asked;
//   NodeEventLog                           events, as log lines.
//
// Isolation is checked by the compiler: the driver is an actor whose executor is its event loop
// (NIO's loops are serial executors). The API's calls hop onto the loop like any actor call; the
// socket's handler, the timer and the TUN reader's deliveries already run on the loop and enter
// the actor's isolation synchronously (`assumeIsolated`, which checks the thread at run time).

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

/// Performs the node's host requests (HostRequests.swift in Node).
public protocol HostNetworkHandler: Sendable {
    func perform(_ action: HostAction) async -> HostOutcome
}

public actor NodeDriver {
    public nonisolated let eventLoop: any EventLoop
    public nonisolated let clock: RuntimeClock
    private let logger: Logger
    private let events: NodeEventLog
    private var instance: NodeInstance
    private var rng = SecureRandomGenerator()
    private var transport: UDPTransport?
    private var timer: Scheduled<Void>?
    private var timerDeadline: Instant?
    /// Commands given to the node and not completed yet (`run`).
    private var pendingCommands: [CommandID: CheckedContinuation<CommandResult, any Error>] = [:]
    private var nextCommandID: UInt64 = 1
    /// While set, the datagrams sent are collected so a stop can wait until they left.
    private var sendsAwaited: [EventLoopFuture<Void>]?
    public private(set) var listenEndpoint: Endpoint?

    // Tunnel data plane (TunnelPump.swift).
    private var device: (any PacketDevice)?
    private var writer: TunnelWriter?
    private var reader: TunnelReader?
    /// One datagram is copied here and opened in place.
    private let scratch = ScratchBuffer(byteCount: 65_536)
    private var tunnelEffects: [NodeEffect] = []
    private var sealedDatagrams: [SealedDatagram] = []
    private var outBuffer: ByteBuffer?

    /// Performs the node's `.storage` requests (nil: the node must run with storage off).
    private let store: NodeStore?
    /// Performs the node's `.host` requests, one at a time (nil: each fails).
    private var hostHandler: (any HostNetworkHandler)?
    private let hostRequests: AsyncStream<HostRequest>.Continuation
    private let hostRequestStream: AsyncStream<HostRequest>

    public nonisolated var unownedExecutor: UnownedSerialExecutor {
        eventLoop.executor.asUnownedSerialExecutor()
    }

    public init(
        instance: NodeInstance, eventLoop: any EventLoop, logger: Logger, clock: RuntimeClock = RuntimeClock(),
        store: NodeStore? = nil
    ) {
        self.instance = instance
        self.eventLoop = eventLoop
        self.logger = logger
        self.events = NodeEventLog(logger: logger)
        self.clock = clock
        self.store = store
        (hostRequestStream, hostRequests) = AsyncStream.makeStream(of: HostRequest.self)
    }

    /// The fwmark on the UDP socket, nil if unmarked. The consumer tunnel's policy rules let only
    /// marked packets bypass the tunnel.
    public var socketMark: UInt32? { transport?.mark }

    /// Who performs host requests (the tunnel controller, created after the driver).
    public func setHostHandler(_ handler: any HostNetworkHandler) { hostHandler = handler }

    // MARK: - Life

    /// Binds the UDP socket, starts the node (it dials its bootstrap peers) and the host-request
    /// worker.
    public func start(host: String, port: Int) async throws {
        let socket = try await UDPTransport.bind(host: host, port: port, eventLoop: eventLoop, logger: logger) {
            [self] in DatagramHandler(driver: self)
        }
        let transport = UDPTransport(socket)
        self.transport = transport
        listenEndpoint = transport.localEndpoint
        apply(instance.start(now: clock.now, rng: &rng))
        flush()
        Task { [self, hostRequestStream] in
            for await request in hostRequestStream {
                let outcome = await performHostRequest(request.action)
                hostCompleted(request.token, outcome)
            }
        }
    }

    /// Closes the socket and cancels the timer. A provider first publishes the tombstone of its
    /// proposal; the datagrams carrying it are written before the socket closes.
    public func stop() async {
        guard let transport else { return }
        sendsAwaited = []
        apply(instance.endDialogues(now: clock.now, rng: &rng) + instance.withdraw(now: clock.now, rng: &rng))
        flush()
        let sent = sendsAwaited ?? []
        sendsAwaited = nil
        if !sent.isEmpty { _ = try? await EventLoopFuture.whenAllComplete(sent, on: eventLoop).get() }
        await detachDevice()
        timer?.cancel()
        timer = nil
        for continuation in pendingCommands.values { continuation.resume(throwing: ChannelError.ioOnClosedChannel) }
        pendingCommands.removeAll()
        hostRequests.finish()
        self.transport = nil
        let channel = transport.channel
        try? await channel.close()
        // Every write the node issued lands before the process exits.
        await store?.close()
    }

    // MARK: - Tunnel data plane

    /// Starts moving packets between `device` (a TUN device set up by the caller) and the node's
    /// sessions. A device attached before is detached first.
    public func attachDevice(_ device: any PacketDevice, mtu: Int) async {
        await detachDevice()
        let reader = TunnelReader(device: device, mtu: mtu)
        self.device = device
        self.writer = TunnelWriter(device: device)
        self.reader = reader
        reader.start { [self] batch in
            eventLoop.execute { [self] in
                assumeIsolated { $0.tunnelBatch(batch) }
                reader.finished(batch)
            }
        }
    }

    /// Stops the reader thread; packets from the network are no longer written anywhere.
    public func detachDevice() async {
        let reader = self.reader
        self.reader = nil
        device = nil
        writer = nil
        reader?.stop()
    }

    /// Packets read from the TUN device: sealed into one buffer, sent in GSO runs.
    private func tunnelBatch(_ batch: PacketBatch) {
        guard let transport, device != nil, batch.count > 0 else { return }
        let now = clock.now
        tunnelEffects.removeAll(keepingCapacity: true)
        // The previous batch's buffer, once NIO has sent its slices, is reused (no allocation).
        var out = outBuffer ?? transport.allocator.buffer(capacity: 0)
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
            if let destination {
                sealedDatagrams.append(
                    SealedDatagram(start: start, length: out.writerIndex - start, destination: destination))
            }
        }
        transport.send(sealed: sealedDatagrams, in: out)
        if !tunnelEffects.isEmpty { apply(tunnelEffects) }
        flush()
        outBuffer = out
    }

    // MARK: - Reading the node

    /// Runs `body` with the node state (for status queries).
    public func withInstance<T: Sendable>(_ body: (NodeInstance) -> T) -> T { body(instance) }

    /// Runs an action on the node state and performs the effects it returns (`body` gets the
    /// state, the current time and the RNG).
    public func perform<T: Sendable>(
        _ body: (inout NodeInstance, Instant, inout SecureRandomGenerator) -> (T, [NodeEffect])
    ) -> T {
        let (result, effects) = body(&instance, clock.now, &rng)
        apply(effects)
        flush()
        return result
    }

    public func snapshot() -> NodeSnapshot {
        NodeSnapshot(
            address: instance.identity.address, listen: listenEndpoint ?? NetworkDefaults.unspecified,
            startedAt: clock.startedAt, now: clock.now, sessionCounters: instance.sessions.counters,
            nodeCounters: instance.counters, peers: instance.peers, knownPeerCount: instance.sessions.peerCount,
            establishedPeerCount: instance.establishedPeerCount)
    }

    /// Adds a peer to keep connected and dials it.
    public func connect(_ target: DialTarget) {
        apply(instance.addDialTarget(target, now: clock.now, rng: &rng))
        flush()
    }

    // MARK: - Commands

    /// Gives the node a command and waits for its completion (`NodeEffect.completed`).
    public func run(_ command: NodeCommand) async throws -> CommandResult {
        guard transport != nil else { throw ChannelError.ioOnClosedChannel }
        let id = CommandID(nextCommandID)
        nextCommandID += 1
        return try await withCheckedThrowingContinuation { continuation in
            pendingCommands[id] = continuation
            apply(instance.submit(command, id: id, now: clock.now, rng: &rng))
            flush()
        }
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
        let result = try await run(.lookup(target, kind))
        guard case .lookup(let report) = result else { throw CommandFailed(result) }
        return report
    }

    /// Signs and stores a record of ours in the DHT and waits for the stores to be answered.
    public func publish(kind: SignedRecord.Kind, key: Key256, value: [UInt8]) async throws -> PutReport {
        let result = try await run(.publish(kind, key: key, value: value))
        guard case .put(let report) = result else { throw CommandFailed(result) }
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

    /// Closes the dialogue with `provider`; false if none was open.
    @discardableResult
    public func closeDialogue(with provider: PublicKey) async throws -> Bool {
        let result = try await run(.closeDialogue(provider))
        guard case .dialogueClosed(let existed) = result else { throw CommandFailed(result) }
        return existed
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

    // MARK: - Inputs on the event loop

    func receive(_ envelope: AddressedEnvelope<ByteBuffer>) {
        guard let source = envelope.remoteAddress.endpoint else { return }
        let count = envelope.data.readableBytes
        let scratch = self.scratch.bytes
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
        transport?.flush()
        armTimer()
    }

    private func fire() {
        timer = nil
        timerDeadline = nil
        apply(instance.tick(now: clock.now, rng: &rng))
        flush()
    }

    /// A storage request finished on the store's queue.
    private func storageCompleted(_ completion: StorageCompletion) {
        if case .failed(let reason) = completion.outcome {
            logger.error("a storage request failed", metadata: ["error": "\(reason)"])
        }
        guard transport != nil else { return }  // stopped: the node is gone
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

    private func performHostRequest(_ action: HostAction) async -> HostOutcome {
        guard let hostHandler else { return .failed("this node cannot change the host's network (no tunnel support)") }
        return await hostHandler.perform(action)
    }

    /// A host request was performed (by the worker started in `start`, in the order asked).
    private func hostCompleted(_ token: HostToken, _ outcome: HostOutcome) {
        if case .failed(let reason) = outcome {
            logger.error("a host change failed", metadata: ["token": "\(token)", "reason": "\(reason)"])
        }
        guard transport != nil else { return }
        apply(instance.hostCompleted(token, outcome, now: clock.now, rng: &rng))
        flush()
    }

    // MARK: - Effects

    private func apply(_ effects: [NodeEffect]) {
        guard let transport else { return }
        for effect in effects {
            switch effect {
            case .send(let bytes, let endpoint):
                if sendsAwaited != nil {
                    let promise = eventLoop.makePromise(of: Void.self)
                    sendsAwaited!.append(promise.futureResult)
                    transport.send(bytes, to: endpoint, promise: promise)
                } else {
                    transport.send(bytes, to: endpoint)
                }
            case .tunnelPacket(let packet):
                packet.withUnsafeBytes { writer?.write($0) }
            case .completed(let id, let result):
                pendingCommands.removeValue(forKey: id)?.resume(returning: result)
            case .event(let event):
                events.record(event)
            case .storage(let request):
                guard let store else {
                    logger.error("the node issued a storage request but runs without a store")
                    continue
                }
                store.submit(request) { [self] completion in
                    eventLoop.execute { [self] in assumeIsolated { $0.storageCompleted(completion) } }
                }
            case .host(let request):
                hostRequests.yield(request)
            }
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
        timer = eventLoop.scheduleTask(in: .nanoseconds(delay.nanosecondsClamped)) { [self] in
            assumeIsolated { $0.fire() }
        }
    }
}

/// Memory the driver owns for its life.
final class ScratchBuffer {
    let bytes: UnsafeMutableRawBufferPointer
    init(byteCount: Int) { bytes = .allocate(byteCount: byteCount, alignment: 16) }
    deinit { bytes.deallocate() }
}

public enum NetworkDefaults {
    public static let port: UInt16 = 4747
    public static let unspecified = Endpoint(address: .v4(0), port: 0)
}
