// Wall-clock instants as operators read them (ledger release times, expiries).

extension Instant {
    /// `YYYY-MM-DDTHH:MM:SSZ` of this instant read as Unix time (proleptic Gregorian, UTC).
    public var rfc3339: String {
        let seconds = nanoseconds / 1_000_000_000
        let days = Int64(seconds / 86_400)
        let second = Int(seconds % 86_400)
        // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthIndex = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * monthIndex + 2) / 5 + 1
        let month = monthIndex < 10 ? monthIndex + 3 : monthIndex - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        func two(_ value: Int64) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return "\(year)-\(two(month))-\(two(day))T\(two(Int64(second / 3600)))"
            + ":\(two(Int64(second / 60 % 60))):\(two(Int64(second % 60)))Z"
    }
}
