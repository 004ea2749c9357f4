// The host's interface addresses, for the reachability rule (Relay/Reachability.swift): a node
// bound to a wildcard address learns its own socket endpoints here, so peers that see it at one of
// them prove nothing translates in between.

import NIOCore
import UmbraCore

public enum InterfaceAddresses {
    /// Every address of an interface that is up, with `port`, for a socket bound to the wildcard
    /// address of the same family (IPv4 for 0.0.0.0; both for ::). Empty when enumeration fails.
    public static func endpoints(port: UInt16, includeIPv4: Bool = true, includeIPv6: Bool = true) -> [Endpoint] {
        guard let devices = try? System.enumerateDevices() else { return [] }
        var seen = Set<Endpoint>()
        var endpoints: [Endpoint] = []
        for device in devices {
            guard let endpoint = device.address?.endpoint else { continue }
            switch endpoint.address {
            case .v4 where !includeIPv4, .v6 where !includeIPv6: continue
            default: break
            }
            let withPort = Endpoint(address: endpoint.address, port: port)
            if !withPort.address.isUnspecified, seen.insert(withPort).inserted { endpoints.append(withPort) }
        }
        return endpoints
    }
}
