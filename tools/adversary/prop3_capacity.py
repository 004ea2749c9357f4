#!/usr/bin/env python3
"""Property 3 (one source cannot fill a table or capacity): many fresh identities from one address
must not take (a) a provider's whole capacity, (b) a relay's reservations, (c) the DHT record store;
an honest party from another address must still be served.

(a) P: `--provide ip-tunnel --country DE --tunnel-device none` (the non-root provider mode),
    default capacity 64. 80 fresh identities from one address each send a dialogue request; then
    an honest consumer from another address asks. Pass: the honest one is accepted.
(b) R: `--relay` (128 reservations). 140 fresh identities from one address reserve; then an honest
    node from another address reserves. Pass: the honest one gets `ok`.
(c) D: defaults (store of 50,000 records). Fresh identities from one address STORE text records,
    16 each (the per-publisher quota), for at most ADV_STORE_SECONDS (45) or until refusals
    dominate; then an honest STORE from another address. Pass: the honest STORE is stored, and the
    one source got at most ADV_STORE_SOURCE_CAP (5,000, 10 % of the store) records in.
"""

import os
import random
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import umbra_wire as w  # noqa: E402

SYBILS_PROVIDER = 80
SYBILS_RELAY = 140
STORE_SECONDS = float(os.environ.get("ADV_STORE_SECONDS", "45"))
# One source (address) may hold at most this many of the store's 50,000 records (10 %): beyond it,
# nothing stops that source from filling the store given time. Filling it outright takes minutes
# on a debug build on a busy host, longer than this suite's budget.
SOURCE_CAP = int(os.environ.get("ADV_STORE_SOURCE_CAP", "5000"))
STORE_TARGET = 52_000  # > 50,000, the store's size
REJECT_NAMES = {1: "unknown service", 2: "no capacity", 3: "not allowed", 4: "unsupported mode",
                5: "outdated proposal", 6: "rate limited", 7: "shutting down", 8: "pool exhausted"}


def dialogue_outcome(frame):
    if frame and frame[0] == w.CH_DIALOGUE and len(frame) > 1:
        if frame[1] == 0x02:
            return "accept"
        if frame[1] == 0x03 and len(frame) >= 12:
            return "reject:" + REJECT_NAMES.get(struct.unpack_from("<H", frame, 10)[0], "?")
    return None


def provider_capacity():
    p = h.Node("P", ["--provide", "ip-tunnel", "--country", "DE", "--tunnel-device", "none"])
    swarm = h.Swarm(p)
    outcomes = {}

    def on_frame(peer, frame):
        o = dialogue_outcome(frame)
        if o:
            outcomes[peer.ident.ed_pub] = o

    peers = swarm.handshake_all([swarm.new_peer() for _ in range(SYBILS_PROVIDER)], on_frame=on_frame)
    for i, peer in enumerate(peers):
        swarm.sock.sendto(peer.session.seal(w.dialogue_request(1000 + i)), p.addr)
        if i % 16 == 15:
            swarm.receive(0.05, on_frame=on_frame)
    swarm.receive(2.0, on_frame=on_frame)
    accepted = sum(1 for o in outcomes.values() if o == "accept")
    honest = p.peer()
    honest.handshake()
    honest.send(w.dialogue_request(42))
    result = None
    for _, frame in honest.recv_frames(2.0):
        result = dialogue_outcome(frame) or result
    print(f"(a) provider capacity 64: {accepted}/{len(peers)} sybil requests from one address accepted; "
          f"honest consumer from another address: {result}")
    p.stop()
    return [] if result == "accept" else [
        f"provider: {accepted} sybil identities from one address took the capacity; honest consumer got {result}"]


