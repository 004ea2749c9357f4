// A Linux TUN device: the tunnel's door into the host's IP stack. The node reads the IP packets the
// kernel routes into the device and writes the packets that come out of the tunnel.
//
// - Opened as IFF_TUN | IFF_NO_PI (bare IP packets, no 4-byte packet-information header), O_NONBLOCK
//   and O_CLOEXEC. The device is not persistent: it disappears, with its addresses and routes, when
//   its file descriptor is closed, so a crashed node leaves no device behind (the kernel closes the
//   fd). HostJournal still records a "delete link" for it, which is a no-op in that case.
// - `open(name:namespace:)` can create the device inside a named network namespace
//   (/var/run/netns/NAME, as `ip netns add` makes): setns(2) switches only the calling thread, so the
//   open and TUNSETIFF run on a short-lived dedicated pthread that joins the namespace first. The
//   device belongs to the namespace it was created in; the fd then works from any thread.
// - Thread safety: reads, writes and polls may come from any threads at once. `close()` may race
//   with them: each operation holds a use count, and the fd is closed by whoever finishes last, so a
//   closed fd number is never reused under a reader's feet. A `waitReadable` in progress delays the
//   actual close by at most its timeout.

#if os(Linux)
import Glibc
import Synchronization

public final class TunDevice: Sendable {
    /// The interface name the kernel gave the device (the requested one, or e.g. `tun0` for `tun%d`).
    public let name: String
    /// Opened with IFF_VNET_HDR and TSO/checksum offloads: every read and write starts with a
    /// 10-byte `virtio_net_hdr`, and reads may return TCP super-packets of up to 64 KiB.
    public let offload: Bool

    private struct State {
        var fd: CInt
        var users: Int
        var closing: Bool
    }
    private let state: Mutex<State>

    private init(fd: CInt, name: String, offload: Bool) {
        self.name = name
        self.offload = offload
        self.state = Mutex(State(fd: fd, users: 0, closing: false))
    }

    deinit {
        // Without users nothing can be in flight; close a forgotten device.
        state.withLock { state in
            if state.fd >= 0 { Glibc.close(state.fd) }
            state.fd = -1
        }
    }

    /// The file descriptor (non-blocking), or -1 once `close()` was called. For registering with an
    /// event loop; do not close it yourself.
    public var fd: CInt { state.withLock { $0.closing ? -1 : $0.fd } }

    // MARK: - Opening

    /// Creates (or attaches to) the TUN device `name`, up to 15 bytes; `%d` lets the kernel number it.
    /// With `namespace`, the device is created inside the network namespace /var/run/netns/`namespace`.
    /// Needs CAP_NET_ADMIN (root) and /dev/net/tun.
    ///
    /// With `offload`, the device is asked for IFF_VNET_HDR and TUNSETOFFLOAD (checksum, TSO4, TSO6);
    /// a kernel that refuses gets a plain device (`offload` false on the result).
    public static func open(
        name: String, namespace: String? = nil, offload: Bool = false
    ) throws(TunDeviceError) -> TunDevice {
        let nameBytes = Array(name.utf8)
        guard !nameBytes.isEmpty, nameBytes.count < interfaceNameSize, !nameBytes.contains(0),
            !nameBytes.contains(UInt8(ascii: "/"))
        else { throw .invalidName(name) }
        for withOffload in offload ? [true, false] : [false] {
            let result: Result<(CInt, String), TunDeviceError>
            if let namespace {
                result = onThread(inNamespace: namespace) { createDevice(nameBytes, offload: withOffload) }
            } else {
                result = createDevice(nameBytes, offload: withOffload)
            }
            switch result {
            case .success(let (fd, kernelName)): return TunDevice(fd: fd, name: kernelName, offload: withOffload)
            case .failure(let error): if !withOffload { throw error }
            }
        }
        throw .invalidName(name)  // not reached: the last attempt either returns or throws
    }

    // linux/if.h, linux/if_tun.h; not exported by Swift's Glibc module.
    private static let interfaceNameSize = 16  // IFNAMSIZ
    private static let ifreqSize = 40  // sizeof(struct ifreq) on 64-bit Linux
    private static let flagTun: UInt16 = 0x0001  // IFF_TUN
    private static let flagNoPacketInfo: UInt16 = 0x1000  // IFF_NO_PI
    private static let requestSetInterface: UInt = 0x4004_54ca  // TUNSETIFF = _IOW('T', 202, int)

