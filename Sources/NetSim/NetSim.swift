// NetSim: the deterministic shell. It interprets the very same NodeInstance the real runtime does,
// over virtual time and simulated links (latency, loss, partitions, NAT boxes), all driven by one
// seeded RNG. Same seed, same trace: a failing run replays exactly.
//
// Disks (SimDisk.swift): a node whose config has `storage.isEnabled` gets a simulated disk that
// answers its `.storage` requests after a seeded latency. The disk outlives the node: `restart`
// of a running node lets queued writes land first (a clean shutdown); `kill` loses or tears the
// writes in flight (a crash); a restarted node loads from what is on its disk.
//
// Links (Links.swift, shared with DHTSim and GossipSim): a datagram is lost with `lossRate`; else it
// takes its directed pair's stable one-way base latency (drawn uniformly from [minimumLatency,
// maximumLatency] on first use, each direction on its own) plus jitter in [0, jitter × base); a
// directed pair delivers in order (FIFO, like UDP over one path) unless `reordering` is set.
// Partitions and NAT filtering are checked here first, and cost no random draw.
//
// NAT boxes (`addNode(…, nat:)`): a node behind one has a LAN endpoint nobody can reach; what it
// sends leaves from a mapping on its box's public address 198.19.0.N (`NATKind.endpointIndependent`:
// one port for every destination; `.symmetric`: a fresh port per destination), and a datagram to a
// mapping gets in only from a remote endpoint the node has sent to through it (address-and-port
// dependent filtering, like Linux masquerade). No hairpinning, mappings never expire.

import Node
import UmbraCore

/// One line of the simulation trace.
public struct TraceEntry: Sendable, Equatable, CustomStringConvertible {
    public var time: Instant
    public var node: Int
    public var event: NodeEvent

    public var description: String { "\(time) node\(node) \(event)" }
}

/// Counters of the simulated network.
public struct NetSimStatistics: Sendable, Equatable {
    public var datagramsSent: UInt64 = 0
    public var datagramsDelivered: UInt64 = 0
    public var datagramsLost: UInt64 = 0
    public var datagramsPartitioned: UInt64 = 0
    public var datagramsToNowhere: UInt64 = 0
    /// Datagrams a NAT box dropped (no mapping, or from a remote the mapping was not opened to).
    public var datagramsFiltered: UInt64 = 0
    public var eventsProcessed: UInt64 = 0
}

/// The NAT box in front of a simulated node.
public enum NATKind: Sendable, Equatable {
    /// Endpoint-independent mapping (one external port per inner socket), port-restricted filtering.
    case endpointIndependent
    /// Endpoint-dependent mapping (a new external port per destination), port-restricted filtering.
    case symmetric
}

public struct NetSim {
    private enum Event {
        case deliver(datagram: [UInt8], from: Endpoint, to: Int)
        case timer(node: Int, generation: UInt64)
        case storage(node: Int, incarnation: UInt64)
        case host(node: Int, incarnation: UInt64, HostToken)
    }

    private struct SimNode {
        var instance: NodeInstance
        var endpoint: Endpoint
        var nat: NATBox?
        var isUp = true
        var armedDeadline: UInt64?
        var timerGeneration: UInt64 = 0
        /// IP packets the node wrote to its (virtual) TUN device, oldest first, at most
        /// `tunnelPacketLimit`.
        var tunnelWritten: [[UInt8]] = []
        /// Commands completed on this node (`submit`), by id.
        var completions: [CommandID: CommandResult] = [:]
        /// The node's disk (nil: the node does not persist), and which life of the node its
        /// queued requests belong to.
        var disk: SimDisk?
        var incarnation: UInt64 = 0
        /// The host changes the node asked for, oldest first, as its simulated host performed them.
        var hostLog: [HostRequest] = []
        /// Set: the node's host fails every request with this reason (no CAP_NET_ADMIN, say).
        var hostFailure: String?
    }

    /// Packets kept per node's virtual TUN device.
    public var tunnelPacketLimit = 10_000

    public private(set) var now = Instant.zero
    public private(set) var trace: [TraceEntry] = []
    public private(set) var statistics = NetSimStatistics()
    public private(set) var diskStatistics = DiskStatistics()
    /// How the nodes' simulated disks behave.
    public var disk = DiskModel()
    /// The links' parameters (Links.swift); a change applies to datagrams sent from then on.
    public var link: LinkModel {
        get { links.model }
        set { links.model = newValue }
    }
    /// Keep at most this many trace entries (the oldest are dropped first).
    public var traceLimit = 1_000_000
    /// How long a node's simulated host takes to answer a host request (HostRequests.swift).
    public var hostLatency: Duration = .milliseconds(30)