def relay_reservations():
    r = h.Node("R", ["--relay"])
    swarm = h.Swarm(r)
    status = {}

    def on_frame(peer, frame):
        if frame and len(frame) >= 7 and frame[0] == w.CH_RELAY and frame[1] == 0x02:
            status[peer.ident.ed_pub] = frame[6]

    peers = swarm.handshake_all([swarm.new_peer() for _ in range(SYBILS_RELAY)], on_frame=on_frame)
    for i, peer in enumerate(peers):
        swarm.sock.sendto(peer.session.seal(w.relay_reserve(i + 1)), r.addr)
        if i % 16 == 15:
            swarm.receive(0.05, on_frame=on_frame)
    swarm.receive(2.0, on_frame=on_frame)
    ok = sum(1 for s in status.values() if s == 0)
    honest = r.peer()
    honest.handshake()
    honest.send(w.relay_reserve(7))
    result = None
    for _, frame in honest.recv_frames(2.0):
        if frame and len(frame) >= 7 and frame[:2] == bytes([w.CH_RELAY, 0x02]):
            result = frame[6]
    names = {0: "ok", 1: "refused (relay full)", 2: "refused (per-IP cap)", 3: "refused (rate)", 4: "not a relay"}
    print(f"(b) relay reservations 128: {ok}/{len(peers)} sybil reservations from one address granted; "
          f"honest node from another address: {names.get(result, result)}")
    r.stop()
    return [] if result == 0 else [
        f"relay: {ok} sybil reservations from one address; honest reservation got {names.get(result, result)}"]


STORED_NAMES = {0: "stored", 1: "unchanged", 2: "forged", 3: "stale", 4: "expired", 5: "oversized",
                6: "over_quota", 7: "wrong_key", 8: "too_far_in_future", 9: "malformed_value", 10: "store_full"}


def record_store():
    d = h.Node("D")
    swarm = h.Swarm(d)
    counts = {}

    def on_frame(peer, frame):
        if frame and len(frame) == 12 and frame[0] == w.CH_DHT and frame[1] == w.DHT_STORED:
            counts[frame[11]] = counts.get(frame[11], 0) + 1

    start = time.monotonic()
    sent = 0
    batch = 0
    while sent < STORE_TARGET and time.monotonic() - start < STORE_SECONDS:
        peers = swarm.handshake_all([swarm.new_peer() for _ in range(64)], on_frame=on_frame, timeout=2.0)
        for p in peers:
            for j in range(16):
                rec = w.signed_text_record(p.ident, f"s{batch}-{j}-{p.session.local_index}", "")
                swarm.sock.sendto(p.session.seal(w.dht_store(sent, rec)), d.addr)
                sent += 1
            swarm.receive(0.0005, on_frame=on_frame)
        swarm.receive(0.01, on_frame=on_frame)
        batch += 1
        refused = counts.get(6, 0) + counts.get(10, 0)
        if refused > 2000 and refused > counts.get(0, 0) // 4:
            break  # the store refuses this source: stop
        if not d.alive():
            break
    swarm.receive(2.0, on_frame=on_frame)
    elapsed = time.monotonic() - start
    summary = ", ".join(f"{STORED_NAMES.get(k, k)} {v}" for k, v in sorted(counts.items()))
    print(f"(c) DHT record store 50,000: {sent} STOREs from one address in {elapsed:.0f} s: {summary}")
    honest = d.peer()
    honest.handshake()
    honest.send(w.dht_store(1, w.signed_text_record(honest.ident, "honest", "hello")))
    result = None
    for _, frame in honest.recv_frames(2.0):
        if frame and len(frame) == 12 and frame[:2] == bytes([w.CH_DHT, w.DHT_STORED]):
            result = frame[11]
    print(f"    honest STORE from another address: {STORED_NAMES.get(result, result)}")
    d.stop()
    failures = []
    if result not in (0, 1):
        failures.append(f"DHT store: honest STORE got {STORED_NAMES.get(result, result)} after {counts.get(0, 0)} "
                        f"sybil records from one address")
    stored = counts.get(0, 0)
    if stored > SOURCE_CAP:
        rate = stored / elapsed if elapsed else 0
        failures.append(f"DHT store: one address stored {stored} records (> {SOURCE_CAP}) and was never refused; "
                        f"at {rate:.0f}/s it fills the 50,000-record store in {50_000 / max(rate, 1):.0f} s")
    return failures


def main():
    which = sys.argv[1:] or ["provider", "relay", "store"]
    failures = []
    if "provider" in which:
        failures += provider_capacity()
    if "relay" in which:
        failures += relay_reservations()
    if "store" in which:
        failures += record_store()
    h.verdict("property 3 (one source cannot fill a table or capacity)", failures)


if __name__ == "__main__":
    main()
