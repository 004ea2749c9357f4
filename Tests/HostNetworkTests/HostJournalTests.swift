// The undo journal, the command runner and the rule builders without privileges: file restores are
// the one undo action that needs no root, so they stand in for the rest here.

import Foundation
import Glibc
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

    @Test func entriesAreDurableAndRollbackRestoresNewestFirst() throws {
        let directory = try temporaryDirectory()
        defer { remove(directory) }
        let target = directory + "/resolv.conf"
        let created = directory + "/created.conf"
        try write(target, "original\n")
        let journalPath = directory + "/" + HostJournal.fileName

        let journal = try HostJournal(path: journalPath)
        try journal.record(try HostUndoAction.restoring(file: target), scope: "consumer")
        try write(target, "first change\n")
        // A second change to the same file: undone first, so the original wins.
        try journal.record(try HostUndoAction.restoring(file: target), scope: "consumer")
        try write(target, "second change\n")
        try journal.record(try HostUndoAction.restoring(file: created), scope: "consumer")
        try write(created, "new\n")

        // Another process (the next start) sees the same entries.
        let reopened = try HostJournal(path: journalPath)
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
        let target = directory + "/file"
        try write(target, "before\n")
        let journalPath = directory + "/" + HostJournal.fileName
        let journal = try HostJournal(path: journalPath)
        try journal.record(try HostUndoAction.restoring(file: target), scope: "consumer")
        try write(target, "after\n")
        let impossible = HostUndoAction.restoreFile(
            path: directory + "/missing/file", previousContentsBase64: Data("x".utf8).base64EncodedString(),
            existed: true)
        try journal.record(impossible, scope: "consumer")

        let report = HostJournal.recover(at: journalPath, runner: HostCommand())
        #expect(!report.isComplete)
        #expect(report.failed.map(\.action) == [impossible])
        #expect(report.undone.count == 1, "the others are still undone")
        #expect(read(target) == "before\n")
        #expect(try HostJournal(path: journalPath).pending.map(\.action) == [impossible])
        #expect("\(report)".contains("kept in the journal"))

        // Once the cause is fixed, the next start finishes the job.
        #expect(mkdir(directory + "/missing", 0o700) == 0)
        let retry = HostJournal.recover(at: journalPath, runner: HostCommand())
        #expect(retry.isComplete && retry.undone == [impossible])
        #expect(read(directory + "/missing/file") == "x")
        #expect(read(journalPath) == nil)
    }

    @Test func scopesRollBackIndependently() throws {
        let directory = try temporaryDirectory()
        defer { remove(directory) }
        let journal = try HostJournal(path: directory + "/" + HostJournal.fileName)
        try journal.record(try HostUndoAction.restoring(file: directory + "/a"), scope: "consumer")
        try journal.record(try HostUndoAction.restoring(file: directory + "/b"), scope: "provider")
        try write(directory + "/a", "a")
        try write(directory + "/b", "b")
        #expect(journal.rollback(scope: "consumer", runner: HostCommand()).undone.count == 1)
        #expect(read(directory + "/a") == nil)
        #expect(read(directory + "/b") == "b")
        #expect(try HostJournal(path: directory + "/" + HostJournal.fileName).pending.map(\.scope) == ["provider"])
    }

    @Test func aDamagedJournalIsNeverOverwritten() throws {
        let directory = try temporaryDirectory()
        defer { remove(directory) }
        let path = directory + "/" + HostJournal.fileName
        try write(path, "{ not json")
        #expect(throws: HostJournalError.self) { _ = try HostJournal(path: path) }
        let report = HostJournal.recover(at: path, runner: HostCommand())
        #expect(!report.isComplete)
        #expect(report.journalError?.contains("damaged") == true)
        #expect(read(path) == "{ not json")
    }

    @Test func aDanglingSymlinkIsNotJournaledAsAMissingFile() throws {
        let directory = try temporaryDirectory()
        defer { remove(directory) }
        #expect(symlink(directory + "/missing-target", directory + "/resolv.conf") == 0)
        #expect(throws: HostJournalError.self) { _ = try HostUndoAction.restoring(file: directory + "/resolv.conf") }
    }

    @Test func noJournalMeansNothingToRecover() {
        let report = HostJournal.recover(at: "/nonexistent-umbra-dir/tunnel-host.json", runner: HostCommand())
        #expect(report.isComplete && report.undone.isEmpty)
        #expect("\(report)" == "nothing to undo")
    }

    @Test func undoActionsAreReadableJSON() throws {
        let actions: [HostUndoAction] = [
            .deleteRoute(argv: ["ip", "route", "del", "0.0.0.0/1", "dev", "umbra0"]), .deleteLink(name: "umbra0"),
            .deleteNftTable(family: "inet", name: "umbra_killswitch"),
            .restoreFile(path: "/etc/resolv.conf", previousContentsBase64: "bmFtZXNlcnZlcg==", existed: true),
            .restoreSysctl(key: "net.ipv4.ip_forward", previousValue: "0"),
        ]
        let decoded = try JSONDecoder().decode([HostUndoAction].self, from: try JSONEncoder().encode(actions))
        #expect(decoded == actions)
        #expect(actions.map(\.description)[2] == "nft delete table inet umbra_killswitch")
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

    @Test func killSwitchRulesAllowOnlyLoopbackTunnelAndOverlaySocket() {
        let rules = ConsumerNetwork.killSwitchRules(tun: "umbra0", port: 51820)
        #expect(rules.contains("type filter hook output priority filter; policy drop;"))
        #expect(rules.contains("oifname \"lo\" accept\n"))
        #expect(rules.contains("oifname \"umbra0\" accept\n"))
        #expect(rules.contains("udp sport 51820 accept\n"))
        #expect(rules.components(separatedBy: "accept").count == 4)
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
