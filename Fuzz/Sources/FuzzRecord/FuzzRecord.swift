// DHT records from untrusted bytes: a decoded SignedRecord re-encodes to exactly the bytes it
// consumed, and so do peer record and provider index values (which must consume all their input);
// a store fed the decoded record never traps; errors are short.

import FuzzSupport
import Kademlia
import UmbraCore

@main enum Main {
    static func main() { LibFuzzer.run { fuzz($0, $1) } }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = LibFuzzer.bytes(data, size)

    // A record, as it arrives inside a DHT message.
    var reader = ByteReader(input)
    do throws(DecodeError) {
        let record = try SignedRecord.decode(from: &reader)
        let consumed = Array(input[..<reader.offset])
        require(record.encoded() == consumed, "record re-encodes differently")
        require(record.encodedSize == consumed.count, "encodedSize \(record.encodedSize) != \(consumed.count)")
        require(record.value.count <= SignedRecord.maximumValueBytes, "accepted a \(record.value.count)-byte value")
        var store = RecordStore(networkID: "fuzz")
        // An hour before expiry, so a record signed for network "fuzz" (see the seeds) is kept.
        let now = record.expiresAt - .seconds(3600)
        let result = store.store(record, now: now)
        if result == .stored {
            require(store.count == 1, "stored but count is \(store.count)")
            require(store.records(for: record.key, now: now) == [record], "stored record not returned")
            require(store.store(record, now: now) == .unchanged, "storing again is not unchanged")
            require(store.expire(now: record.expiresAt) == 1 && store.count == 0, "expiry did not remove it")
        } else {
            require(store.count == 0, "refused but count is \(store.count)")
        }
    } catch {
        require(error.description.utf8.count < 400, "error message too long")
    }

    // Values, as the store decodes them: exact, so re-encoding gives back the whole input.
    do throws(DecodeError) {
        let value = try PeerRecordValue.decode(input)
        require(value.encoded() == input, "peer record value re-encodes differently")
        require(value.endpoints.count <= PeerRecordValue.maximumEndpoints, "endpoint count")
        require(value.relays.count <= PeerRecordValue.maximumRelays, "relay count")
        require(!value.endpoints.isEmpty || !value.relays.isEmpty, "neither endpoints nor relays")
        require(
            !(value.endpoints + value.relays.map(\.endpoint)).contains { $0.address.isDiscardOnly },
            "a discard-only address")
    } catch {
        require(error.description.utf8.count < 400, "error message too long")
    }
    do throws(DecodeError) {
        let value = try ProviderIndexValue.decode(input)
        require(value.encoded() == input, "provider index value re-encodes differently")
        require(ProviderIndexValue.isValidServiceType(value.serviceType), "service type \(value.serviceType)")
        require(ProviderIndexValue.isValidCountry(value.country), "country \(value.country)")
    } catch {
        require(error.description.utf8.count < 400, "error message too long")
    }
    return 0
}
