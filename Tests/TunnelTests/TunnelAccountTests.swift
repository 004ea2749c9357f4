// Per-session accounting: the rate meter over time (nothing before the first window ends, the last
// complete window after, zero after an idle window, scaling for other window lengths, a clock that
// steps back), and the account's totals and drop counters by reason and category.

import Testing
import UmbraCore

@testable import Tunnel

private let t0 = Instant(nanoseconds: 1_700_000_000_000_000_000)

private func at(milliseconds: Int) -> Instant { t0 + .milliseconds(milliseconds) }

@Suite struct RateMeterTests {
    @Test func reportsTheLastCompleteWindow() {
        var meter = RateMeter(now: t0)
        meter.record(sent: 1000, now: at(milliseconds: 100))
        meter.record(sent: 500, now: at(milliseconds: 999))
        meter.record(received: 4000, now: at(milliseconds: 500))
        // The first window is still open: nothing complete yet.
        #expect(meter.rates(at: at(milliseconds: 999)) == .init(sent: 0, received: 0))
        // Closed at 1 s, without any further record.
        #expect(meter.rates(at: at(milliseconds: 1000)) == .init(sent: 1500, received: 4000))
        #expect(meter.rates(at: at(milliseconds: 1999)) == .init(sent: 1500, received: 4000))

        meter.record(sent: 200, now: at(milliseconds: 1000))
        meter.record(sent: 300, now: at(milliseconds: 1700))
        #expect(meter.rates(at: at(milliseconds: 1800)) == .init(sent: 1500, received: 4000))
        #expect(meter.rates(at: at(milliseconds: 2000)) == .init(sent: 500, received: 0))
        // A window that saw nothing reports zero.
        #expect(meter.rates(at: at(milliseconds: 3000)) == .init(sent: 0, received: 0))
    }

    @Test func anIdleGapResetsTheRate() {
        var meter = RateMeter(now: t0)
        meter.record(sent: 1000, now: at(milliseconds: 10))
        meter.record(sent: 1000, now: at(milliseconds: 5500))  // windows 1-4 were idle
        #expect(meter.rates(at: at(milliseconds: 5600)) == .init(sent: 0, received: 0))
        #expect(meter.rates(at: at(milliseconds: 6000)) == .init(sent: 1000, received: 0))
    }

    @Test func windowsStayAlignedToTheStart() {
        var meter = RateMeter(now: t0)
        meter.record(received: 10, now: at(milliseconds: 1900))
        meter.record(received: 10, now: at(milliseconds: 2100))  // a new window from 2.0 s, not 2.9 s
        #expect(meter.rates(at: at(milliseconds: 2500)) == .init(sent: 0, received: 10))
        #expect(meter.rates(at: at(milliseconds: 3000)) == .init(sent: 0, received: 10))
    }

    @Test func shorterWindowsScaleToPerSecond() {
        var meter = RateMeter(window: .milliseconds(250), now: t0)
        meter.record(sent: 1000, now: at(milliseconds: 100))
        #expect(meter.rates(at: at(milliseconds: 250)) == .init(sent: 4000, received: 0))
        var zero = RateMeter(window: .zero, now: t0)
        zero.record(sent: 1, now: t0)
        #expect(zero.windowNanoseconds == 1_000_000)
        #expect(zero.rates(at: at(milliseconds: 1)) == .init(sent: 1000, received: 0))
        // Rates saturate instead of overflowing.
        var huge = RateMeter(window: .milliseconds(1), now: t0)
        huge.record(received: .max, now: t0)
        #expect(huge.rates(at: at(milliseconds: 1)) == .init(sent: 0, received: .max))
    }

    @Test func aClockSteppingBackCountsInTheCurrentWindow() {
        var meter = RateMeter(now: t0)
        meter.record(sent: 100, now: at(milliseconds: 1500))
        meter.record(sent: 100, now: at(milliseconds: 200))
        #expect(meter.rates(at: at(milliseconds: 2000)) == .init(sent: 200, received: 0))
    }

    @Test func replaysAreDeterministic() {
        func run() -> [RateMeter.Rates] {
            var meter = RateMeter(now: t0)
            var random = SplitMix64(state: 99)
            var now = t0
            var seen: [RateMeter.Rates] = []
            for _ in 0..<2000 {
                now = now + .milliseconds(Int(random.next() % 40))
                meter.record(sent: Int(random.next() % 1500), now: now)
                meter.record(received: Int(random.next() % 1500), now: now)
                seen.append(meter.rates(at: now))
            }
            return seen
        }
        #expect(run() == run())
    }
}

@Suite struct TunnelAccountTests {
    @Test func countsBothWays() {
        var account = TunnelAccount(openedAt: t0)
        account.recordReceived(bytes: 1500, now: at(milliseconds: 10))
        account.recordReceived(bytes: 40, now: at(milliseconds: 20))
        account.recordSent(bytes: 64_000, packets: 44, now: at(milliseconds: 30))
        #expect(account.receivedBytes == 1540 && account.receivedPackets == 2)
        #expect(account.sentBytes == 64_000 && account.sentPackets == 44)
        #expect(account.rates(at: at(milliseconds: 1000)) == .init(sent: 64_000, received: 1540))
        #expect(account.openedAt == t0)
        #expect(account.age(at: at(milliseconds: 2500)) == .milliseconds(2500))
    }

    @Test func dropsAreCountedByReasonAndCategory() {
        var account = TunnelAccount(openedAt: t0)
        let reasons: [EgressDropReason] = [
            .malformed, .spoofedSource, .spoofedSource, .blockedPort(25), .fragmentedHeader,
            .blockedDestination(.cloudMetadata), .blockedDestination(.cloudMetadata), .blockedDestination(.linkLocal),
        ]
        for reason in reasons { account.recordDrop(reason) }
        account.recordDrop(InboundDropReason.misaddressed)
        account.recordDrop(InboundDropReason.malformed)
        let drops = account.drops
        #expect(drops.malformed == 2 && drops.spoofedSource == 2 && drops.blockedPort == 1)
        #expect(drops.fragmentedHeader == 1 && drops.misaddressed == 1)
        #expect(drops.blockedDestination(.cloudMetadata) == 2)
        #expect(drops.blockedDestination(.linkLocal) == 1)
        #expect(drops.blockedDestination(.privateNetwork) == 0)
        #expect(drops.total == 10)
        // Drops are not traffic.
        #expect(account.receivedPackets == 0 && account.sentPackets == 0)
    }

    @Test func aVerdictDrivesTheAccount() {
        var account = TunnelAccount(openedAt: t0)
        let packets = [
            ipv4(.udp(source: 1, destination: 53), padding: 4),
            ipv4(to: ip("169.254.169.254"), .tcp(source: 1, destination: 80)),
            ipv4(.tcp(source: 1, destination: 25)),
        ]
        for packet in packets {
            switch EgressPolicy.default.verdict(packet) {
            case .forward(let length): account.recordReceived(bytes: length, now: t0)
            case .drop(let reason): account.recordDrop(reason)
            }
        }
        #expect(account.receivedPackets == 1 && account.receivedBytes == UInt64(packets[0].count - 4))
        #expect(account.drops.blockedDestination(.cloudMetadata) == 1 && account.drops.blockedPort == 1)
    }
}