    private static let flagVirtioHeader: UInt16 = 0x4000  // IFF_VNET_HDR
    private static let requestSetOffload: UInt = 0x4004_54d0  // TUNSETOFFLOAD = _IOW('T', 208, unsigned int)
    /// TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6: the kernel may hand us TCP super-packets with a partial
    /// checksum, and takes them from us.
    private static let offloads: CInt = 0x01 | 0x02 | 0x04

    private static func createDevice(
        _ nameBytes: [UInt8], offload: Bool
    ) -> Result<(CInt, String), TunDeviceError> {
        let fd = Glibc.open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else {
            return .failure(.cannotOpenControlDevice(reason: String(cString: strerror(errno))))
        }
        // struct ifreq: char ifr_name[IFNAMSIZ]; then a union whose first member here is short ifr_flags.
        var request = [UInt8](repeating: 0, count: ifreqSize)
        request.replaceSubrange(0..<nameBytes.count, with: nameBytes)
        let flags = flagTun | flagNoPacketInfo | (offload ? flagVirtioHeader : 0)
        request[interfaceNameSize] = UInt8(truncatingIfNeeded: flags)  // little-endian short
        request[interfaceNameSize + 1] = UInt8(truncatingIfNeeded: flags >> 8)
        let status = request.withUnsafeMutableBytes { bytes -> CInt in
            guard let base = bytes.baseAddress else { return -1 }
            return ioctl(fd, requestSetInterface, base)
        }
        guard status == 0 else {
            let reason = String(cString: strerror(errno))
            Glibc.close(fd)
            return .failure(.cannotCreate(name: String(decoding: nameBytes, as: UTF8.self), reason: reason))
        }
        if offload, ioctl(fd, requestSetOffload, offloads) != 0 {
            let reason = String(cString: strerror(errno))
            Glibc.close(fd)
            return .failure(.cannotCreate(name: String(decoding: nameBytes, as: UTF8.self), reason: reason))
        }
        let end = request[0..<interfaceNameSize].firstIndex(of: 0) ?? interfaceNameSize
        return .success((fd, String(decoding: request[0..<end], as: UTF8.self)))
    }

    // MARK: - Namespaces

    private typealias SetNamespace = @convention(c) (CInt, CInt) -> CInt
    private static let cloneNewNet: CInt = 0x4000_0000  // CLONE_NEWNET

    /// Runs `body` on a new pthread that first joins the network namespace; the thread then exits, so
    /// the namespace switch never leaks into the caller's (or a pool's) threads.
    private static func onThread(
        inNamespace namespace: String, _ body: @escaping @Sendable () -> Result<(CInt, String), TunDeviceError>
    ) -> Result<(CInt, String), TunDeviceError> {
        guard !namespace.isEmpty, !namespace.contains("/") else {
            return .failure(.namespace(namespace, reason: "not a valid namespace name"))
        }
        // setns(2) is glibc API but not imported by Swift's Glibc module (it is behind _GNU_SOURCE).
        guard let symbol = dlsym(dlopen(nil, RTLD_NOW), "setns") else {
            return .failure(.namespace(namespace, reason: "this C library has no setns()"))
        }
        let setNamespace = unsafeBitCast(symbol, to: SetNamespace.self)
        final class Job: @unchecked Sendable {
            // @unchecked: written by the job thread before it exits, read after pthread_join.
            let work: () -> Result<(CInt, String), TunDeviceError>
            var result: Result<(CInt, String), TunDeviceError> = .failure(.namespace("", reason: "not run"))
            init(_ work: @escaping () -> Result<(CInt, String), TunDeviceError>) { self.work = work }
        }
        let path = "/var/run/netns/" + namespace
        let job = Job {
            let nsfd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
            guard nsfd >= 0 else {
                return .failure(
                    .namespace(namespace, reason: "cannot open \(path): \(String(cString: strerror(errno)))"))
            }
            defer { Glibc.close(nsfd) }
            guard setNamespace(nsfd, cloneNewNet) == 0 else {
                return .failure(.namespace(namespace, reason: "setns failed: \(String(cString: strerror(errno)))"))
            }
            return body()
        }
        let context = Unmanaged.passRetained(job).toOpaque()
        var thread = pthread_t()
        let created = pthread_create(
            &thread, nil,
            { context in
                guard let context else { return nil }
                let job = Unmanaged<Job>.fromOpaque(context).takeRetainedValue()
                job.result = job.work()
                return nil
            }, context)
        guard created == 0 else {
            Unmanaged<Job>.fromOpaque(context).release()
            return .failure(
                .namespace(namespace, reason: "cannot start a thread: \(String(cString: strerror(created)))"))
        }
        pthread_join(thread, nil)
        return job.result
    }

