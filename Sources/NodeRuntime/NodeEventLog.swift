// The node's events, as log lines. Events are traces only: nothing waits on them (commands
// complete through `NodeEffect.completed`).

import Logging
import Node

struct NodeEventLog {
    let logger: Logger

    func record(_ event: NodeEvent) {
        switch event {
        case .peerUp(let key, let endpoint):
            logger.info("peer up", metadata: ["peer.address": "\(key)", "peer.endpoint": "\(endpoint)"])
        case .peerDown(let key):
            logger.info("peer down", metadata: ["peer.address": "\(key)"])
        case .peerUnreachable(let key):
            logger.info("peer unreachable", metadata: ["peer.address": "\(key)"])
        case .endpointChanged(let key, let endpoint):
            logger.info("peer roamed", metadata: ["peer.address": "\(key)", "peer.endpoint": "\(endpoint)"])
        case .pong(_, _, let rtt):
            logger.trace("pong", metadata: ["rtt.us": "\(rtt.nanosecondsClamped / 1000)"])
        case .frameRejected(let key, let reason):
            logger.debug("frame rejected", metadata: ["peer.address": "\(key)", "reason": "\(reason)"])
        case .lookupFinished(let report):
            logger.debug("lookup finished", metadata: ["target": "\(report.target)", "found": "\(report.found)"])
        case .putFinished(let report):
            logger.debug("put finished", metadata: ["key": "\(report.key)", "stored": "\(report.stored)"])
        case .observedAddress(let endpoint, let reporter):
            logger.trace("observed address", metadata: ["endpoint": "\(endpoint)", "peer.address": "\(reporter)"])
        case .dialogue(let dialogueEvent):
            logger.info("dialogue", metadata: ["event": "\(dialogueEvent)"])
        }
    }
}
