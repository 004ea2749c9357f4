// The undo journal, the command runner and the rule builders without privileges: file restores are
// the one undo action that needs no root, so they stand in for the rest here.

import Foundation
import Glibc
import HostNetwork
import NodeRuntime
import Testing
import UmbraCore

struct HostJournalTests {
    /// A fresh temporary directory, removed by `defer { remove(directory) }`.
    func temporaryDirectory() throws -> String {
        var template = Array("/tmp/umbra-hn-journal-XXXXXX".utf8CString)
        let path = template.withUnsafeMutableBufferPointer { buffer -> String? in
            guard let base = buffer.baseAddress, mkdtemp(base) != nil else { return nil }
            return String(cString: base)
        }
        return try #require(path)
    }

    func remove(_ directory: String) { try? FileManager.default.removeItem(atPath: directory) }
    func write(_ path: String, _ text: String) throws { try Data(text.utf8).write(to: URL(fileURLWithPath: path)) }
    func read(_ path: String) -> String? {
        FileManager.default.contents(atPath: path).map { String(decoding: $0, as: UTF8.self) }
    }

    let key = HostLab.key

    /// `DIR/NAME/resolv.conf` (only files named resolv.conf are ever journaled), its directory made.
    func resolvConf(_ directory: String, _ name: String) -> String {
        mkdir(directory + "/" + name, 0o700)
        return directory + "/" + name + "/resolv.conf"
    }

    /// Journals restoring `path`, then writes `text` to it as the change.
    func change(_ journal: HostJournal, _ path: String, to text: String, scope: String = "consumer") throws {
        try journal.record(try HostUndoAction.restoring(file: path, written: Array(text.utf8)), scope: scope)
        try write(path, text)
    }

    @Test func entriesAreDurableAndRollbackRestoresNewestFirst() throws {
        let directory = try temporaryDirectory()
        defer { remove(directory) }
        let target = resolvConf(directory, "a")
        let created = resolvConf(directory, "b")
        try write(target, "original\n")
        let journalPath = directory + "/" + HostJournal.fileName

        let journal = try HostJournal(path: journalPath, key: key)
        try change(journal, target, to: "first change\n")
        // A second change to the same file: undone first, so the original wins.
        try change(journal, target, to: "second change\n")
        try change(journal, created, to: "new\n")

        // Another process (the next start) sees the same entries.
        let reopened = try HostJournal(path: journalPath, key: key)
        #expect(reopened.pending == journal.pending)
        #expect(reopened.pending.count == 3)

        let report = reopened.rollback(runner: HostCommand())
        #expect(report.isComplete)
        #expect(report.undone.count == 3)
        #expect(read(target) == "original\n")
        #expect(read(created) == nil, "a file that did not exist is removed again")
        #expect(read(journalPath) == nil)
    }

    @Test func failedUndoActionsStayForTheNextStart() throws {
        let directory = try temporaryDirectory()
        defer { remove(directory) }
        let target = resolvConf(directory, "a")
        try write(target, "before\n")
        let journalPath = directory + "/" + HostJournal.fileName
        let journal = try HostJournal(path: journalPath, key: key)
        try change(journal, target, to: "after\n")
        // A "resolv.conf" that is a directory cannot be read, so its restore fails.
        let stuck = resolvConf(directory, "b")
        let impossible = HostUndoAction.restoreFile(
            path: stuck, previousContentsBase64: "", existed: false, writtenContentsBase64: "")
        try journal.record(impossible, scope: "consumer")
        #expect(mkdir(stuck, 0o700) == 0)

        let report = HostJournal.recover(at: journalPath, key: key, runner: HostCommand())
        #expect(!report.isComplete)
        #expect(report.failed.map(\.action) == [impossible])
        #expect(report.undone.count == 1, "the others are still undone")
        #expect(read(target) == "before\n")
        #expect(try HostJournal(path: journalPath, key: key).pending.map(\.action) == [impossible])
        #expect("\(report)".contains("kept in the journal"))

        // Once the cause is fixed, the next start finishes the job.
        #expect(rmdir(stuck) == 0)
        try write(stuck, "")
        let retry = HostJournal.recover(at: journalPath, key: key, runner: HostCommand())
        #expect(retry.isComplete && retry.undone == [impossible])
        #expect(read(stuck) == nil)
        #expect(read(journalPath) == nil)
    }

