// The whole node under a stateful attack: each input is a sequence of operations from several
// authenticated attackers (NetSim's NodeFuzzHarness: frames on every channel, requests from a
// victim's address, forged relay frames, punch requests, 0-RTT data, garbage, time passing).
// Property: after every operation the node's invariants hold (no virtual endpoint escapes, at most
// 3× the bytes back towards an address that never proved itself, tables within their caps).

import FuzzSupport
import NetSim

@main enum Main {
    static func main() {
        // The node's first 30 s among its neighbours are simulated once, before libFuzzer's
        // per-input timeout starts; every input then starts from a copy.
        _ = NodeFuzzHarness.prepared
        LibFuzzer.run { fuzz($0, $1) }
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var harness = NodeFuzzHarness.prepared
    do {
        try harness.run(LibFuzzer.bytes(data, size), maximumSteps: 64)
    } catch {
        require(false, "\(error) after \(harness.trace.suffix(8).joined(separator: " → "))")
    }
    return 0
}
