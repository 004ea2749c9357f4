import Kademlia
import NetSim
import Testing

@Suite("DHT simulation")
struct DHTSimTests {
    @Test(arguments: [3, 4] as [UInt64])
    func lookupsSucceedAtModestScale(seed: UInt64) {
        var config = DHTSimConfig()
        config.nodes = 300
        config.lookups = 200
        config.seed = seed
        config.joinDuration = .seconds(20)
        var sim = DHTSim(config: config)
        let result = sim.run()
        #expect(result.successRate == 1.0)
        #expect(result.hopsP90 <= 3)
        #expect(result.averageTableSize >= 40)
    }

    @Test func lookupsRouteAroundAQuarterOfDeadNodes() {
        var config = DHTSimConfig()
        config.nodes = 300
        config.lookups = 200
        config.churn = 0.25
        config.seed = 5
        config.joinDuration = .seconds(20)
        var sim = DHTSim(config: config)
        let result = sim.run()
        #expect(result.successRate >= 0.99)
    }

    @Test func theSameSeedGivesTheSameResult() {
        var config = DHTSimConfig()
        config.nodes = 120
        config.lookups = 60
        config.seed = 9
        config.joinDuration = .seconds(10)
        var first = DHTSim(config: config)
        var second = DHTSim(config: config)
        let a = first.run()
        let b = second.run()
        #expect(a.latencyP50Ms == b.latencyP50Ms && a.datagramsSent == b.datagramsSent && a.hopsP99 == b.hopsP99)
    }
}