    @Test func scopesRollBackIndependently() throws {
        let directory = try temporaryDirectory()
        defer { remove(directory) }
        let journal = try HostJournal(path: directory + "/" + HostJournal.fileName, key: key)
        let a = resolvConf(directory, "a")
        let b = resolvConf(directory, "b")
        try change(journal, a, to: "a")
        try change(journal, b, to: "b", scope: "provider")
        #expect(journal.rollback(scope: "consumer", runner: HostCommand()).undone.count == 1)
        #expect(read(a) == nil)
        #expect(read(b) == "b")
        #expect(
            try HostJournal(path: directory + "/" + HostJournal.fileName, key: key).pending.map(\.scope) == ["provider"]
        )
    }

    @Test func aDamagedJournalIsNeverOverwritten() throws {
        let directory = try temporaryDirectory()
        defer { remove(directory) }
        let path = directory + "/" + HostJournal.fileName
        try write(path, "{ not json")
        #expect(throws: HostJournalError.self) { _ = try HostJournal(path: path, key: key) }
        let report = HostJournal.recover(at: path, key: key, runner: HostCommand())
        #expect(!report.isComplete)
        #expect(report.journalError?.contains("damaged") == true)
        #expect(read(path) == "{ not json")
    }

    @Test func aDanglingSymlinkIsNotJournaledAsAMissingFile() throws {
        let directory = try temporaryDirectory()
        defer { remove(directory) }
        #expect(symlink(directory + "/missing-target", directory + "/resolv.conf") == 0)
        #expect(throws: HostJournalError.self) {
            _ = try HostUndoAction.restoring(file: directory + "/resolv.conf", written: [])
        }
    }

    @Test func noJournalMeansNothingToRecover() {
        let report = HostJournal.recover(at: "/nonexistent-umbra-dir/tunnel-host.json", key: key, runner: HostCommand())
        #expect(report.isComplete && report.undone.isEmpty)
        #expect("\(report)" == "nothing to undo")
    }

    // MARK: - A journal nobody but this node wrote (issue #12.3)

    /// The old format: argv replayed as root. A planted entry ran `touch`; now nothing runs.
    @Test func aJournalOfCommandLinesIsRefusedAndNothingRuns() throws {
        let directory = try temporaryDirectory()
        defer { remove(directory) }
        let path = directory + "/" + HostJournal.fileName
        let proof = directory + "/planted-ran"
        try write(
            path,
            """
            {"version": 1, "entries": [{"scope": "consumer", "action": {"deleteRoute": {"argv": ["touch", "\(proof)"]}}}]}
            """)
        let report = HostJournal.recover(at: path, key: key, runner: HostCommand())
        #expect(!report.isComplete && report.undone.isEmpty && report.failed.isEmpty)
        #expect(report.journalError?.contains("nothing in it was run") == true, "\(report)")
        #expect(access(proof, F_OK) != 0, "the planted command did not run")
        #expect(read(path) != nil, "left in place for the operator")
    }

    /// Well-formed and typed, but written with another key (another identity, or none).
    @Test func aJournalWithAForeignMACIsRefused() throws {
        let directory = try temporaryDirectory()
        defer { remove(directory) }
        let path = directory + "/" + HostJournal.fileName
        let target = resolvConf(directory, "a")
        try write(target, "mine\n")
        let planted = try HostJournal(path: path, key: HostJournalKey(secret: Array(repeating: 9, count: 32)))
        try planted.record(
            .restoreFile(
                path: target, previousContentsBase64: Data("theirs\n".utf8).base64EncodedString(), existed: true,
                writtenContentsBase64: Data("mine\n".utf8).base64EncodedString()), scope: "consumer")
        #expect(throws: HostJournalError.self) { _ = try HostJournal(path: path, key: key) }
        let report = HostJournal.recover(at: path, key: key, runner: HostCommand())
        #expect(report.journalError?.contains("MAC does not match") == true, "\(report)")
        #expect(read(target) == "mine\n")
    }

    /// Entries outside the vocabulary (any sysctl, any file) are refused even with a valid MAC.
    @Test(arguments: [
        HostUndoAction.restoreSysctl(key: "kernel.core_pattern", previousValue: "1"),
        .restoreSysctl(key: "net.ipv4.ip_forward", previousValue: "|/tmp/x"),
        .restoreFile(path: "/etc/cron.d/x", previousContentsBase64: "", existed: false, writtenContentsBase64: ""),
        .restoreFile(
            path: "/etc/../etc/resolv.conf", previousContentsBase64: "", existed: false, writtenContentsBase64: ""),
        .deleteLink(name: "-rf"), .deleteNftTable(family: "bridge", name: "x"),
        .deleteNftTable(family: "inet", name: "a b"),
        .deleteRoute(HostRoute(destination: "1.2.3.4/32; reboot")),
        .deleteRoute(HostRoute(destination: "default", gateway: "::1")),
        .deleteRoute(HostRoute(type: "blackhole", destination: "default")),
    ])
    func entriesOutsideTheVocabularyAreRefused(action: HostUndoAction) throws {
        let directory = try temporaryDirectory()
        defer { remove(directory) }
        let path = directory + "/" + HostJournal.fileName
        try HostJournal(path: path, key: key).record(action, scope: "consumer")
        #expect {
            _ = try HostJournal(path: path, key: key)
        } throws: { error in
            guard case HostJournalError.untrusted(_, let reason) = error else { return false }
            return reason.contains("invalid")
        }
    }

    @Test func aJournalOthersCanWriteIsRefused() throws {
        let directory = try temporaryDirectory()
        defer { remove(directory) }
        let path = directory + "/" + HostJournal.fileName
        try change(try HostJournal(path: path, key: key), resolvConf(directory, "a"), to: "x")
        #expect(chmod(path, 0o620) == 0)
        #expect {
            _ = try HostJournal(path: path, key: key)
        } throws: { "\($0)".contains("lets group or others write it") }
        #expect(chmod(path, 0o600) == 0)
        _ = try HostJournal(path: path, key: key)
        if getuid() == 0 {  // only root can give a file away
            #expect(chown(path, 65534, 65534) == 0)
            #expect {
                _ = try HostJournal(path: path, key: key)
            } throws: { "\($0)".contains("owned by uid 65534") }
        }
        let link = directory + "/link.json"
        #expect(symlink(path, link) == 0)
        #expect(throws: HostJournalError.self) { _ = try HostJournal(path: link, key: key) }
    }

    /// Crash recovery puts resolv.conf back only while it still holds what the tunnel wrote.
    @Test func aResolvConfChangedSinceIsLeftAlone() throws {
        let directory = try temporaryDirectory()
        defer { remove(directory) }
        let target = resolvConf(directory, "a")
        try write(target, "nameserver 192.0.2.53\n")
        let path = directory + "/" + HostJournal.fileName
        try change(try HostJournal(path: path, key: key), target, to: "nameserver 9.9.9.9\n")
        // The node dies; DHCP (or the operator) writes a new file meanwhile.
        try write(target, "nameserver 198.51.100.53\n")
        let report = HostJournal.recover(at: path, key: key, runner: HostCommand())
        #expect(report.isComplete && report.undone.isEmpty)
        #expect(report.leftAlone.count == 1)
        #expect(read(target) == "nameserver 198.51.100.53\n", "the stale bytes were not written back")
        #expect(read(path) == nil)
    }

    @Test func undoActionsAreReadableJSONAndTyped() throws {
        let actions: [HostUndoAction] = [
            .deleteRoute(HostRoute(destination: "0.0.0.0/1", device: "umbra0")), .deleteLink(name: "umbra0"),
            .deleteNftTable(family: "inet", name: "umbra_killswitch"),
            .deleteRule(HostRule(family: 4, priority: 4747, fwmark: 0x4747, table: 4747)),
            .restoreFile(
                path: "/etc/resolv.conf", previousContentsBase64: "bmFtZXNlcnZlcg==", existed: true,
                writtenContentsBase64: ""),
            .restoreSysctl(key: "net.ipv4.ip_forward", previousValue: "0"),
        ]
        let decoded = try JSONDecoder().decode([HostUndoAction].self, from: try JSONEncoder().encode(actions))
        #expect(decoded == actions)
        #expect(actions.map(\.description)[2] == "nft delete table inet umbra_killswitch")
        #expect(actions[0].description == "ip -4 route del 0.0.0.0/1 dev umbra0")
        #expect(actions[3].description == "ip -4 rule del priority 4747 fwmark 0x4747 lookup 4747")
    }
}

