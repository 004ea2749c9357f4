// The TUN device on its own: created inside a namespace from a dedicated thread, numbered by the
// kernel, gone with its fd, and safe to close while another thread waits on it.

import Dispatch
import Glibc
import HostNetwork
import NodeRuntime
import Testing

@Suite(.enabled(if: HostLab.available, HostLab.unavailableComment))
struct TunDeviceTests {
    @Test func aNonPersistentDeviceDisappearsWhenClosed() throws {
        let lab = try HostLab.make()
        defer { lab.destroy() }
        let tun = try TunDevice.open(name: "umbratest%d", namespace: lab.node)
        #expect(tun.name == "umbratest0", "the kernel numbers the device")
        #expect(tun.fd >= 0)
        #expect(try lab.inNode.runAllowingFailure(["ip", "link", "show", "umbratest0"]).succeeded)
        #expect(
            !(try lab.host.runAllowingFailure(["ip", "link", "show", "umbratest0"]).succeeded),
            "created in the namespace, not in the caller's")

        tun.close()
        tun.close()  // idempotent
        #expect(tun.fd == -1)
        var buffer = [UInt8](repeating: 0, count: 64)
        #expect(buffer.withUnsafeMutableBytes { tun.read(into: $0) } == nil)
        #expect(!tun.write([0x45]))
        #expect(!(try lab.inNode.runAllowingFailure(["ip", "link", "show", "umbratest0"]).succeeded))
    }

    @Test func closeWhileAnotherThreadWaitsIsDeferredUntilTheWaitEnds() throws {
        let lab = try HostLab.make()
        defer { lab.destroy() }
        let tun = try TunDevice.open(name: "umbratest0", namespace: lab.node)
        let started = DispatchSemaphore(value: 0)
        let waited = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            started.signal()
            _ = tun.waitReadable(timeoutMilliseconds: 3000)
            waited.signal()
        }
        started.wait()
        usleep(100_000)  // into poll(2)
        tun.close()
        #expect(tun.fd == -1)
        #expect(
            try lab.inNode.runAllowingFailure(["ip", "link", "show", "umbratest0"]).succeeded,
            "the waiter still holds the fd, so the device is still there")
        #expect(waited.wait(timeout: .now() + 5) == .success)
        var gone = false
        for _ in 0..<20 where !gone {
            gone = !(try lab.inNode.runAllowingFailure(["ip", "link", "show", "umbratest0"]).succeeded)
            if !gone { usleep(50_000) }
        }
        #expect(gone, "the last user closed the fd")
    }

    @Test func aMissingNamespaceIsReported() {
        #expect {
            _ = try TunDevice.open(name: "umbratest0", namespace: "umbra-hn-no-such-namespace")
        } throws: { error in
            "\(error)".contains("umbra-hn-no-such-namespace") && "\(error)".contains("ip netns list")
        }
        #expect(throws: TunDeviceError.invalidName("much-too-long-interface-name")) {
            _ = try TunDevice.open(name: "much-too-long-interface-name")
        }
    }
}
