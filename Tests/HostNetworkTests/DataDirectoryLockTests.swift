// The runtime's small guards that need no network: one node per data dir (the lock `umbra up`
// takes before anything else), the identity file's durability, and a clock that re-reads the wall
// clock without ever going backwards.

import Foundation
import Glibc
import HostNetwork
import NodeRuntime
import Synchronization
import Testing
import UmbraCore

struct DataDirectoryLockTests {
    func temporaryDirectory() throws -> String {
        var template = Array("/tmp/umbra-hn-lock-XXXXXX".utf8CString)
        let path = template.withUnsafeMutableBufferPointer { buffer -> String? in
            guard let base = buffer.baseAddress, mkdtemp(base) != nil else { return nil }
            return String(cString: base)
        }
        return try #require(path)
    }

    @Test func aSecondLockIsRefusedNamingTheHolderAndChangesNothing() throws {
        let path = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let directory = DataDirectory(path: path)
        let lock = try DataDirectoryLock.acquire(directory)
        #expect(DataDirectoryLock.isHeld(directory))
        let journal = path + "/" + HostJournal.fileName
        FileManager.default.createFile(
            atPath: journal, contents: Data("x".utf8), attributes: [.posixPermissions: 0o600])

        #expect {
            _ = try DataDirectoryLock.acquire(directory)
        } throws: { error in
            guard case DataDirectoryLockError.inUse(_, let pid) = error else { return false }
            let text = "\(error)"
            return pid == getpid() && text.contains("process \(getpid())") && text.contains("umbra down --data-dir")
                && text.contains("nothing was changed")
        }
        #expect(FileManager.default.contents(atPath: journal) == Data("x".utf8))

        lock.release()
        #expect(!DataDirectoryLock.isHeld(directory))
        let again = try DataDirectoryLock.acquire(directory)
        again.release()
    }

    @Test func theLockIsNotInheritedByCommandsTheNodeRuns() throws {
        let path = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let directory = DataDirectory(path: path)
        let lock = try DataDirectoryLock.acquire(directory)
        defer { lock.release() }
        // A child that outlived us with the fd would keep the dir locked; it is close-on-exec.
        let output = try HostCommand().run(["sh", "-c", "ls -l /proc/$$/fd | grep -c '\(path)/lock' || true"])
        #expect(output.outputText.trimmingCharacters(in: .whitespacesAndNewlines) == "0")
    }

    @Test func aNewIdentityFileSurvivesInASyncedDirectory() throws {
        let path = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let directory = DataDirectory(path: path + "/nested/dir")
        let identity = try IdentityStore.create(in: directory)
        #expect(try IdentityStore.load(from: directory).publicKey == identity.publicKey)
    }
}

struct RuntimeClockTests {
    final class FakeClocks: Sendable {
        let wall = Atomic<UInt64>(1_700_000_000_000_000_000)
        let monotonic = Atomic<UInt64>(5_000_000_000)
        func advance(wall: Int64, monotonic: UInt64) {
            self.wall.store(UInt64(Int64(self.wall.load(ordering: .relaxed)) + wall), ordering: .relaxed)
            self.monotonic.store(self.monotonic.load(ordering: .relaxed) + monotonic, ordering: .relaxed)
        }
    }

    @Test func theWallClockIsReReadAndNeverGoesBackwards() {
        let fake = FakeClocks()
        let clock = RuntimeClock(
            wall: { fake.wall.load(ordering: .relaxed) }, monotonic: { fake.monotonic.load(ordering: .relaxed) })
        let start = clock.now
        #expect(start == clock.startedAt)

        // Ordinary time: both clocks advance together.
        fake.advance(wall: 1_000_000_000, monotonic: 1_000_000_000)
        #expect(clock.now == start + .seconds(1))

        // NTP steps the wall clock an hour ahead (or the VM was suspended): records and proposals
        // must expire by the real date, so `now` follows at once.
        fake.advance(wall: 3_600_000_000_000, monotonic: 0)
        let stepped = clock.now
        #expect(stepped == start + .seconds(3601))

        // The wall clock steps back a minute: `now` keeps running on the monotonic clock.
        fake.advance(wall: -60_000_000_000, monotonic: 2_000_000_000)
        #expect(clock.now == stepped + .seconds(2))
        fake.advance(wall: 0, monotonic: 0)
        #expect(clock.now >= stepped)
    }
}
