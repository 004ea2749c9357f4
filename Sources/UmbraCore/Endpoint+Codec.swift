// Binary form of an endpoint: family byte (4 or 6), the 4 or 16 address bytes in network order,
// then the port as a little-endian UInt16 (the codec's integer convention). 7 or 19 bytes.

extension ByteWriter {
    /// Appends the canonical encoding of `endpoint`.
    public mutating func write(_ endpoint: Endpoint) {
        switch endpoint.address {
        case .v4(let value):
            write(UInt8(4))
            write(raw: IPAddress.v4(value).bytes)
        case .v6(let high, let low):
            write(UInt8(6))
            write(raw: IPAddress.v6(high: high, low: low).bytes)
        }
        write(endpoint.port)
    }
}

extension ByteReader {
    /// Reads an endpoint written by `ByteWriter.write(_: Endpoint)`. An unknown family byte is
    /// `.unknownTag`; port 0 is `.invalid` (no endpoint listens there, and the text form refuses it).
    public mutating func readEndpoint() throws(DecodeError) -> Endpoint {
        let family = try readUInt8()
        let address: IPAddress
        switch family {
        case 4:
            address = .v4(try readBigEndian(UInt32.self))
        case 6:
            let high = try readBigEndian(UInt64.self)
            let low = try readBigEndian(UInt64.self)
            address = .v6(high: high, low: low)
        default:
            throw .unknownTag(field: "address family", value: UInt64(family))
        }
        let port = try readUInt16()
        guard port != 0 else { throw .invalid(field: "endpoint port", reason: "port 0") }
        return Endpoint(address: address, port: port)
    }

    /// A network-order (big-endian) integer, for address bytes.
    private mutating func readBigEndian<T: FixedWidthInteger>(_: T.Type) throws(DecodeError) -> T {
        var value: T = 0
        for byte in try readBytes(MemoryLayout<T>.size) { value = value << 8 | T(byte) }
        return value
    }
}