struct HostCommandTests {
    @Test func capturesOutputAndExitStatus() throws {
        let output = try HostCommand().runAllowingFailure(["sh", "-c", "echo out; echo err >&2; exit 3"])
        #expect(output.status == 3)
        #expect(output.outputText == "out\n")
        #expect(output.errorText == "err\n")
    }

    @Test func failureSaysWhatFailedAndWhatToDo() {
        #expect {
            try HostCommand().run(["sh", "-c", "echo 'RTNETLINK answers: File exists' >&2; exit 2"])
        } throws: { error in
            let text = "\(error)"
            return text.contains("`sh -c") && text.contains("exit status 2") && text.contains("File exists")
                && text.contains("are you root?")
        }
        #expect(throws: HostCommandError.notFound(program: "umbra-no-such-tool")) {
            try HostCommand().run(["umbra-no-such-tool"])
        }
    }

    @Test func feedsStandardInput() throws {
        let input = Array(String(repeating: "0123456789abcdef", count: 16 * 1024).utf8)  // 256 KiB both ways
        let output = try HostCommand().run(["cat"], input: input)
        #expect(output.standardOutput == input)
    }

    @Test func killsACommandThatHangs() {
        let start = ContinuousClock.now
        #expect(throws: HostCommandError.timedOut(argv: ["sleep", "5"], milliseconds: 200)) {
            try HostCommand(timeoutMilliseconds: 200).run(["sleep", "5"])
        }
        #expect(ContinuousClock.now - start < .seconds(2))
    }

    @Test func namespacePrefixesIpNetnsExec() {
        #expect(
            HostCommand(namespace: "ns1").effectiveArgv(["nft", "-f", "-"]) == [
                "ip", "netns", "exec", "ns1", "nft", "-f", "-",
            ])
        #expect(HostCommand().effectiveArgv(["ip", "link"]) == ["ip", "link"])
    }
}

