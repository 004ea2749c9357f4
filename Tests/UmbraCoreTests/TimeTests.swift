import Testing
import UmbraCore

@Suite("Time")
struct TimeTests {
    @Test func rfc3339ReadsUnixTimeAsAUTCDate() {
        #expect(Instant.zero.rfc3339 == "1970-01-01T00:00:00Z")
        #expect(Instant(nanoseconds: 951_782_400 * 1_000_000_000).rfc3339 == "2000-02-29T00:00:00Z", "a leap day")
        #expect(Instant(nanoseconds: 1_796_688_000_999_999_999).rfc3339 == "2026-12-08T00:00:00Z")
        #expect(Instant(nanoseconds: 4_102_444_799 * 1_000_000_000).rfc3339 == "2099-12-31T23:59:59Z")
    }
}
