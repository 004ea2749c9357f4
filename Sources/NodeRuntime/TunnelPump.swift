// The tunnel data plane's I/O (DESIGN §5): how IP packets move between the TUN device and the
// node's UDP socket.
//
//   TUN ──read──> reader thread ──batch (≤ 64 packets, one buffer)──> event loop:
//        each packet is routed and sealed by NodeInstance.tunnelOutbound straight into one
//        ByteBuffer per batch; the datagrams go out as slices of it, flushed once per batch
//        (NIO turns a flush of many datagrams into sendmmsg).
//   UDP ──recvmmsg (NIO, 64 per read)──> event loop: each datagram is copied once into a scratch
//        buffer and opened in place (NodeInstance.receive(datagram:)); a tunnel packet that may
//        pass is written to the TUN device from there.
//
// Counters are assigned in order per peer because one thread (the event loop) seals. The reader
// thread only does the read system calls, so on two cores the reads and the crypto overlap. At
// most `maximumBatchesInFlight` batches wait for the event loop: when it falls behind, the reader
// stops reading and the kernel's TUN queue absorbs (then drops) the excess, as a router would.
// No allocation per packet: one buffer per batch on each side, slices of it for the datagrams.
//
// Offloads (Linux): the TUN device is opened with IFF_VNET_HDR and TSO, so one read may be a TCP
// burst of up to 64 KiB, split here into MTU-sized segments (TSOSplitter); runs of equal-sized
// datagrams to one peer leave as one UDP GSO send (NodeDriver.tunnelBatch); UDP GRO hands us bursts
// that NodeDriver.receive cuts apart; and the packets a read batch delivers are coalesced per TCP
// flow (GROCoalescer) before they are written to the TUN device.

import Dispatch
import Foundation
import HostNetwork
import NIOConcurrencyHelpers
import Tunnel
import UmbraCore

/// A packet device the pump reads from and writes to: the TUN device in the runtime.
public protocol PacketDevice: AnyObject, Sendable {
    /// Reads one packet; nil when none is waiting (non-blocking).
    func read(into buffer: UnsafeMutableRawBufferPointer) -> Int?
    /// Writes one packet; false when the device refused it.
    @discardableResult func write(_ packet: UnsafeRawBufferPointer) -> Bool
    /// Waits until a packet can be read or the timeout passes.
    func waitReadable(timeoutMilliseconds: Int32) -> Bool
    /// Reads and writes carry a 10-byte virtio-net header (TUN offloads, see TunDevice).
    var offload: Bool { get }
}

/// The event loop's side of writing packets to the device. Without offloads each packet is one
/// write. With them, the packets of one read batch are copied into an arena and, at `flush`, TCP
/// segments of one flow are coalesced into super-packets (GROCoalescer): the kernel then takes a
/// burst of up to 64 KiB through its stack once, and forwards or delivers it as one.
final class TunnelWriter {
    let device: any PacketDevice
    /// Packets larger than a slot (never, with the MTUs we set) are written on their own.
    static let slotSize = 2048
    static let slots = 64
    private let arena: UnsafeMutableRawBufferPointer
    private let single: UnsafeMutableRawBufferPointer
    private var used = 0
    private var coalescer = GROCoalescer(maximumPackets: TunnelWriter.slots, maximumFlows: TunnelWriter.slots)

    init(device: any PacketDevice) {
        self.device = device
        arena = .allocate(byteCount: device.offload ? Self.slotSize * Self.slots : 0, alignment: 16)
        single = .allocate(byteCount: device.offload ? VirtioNetHeader.size + 65_536 : 0, alignment: 16)
    }

    deinit {
        arena.deallocate()
        single.deallocate()
    }

    /// One IP packet from the network.
    func write(_ packet: UnsafeRawBufferPointer) {
        guard device.offload else {
            device.write(packet)
            return
        }
        guard packet.count <= Self.slotSize else {
            flush()
            writeAlone(packet)
            return
        }
        if used == Self.slots { flush() }
        let slot = UnsafeMutableRawBufferPointer(
            rebasing: arena[(used * Self.slotSize)..<(used * Self.slotSize + packet.count)])
        slot.copyMemory(from: packet)
        used += 1
        if !coalescer.add(UnsafeRawBufferPointer(slot)) {
            // Full (cannot happen: as many slots as packets) or unusable: write it as it is.
            used -= 1
            writeAlone(packet)
        }
    }

    /// The end of a read batch: everything held back goes out.
    func flush() {
        guard used > 0 else { return }
        let device = self.device
        coalescer.flush { device.write($0) }
        used = 0
    }

    private func writeAlone(_ packet: UnsafeRawBufferPointer) {
        guard packet.count <= single.count - VirtioNetHeader.size else { return }
        UnsafeMutableRawBufferPointer(rebasing: single[0..<VirtioNetHeader.size]).initializeMemory(
            as: UInt8.self, repeating: 0)
        UnsafeMutableRawBufferPointer(rebasing: single[VirtioNetHeader.size...]).copyMemory(from: packet)
        device.write(UnsafeRawBufferPointer(rebasing: single[0..<(VirtioNetHeader.size + packet.count)]))
    }
}

/// Up to `capacity` packets read from the TUN device into one buffer. Each slot starts with the
/// tunnel frame's channel byte so a packet is a ready frame, sealed without a copy.
final class PacketBatch: @unchecked Sendable {
    // @unchecked: filled by the reader thread, then handed over (and only read) on the event loop.
    let slotSize: Int
    let capacity: Int
    private let storage: UnsafeMutableRawBufferPointer
    private(set) var lengths: [Int]

