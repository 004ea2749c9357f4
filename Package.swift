// swift-tools-version:6.0
// Umbra: a decentralized VPN. The target graph is the architecture (docs/architecture.md):
// protocol targets (UmbraCore, Sessions, Node, and the later Kademlia, Gossip, ...) are pure and
// cannot import NIO, GRDB or Hummingbird; only NodeRuntime, NodeAPI and the executable touch the OS.
import PackageDescription

let strict: [SwiftSetting] = [.swiftLanguageMode(.v6)]
/// The one priority queue (docs/architecture.md, "Shared pieces"): swift-collections' `Heap`, pure and I/O-free.
let heap: Target.Dependency = .product(name: "HeapModule", package: "swift-collections")

let package = Package(
    name: "Umbra",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "umbra", targets: ["umbra"]),
        .library(name: "UmbraCore", targets: ["UmbraCore"]),
        .library(name: "Sessions", targets: ["Sessions"]),
        .library(name: "Node", targets: ["Node"]),
        .library(name: "Kademlia", targets: ["Kademlia"]),
        .library(name: "Gossip", targets: ["Gossip"]),
        .library(name: "Proposals", targets: ["Proposals"]),
        .library(name: "Relay", targets: ["Relay"]),
        .library(name: "Dialogue", targets: ["Dialogue"]),
        .library(name: "Tunnel", targets: ["Tunnel"]),
        .library(name: "Ledger", targets: ["Ledger"]),
        // The simulator and the whole-node fuzzing harness, for the fuzz targets in Fuzz/.
        .library(name: "NetSim", targets: ["NetSim"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.6.0"),
    ],
    targets: [
        // MARK: - Crypto (libsodium)
        .systemLibrary(
            name: "CSodium",
            pkgConfig: "libsodium",
            providers: [.apt(["libsodium-dev"])]
        ),
        .target(name: "UmbraCrypto", dependencies: ["CSodium"], swiftSettings: strict),

        // MARK: - Pure protocol cores (no I/O, no clock, no unseeded randomness)
        .target(name: "UmbraCore", dependencies: ["UmbraCrypto"], swiftSettings: strict),
        .target(name: "Sessions", dependencies: ["UmbraCore", "UmbraCrypto", heap], swiftSettings: strict),
        .target(name: "Kademlia", dependencies: ["UmbraCore", "UmbraCrypto", heap], swiftSettings: strict),
        .target(name: "Gossip", dependencies: ["UmbraCore", "UmbraCrypto"], swiftSettings: strict),
        .target(name: "Proposals", dependencies: ["UmbraCore", "UmbraCrypto", heap], swiftSettings: strict),
        .target(name: "Relay", dependencies: ["UmbraCore"], swiftSettings: strict),
        .target(name: "Dialogue", dependencies: ["UmbraCore"], swiftSettings: strict),
        .target(name: "Tunnel", dependencies: ["UmbraCore"], swiftSettings: strict),
        .target(name: "Ledger", dependencies: ["UmbraCore", "UmbraCrypto"], swiftSettings: strict),
        .target(
            name: "Node",
            dependencies: [
                "UmbraCore", "Sessions", "Kademlia", "Gossip", "Proposals", "Relay", "Dialogue", "Tunnel", "Ledger",
            ],
            swiftSettings: strict),

        // MARK: - Shells
        // The host's network for the tunnel: TUN devices, `ip`/`nft`/`sysctl` as child processes,
        // the journal that undoes them. No NIO, no node: the shells call it.
        .target(name: "HostNetwork", dependencies: ["UmbraCore", "UmbraCrypto"], swiftSettings: strict),
        .target(
            name: "NodeRuntime",
            dependencies: [
                "Node", "Kademlia", "UmbraCore", "Sessions", "UmbraCrypto", "Dialogue", "Tunnel", "HostNetwork",
                "Ledger",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "GRDB", package: "GRDB.swift"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "NetSim",
            dependencies: [
                "Node", "Kademlia", "Gossip", "Proposals", "UmbraCore", "Sessions", "Relay", "Ledger", heap,
            ],
            swiftSettings: strict),
        .target(
            name: "NodeAPI",
            dependencies: [
                "NodeRuntime", "Node", "Kademlia", "Sessions", "UmbraCore", "Gossip", "Proposals", "Dialogue", "Relay",
                "Tunnel", "Ledger",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "umbra",
            dependencies: [
                "NodeAPI", "NodeRuntime", "HostNetwork", "NetSim", "Node", "Kademlia", "Sessions", "UmbraCore",
                "UmbraCrypto", "Proposals", "Relay", "Dialogue", "Tunnel", "Ledger",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "bench-crypto",
            dependencies: ["Sessions", "UmbraCrypto", "UmbraCore"],
            path: "Sources/BenchCrypto",
            swiftSettings: strict
        ),

        // MARK: - Tests
        // The fixtures the test targets share (seeded identities, fixed keys, endpoints, the start instant).
        .target(name: "UmbraTestKit", dependencies: ["UmbraCore"], path: "Tests/UmbraTestKit", swiftSettings: strict),
        .testTarget(
            name: "UmbraCryptoTests", dependencies: ["UmbraCrypto"], resources: [.copy("Fixtures")],
            swiftSettings: strict),
        .testTarget(name: "UmbraCoreTests", dependencies: ["UmbraCore"], swiftSettings: strict),
        .testTarget(
            name: "KademliaTests", dependencies: ["Kademlia", "UmbraCore", "UmbraCrypto", "UmbraTestKit"],
            swiftSettings: strict),
        .testTarget(
            name: "GossipTests", dependencies: ["Gossip", "UmbraCore", "UmbraCrypto", "UmbraTestKit"],
            swiftSettings: strict),
        .testTarget(
            name: "ProposalsTests", dependencies: ["Proposals", "UmbraCore", "UmbraCrypto", "UmbraTestKit"],
            swiftSettings: strict),
        .testTarget(name: "RelayTests", dependencies: ["Relay", "UmbraCore", "UmbraTestKit"], swiftSettings: strict),
        .testTarget(
            name: "DialogueTests", dependencies: ["Dialogue", "UmbraCore", "UmbraTestKit"], swiftSettings: strict),
        .testTarget(name: "TunnelTests", dependencies: ["Tunnel", "UmbraCore"], swiftSettings: strict),
        .testTarget(
            name: "LedgerTests", dependencies: ["Ledger", "UmbraCore", "UmbraCrypto", "UmbraTestKit"],
            swiftSettings: strict),
        .testTarget(
            name: "SessionsTests", dependencies: ["Sessions", "UmbraCore", "UmbraCrypto", "UmbraTestKit"],
            swiftSettings: strict),
        .testTarget(
            name: "HostNetworkTests", dependencies: ["HostNetwork", "NodeRuntime", "UmbraCore"], swiftSettings: strict),
        .testTarget(
            name: "NodeTests",
            dependencies: [
                "Node", "NetSim", "NodeRuntime", "NodeAPI", "Kademlia", "UmbraCore", "Sessions", "Relay", "Dialogue",
                "Tunnel", "Ledger", "UmbraTestKit",
            ],
            swiftSettings: strict
        ),
    ]
)
