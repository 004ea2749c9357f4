#!/usr/bin/env python3
"""Property 5 (memory bounded under a flood of fresh identities): RSS (/proc/PID/status VmRSS) of a
node that receives N initiations from fresh identities, each with early data, none ever confirmed,
must stay within a documented bound, and must come back down after their keys expire (180 s,
rejectAfterTime). The node first gets ~300 live proposals (as in property 1); the early data is
a proposal-sync request for the whole key space (what an attacker picks: its answer is large), or
a DHT FIND_NODE with ADV_MEM_EARLY=find_node.

Bounds (env overrides): growth after the flood <= ADV_MEM_PEAK_MIB (32 MiB for 2,000 initiations);
growth after the keys expired <= ADV_MEM_FINAL_MIB (16 MiB; allocator retention allowed for);
a second flood after expiry must not add more than ADV_MEM_REUSE_MIB (8 MiB): freed memory is reused.
ADV_MEM_WAIT overrides the expiry wait (default 190 s).
"""

import os
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import umbra_wire as w  # noqa: E402

N = int(os.environ.get("ADV_MEM_INITIATIONS", "2000"))
EARLY = os.environ.get("ADV_MEM_EARLY", "sync")
PROVIDERS = 75  # x 4 offers: ~300 proposals, so a whole-space sync answer fills a send queue
PEAK_MIB = float(os.environ.get("ADV_MEM_PEAK_MIB", "32"))
FINAL_MIB = float(os.environ.get("ADV_MEM_FINAL_MIB", "16"))
REUSE_MIB = float(os.environ.get("ADV_MEM_REUSE_MIB", "8"))
WAIT = float(os.environ.get("ADV_MEM_WAIT", "190"))


def flood(node, count):
    """`count` early-data initiations from fresh identities on one socket; responses are never confirmed.
    Cookie replies are honoured (mac2 on every later initiation), as a real attacker would."""
    sock = h.bound_socket()
    sock.setblocking(False)
    cookie = None
    sessions = {}
    sent = answered = nbytes = 0
    t0 = time.monotonic()
    i = 0
    while i < count and time.monotonic() - t0 < 60:
        for _ in range(16):
            if i >= count:
                break
            s = w.Session(w.Identity(), node.ed_pub)
            s.cookie = cookie
            early = w.dht_find_node(i, os.urandom(32)) if EARLY == "find_node" else w.sync_request(i)
            d = s.initiation(early=early)
            sessions[s.local_index] = s
            sock.sendto(d, node.addr)
            sent += 1
            nbytes += len(d)
            i += 1
        time.sleep(0.07)  # ~230 per second: under the cookie threshold, near what a debug build answers
        while True:
            try:
                d, _ = sock.recvfrom(65536)
            except BlockingIOError:
                break
            if d[0] == w.T_COOKIE and len(d) == w.COOKIE_SIZE:
                s = sessions.get(struct.unpack_from("<I", d, 4)[0])
                if s is not None:
                    try:
                        cookie = s.handle_cookie(d)
                        i = max(0, i - 1)  # this one was refused: one more
                    except Exception:
                        pass
            elif d[0] == w.T_RESP:
                answered += 1
    time.sleep(0.5)
    sock.close()
    return sent, answered, nbytes, time.monotonic() - t0


def mib(kib):
    return kib / 1024.0


def main():
    node = h.Node("T")
    h.populate(node, providers=PROVIDERS)
    market = node.control("GET", "/v1/market")[1] or {}
    print(f"T holds {market.get('proposals', '?')} proposals")
    time.sleep(1.0)
    base = node.rss_kib()
    sent, answered, nbytes, secs = flood(node, N)
    time.sleep(2.0)
    peak = node.rss_kib()
    print(f"baseline RSS {mib(base):.1f} MiB; {sent} early-data ({EARLY}) initiations ({nbytes / 1024:.0f} KiB, "
          f"{answered} answered) in {secs:.1f} s -> RSS {mib(peak):.1f} MiB (+{mib(peak - base):.1f} MiB)")
    print(f"waiting {WAIT:.0f} s for the keys to expire ...", flush=True)
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline and node.alive():
        time.sleep(5)
    after = node.rss_kib()
    print(f"after expiry: RSS {mib(after):.1f} MiB (+{mib(after - base):.1f} MiB over baseline)")
    sent2, _, _, _ = flood(node, N)
    time.sleep(2.0)
    again = node.rss_kib()
    print(f"second flood of {sent2}: RSS {mib(again):.1f} MiB (+{mib(again - after):.1f} MiB over after-expiry)")
    failures = []
    if mib(peak - base) > PEAK_MIB:
        failures.append(f"flood of {sent} initiations grew RSS by {mib(peak - base):.1f} MiB (> {PEAK_MIB} MiB)")
    if mib(after - base) > FINAL_MIB:
        failures.append(f"after the keys expired RSS is still +{mib(after - base):.1f} MiB (> {FINAL_MIB} MiB)")
    if mib(again - after) > REUSE_MIB:
        failures.append(f"a second flood after expiry grew RSS by {mib(again - after):.1f} MiB (> {REUSE_MIB} MiB): "
                        "memory of the first was not freed")
    if not node.alive():
        failures.append("node died")
    h.verdict("property 5 (memory bounded under a flood of fresh identities)", failures)


if __name__ == "__main__":
    main()
