// Service proposals and join sync messages from untrusted bytes: a decoded SignedProposal re-encodes
// to exactly its input and respects every limit; `verify` never traps, and a proposal that verifies
// is stored and recognised again. A decoded sync message re-encodes to its input; a store answering
// it never traps and its pages tile the requested range, fit a datagram and decode again; a sync
// client handed it (as is, and aimed at one of its own requests) never traps, and whatever it sends
// fits a datagram. Errors are short.

import FuzzSupport
import Proposals
import UmbraCore

@main enum Main {
    static func main() { LibFuzzer.run { fuzz($0, $1) } }
}

private let networkID = "fuzz"
private let now = Instant(nanoseconds: 1_700_000_000_000_000_000)

private func identity(_ byte: UInt8) -> Identity {
    do { return try Identity(seed: [UInt8](repeating: byte, count: Identity.seedByteCount)) } catch {
        fatalError("\(error)")
    }
}

private let peer = identity(200).publicKey

/// A store holding a few live offers and a tombstone, so requests are answered with items.
private let seededStore: ProposalStore = {
    var store = ProposalStore(capacity: 64)
    for byte in UInt8(1)...12 {
        let who = identity(byte)
        let offer = ServiceProposal(
            provider: who.publicKey, seq: 1, issuedAt: now, expiresAt: now + SignedProposal.defaultLifetime,
            serviceType: byte % 2 == 0 ? "ip-tunnel" : "socks5", location: .init(country: "DE"),
            pricePerGiB: UInt64(byte), pricePerMinute: 1, capacity: 4,
            contacts: .init(direct: [Endpoint(address: .v4(0x0A00_0000 | UInt32(byte)), port: 4747)]))
        do {
            _ = store.insert(try SignedProposal.make(offer: offer, identity: who, networkID: networkID), now: now)
        } catch {
            fatalError("\(error)")
        }
    }
    let withdrawal = ProposalWithdrawal(
        provider: identity(13).publicKey, seq: 1, issuedAt: now, expiresAt: now + .seconds(60), serviceType: "socks5")
    do {
        _ = store.insert(
            try SignedProposal.make(withdrawal: withdrawal, identity: identity(13), networkID: networkID), now: now)
    } catch {
        fatalError("\(error)")
    }
    return store
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = LibFuzzer.bytes(data, size)
    fuzzProposal(input)
    fuzzSyncMessage(input)
    return 0
}

// MARK: - Signed proposals

private func fuzzProposal(_ input: [UInt8]) {
    let proposal: SignedProposal
    do throws(ProposalError) {
        proposal = try SignedProposal(decoding: input)
    } catch {
        require(error.description.utf8.count < 400, "error message too long")
        return
    }
    require(proposal.encoded() == input, "proposal re-encodes differently")
    require(proposal.encodedSize == input.count, "encodedSize \(proposal.encodedSize) != \(input.count)")
    require(input.count <= SignedProposal.maximumEncodedSize, "accepted \(input.count) bytes")
    require(proposal.protocolVersion == SignedProposal.currentVersion, "accepted version \(proposal.protocolVersion)")
    require(ServiceProposal.isValidServiceType(proposal.serviceType), "service type \(proposal.serviceType)")
    require(proposal.expiresAt > proposal.issuedAt, "expiry not after issue")
    if let offer = proposal.offer {
        require(ServiceProposal.isValidCountry(offer.location.country), "country \(offer.location.country)")
        if let region = offer.location.region { require(ServiceProposal.isValidRegion(region), "region \(region)") }
        if case .allowList(let keys) = offer.access {
            require((1...ServiceProposal.maximumAllowListKeys).contains(keys.count), "\(keys.count) allowed keys")
        }
        require(offer.contacts.direct.count <= ServiceProposal.maximumDirectEndpoints, "direct endpoints")
        require(offer.contacts.relays.count <= ServiceProposal.maximumRelays, "relays")
    }

    // Verified at a few instants: never a trap; one that verifies is stored once, then a duplicate.
    for instant in [now, proposal.issuedAt, proposal.expiresAt - .nanoseconds(1)] {
        do throws(ProposalError) {
            try proposal.verify(networkID: networkID, now: instant)
        } catch {
            require(error.description.utf8.count < 400, "error message too long")
            continue
        }
        var store = ProposalStore(capacity: 4)
        let outcome = store.insert(proposal, now: instant)
        let expected: ProposalStore.InsertOutcome = proposal.kind == .offer ? .added : .tombstoneStored
        require(outcome == expected, "a verified proposal was \(outcome)")
        let again = store.verifyAndInsert(input, networkID: networkID, now: instant)
        require(again == .duplicate, "inserting the same bytes again was \(again)")
    }
}

