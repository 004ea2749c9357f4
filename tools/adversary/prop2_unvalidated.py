#!/usr/bin/env python3
"""Property 2 (no datagram to an address that is not validated): forged relay `deliver` frames and
hole-punch messages naming loopback candidate addresses must not make a node send to them.

A node T runs with default flags. M, an identity of ours that is not a relay T reserved on or dialled
through, handshakes with T and then plays relay: it wraps a handshake of a second identity P in
`deliver(P, …)` frames. When T answers through `forward(P, …)` to M, P has a "relayed" session and,
as the initiator, sends `punchConnect` naming 4 candidate addresses (loopback sockets of ours that
nobody validated), then `punchSync`. Separately M sends `punchConnect` + `punchSync` in its own
direct session. Every datagram reaching a candidate within 3 s is counted: the bound is 0.
"""

import os
import random
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import umbra_wire as w  # noqa: E402


def forwarded(m, duration):
    """Datagrams T sends P through M's session (`forward(P, bytes)`), and a count of M's other frames."""
    out = []
    for _, frame in m.recv_frames(duration):
        if frame and len(frame) >= 36 and frame[0] == w.CH_RELAY and frame[1] == 0x04:
            (ln,) = struct.unpack_from("<H", frame, 34)
            out.append((frame[2:34], frame[36:36 + ln]))
    return out


def candidates(count):
    socks = [h.bound_socket() for _ in range(count)]
    return socks, [s.getsockname() for s in socks]


def count_at(socks, duration):
    deadline = time.monotonic() + duration
    total = [0, 0]
    for s in socks:
        s.setblocking(False)
    while time.monotonic() < deadline:
        for s in socks:
            while True:
                try:
                    d, _ = s.recvfrom(65536)
                except BlockingIOError:
                    break
                total[0] += 1
                total[1] += len(d)
        time.sleep(0.02)
    return total


def forged_relay(t):
    m = t.peer()
    m.handshake()
    m.send(b"")
    m.recv_frames(0.3)
    p = w.Peer(None, None, t.ed_pub)
    relayed = False
    for attempt in range(3):
        m.send(w.relay_deliver(p.ident.ed_pub, p.session.initiation()))
        for peer_key, data in forwarded(m, 1.5):
            if peer_key == p.ident.ed_pub and len(data) == w.RESPONSE_SIZE and data[0] == w.T_RESP:
                try:
                    p.session.handle_response(data)
                    relayed = True
                except AssertionError:
                    pass
        if relayed:
            break
    socks, cands = candidates(4)
    if not relayed:
        print("forged relay: T sent no response through M (no relayed session)")
        return 0, 0, False
    print("forged relay: T answered P's handshake through M: a relayed session exists")
    m.send(w.relay_deliver(p.ident.ed_pub, p.session.seal(b"")))
    nonce = random.getrandbits(63)
    m.send(w.relay_deliver(p.ident.ed_pub, p.session.seal(w.relay_punch_connect(nonce, cands))))
    got_reply = False
    for peer_key, data in forwarded(m, 1.0):
        frame = p.session.open(data)
        if frame and frame[:2] == bytes([w.CH_RELAY, 0x0C]):
            got_reply = True
    m.send(w.relay_deliver(p.ident.ed_pub, p.session.seal(w.relay_punch_sync(nonce))))
    n, b = count_at(socks, 3.0)
    print(f"forged relay: punchConnectReply {'received' if got_reply else 'not received'}; "
          f"{n} datagrams, {b} bytes reached the 4 unvalidated candidates")
    return n, b, relayed


def direct_punch(t):
    m = t.peer()
    m.handshake()
    m.send(b"")
    m.recv_frames(0.3)
    socks, cands = candidates(4)
    nonce = random.getrandbits(63)
    m.send(w.relay_punch_connect(nonce, cands))
    m.recv_frames(0.5)
    m.send(w.relay_punch_sync(nonce))
    m.send(w.relay_punch_connect_reply(nonce, cands))
    n, b = count_at(socks, 3.0)
    print(f"direct session: {n} datagrams, {b} bytes reached the 4 unvalidated candidates")
    return n, b


def main():
    t = h.Node("T")
    time.sleep(1)
    failures = []
    n, b, relayed = forged_relay(t)
    if relayed:
        failures.append("a forged relay (never reserved on or dialled through) got a relayed session")
    if n:
        failures.append(f"forged relay + punch: {n} datagrams ({b} bytes) sent to unvalidated candidates")
    n2, b2 = direct_punch(t)
    if n2:
        failures.append(f"punch in a direct session: {n2} datagrams ({b2} bytes) sent to unvalidated candidates")
    if not t.alive():
        failures.append("node died")
    h.verdict("property 2 (no datagram to an unvalidated address)", failures)


if __name__ == "__main__":
    main()
