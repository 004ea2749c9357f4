// The command flows alone: inputs in, actions out, over a fixed view of the node.

import Dialogue
import Ledger
import Proposals
import Testing
import UmbraCore

@testable import Kademlia
@testable import Node

/// A node as a flow sees it: a fixed set of offers and direct endpoints.
private struct FixedView: FlowView {
    var offersHeld: [ServiceProposal] = []
    var endpoints: [PublicKey: Endpoint] = [:]
    var localKey: PublicKey
    var consumerHost = ConsumerHost.none
    var dialogues: Set<PublicKey> = []

    func hasDialogue(with provider: PublicKey) -> Bool { dialogues.contains(provider) }
    var committee: Committee?
    func ledgerCommittee(epoch: UInt64) -> Committee? { epoch == 0 ? committee : nil }
    /// What `ledgerDraft` answers (a test changes it between inputs).
    var draft: Result<LedgerDraft, CommandFailure> = .failure(.invalid("the ledger is off"))
    func ledgerDraft(_ action: LedgerAction, now: Instant) -> Result<LedgerDraft, CommandFailure> { draft }
    func ledgerAnchorEpoch(for entry: LedgerEntry) -> UInt64? { nil }
    func ledgerChannelConsumer(_ channel: ChannelID) -> PublicKey? { nil }

    func offers(serviceType: String, provider: PublicKey?, country: String?, now: Instant) -> [ServiceProposal] {
        offersHeld.filter {
            $0.serviceType == serviceType && (provider == nil || $0.provider == provider)
                && (country == nil || $0.location.country == country)
        }.sorted { $0.pricePerGiB < $1.pricePerGiB }
    }

    func directEndpoint(of peer: PublicKey) -> Endpoint? { endpoints[peer] }
}

@Suite("Command flows, alone")
struct CommandFlowTests {
    static let now = Instant(nanoseconds: 1_700_000_000_000_000_000)
    static let ids: [Identity] = {
        var rng = SeededRandom(seed: 21)
        return (0..<4).map { _ in Identity.generate(using: &rng) }
    }()

    static func offer(_ index: Int, country: String, price: UInt64) -> ServiceProposal {
        ServiceProposal(
            provider: ids[index].publicKey, seq: 1, issuedAt: now, expiresAt: now + .seconds(180),
            serviceType: "ip-tunnel", location: .init(country: country), pricePerGiB: price, pricePerMinute: 0,
            capacity: 8,
            contacts: .init(direct: [Endpoint(address: .v4(0xC612_0000 + UInt32(index)), port: 7000)]))
    }

    @Test func connectTriesCandidatesCheapestFirstAndFailsOver() {
        let view = FixedView(
            offersHeld: [Self.offer(2, country: "DE", price: 9), Self.offer(1, country: "DE", price: 3)],
            localKey: Self.ids[0].publicKey)
        var flow = CommandFlow(.connect(ConnectRequest(target: .country("de"))))
        let first = flow.advance(.start, view: view, now: Self.now)
        #expect(first.count == 2)
        guard case .reach(let reached, _) = first.first, case .openDialogue(let request) = first.last else {
            Issue.record("\(first)")
            return
        }
        #expect(reached == Self.ids[1].publicKey && request.provider == Self.ids[1].publicKey, "cheapest first")
        // Unrelated inputs change nothing.
        #expect(flow.advance(.dialogueFailed(Self.ids[3].publicKey, .timeout), view: view, now: Self.now).isEmpty)
        let next = flow.advance(.dialogueFailed(Self.ids[1].publicKey, .timeout), view: view, now: Self.now)
        guard case .openDialogue(let second)? = next.last else {
            Issue.record("\(next)")
            return
        }
        #expect(second.provider == Self.ids[2].publicKey)
        let last = flow.advance(
            .dialogueFailed(Self.ids[2].publicKey, .rejected(.noCapacity, reason: "")), view: view, now: Self.now)
        guard case .complete(.failed(.noneAnswered(let attempts)))? = last.first else {
            Issue.record("\(last)")
            return
        }
        #expect(attempts.map(\.provider) == [Self.ids[1].publicKey, Self.ids[2].publicKey])
        #expect(flow.isDone)
    }

