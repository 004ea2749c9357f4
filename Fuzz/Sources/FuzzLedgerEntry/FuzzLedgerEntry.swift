// Ledger entries, votes, certificates, evidence, promises, the ledger channel's messages, certified
// entries and lock records from untrusted bytes: each decoder
// either refuses with a short typed error or returns a value that re-encodes to exactly its input and
// respects the limits. A decoded entry is then checked by a replica and by a validator, and a decoded
// certificate verified against the genesis committee: never a trap, and nothing is voted for without
// a persist first.

import FuzzSupport
import Ledger
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

private let validators = (UInt8(1)...4).map(identity)

/// A genesis state: four validators, and balances for the keys whose seed bytes are 1...8.
private let genesisState: LedgerState = {
    let parameters = GenesisParameters(
        network: networkID,
        allocations: (UInt8(1)...8).map { Allocation(recipient: identity($0).publicKey, amount: 1_000) },
        committee: validators.map { CommitteeMember(identity: $0.publicKey, stake: 100) },
        minimumBonds: MinimumBonds(provider: 10, relay: 10, validator: 50), unbondingDelay: .seconds(100),
        evidenceLifetime: .seconds(50), committeeSize: 4, reporterRewardPPM: 100_000)
    do { return try LedgerState(genesis: parameters) } catch { fatalError("\(error)") }
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = LibFuzzer.bytes(data, size)
    fuzzEntry(input)
    fuzzVote(input)
    fuzzCertificate(input)
    fuzzEvidence(input)
    fuzzPromise(input)
    fuzzMessage(input)
    fuzzCertifiedEntry(input)
    fuzzLockRecord(input)
    return 0
}

private func refused(_ error: DecodeError) {
    require(error.description.utf8.count < 400, "error message too long")
}

private func fuzzEntry(_ input: [UInt8]) {
    let entry: LedgerEntry
    do throws(DecodeError) {
        entry = try LedgerEntry(decoding: input)
    } catch {
        return refused(error)
    }
    require(entry.encoded() == input, "entry re-encodes differently")
    require(input.count <= LedgerLimits.maximumEntrySize, "accepted \(input.count) bytes")
    require(entry.network.utf8.count <= LedgerLimits.maximumNetworkBytes, "network too long")
    _ = entry.hash
    _ = entry.hasValidSignature

    do throws(LedgerError) {
        try genesisState.check(entry)
    } catch {
        require(error.description.utf8.count < 400, "error message too long")
    }
    var validator = Validator(identity: validators[0], ledger: genesisState)
    let effects = validator.handleRequest(entry, now: now)
    for effect in effects {
        if case .sendVote = effect { require(false, "a vote before any persist") }
    }
    if case .persistLock(let token, let lock) = effects.first {
        require(lock.entryHash == entry.hash, "lock for another entry")
        let released = validator.persisted(token: token)
        guard case .sendVote(let vote, _) = released.first else { return require(false, "no vote after persist") }
        require(vote.hasValidSignature(network: networkID), "the validator's vote does not verify")
        require(validator.handleRequest(entry, now: now) == released, "a repeat got another answer")
    }
}

private func fuzzVote(_ input: [UInt8]) {
    let vote: Vote
    do throws(DecodeError) {
        vote = try Vote(decoding: input)
    } catch {
        return refused(error)
    }
    require(vote.encoded() == input, "vote re-encodes differently")
    _ = vote.hasValidSignature(network: networkID)
}

private func fuzzCertificate(_ input: [UInt8]) {
    let certificate: Certificate
    do throws(DecodeError) {
        certificate = try Certificate(decoding: input)
    } catch {
        return refused(error)
    }
    require(certificate.encoded() == input, "certificate re-encodes differently")
    require(certificate.votes.count <= LedgerLimits.maximumCommitteeSize, "\(certificate.votes.count) votes")
    let entry = LedgerEntry.make(
        network: networkID, epoch: certificate.epoch, identity: validators[1], height: certificate.height,
        prev: .zero, body: .withdraw(at: now))
    do throws(LedgerError) {
        try certificate.verify(for: entry, committee: genesisState.committee)
    } catch {
        require(error.description.utf8.count < 400, "error message too long")
    }
}

private func fuzzEvidence(_ input: [UInt8]) {
    let evidence: Evidence
    do throws(DecodeError) {
        evidence = try Evidence(decoding: input)
    } catch {
        return refused(error)
    }
    require(evidence.encoded() == input, "evidence re-encodes differently")
    _ = try? evidence.verify(network: networkID)
}

private func fuzzPromise(_ input: [UInt8]) {
    let promise: ChannelPromise
    do throws(DecodeError) {
        promise = try ChannelPromise(decoding: input)
    } catch {
        return refused(error)
    }
    require(promise.encoded() == input, "promise re-encodes differently")
    _ = promise.verify(consumer: validators[0].publicKey, network: networkID)
}

private func fuzzMessage(_ input: [UInt8]) {
    let message: LedgerMessage
    do throws(DecodeError) {
        message = try LedgerMessage(decoding: input)
    } catch {
        return refused(error)
    }
    require(message.encoded() == input, "ledger message re-encodes differently")
    require(input.count <= LedgerMessage.maximumSize, "accepted \(input.count) bytes")
    if case .voteRequest(let entry) = message {
        var validator = Validator(identity: validators[0], ledger: genesisState)
        for effect in validator.handleRequest(entry, now: now) {
            if case .sendVote = effect { require(false, "a vote before any persist") }
        }
    }
}

private func fuzzCertifiedEntry(_ input: [UInt8]) {
    let certified: CertifiedEntry
    do throws(DecodeError) {
        certified = try CertifiedEntry(decoding: input)
    } catch {
        return refused(error)
    }
    require(certified.encoded() == input, "certified entry re-encodes differently")
    for certificate in [certified.certificate] + (certified.anchor.map { [$0] } ?? []) {
        for vote in certificate.votes {
            require((vote.report > 0) == (vote.proof != nil), "a report without its promise, or a stray promise")
            require(vote.proof.map { $0.amount == vote.report } ?? true, "a promise of another amount")
        }
    }
    // Verifying once and applying the verified entry judges exactly as applying it does.
    var viaVerify = genesisState
    let verifiedOutcome = (try? genesisState.verify(certified)).flatMap { try? viaVerify.apply($0) }
    var direct = genesisState
    require(verifiedOutcome == (try? direct.apply(certified)), "verify-then-apply differs from apply")
    var replica = genesisState
    do throws(LedgerError) {
        // Only a real quorum of the genesis validators (the seeds carry one) gets here.
        guard case .applied = try replica.apply(certified) else { return require(false, "applied twice at genesis") }
        require(replica.totalHeld &+ replica.burned == replica.supply, "supply not conserved")
        let again = try replica.apply(certified)
        require(again == .duplicate(certified.entry.hash), "a repeat applied again")
    } catch {
        require(error.description.utf8.count < 400, "error message too long")
    }
}

private func fuzzLockRecord(_ input: [UInt8]) {
    let record: LockRecord
    do throws(DecodeError) {
        record = try LockRecord(decoding: input)
    } catch {
        return refused(error)
    }
    require(record.encoded() == input, "lock record re-encodes differently")
    if case .close(let channel, let proof) = record.channelMark {
        require((record.report > 0) == (proof != nil), "a close report without its promise")
        require(proof.map { $0.channel == channel && $0.amount == record.report } ?? true, "a stray promise")
    }
    _ = Validator(identity: validators[0], ledger: genesisState, restoredLocks: [record])
}