    private var rng: SeededRandom
    private var nodes: [SimNode] = []
    private var byEndpoint: [Endpoint: Int] = [:]
    private var queue = EventQueue<Event>()
    private var partitions: Set<Pair> = []
    private var links: SimLinks

    /// A NAT box: mappings (external port -> the remote endpoints let in) and the ports in use.
    private struct NATBox {
        var kind: NATKind
        var address: IPAddress
        var portFor: [Endpoint: UInt16] = [:]
        var allowed: [UInt16: Set<Endpoint>] = [:]
        var nextPort: UInt16 = 20000

        /// The external endpoint a datagram to `destination` leaves from (mapping it if new).
        mutating func map(to destination: Endpoint) -> Endpoint {
            let key = kind == .endpointIndependent ? Endpoint(address: .v4(0), port: 0) : destination
            let port: UInt16
            if let known = portFor[key] {
                port = known
            } else {
                port = kind == .endpointIndependent ? 4747 : nextPort
                if kind == .symmetric { nextPort &+= 1 }
                portFor[key] = port
            }
            allowed[port, default: []].insert(destination)
            return Endpoint(address: address, port: port)
        }
    }

    private var natByAddress: [IPAddress: Int] = [:]

    /// Called for every node event, after it is traced (tests hook pongs and the like here).
    public var observer: ((Int, NodeEvent) -> Void)?

    private struct Pair: Hashable {
        let a: Int
        let b: Int
        init(_ x: Int, _ y: Int) { (a, b) = x < y ? (x, y) : (y, x) }
    }

    public init(seed: UInt64, link: LinkModel = LinkModel()) {
        self.rng = SeededRandom(seed: seed)
        self.links = SimLinks(model: link)
    }

    // MARK: - Building the network

    /// A simulated address for node `index`: 10.x.y.z:4747 (never sent anywhere: it is virtual).
    public static func endpoint(forNode index: Int) -> Endpoint {
        Endpoint(address: .v4(0x0A00_0000 | UInt32(index + 1)), port: 4747)
    }

    /// The public address of the NAT box in front of node `index`: 198.19.0.(index + 1).
    public static func natAddress(forNode index: Int) -> IPAddress { .v4(0xC613_0000 | UInt32(index + 1)) }

    /// Adds a node; it starts (dials its bootstrap list) at the current virtual time. Behind a NAT
    /// box (`nat`), its own endpoint is a LAN address that only the box can reach.
    @discardableResult
    public mutating func addNode(identity: Identity, config: NodeConfig, nat: NATKind? = nil) -> Int {
        let index = nodes.count
        let endpoint = Self.endpoint(forNode: index)
        var config = config
        if config.advertisedEndpoints.isEmpty { config.advertisedEndpoints = [endpoint] }
        // Its socket's own address, as the real shell reads it from the interfaces.
        if config.relay.interfaceEndpoints.isEmpty { config.relay.interfaceEndpoints = [endpoint] }
        let instance = NodeInstance(identity: identity, config: config, now: now, rng: &rng)
        let box = nat.map { NATBox(kind: $0, address: Self.natAddress(forNode: index)) }
        nodes.append(
            SimNode(instance: instance, endpoint: endpoint, nat: box, disk: config.storage.isEnabled ? SimDisk() : nil))
        if box != nil {
            natByAddress[Self.natAddress(forNode: index)] = index
        } else {
            byEndpoint[endpoint] = index
        }
        let effects = nodes[index].instance.start(now: now, rng: &rng)
        apply(effects, from: index)
        return index
    }

    public var nodeCount: Int { nodes.count }

    public func instance(_ index: Int) -> NodeInstance { nodes[index].instance }

    public func endpoint(of index: Int) -> Endpoint { nodes[index].endpoint }

    /// What node `index` has on its simulated disk (empty for a node without one).
    public func diskImage(of index: Int) -> StorageImage { nodes[index].disk?.image ?? StorageImage() }

    /// The storage requests node `index` issued that its disk has not completed, oldest first.
    public func storageInFlight(of index: Int) -> [StorageRequest] { nodes[index].disk?.queue.map(\.request) ?? [] }

