// swift-tools-version:6.0
// Fuzz targets for Umbra's decoders (DESIGN §1.5: every decoder has a fuzz target). A package of its
// own, so the main build never needs the fuzzer runtime. `tools/fuzz [SECONDS]` builds it and runs
// every directory under Sources/ (add a target there and a `fuzzTarget` line here). Build command:
//   swift build -c debug --package-path Fuzz -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library
// Each target exports `LLVMFuzzerTestOneInput` and has a small `@main` that starts libFuzzer
// (Support/FuzzSupport/LibFuzzer.swift explains why SwiftPM needs that).
import PackageDescription

/// A fuzz target in `Sources/<name>/` linking the given products of the root package.
func fuzzTarget(_ name: String, products: [String] = ["UmbraCore"]) -> Target {
    .executableTarget(
        name: name,
        dependencies: ["FuzzSupport"] + products.map { .product(name: $0, package: "Umbra") },
        swiftSettings: [.swiftLanguageMode(.v6)]
    )
}

let package = Package(
    name: "UmbraFuzz",
    platforms: [.macOS(.v14)],
    // Named explicitly: a path dependency's identity would otherwise be its directory name, which
    // differs between checkouts.
    dependencies: [.package(name: "Umbra", path: "..")],
    targets: [
        .target(name: "CLibFuzzer", path: "Support/CLibFuzzer"),
        .target(name: "FuzzSupport", dependencies: ["CLibFuzzer"], path: "Support/FuzzSupport"),
        fuzzTarget("FuzzByteReader"),
        fuzzTarget("FuzzEndpoint"),
        fuzzTarget("FuzzAddress"),
        fuzzTarget("FuzzBootstrap"),
        fuzzTarget("FuzzIdentityFile"),
        fuzzTarget("FuzzSessionReceive", products: ["UmbraCore", "Sessions"]),
        fuzzTarget("FuzzFrame", products: ["UmbraCore", "Node"]),
        fuzzTarget("FuzzRecord", products: ["UmbraCore", "Kademlia"]),
        fuzzTarget("FuzzDHTMessage", products: ["UmbraCore", "Kademlia"]),
        fuzzTarget("FuzzGossipMessage", products: ["UmbraCore", "Gossip"]),
        fuzzTarget("FuzzProposal", products: ["UmbraCore", "Proposals"]),
        fuzzTarget("FuzzRelayMessage", products: ["UmbraCore", "Relay"]),
        fuzzTarget("FuzzDialogueMessage", products: ["UmbraCore", "Dialogue"]),
        fuzzTarget("FuzzTunnelPacket", products: ["UmbraCore", "Tunnel"]),
        fuzzTarget("FuzzTunnelOffload", products: ["UmbraCore", "Tunnel"]),
        fuzzTarget("FuzzNode", products: ["UmbraCore", "NetSim"]),
        fuzzTarget("FuzzLedgerEntry", products: ["UmbraCore", "Ledger"]),
        fuzzTarget("FuzzLedgerSync", products: ["UmbraCore", "Ledger"]),
    ]
)
