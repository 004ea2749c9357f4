#!/usr/bin/env python3
"""Property 1 (reflection/amplification): an identity that handshook from address A and then sends
authenticated requests with a victim's source address V must not make any node send V more than
3 x the bytes sent from V, for every request type. (QUIC's rule before path validation, RFC 9000 §8.)

Nodes: T, a provider (`--provide ip-tunnel --country DE --tunnel-device none`, so it also answers
dialogue requests and holds a proposal), R (`--relay`) and N (defaults), all bootstrapping from T.
Per request type: a fresh identity handshakes from A and confirms with a keepalive from A; then 4
requests leave from V (another loopback address and port of ours) and every byte that reaches V
from any node within 2.5 s is counted. The measured ratio per type is printed.
"""

import os
import random
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import umbra_wire as w  # noqa: E402

BOUND = 3.0
REQUESTS = 4
WINDOW = 2.5


def requests_for(kind, victim_addr):
    rid = random.getrandbits(32)
    vh, vp = victim_addr
    make = {
        "ping": lambda i: w.frame_ping(rid + i),
        "dht_ping": lambda i: w.dht_ping(rid + i, server=True),
        "find_node": lambda i: w.dht_find_node(rid + i, os.urandom(32), server=True),
        "find_value": lambda i: w.dht_find_value(rid + i, w.text_record_key("note"), server=True),
        "store": None,
        "proposal_sync": lambda i: w.sync_request(rid + i),
        "relay_reserve": lambda i: w.relay_reserve(rid + i),
        "relay_forward": lambda i: w.relay_forward(os.urandom(32), os.urandom(200)),
        "dial_back_request": lambda i: w.relay_dial_back_request(rid + i, vh, vp),
        "dialogue_request": lambda i: w.dialogue_request(rid + i),
    }
    return make[kind]


def measure(node, kind, store_ident=None):
    attacker = h.bound_socket()
    victim = h.bound_socket()
    peer = node.peer(attacker)
    peer.handshake()
    peer.send(b"")  # keepalive from A: confirms the session on A
    h.drain(attacker, 0.3)
    sent = 0
    make = requests_for(kind, victim.getsockname())
    for i in range(REQUESTS):
        if kind == "store":
            frame = w.dht_store(random.getrandbits(63), w.signed_text_record(peer.ident, f"adv-{i}", "x" * 40),
                                server=True)
        else:
            frame = make(i)
        sent += peer.send(frame, sock=victim)
        time.sleep(0.05)
    n, got = h.drain(victim, WINDOW)
    attacker.close()
    victim.close()
    return sent, got, n


def main():
    t = h.Node("T", ["--provide", "ip-tunnel", "--country", "DE", "--tunnel-device", "none"])
    r = h.Node("R", ["--relay"], bootstrap=[t])
    n = h.Node("N", bootstrap=[t])
    time.sleep(3)  # let the three meet
    h.populate(t)
    dht = t.control("GET", "/v1/dht")[1] or {}
    market = t.control("GET", "/v1/market")[1] or {}
    print(f"T holds {dht.get('table_size', '?')} DHT contacts and {market.get('proposals', '?')} proposals")
    failures = []
    plan = [(t, k) for k in ("ping", "dht_ping", "find_node", "find_value", "store", "proposal_sync",
                             "dialogue_request")]
    plan += [(r, k) for k in ("relay_reserve", "relay_forward", "dial_back_request")]
    print(f"{'request':<20} {'node':<4} {'sent':>7} {'at victim':>10} {'datagrams':>9} {'ratio':>7}")
    for node, kind in plan:
        try:
            sent, got, count = measure(node, kind)
        except TimeoutError:
            failures.append(f"{kind}: no handshake with {node.name}")
            continue
        ratio = got / sent if sent else 0.0
        print(f"{kind:<20} {node.name:<4} {sent:>7} {got:>10} {count:>9} {ratio:>6.2f}x")
        if ratio > BOUND:
            failures.append(f"{kind}: {got} bytes reached the victim for {sent} sent ({ratio:.2f}x > {BOUND}x)")
    for node in (t, r, n):
        if not node.alive():
            failures.append(f"node {node.name} died")
    h.verdict("property 1 (reflection <= 3x toward an unvalidated address)", failures)


if __name__ == "__main__":
    main()