    /// Stops a node as a crash does: it receives nothing, its timers no longer fire, and the writes
    /// in flight on its disk are lost or torn (SimDisk.swift).
    public mutating func kill(_ index: Int) {
        if nodes[index].isUp { nodes[index].disk?.crash(model: disk, statistics: &diskStatistics, rng: &rng) }
        nodes[index].incarnation += 1
        nodes[index].isUp = false
        nodes[index].timerGeneration += 1
        nodes[index].armedDeadline = nil
    }

    /// Cuts (or restores) the link between two nodes in both directions.
    public mutating func partition(_ a: Int, _ b: Int, cut: Bool = true) {
        if cut { partitions.insert(Pair(a, b)) } else { partitions.remove(Pair(a, b)) }
    }

    /// Lets a node act now, from outside (like the control API does in the real runtime).
    public mutating func perform(
        on index: Int, _ body: (inout NodeInstance, Instant, inout SeededRandom) -> [NodeEffect]
    ) {
        let effects = body(&nodes[index].instance, now, &rng)
        apply(effects, from: index)
    }

    // MARK: - Tunnel data plane

    /// A packet the node's TUN device "read": it goes through the node's data plane as in the
    /// runtime (sealed straight into a datagram on a direct path, else the frame path).
    public mutating func tunnelRead(_ packet: [UInt8], at index: Int) {
        guard nodes[index].isUp else { return }
        let frame = [FrameChannel.tunnel.rawValue] + packet
        var output = [UInt8](repeating: 0, count: frame.count + 64)
        var effects: [NodeEffect] = []
        let sealed = frame.withUnsafeBytes { frameBytes in
            output.withUnsafeMutableBytes { out in
                nodes[index].instance.tunnelOutbound(
                    frame: frameBytes, into: out, now: now, rng: &rng, effects: &effects)
            }
        }
        if let sealed { effects.insert(.send(Array(output.prefix(sealed.length)), to: sealed.endpoint), at: 0) }
        apply(effects, from: index)
    }

    /// What the node wrote to its TUN device so far.
    public func tunnelPackets(of index: Int) -> [[UInt8]] { nodes[index].tunnelWritten }

    /// Gives node `index` a command (`NodeInstance.submit`); its result shows in `completion`.
    public mutating func submit(_ command: NodeCommand, id: CommandID, on index: Int) {
        perform(on: index) { node, now, rng in node.submit(command, id: id, now: now, rng: &rng) }
    }

    /// How command `id` on node `index` ended (nil: still in flight, or never given).
    public func completion(of id: CommandID, on index: Int) -> CommandResult? { nodes[index].completions[id] }

    public mutating func clearTunnelPackets(of index: Int) { nodes[index].tunnelWritten.removeAll() }

    /// The host requests node `index` issued, oldest first (answered or not).
    public func hostRequests(of index: Int) -> [HostRequest] { nodes[index].hostLog }

    /// Makes node `index`'s host fail every request from now on with `reason` (nil: succeed).
    public mutating func failHostRequests(of index: Int, reason: String?) { nodes[index].hostFailure = reason }

    private mutating func recordTunnelPacket(_ packet: [UInt8], at index: Int) {
        nodes[index].tunnelWritten.append(packet)
        if nodes[index].tunnelWritten.count > tunnelPacketLimit { nodes[index].tunnelWritten.removeFirst() }
    }

    // MARK: - Running

    /// Restarts a node with a fresh instance (same identity and config, empty state but what it
    /// loads from its disk): a killed node as after a crash, a running one as after a clean stop
    /// (its queued writes land first).
    /// `config` replaces the node's config (e.g. an operator dropping the bootstrap list).
    public mutating func restart(_ index: Int, config: NodeConfig? = nil) {
        if nodes[index].isUp { nodes[index].disk?.flush(statistics: &diskStatistics) }
        nodes[index].incarnation += 1
        let old = nodes[index].instance
        nodes[index].instance = NodeInstance(
            identity: old.identity, config: config ?? old.config, now: now, rng: &rng)
        nodes[index].isUp = true
        nodes[index].timerGeneration += 1
        nodes[index].armedDeadline = nil
        let effects = nodes[index].instance.start(now: now, rng: &rng)
        apply(effects, from: index)
    }