    init(slotSize: Int, capacity: Int, channel: UInt8) {
        self.slotSize = slotSize
        self.capacity = capacity
        storage = .allocate(byteCount: slotSize * capacity, alignment: 16)
        lengths = []
        lengths.reserveCapacity(capacity)
        for slot in 0..<capacity { storage[slot * slotSize] = channel }
    }

    deinit { storage.deallocate() }

    var count: Int { lengths.count }

    /// Reads the next packet from `device` into the next slot; false when none is waiting or the
    /// batch is full.
    func readNext(from device: any PacketDevice) -> Bool {
        guard lengths.count < capacity else { return false }
        let start = lengths.count * slotSize
        let body = UnsafeMutableRawBufferPointer(rebasing: storage[(start + 1)..<(start + slotSize)])
        guard let length = device.read(into: body) else { return false }
        // A packet that filled the slot may have been truncated: larger than any MTU we set.
        if length > 0 && length < slotSize - 1 { lengths.append(length) }
        return true
    }

    /// Reads the next read from an offload device into `scratch` and splits it (a TCP super-packet
    /// becomes its segments, each in its own slot, checksums completed). False when nothing is
    /// waiting or fewer than `reserve` slots are free.
    func readNextOffloaded(from device: any PacketDevice, scratch: UnsafeMutableRawBufferPointer, reserve: Int) -> Bool
    {
        guard capacity - lengths.count >= reserve else { return false }
        guard let length = device.read(into: scratch) else { return false }
        let start = lengths.count * slotSize
        let free = UnsafeMutableRawBufferPointer(rebasing: storage[start...])
        guard
            let segments = try? TSOSplitter.split(
                UnsafeRawBufferPointer(rebasing: scratch[0..<length]), into: free, segmentStride: slotSize,
                leadingSpace: 1, maximumSegments: capacity - lengths.count)
        else { return true }  // malformed: dropped, keep reading
        for index in 0..<segments.count { lengths.append(segments.length(of: index)) }
        return true
    }

    /// Empties the batch for reuse (the channel bytes at the slots' starts stay).
    func reset() { lengths.removeAll(keepingCapacity: true) }

    /// The tunnel frame in slot `index`: channel byte, then the packet.
    func frame(_ index: Int) -> UnsafeRawBufferPointer {
        let start = index * slotSize
        return UnsafeRawBufferPointer(rebasing: storage[start..<(start + 1 + lengths[index])])
    }
}

/// The reader thread: reads batches from the device and hands them to `deliver` (which runs the
/// batch on the event loop and calls `finished()` when done with it).
final class TunnelReader: @unchecked Sendable {
    // @unchecked: `stopped` is behind a lock, the semaphore is thread safe, the rest is immutable.
    static let maximumBatchesInFlight = 8
    let device: any PacketDevice
    let slotSize: Int
    let batchCapacity: Int
    private let stopped = NIOLockedValueBox(false)
    private let credits = DispatchSemaphore(value: TunnelReader.maximumBatchesInFlight)
    /// Batches the event loop is done with, for reuse (at most `maximumBatchesInFlight` exist).
    private let spare = NIOLockedValueBox<[PacketBatch]>([])
    private let done = DispatchSemaphore(value: 0)

    /// With offloads: one read (header + up to 64 KiB) before it is split into the batch.
    private let offloadScratch: UnsafeMutableRawBufferPointer

    init(device: any PacketDevice, mtu: Int, batchCapacity: Int? = nil) {
        self.device = device
        // Room for the channel byte, the largest packet, and one byte to detect truncation.
        self.slotSize = max(mtu, 1280) + 2
        // With offloads a batch holds up to two 64 KiB bursts' segments.
        self.batchCapacity = batchCapacity ?? (device.offload ? 128 : 64)
        offloadScratch = .allocate(byteCount: device.offload ? VirtioNetHeader.size + 65_536 : 0, alignment: 16)
    }

    deinit { offloadScratch.deallocate() }

    /// Starts the thread.
    func start(deliver: @escaping @Sendable (PacketBatch) -> Void) {
        let thread = Thread { [self] in
            run(deliver: deliver)
            done.signal()
        }
        thread.start()
    }

    /// Stops the thread and waits (at most a second) for it to leave its loop.
    func stop() {
        stopped.withLockedValue { $0 = true }
        _ = done.wait(timeout: .now() + .seconds(1))
    }

    /// The event loop is done with a batch.
    func finished(_ batch: PacketBatch) {
        batch.reset()
        spare.withLockedValue { $0.append(batch) }
        credits.signal()
    }

    private func run(deliver: @escaping @Sendable (PacketBatch) -> Void) {
        while !stopped.withLockedValue({ $0 }) {
            guard device.waitReadable(timeoutMilliseconds: 100) else { continue }
            // Wait for the event loop to catch up (bounded, so a stop is noticed).
            guard credits.wait(timeout: .now() + .milliseconds(100)) == .success else { continue }
            let batch =
                spare.withLockedValue { $0.popLast() }
                ?? PacketBatch(slotSize: slotSize, capacity: batchCapacity, channel: 0x50)
            var reads = 0
            if device.offload {
                // A read may be a 64 KiB TCP burst: stop while a whole one still fits.
                let reserve = 65_535 / max(1, slotSize - 2 - 40) + 1
                while reads < 2 * batchCapacity,
                    batch.readNextOffloaded(from: device, scratch: offloadScratch, reserve: reserve)
                {
                    reads += 1
                }
            } else {
                while reads < 2 * batchCapacity, batch.readNext(from: device) { reads += 1 }
            }
            if batch.count == 0 {
                finished(batch)
                continue
            }
            deliver(batch)
        }
    }
}

#if os(Linux)
extension TunDevice: PacketDevice {}
#endif