    @Test func connectToANamedProviderFetchesItsOfferFirst() {
        var view = FixedView(localKey: Self.ids[0].publicKey)
        let provider = Self.ids[3].publicKey
        var flow = CommandFlow(.connect(ConnectRequest(target: .provider(provider))))
        // No session with it: its peer record is looked up first.
        #expect(flow.advance(.start, view: view, now: Self.now) == [.lookup(RecordKey.peer(provider), .value)])
        // The lookup found nothing usable: no offer, and it says so.
        let report = LookupReport(
            id: 1, target: RecordKey.peer(provider), kind: .value, targetContact: nil, records: [], closest: [],
            hops: 1, queries: 1, responses: 1, failures: 0, latency: .milliseconds(5), duration: .milliseconds(5))
        let ended = flow.advance(.lookupFinished(report), view: view, now: Self.now)
        #expect(ended == [.complete(.failed(.noOffer(provider: provider, serviceType: "ip-tunnel")))])

        // With a direct session the offer is asked of the provider at once, and waited for 2 s.
        let endpoint = Endpoint(address: .v4(0xC612_0003), port: 7000)
        view.endpoints[provider] = endpoint
        flow = CommandFlow(.connect(ConnectRequest(target: .provider(provider))))
        #expect(
            flow.advance(.start, view: view, now: Self.now) == [
                .fetchOffer(provider, serviceType: "ip-tunnel", at: endpoint)
            ])
        #expect(flow.deadline == Self.now + .seconds(2))
        #expect(flow.advance(.deadline, view: view, now: Self.now + .seconds(1)).isEmpty, "not due yet")
        view.offersHeld = [Self.offer(3, country: "NL", price: 1)]
        let opened = flow.advance(.offerStored(provider, serviceType: "ip-tunnel"), view: view, now: Self.now)
        guard case .openDialogue(let request)? = opened.last else {
            Issue.record("\(opened)")
            return
        }
        #expect(request.provider == provider)
    }

    @Test func pingTimesOutAtItsDeadline() {
        let view = FixedView(localKey: Self.ids[0].publicKey)
        var flow = CommandFlow(.ping(Self.ids[1].publicKey, timeout: .seconds(3)))
        #expect(flow.advance(.start, view: view, now: Self.now) == [.ping(Self.ids[1].publicKey)])
        #expect(flow.advance(.pong(Self.ids[2].publicKey, .milliseconds(3)), view: view, now: Self.now).isEmpty)
        #expect(flow.advance(.deadline, view: view, now: Self.now + .seconds(3)) == [.complete(.failed(.timedOut))])
    }

    static func session(with provider: Int) -> ClientSession {
        ClientSession(
            provider: ids[provider].publicKey, requestID: 1, sessionID: UInt64(40 + provider), mode: .fullTunnel,
            grant: SessionGrant(
                innerIPv4: InterfaceAddress(address: .v4(0x0A4D_0002), prefixLength: 24), gateway: .v4(0x0A4D_0001),
                dnsServers: [], mtu: 1380, keepaliveSeconds: 5),
            openedAt: now, keepaliveInterval: .seconds(5))
    }

    @Test func connectWithHostOptionsWaitsForTheHostThenCompletes() {
        var view = FixedView(offersHeld: [Self.offer(1, country: "DE", price: 3)], localKey: Self.ids[0].publicKey)
        let options = ConsumerTunnelOptions(routes: .split(["198.51.100.0/24"]), dns: ["9.9.9.9"], killSwitch: true)
        var flow = CommandFlow(.connect(ConnectRequest(target: .country("DE"), host: options)))
        #expect(flow.advance(.start, view: view, now: Self.now).count == 2)
        let session = Self.session(with: 1)
        #expect(flow.advance(.dialogueOpened(session), view: view, now: Self.now) == [.setUpTunnel(session, options)])
        #expect(flow.deadline == nil, "the shell answers every host request")
        let plan = ConsumerTunnelPlan(session: session, options: options, underlay: nil)
        let request = HostRequest(token: HostToken(1), action: .setUpConsumerTunnel(plan))
        // Another session's set-up, or a tear-down, is not this flow's answer.
        let other = ConsumerTunnelPlan(session: Self.session(with: 2), options: options, underlay: nil)
        #expect(
            flow.advance(
                .hostCompleted(HostRequest(token: HostToken(9), action: .setUpConsumerTunnel(other)), .done),
                view: view,
                now: Self.now
            ).isEmpty)
        view.consumerHost = .up(plan)
        // The provider ended the session meanwhile: the host is torn down again, the connect fails.
        var ended = flow
        guard
            case .tearDownTunnel? = ended.advance(.hostCompleted(request, .done), view: view, now: Self.now).first,
            ended.isDone
        else {
            Issue.record("an ended session was reported connected")
            return
        }
        view.dialogues = [Self.ids[1].publicKey]
        guard
            case .complete(.connected(let connected, let offer))? = flow.advance(
                .hostCompleted(request, .done), view: view, now: Self.now
            ).first
        else {
            Issue.record("not connected")
            return
        }
        #expect(connected == session && offer.provider == Self.ids[1].publicKey && flow.isDone)
    }

    @Test func aFailedHostSetUpClosesTheDialogueAndFailsTheConnect() {
        let view = FixedView(
            offersHeld: [Self.offer(1, country: "DE", price: 3), Self.offer(2, country: "DE", price: 5)],
            localKey: Self.ids[0].publicKey)
        var flow = CommandFlow(.connect(ConnectRequest(target: .country("DE"), host: ConsumerTunnelOptions())))
        _ = flow.advance(.start, view: view, now: Self.now)
        let session = Self.session(with: 1)
        _ = flow.advance(.dialogueOpened(session), view: view, now: Self.now)
        let plan = ConsumerTunnelPlan(session: session, options: ConsumerTunnelOptions(), underlay: nil)
        let actions = flow.advance(
            .hostCompleted(HostRequest(token: HostToken(1), action: .setUpConsumerTunnel(plan)), .failed("no TUN")),
            view: view, now: Self.now)
        // Not the next candidate: the host would fail the same way.
        #expect(actions == [.closeDialogue(Self.ids[1].publicKey), .complete(.failed(.host("no TUN")))])
    }

    @Test func connectTearsTheTunnelThatIsUpDownFirst() {
        var view = FixedView(offersHeld: [Self.offer(2, country: "DE", price: 3)], localKey: Self.ids[0].publicKey)
        let old = ConsumerTunnelPlan(session: Self.session(with: 1), options: ConsumerTunnelOptions(), underlay: nil)
        view.consumerHost = .up(old)
        var flow = CommandFlow(.connect(ConnectRequest(target: .country("DE"), host: ConsumerTunnelOptions())))
        #expect(flow.advance(.start, view: view, now: Self.now) == [.tearDownTunnel])
        view.consumerHost = .none
        let next = flow.advance(
            .hostCompleted(HostRequest(token: HostToken(2), action: .tearDownConsumerTunnel), .done), view: view,
            now: Self.now)
        guard case .openDialogue(let request)? = next.last else {
            Issue.record("\(next)")
            return
        }
        #expect(request.provider == Self.ids[2].publicKey)
        // A second connect while a set-up is in flight is refused.
        view.consumerHost = .settingUp(HostToken(3), old)
        var second = CommandFlow(.connect(ConnectRequest(target: .country("DE"), host: ConsumerTunnelOptions())))
        guard case .complete(.failed(.invalid))? = second.advance(.start, view: view, now: Self.now).first else {
            Issue.record("a second set-up was not refused")
            return
        }
    }

    @Test func disconnectTearsDownAndNamesTheProvider() {
        var view = FixedView(localKey: Self.ids[0].publicKey)
        var idle = CommandFlow(.disconnect)
        #expect(idle.advance(.start, view: view, now: Self.now) == [.complete(.disconnected(provider: nil))])
        view.consumerHost = .up(
            ConsumerTunnelPlan(session: Self.session(with: 1), options: ConsumerTunnelOptions(), underlay: nil))
        var flow = CommandFlow(.disconnect)
        #expect(flow.advance(.start, view: view, now: Self.now) == [.tearDownTunnel])
        #expect(
            flow.advance(
                .hostCompleted(HostRequest(token: HostToken(4), action: .tearDownConsumerTunnel), .done), view: view,
                now: Self.now) == [.complete(.disconnected(provider: Self.ids[1].publicKey))])
        var failing = CommandFlow(.disconnect)
        _ = failing.advance(.start, view: view, now: Self.now)
        #expect(
            failing.advance(
                .hostCompleted(HostRequest(token: HostToken(5), action: .tearDownConsumerTunnel), .failed("busy")),
                view: view, now: Self.now) == [.complete(.failed(.host("busy")))])
    }

    // MARK: - Ledger

    /// Four members of 100 stake, and a transfer of `ids[0]` to ask them about.
    fileprivate static func ledgerSetup() -> (FixedView, [Identity], LedgerEntry) {
        var rng = SeededRandom(seed: 22)
        let members = (0..<4).map { _ in Identity.generate(using: &rng) }
        var view = FixedView(localKey: ids[3].publicKey)
        view.committee = try? Committee(members.map { CommitteeMember(identity: $0.publicKey, stake: 100) })
        let entry = LedgerEntry.make(
            network: "umbra-test", epoch: 0, identity: ids[0], height: 0, prev: .zero,
            body: .transfer(recipient: ids[1].publicKey, amount: 5))
        return (view, members, entry)
    }

    @Test func ledgerSubmitAsksEveryMemberAndCertifiesWithMoreThanTwoThirds() {
        let (view, members, entry) = Self.ledgerSetup()
        var flow = CommandFlow(.ledgerSubmit(entry))
        let asked = flow.advance(.start, view: view, now: Self.now)
        #expect(asked == members.map { .sendLedger(.voteRequest(entry), to: $0.publicKey) })
        func vote(_ member: Identity, for entry: LedgerEntry) -> FlowInput {
            .ledgerVote(
                Vote.make(
                    identity: member, network: "umbra-test", slot: Slot(entry: entry), entryHash: entry.hash, report: 0),
                proof: nil, from: member.publicKey)
        }
        #expect(flow.advance(vote(members[0], for: entry), view: view, now: Self.now).isEmpty)
        // A vote signed by a non-member, or for another entry, counts for nothing.
        #expect(flow.advance(vote(Self.ids[2], for: entry), view: view, now: Self.now).isEmpty)
        #expect(flow.advance(vote(members[1], for: entry), view: view, now: Self.now).isEmpty)
        #expect(flow.advance(vote(members[1], for: entry), view: view, now: Self.now).isEmpty, "a repeat")
        let done = flow.advance(vote(members[3], for: entry), view: view, now: Self.now)
        guard case .ledgerCertified(let certified)? = done.first, done.count == 2,
            case .complete(.ledgerCertified(certified, nil)) = done[1]
        else {
            Issue.record("no certificate: \(done)")
            return
        }
        #expect(certified.certificate.votes.count == 3 && flow.isDone)
    }

    @Test func aForgedVoteNamingAMemberDoesNotCountAsItsAnswer() {
        let (view, members, entry) = Self.ledgerSetup()
        var flow = CommandFlow(.ledgerSubmit(entry))
        _ = flow.advance(.start, view: view, now: Self.now)
        var forged = Vote.make(
            identity: members[0], network: "umbra-test", slot: Slot(entry: entry), entryHash: entry.hash, report: 0)
        forged.signature[0] ^= 1
        #expect(
            flow.advance(.ledgerVote(forged, proof: nil, from: Self.ids[2].publicKey), view: view, now: Self.now)
                .isEmpty)
        let refuse = { (member: Identity) -> FlowInput in
            .ledgerRefusal(entry.hash, .slotLocked, from: member.publicKey)
        }
        #expect(flow.advance(refuse(members[1]), view: view, now: Self.now).isEmpty, "300 of 400 may still vote")
        // members[0] never voted: its refusal counts, and 200 of 400 cannot make a quorum.
        guard case .complete(.failed(.ledger))? = flow.advance(refuse(members[0]), view: view, now: Self.now).first
        else {
            Issue.record("the forged vote silenced the member's refusal")
            return
        }
    }

    @Test func ledgerSubmitFailsOnceRefusalsLeaveNoQuorumOrAtItsDeadline() {
        let (view, members, entry) = Self.ledgerSetup()
        var flow = CommandFlow(.ledgerSubmit(entry))
        _ = flow.advance(.start, view: view, now: Self.now)
        let refuse = { (member: Identity) -> FlowInput in
            .ledgerRefusal(entry.hash, .slotLocked, from: member.publicKey)
        }
        #expect(flow.advance(refuse(members[0]), view: view, now: Self.now).isEmpty, "300 of 400 may still vote")
        #expect(flow.advance(refuse(members[0]), view: view, now: Self.now).isEmpty, "one answer per member")
        let failed = flow.advance(refuse(members[1]), view: view, now: Self.now)
        guard case .complete(.failed(.ledger(let reason)))? = failed.first else {
            Issue.record("not failed: \(failed)")
            return
        }
        #expect(reason.contains("another entry holds"))

        var waiting = CommandFlow(.ledgerSubmit(entry))
        _ = waiting.advance(.start, view: view, now: Self.now)
        // Before its limit, a deadline asks the members that have not answered again.
        let resent = waiting.advance(.deadline, view: view, now: Self.now + .milliseconds(400))
        #expect(resent == members.map { .sendLedger(.voteRequest(entry), to: $0.publicKey) })
        #expect(waiting.deadline == Self.now + .milliseconds(1200), "the wait doubles")
        #expect(
            !waiting.advance(.deadline, view: view, now: Self.now + .seconds(9)).contains {
                if case .complete = $0 { true } else { false }
            })
        guard
            case .complete(.failed(.ledger))? = waiting.advance(.deadline, view: view, now: Self.now + .seconds(10))
                .first
        else {
            Issue.record("no timeout")
            return
        }

        var off = CommandFlow(.ledgerSubmit(entry))
        guard
            case .complete(.failed(.ledger))? = off.advance(
                .start, view: FixedView(localKey: Self.ids[3].publicKey), now: Self.now
            ).first
        else {
            Issue.record("a node without a ledger took the command")
            return
        }
    }

    @Test func aLedgerActionSendsAnUnfinishedEntryFirstThenDraftsAgain() {
        var (view, members, earlier) = Self.ledgerSetup()
        func votes(for entry: LedgerEntry) -> [FlowInput] {
            members.prefix(3).map {
                .ledgerVote(
                    Vote.make(
                        identity: $0, network: "umbra-test", slot: Slot(entry: entry), entryHash: entry.hash, report: 0),
                    proof: nil, from: $0.publicKey)
            }
        }
        let action = LedgerAction.transfer(to: Self.ids[2].publicKey, amount: 7)
        var flow = CommandFlow(.ledger(action))
        view.draft = .success(LedgerDraft(entry: earlier, isRetry: true))
        #expect(flow.advance(.start, view: view, now: Self.now) == [.ledgerSubmitted(earlier)], "disk first")
        let asked = flow.advance(.ledgerOwnPersisted(durable: true), view: view, now: Self.now)
        #expect(asked == members.map { .sendLedger(.voteRequest(earlier), to: $0.publicKey) })
        var last: [FlowAction] = []
        for input in votes(for: earlier) { last = flow.advance(input, view: view, now: Self.now) }
        guard case .ledgerCertified(let retried)? = last.first, last.count == 1 else {
            Issue.record("the earlier entry was not certified alone: \(last)")
            return
        }
        #expect(!flow.isDone && flow.deadline == Self.now, "the asked-for entry is drafted once that one is applied")

        // Drafted against the state that applied the earlier entry.
        let next = LedgerEntry.make(
            network: "umbra-test", epoch: 0, identity: Self.ids[0], height: 1, prev: earlier.hash,
            body: action.body(now: Self.now))
        view.draft = .success(LedgerDraft(entry: next, isRetry: false))
        #expect(flow.advance(.deadline, view: view, now: Self.now) == [.ledgerSubmitted(next)])
        _ = flow.advance(.ledgerOwnPersisted(durable: true), view: view, now: Self.now)
        for input in votes(for: next) { last = flow.advance(input, view: view, now: Self.now) }
        guard case .complete(.ledgerCertified(let certified, let first?))? = last.last else {
            Issue.record("not certified: \(last)")
            return
        }
        #expect(certified.entry == next && first == retried && flow.isDone)
    }

    @Test func aLedgerActionTheReplicaRefusesFailsWithItsReasonAndSendsNothing() {
        var (view, _, _) = Self.ledgerSetup()
        view.draft = .failure(.invalid("insufficient balance: transfer 7 needs 7, the balance is 0"))
        var flow = CommandFlow(.ledger(.transfer(to: Self.ids[2].publicKey, amount: 7)))
        #expect(
            flow.advance(.start, view: view, now: Self.now) == [
                .complete(.failed(.invalid("insufficient balance: transfer 7 needs 7, the balance is 0")))
            ])
    }

    @Test func aRetriedEntryThatFailsSaysItWasTheEarlierEntryAndThatItStaysPending() {
        var (view, members, earlier) = Self.ledgerSetup()
        view.draft = .success(LedgerDraft(entry: earlier, isRetry: true))
        var flow = CommandFlow(.ledger(.withdraw))
        _ = flow.advance(.start, view: view, now: Self.now)
        _ = flow.advance(.ledgerOwnPersisted(durable: true), view: view, now: Self.now)
        _ = flow.advance(
            .ledgerRefusal(earlier.hash, .slotLocked, from: members[0].publicKey), view: view, now: Self.now)
        let failed = flow.advance(
            .ledgerRefusal(earlier.hash, .slotLocked, from: members[1].publicKey), view: view, now: Self.now)
        guard case .complete(.failed(.ledger(let reason)))? = failed.first else {
            Issue.record("not failed: \(failed)")
            return
        }
        #expect(reason.hasPrefix("an earlier entry of this node (transfer at height 0)"))
        #expect(reason.hasSuffix("(do not repeat this one)"))
    }

    @Test func repeatingAFailedActionCertifiesThePendingEntryOnceAndDraftsNothingMore() {
        var (view, members, earlier) = Self.ledgerSetup()
        // `earlier` is a transfer of 5 to ids[1]: the same action, asked again after a failure.
        view.draft = .success(LedgerDraft(entry: earlier, isRetry: true))
        var flow = CommandFlow(.ledger(.transfer(to: Self.ids[1].publicKey, amount: 5)))
        _ = flow.advance(.start, view: view, now: Self.now)
        _ = flow.advance(.ledgerOwnPersisted(durable: true), view: view, now: Self.now)
        var last: [FlowAction] = []
        for member in members.prefix(3) {
            let vote = Vote.make(
                identity: member, network: "umbra-test", slot: Slot(entry: earlier), entryHash: earlier.hash, report: 0)
            last = flow.advance(.ledgerVote(vote, proof: nil, from: member.publicKey), view: view, now: Self.now)
        }
        guard case .complete(.ledgerCertified(let certified, nil))? = last.last else {
            Issue.record("not completed with the pending entry: \(last)")
            return
        }
        #expect(certified.entry == earlier && flow.isDone, "paid once")
    }

    @Test func refusalsThatMayPassAreAskedAgainNotCounted() {
        var (view, members, entry) = Self.ledgerSetup()
        view.draft = .success(LedgerDraft(entry: entry, isRetry: false))
        var flow = CommandFlow(.ledger(.transfer(to: Self.ids[1].publicKey, amount: 5)))
        _ = flow.advance(.start, view: view, now: Self.now)
        _ = flow.advance(.ledgerOwnPersisted(durable: true), view: view, now: Self.now)
        // Two of four members are behind or busy: not final, whatever their stake.
        #expect(
            flow.advance(
                .ledgerRefusal(entry.hash, .wrongPosition, from: members[0].publicKey), view: view, now: Self.now
            ).isEmpty)
        #expect(
            flow.advance(.ledgerRefusal(entry.hash, .busy, from: members[1].publicKey), view: view, now: Self.now)
                .isEmpty)
        #expect(!flow.isDone)
        let resent = flow.advance(.deadline, view: view, now: Self.now + .milliseconds(400))
        #expect(resent == members.map { .sendLedger(.voteRequest(entry), to: $0.publicKey) }, "all four asked again")
    }

    @Test func anEntryThatCannotBeWrittenIsNeverSent() {
        var (view, _, entry) = Self.ledgerSetup()
        view.draft = .success(LedgerDraft(entry: entry, isRetry: false))
        var flow = CommandFlow(.ledger(.transfer(to: Self.ids[1].publicKey, amount: 5)))
        #expect(flow.advance(.start, view: view, now: Self.now) == [.ledgerSubmitted(entry)])
        let failed = flow.advance(.ledgerOwnPersisted(durable: false), view: view, now: Self.now)
        guard case .complete(.failed(.invalid(let reason)))? = failed.first, failed.count == 1 else {
            Issue.record("sent or not failed: \(failed)")
            return
        }
        #expect(reason.contains("nothing was sent"))
    }
}
