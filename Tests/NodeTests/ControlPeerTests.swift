// Who may use the control socket: root and the data dir's owner, by the peer's credentials
// (SO_PEERCRED), not only by the socket's mode bits. tools/e2e/tunnel.sh checks the real socket with
// a client of another uid.

import NodeAPI
import Testing

struct ControlPeerTests {
    @Test(arguments: [
        (UInt32(0), UInt32?(1000), true), (1000, 1000, true), (1001, 1000, false), (65534, 1000, false),
        (0, nil, true), (1000, nil, false),
    ])
    func onlyRootAndTheDataDirOwnerMayControlTheNode(peer: UInt32, owner: UInt32?, allowed: Bool) {
        #expect(ControlService.mayControl(peerUID: peer, directoryOwner: owner) == allowed)
    }
}
