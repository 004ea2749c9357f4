#!/usr/bin/env python3
"""Property 4 (CPU per input independent of table size): the node's CPU time per input, read from
/proc/PID/stat (utime + stime), with 10 cheap peers and again with 3,000, must not grow by more than
BOUND (2x). Cheap peers are fresh identities that completed one handshake from one address and
then stay silent.

Inputs (each measured separately, the node's idle CPU over the same time subtracted):
- garbage: 32-byte transport datagrams with random receiver indices (dropped `unknown_index`);
  the count actually processed is taken from the node's drop counter, so kernel drops do not count;
- ping: authenticated ping frames from one established session (each answered by a pong; counted
  by the pongs received);
- dial_back: authenticated `dialBackRequest` frames from one session (rate-limited by the node, so
  most are refused: the work before the refusal is what is measured).
Also, with no input at all, the node's idle CPU with the large table must stay within
max(BOUND x its idle CPU with the small one, 50 ms per second): silent peers cost nothing per tick.
Cheap peers are added as a flood (ADV_CPU_HANDSHAKE_RATE per second for at most ADV_CPU_FILL_SECONDS);
the table size reached is printed, and the figures are for that size.
"""

import os
import random
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import umbra_wire as w  # noqa: E402

BOUND = float(os.environ.get("ADV_CPU_BOUND", "2.0"))
SMALL, LARGE = 10, 3000
GARBAGE, PINGS, DIAL_BACKS = 10_000, 4_000, 1_000
RATE = float(os.environ.get("ADV_CPU_HANDSHAKE_RATE", "150"))  # fresh identities per second
IDLE_BOUND = 0.05  # s of CPU per s: what an idle node may spend whatever its table size
SATURATED = 0.3
FILL_SECONDS = float(os.environ.get("ADV_CPU_FILL_SECONDS", "40"))


def dropped(node, reason):
    st = node.status() or {}
    d = st.get("dropped") or st.get("drops") or {}
    if isinstance(d, dict):
        return int(d.get(reason, 0))
    return 0


def idle_rate(node, seconds=1.0):
    c0 = node.cpu_seconds()
    time.sleep(seconds)
    return (node.cpu_seconds() - c0) / seconds


def burst(sock, dest, datagrams, per_burst=32, pause=0.001):
    for i in range(0, len(datagrams), per_burst):
        for d in datagrams[i:i + per_burst]:
            sock.sendto(d, dest)
        time.sleep(pause)


def measure(node, probe, label):
    """CPU microseconds per processed input of each kind."""
    out = {}
    rate = idle_rate(node, 2.0)
    # garbage
    sock = h.bound_socket()
    garbage = [bytes([4, 0, 0, 0]) + os.urandom(28) for _ in range(GARBAGE)]
    before = dropped(node, "unknown_index")
    t0, c0 = time.monotonic(), node.cpu_seconds()
    burst(sock, node.addr, garbage)
    time.sleep(0.5)
    t1, c1 = time.monotonic(), node.cpu_seconds()
    processed = dropped(node, "unknown_index") - before
    if processed <= 0:
        processed = GARBAGE
    out["garbage"] = (max(0.0, (c1 - c0) - rate * (t1 - t0)) / processed * 1e6, processed)
    sock.close()
    # pings on one session
    pongs = [0]
    frames = [probe.session.seal(w.frame_ping(random.getrandbits(63))) for _ in range(PINGS)]
    t0, c0 = time.monotonic(), node.cpu_seconds()
    for i in range(0, len(frames), 32):
        for d in frames[i:i + 32]:
            probe.sock.sendto(d, node.addr)
        pongs[0] += sum(1 for _, f in probe.recv_frames(0.002) if f and f[0] == w.CH_PONG)
    pongs[0] += sum(1 for _, f in probe.recv_frames(0.5) if f and f[0] == w.CH_PONG)
    t1, c1 = time.monotonic(), node.cpu_seconds()
    n = max(1, pongs[0])
    out["ping"] = (max(0.0, (c1 - c0) - rate * (t1 - t0)) / n * 1e6, n)
    # dial-back requests on one session
    host, port = probe.sock.getsockname()
    frames = [probe.session.seal(w.relay_dial_back_request(random.getrandbits(63), host, port))
              for _ in range(DIAL_BACKS)]
    t0, c0 = time.monotonic(), node.cpu_seconds()
    for i in range(0, len(frames), 16):
        for d in frames[i:i + 16]:
            probe.sock.sendto(d, node.addr)
        probe.recv_frames(0.004)
    probe.recv_frames(0.5)
    t1, c1 = time.monotonic(), node.cpu_seconds()
    out["dial_back"] = (max(0.0, (c1 - c0) - rate * (t1 - t0)) / DIAL_BACKS * 1e6, DIAL_BACKS)
    rate = (rate + idle_rate(node, 2.0)) / 2
    print(f"{label}: idle {rate * 1e3:.1f} ms/s; " + "; ".join(
        f"{k} {us:.1f} us/input ({n} processed)" for k, (us, n) in out.items()))
    return out, rate


def settle(node, limit=20.0):
    """Waits until the node is idle again (below 30 ms CPU per second) after the table grew."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        if idle_rate(node, 1.0) < 0.03:
            break
    print(f"node idle again after {time.monotonic() - t0:.1f} s")


def main():
    node = h.Node("T")
    swarm = h.Swarm(node)
    small = swarm.handshake_all([swarm.new_peer() for _ in range(SMALL)])
    probe = node.peer()
    probe.handshake()
    probe.send(b"")
    time.sleep(1.0)
    base, base_idle = measure(node, probe, f"{len(small) + 1} peers")
    t0 = time.monotonic()
    large = swarm.stream_handshakes(LARGE - SMALL, rate=RATE, seconds=FILL_SECONDS)
    print(f"added {len(large)} cheap peers in {time.monotonic() - t0:.1f} s")
    settle(node)
    probe.send(b"")
    time.sleep(0.5)
    big, big_idle = measure(node, probe, f"{len(small) + len(large) + 1} peers")
    failures = []
    idle_bound = max(BOUND * base_idle, IDLE_BOUND)
    print(f"idle: {base_idle * 1e3:.1f} -> {big_idle * 1e3:.1f} ms of CPU per second (bound {idle_bound * 1e3:.0f})")
    if big_idle > idle_bound:
        failures.append(f"idle: {len(small) + len(large)} silent peers cost {big_idle * 1e3:.0f} ms of CPU per second "
                        f"(with {len(small)}: {base_idle * 1e3:.0f} ms/s; bound {idle_bound * 1e3:.0f} ms/s)")
    if big_idle > SATURATED:
        print("the node is saturated by its own work: the per-input figures below are not meaningful")
    for kind in base:
        a, b = base[kind][0], big[kind][0]
        ratio = b / a if a > 0 else float("inf")
        print(f"{kind}: {a:.1f} -> {b:.1f} us per input ({ratio:.2f}x, bound {BOUND}x)")
        if ratio > BOUND and big_idle <= SATURATED:
            failures.append(f"{kind}: CPU per input grew {ratio:.2f}x ({a:.1f} -> {b:.1f} us) from "
                            f"{SMALL} to {LARGE} peers")
    if len(small) + len(large) < LARGE * 0.9:
        print(f"note: only {len(small) + len(large)} of {LARGE} initiated cheap peers completed a handshake "
              f"(the node answered no more at {RATE:.0f}/s); the figures above are for that table size")
    if not node.alive():
        failures.append("node died")
    h.verdict("property 4 (CPU per input independent of table size)", failures)


if __name__ == "__main__":
    main()
