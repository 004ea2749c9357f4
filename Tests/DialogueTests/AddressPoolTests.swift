// The inner address pool: CIDR validation, .1 for the gateway and .2 upwards for consumers, the
// broadcast address never handed out, round-robin reuse, a reconnecting consumer's previous address,
// exhaustion and release.

import Testing
import UmbraCore
import UmbraTestKit

@testable import Dialogue

@Suite struct AddressPoolTests {
    @Test func theDefaultPoolIs10_182_0_0_16() throws {
        let pool = AddressPool()
        #expect(pool.network.description == "10.182.0.0/16")
        #expect(pool.gateway == inner(0, 1))
        #expect(pool.capacity == 65536 - 3)
        #expect(try IPv4Network(parsing: "10.182.0.0/16") == .defaultPool)
    }

    @Test(arguments: [
        ("10.182.0.0/7", AddressPoolError.prefixLengthOutOfRange(7)),
        ("10.182.0.0/31", .prefixLengthOutOfRange(31)),
        ("10.182.0.0/32", .prefixLengthOutOfRange(32)),
        ("10.182.0.5/16", .hostBitsSet("10.182.0.5/16", suggested: "10.182.0.0/16")),
        ("10.182.0.0", .malformed("10.182.0.0")),
        ("10.182.0.0/", .malformed("10.182.0.0/")),
        ("10.182.0.0/+8", .malformed("10.182.0.0/+8")),
        ("::/64", .malformed("::/64")),
        ("10.182.0.0/16/2", .malformed("10.182.0.0/16/2")),
    ])
    func invalidBlocksAreRefused(text: String, error: AddressPoolError) {
        #expect(throws: error) { try IPv4Network(parsing: text) }
    }

    @Test func consumersGetAddressesFrom2UpAndNeverTheBroadcast() throws {
        var pool = AddressPool(network: try IPv4Network(parsing: "10.182.0.0/29"))
        #expect(pool.capacity == 5)
        let addresses = (1...5).map { pool.allocate(for: key($0)) }
        #expect(addresses == (2...6).map { inner(0, $0) })
        #expect(pool.allocate(for: key(6)) == nil)
        #expect(pool.count == 5)
        // A key that holds an address gets the same one again.
        #expect(pool.allocate(for: key(3)) == inner(0, 4))
        #expect(pool.holder(of: inner(0, 4)) == key(3))
    }

    @Test func aSlash30HasRoomForOneConsumer() throws {
        var pool = AddressPool(network: try IPv4Network(parsing: "192.168.7.0/30"))
        #expect(pool.allocate(for: key(1)) == .v4(0xC0A8_0702))
        #expect(pool.allocate(for: key(2)) == nil)
    }

    @Test func releasedAddressesAreReusedRoundRobin() throws {
        var pool = AddressPool(network: try IPv4Network(parsing: "10.182.0.0/29"))
        for byte in UInt8(1)...3 { _ = pool.allocate(for: key(byte)) }
        #expect(pool.release(key(1)) == inner(0, 2))
        #expect(pool.release(key(1)) == nil)
        #expect(pool.count == 2)
        // A newcomer gets the next never-used address, not the one just freed.
        #expect(pool.allocate(for: key(9)) == inner(0, 5))
        #expect(pool.allocate(for: key(10)) == inner(0, 6))
        // Then the search wraps around and finds .2.
        #expect(pool.allocate(for: key(11)) == inner(0, 2))
    }

    @Test func aReconnectingConsumerGetsItsPreviousAddressWhileFree() throws {
        var pool = AddressPool(network: try IPv4Network(parsing: "10.182.0.0/24"))
        _ = pool.allocate(for: key(1))
        #expect(pool.allocate(for: key(2)) == inner(0, 3))
        pool.release(key(2))
        _ = pool.allocate(for: key(3))
        #expect(pool.allocate(for: key(2)) == inner(0, 3))

        // Once someone else holds it, the consumer gets another one.
        var small = AddressPool(network: try IPv4Network(parsing: "10.182.0.0/30"))
        #expect(small.allocate(for: key(1)) == inner(0, 2))
        small.release(key(1))
        #expect(small.allocate(for: key(2)) == inner(0, 2))
        #expect(small.allocate(for: key(1)) == nil)
    }

    @Test func rememberedAddressesAreCapped() throws {
        var pool = AddressPool(network: try IPv4Network(parsing: "10.182.0.0/24"), maximumRemembered: 2)
        for byte in UInt8(1)...3 { _ = pool.allocate(for: key(byte)) }
        for byte in UInt8(1)...3 { pool.release(key(byte)) }
        // key(1) was forgotten (oldest); key(3) is remembered.
        #expect(pool.allocate(for: key(3)) == inner(0, 4))
        #expect(pool.allocate(for: key(1)) == inner(0, 5))
    }
}