// MARK: - Sync messages

private func fuzzSyncMessage(_ input: [UInt8]) {
    let message: ProposalSyncMessage
    do throws(DecodeError) {
        message = try ProposalSyncMessage(decoding: input)
    } catch {
        require(error.description.utf8.count < 400, "error message too long")
        return
    }
    require(message.encoded() == input, "\(message.tag) re-encodes differently")
    require(input.count <= ProposalSyncMessage.maximumSize, "accepted \(input.count) bytes")
    if case .page(let page) = message {
        require(page.items.count <= ProposalSyncMessage.maximumItemsPerPage, "\(page.items.count) items")
    }

    // Answered by a store: pages that tile the asked range, each a well-formed datagram.
    let store = seededStore
    let replies = store.respond(to: message, now: now)
    if case .request(let request) = message {
        require(!replies.isEmpty && replies.count <= ProposalStore.maximumPagesPerRequest, "\(replies.count) pages")
        var expectedLower: Key256? = request.range.lowerBound
        for (index, reply) in replies.enumerated() {
            guard case .page(let page) = reply else {
                require(false, "a request answered with a request")
                return
            }
            require(page.requestID == request.requestID, "page for another request")
            require(page.covered.lowerBound == expectedLower, "pages do not tile the range")
            require(request.range.contains(page.covered), "page outside the range")
            require(page.isLast == (index == replies.count - 1), "last flag misplaced")
            expectedLower = page.covered.upperBound.successor
            let bytes = reply.encoded()
            require(bytes.count <= ProposalSyncMessage.maximumSize, "a page of \(bytes.count) bytes")
            require((try? ProposalSyncMessage(decoding: bytes)) == reply, "a page does not decode to itself")
        }
    } else {
        require(replies.isEmpty, "a page was answered")
    }

    // Handed to a client that asked `peer` for four ranges: as is, and aimed at one of its requests.
    var client = ProposalSyncClient()
    var rng = SeededRandom(seed: 1)
    let requestIDs = client.start(peers: [peer], now: now, rng: &rng).map { effect in
        guard case .send(let sent, _) = effect else { return UInt32(0) }
        return sent.requestID
    }
    var inputs = [message]
    if case .page(var page) = message, !requestIDs.isEmpty {
        page.requestID = requestIDs[Int(page.requestID % UInt32(requestIDs.count))]
        inputs.append(.page(page))
    }
    var local = ProposalStore(capacity: 16)
    for delivered in inputs {
        let (items, effects) = client.handle(delivered, from: peer, now: now + .milliseconds(50))
        for item in items { _ = local.verifyAndInsert(item, networkID: networkID, now: now) }
        for case .send(let sent, _) in effects + client.tick(now: now + .seconds(5)) {
            let bytes = sent.encoded()
            require(bytes.count <= ProposalSyncMessage.maximumSize, "a request of \(bytes.count) bytes")
            require((try? ProposalSyncMessage(decoding: bytes)) == sent, "a request does not decode to itself")
        }
    }
    require(local.count + local.tombstoneCount <= 16, "store above its capacity")
}