    // MARK: - I/O

    /// Reads one packet into `buffer`; returns its length, or nil when no packet is waiting (EAGAIN)
    /// or the device is closed. A packet longer than the buffer is truncated by the kernel.
    public func read(into buffer: UnsafeMutableRawBufferPointer) -> Int? {
        guard let fd = beginUse() else { return nil }
        defer { endUse() }
        while true {
            let count = Glibc.read(fd, buffer.baseAddress, buffer.count)
            if count >= 0 { return count }
            if errno == EINTR { continue }
            return nil
        }
    }

    /// Reads up to `buffers.count` packets, stopping at the first EAGAIN; `sizes[i]` gets the length
    /// of the packet in `buffers[i]`. Returns how many packets were read. One use-count round trip for
    /// the whole batch; the kernel still delivers one packet per read(2).
    public func readBatch(into buffers: [UnsafeMutableRawBufferPointer], sizes: inout [Int]) -> Int {
        guard let fd = beginUse() else { return 0 }
        defer { endUse() }
        if sizes.count < buffers.count { sizes += [Int](repeating: 0, count: buffers.count - sizes.count) }
        var packets = 0
        while packets < buffers.count {
            let count = Glibc.read(fd, buffers[packets].baseAddress, buffers[packets].count)
            if count < 0 {
                if errno == EINTR { continue }
                break
            }
            sizes[packets] = count
            packets += 1
        }
        return packets
    }

    /// Writes one IP packet into the host's stack. False if the kernel refused it (closed device,
    /// malformed packet, or a full queue: TUN writes do not block and drop instead).
    public func write(_ packet: UnsafeRawBufferPointer) -> Bool {
        guard let fd = beginUse() else { return false }
        defer { endUse() }
        while true {
            let count = Glibc.write(fd, packet.baseAddress, packet.count)
            if count >= 0 { return count == packet.count }
            if errno == EINTR { continue }
            return false
        }
    }

    /// Waits until a packet can be read, at most `timeoutMilliseconds` (-1: forever). False on
    /// timeout or when the device is closed.
    public func waitReadable(timeoutMilliseconds: Int32) -> Bool {
        guard let fd = beginUse() else { return false }
        defer { endUse() }
        var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let ready = poll(&entry, 1, timeoutMilliseconds)
        return ready > 0 && entry.revents & Int16(POLLIN) != 0
    }

    /// Closes the device; the kernel removes the interface with its addresses and routes. Idempotent.
    /// Reads and writes after this return nil/false.
    public func close() {
        state.withLock { state in
            guard !state.closing else { return }
            state.closing = true
            if state.users == 0, state.fd >= 0 {
                Glibc.close(state.fd)
                state.fd = -1
            }
        }
    }

    private func beginUse() -> CInt? {
        state.withLock { state in
            guard !state.closing, state.fd >= 0 else { return nil }
            state.users += 1
            return state.fd
        }
    }

    private func endUse() {
        state.withLock { state in
            state.users -= 1
            if state.closing, state.users == 0, state.fd >= 0 {
                Glibc.close(state.fd)
                state.fd = -1
            }
        }
    }
}

public enum TunDeviceError: Error, Equatable, Sendable, CustomStringConvertible {
    case invalidName(String)
    case cannotOpenControlDevice(reason: String)
    case cannotCreate(name: String, reason: String)
    case namespace(String, reason: String)

    public var description: String {
        switch self {
        case .invalidName(let name):
            "\"\(name)\" is not a valid interface name (1 to 15 bytes, no \"/\")"
        case .cannotOpenControlDevice(let reason):
            "cannot open /dev/net/tun: \(reason); the tunnel needs root (CAP_NET_ADMIN) and the tun module "
                + "(`modprobe tun`; in a container, pass the device with --device /dev/net/tun)"
        case .cannotCreate(let name, let reason):
            "cannot create the TUN device \(name): \(reason); is another process using that name, and are you root?"
        case .namespace(let namespace, let reason):
            "cannot enter the network namespace \(namespace): \(reason) (does `ip netns list` show it?)"
        }
    }
}
#endif