    /// Processes events until virtual time reaches `deadline` or nothing is left to do.
    public mutating func run(until deadline: Instant) {
        while let next = queue.nextTime, next <= deadline.nanoseconds {
            let (time, event) = queue.pop()!
            now = Instant(nanoseconds: time)
            statistics.eventsProcessed += 1
            switch event {
            case .deliver(let datagram, let source, let target):
                guard nodes[target].isUp else { continue }
                statistics.datagramsDelivered += 1
                // The runtime's in-place path: tunnel packets are handed over without a copy.
                var bytes = datagram
                var written: [[UInt8]] = []
                let effects = bytes.withUnsafeMutableBytes { buffer in
                    nodes[target].instance.receive(datagram: buffer, from: source, now: now, rng: &rng) {
                        written.append(Array($0))
                    }
                }
                for packet in written { recordTunnelPacket(packet, at: target) }
                apply(effects, from: target)
            case .timer(let index, let generation):
                guard nodes[index].isUp, nodes[index].timerGeneration == generation else { continue }
                nodes[index].armedDeadline = nil
                let effects = nodes[index].instance.tick(now: now, rng: &rng)
                apply(effects, from: index)
            case .storage(let index, let incarnation):
                guard nodes[index].isUp, nodes[index].incarnation == incarnation,
                    let completion = nodes[index].disk?.completeNext(statistics: &diskStatistics)
                else { continue }
                let effects = nodes[index].instance.storageCompleted(completion, now: now, rng: &rng)
                apply(effects, from: index)
            case .host(let index, let incarnation, let token):
                guard nodes[index].isUp, nodes[index].incarnation == incarnation else { continue }
                let outcome: HostOutcome = nodes[index].hostFailure.map { .failed($0) } ?? .done
                let effects = nodes[index].instance.hostCompleted(token, outcome, now: now, rng: &rng)
                apply(effects, from: index)
            }
        }
        if now < deadline { now = deadline }
    }

    /// Runs for `duration` of virtual time.
    public mutating func run(for duration: Duration) { run(until: now + duration) }

    // MARK: - Interpreting effects

    private mutating func apply(_ effects: [NodeEffect], from index: Int) {
        for effect in effects {
            switch effect {
            case .send(let bytes, let destination):
                statistics.datagramsSent += 1
                // Through our NAT box, if any: the datagram leaves from a mapping.
                let source = nodes[index].nat != nil ? nodes[index].nat!.map(to: destination) : nodes[index].endpoint
                let target: Int
                if let plain = byEndpoint[destination] {
                    target = plain
                } else if let boxed = natByAddress[destination.address] {
                    guard nodes[boxed].nat!.allowed[destination.port]?.contains(source) == true else {
                        statistics.datagramsFiltered += 1
                        continue
                    }
                    target = boxed
                } else {
                    statistics.datagramsToNowhere += 1
                    continue
                }
                if partitions.contains(Pair(index, target)) {
                    statistics.datagramsPartitioned += 1
                    continue
                }
                guard let at = links.transmit(from: index, to: target, now: now.nanoseconds, rng: &rng) else {
                    statistics.datagramsLost += 1
                    continue
                }
                queue.push(.deliver(datagram: bytes, from: source, to: target), at: at)
            case .tunnelPacket(let packet):
                recordTunnelPacket(packet, at: index)
            case .completed(let id, let result):
                nodes[index].completions[id] = result
            case .event(let event):
                trace.append(TraceEntry(time: now, node: index, event: event))
                if trace.count > traceLimit { trace.removeFirst(trace.count - traceLimit) }
                observer?(index, event)
            case .storage(let request):
                guard nodes[index].disk != nil else { continue }  // a node without a disk: never answered
                let at = nodes[index].disk!.submit(request, now: now.nanoseconds, model: disk, rng: &rng)
                queue.push(.storage(node: index, incarnation: nodes[index].incarnation), at: at)
            case .host(let request):
                // One host, answering in the order asked (the queue keeps insertion order at equal times).
                nodes[index].hostLog.append(request)
                queue.push(
                    .host(node: index, incarnation: nodes[index].incarnation, request.token),
                    at: (now + hostLatency).nanoseconds)
            }
        }
        armTimer(index)
    }

    private mutating func armTimer(_ index: Int) {
        guard nodes[index].isUp, let deadline = nodes[index].instance.nextDeadline else { return }
        let at = TimerRule.fireTime(for: deadline, now: now).nanoseconds
        if let armed = nodes[index].armedDeadline, armed <= at { return }
        nodes[index].timerGeneration += 1
        nodes[index].armedDeadline = at
        queue.push(.timer(node: index, generation: nodes[index].timerGeneration), at: at)
    }
}