struct RuleTextTests {
    @Test(arguments: [
        ("10.182.0.0/16", "10.182.0.0/16"), ("0.0.0.0/0", "0.0.0.0/0"), ("192.0.2.7", "192.0.2.7/32"),
    ])
    func prefixesParse(text: String, canonical: String) throws {
        #expect(try #require(IPv4Prefix(parsing: text)).description == canonical)
    }

    @Test(arguments: ["10.182.0.1/16", "10.0.0.0/33", "10.0.0.0/", "fd00::/8", "10.0.0/8", "10.0.0.0/+8"])
    func badPrefixesAreRejected(text: String) {
        #expect(IPv4Prefix(parsing: text) == nil)
    }

    @Test func killSwitchRulesAllowOnlyLoopbackTunnelAndTheMarkedSocket() {
        let rules = ConsumerNetwork.killSwitchRules(tun: "umbra0", mark: 0x4747)
        #expect(rules.contains("type filter hook output priority filter; policy drop;"))
        #expect(rules.contains("oifname \"lo\" accept\n"))
        #expect(rules.contains("oifname \"umbra0\" accept\n"))
        #expect(rules.contains("meta mark 0x4747 accept\n"))
        #expect(!rules.contains("sport"))
        // Forwarded traffic (containers, VMs) only into and out of the tunnel.
        #expect(rules.contains("type filter hook forward priority filter; policy drop;"))
        #expect(rules.contains("iifname \"umbra0\" accept\n"))
        #expect(rules.components(separatedBy: "accept").count == 6)
    }

    @Test func theProviderForwardsOnlyPoolToUplinkWhenItTurnedForwardingOn() throws {
        let pool = try #require(IPv4Prefix(parsing: "10.182.0.0/16"))
        let off = ProviderNetwork.firewallRules(tun: "umbrap0", pool: pool, blocked: [], uplinks: ["eth0"])
        #expect(off.contains("type filter hook forward priority filter; policy drop;"))
        #expect(off.contains("iifname \"umbrap0\" oifname { \"eth0\" } accept"))
        #expect(off.contains("iifname \"umbrap0\" drop"))
        let on = ProviderNetwork.firewallRules(
            tun: "umbrap0", pool: pool, blocked: [], uplinks: ["eth0"], forwardingWasOff: false)
        #expect(on.contains("type filter hook forward priority filter; policy accept;"))
        #expect(on.contains("iifname \"umbrap0\" drop"))
    }

    @Test func anOperatorAllowedBlockIsAcceptedBeforeTheBlockListDrops() throws {
        let pool = try #require(IPv4Prefix(parsing: "10.182.0.0/16"))
        let blocked = try #require(IPv4Prefix(parsing: "192.168.0.0/16"))
        let allowed = try #require(IPv4Prefix(parsing: "192.168.5.0/24"))
        let rules = ProviderNetwork.firewallRules(tun: "umbrap0", pool: pool, blocked: [blocked], allowed: [allowed])
        let accept = try #require(rules.range(of: "iifname \"umbrap0\" ip daddr { 192.168.5.0/24 } accept"))
        let drop = try #require(rules.range(of: "iifname \"umbrap0\" ip daddr { 192.168.0.0/16 } drop"))
        #expect(accept.lowerBound < drop.lowerBound)
        #expect(!ProviderNetwork.firewallRules(tun: "umbrap0", pool: pool, blocked: [blocked]).contains("} accept"))
    }
}
