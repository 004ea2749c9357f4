#!/usr/bin/env python3
"""Self-test of the Python protocol implementation: the committed Noise IK vectors (cacophony and
snow, Tests/UmbraCryptoTests/Fixtures), HChaCha20, the Ed25519 -> X25519 conversion, and a datagram
round trip through our own responder. Run first; exits non-zero on any mismatch."""

import json
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import umbra_wire as w  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIXTURES = os.path.join(ROOT, "Tests", "UmbraCryptoTests", "Fixtures")
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL", what)


def noise_vectors():
    count = 0
    for name in ("cacophony", "snow"):
        path = os.path.join(FIXTURES, f"noise-IK_25519_ChaChaPoly_BLAKE2b.{name}.json")
        for i, v in enumerate(json.load(open(path))["vectors"]):
            if v["protocol_name"] != "Noise_IK_25519_ChaChaPoly_BLAKE2b":
                continue
            hx = bytes.fromhex
            ini = w.NoiseIK(True, hx(v["init_prologue"]), hx(v["init_static"]), hx(v["init_remote_static"]),
                            hx(v["init_ephemeral"]))
            res = w.NoiseIK(False, hx(v["resp_prologue"]), hx(v["resp_static"]), None, hx(v["resp_ephemeral"]))
            msgs = v["messages"]
            m0 = ini.write_message_1(hx(msgs[0]["payload"]))
            check(m0.hex() == msgs[0]["ciphertext"], f"{name}[{i}] message 1")
            check(res.read_message_1(m0) == hx(msgs[0]["payload"]), f"{name}[{i}] responder reads message 1")
            m1 = res.write_message_2(hx(msgs[1]["payload"]))
            check(m1.hex() == msgs[1]["ciphertext"], f"{name}[{i}] message 2")
            check(ini.read_message_2(m1) == hx(msgs[1]["payload"]), f"{name}[{i}] initiator reads message 2")
            if v.get("handshake_hash"):
                check(ini.h.hex() == v["handshake_hash"], f"{name}[{i}] handshake hash")
            isend, irecv = ini.split()
            rrecv, rsend = res.split()  # the responder receives on the first key
            for j, m in enumerate(msgs[2:], start=2):
                sender, receiver = (isend, rrecv) if j % 2 == 0 else (rsend, irecv)
                ct = sender.encrypt(b"", hx(m["payload"]))
                check(ct.hex() == m["ciphertext"], f"{name}[{i}] transport message {j}")
                check(receiver.decrypt(b"", ct) == hx(m["payload"]), f"{name}[{i}] transport open {j}")
            count += 1
    check(count >= 2, "at least two IK vectors")
    return count


def hchacha():
    # draft-irtf-cfrg-xchacha-03 §2.2.1
    key = bytes(range(32))
    nonce = bytes.fromhex("000000090000004a0000000031415927")
    out = w.hchacha20(key, nonce).hex()
    check(out == "82413b4227b27bfed30e42508a877d73a0f9e4d58a74a853c12ec41326d3ecdc", "HChaCha20 vector")
    # XChaCha20-Poly1305 round trip
    k, n = os.urandom(32), os.urandom(24)
    check(w.xchacha20poly1305_decrypt(k, n, w.xchacha20poly1305_encrypt(k, n, b"cookie", b"ad"), b"ad") == b"cookie",
          "XChaCha20-Poly1305 round trip")


def conversion():
    a, b = w.Identity(), w.Identity()
    ab = w.x25519(a.x_secret, w.ed25519_pk_to_x25519(b.ed_pub))
    ba = w.x25519(b.x_secret, w.ed25519_pk_to_x25519(a.ed_pub))
    check(ab == ba, "Ed25519 -> X25519 conversion agrees between secret and public forms")
    check(w.ed25519_pk_to_x25519(a.ed_pub) == a.x_pub, "converted public key = public of converted secret")
    check(w.parse_node_address(a.address) == a.ed_pub and a.address[-1] in "aq", "node address round trip")


def datagram_round_trip():
    """Our initiator against a responder written from §1-§3 (mac1, payload layout, transport)."""
    node, me = w.Identity(), w.Identity()
    s = w.Session(me, node.ed_pub)
    early = w.dht_ping(7)
    d = s.initiation(early=early)
    check(len(d) == w.MIN_EARLY_INITIATION, "early-data initiation padded to 400")
    check(len(s.initiation()) == w.INITIATION_SIZE, "plain initiation is 176 bytes")
    d = s.initiation(early=early)
    check(d[-32:-16] == w.mac16(w.mac1_key(node.x_pub), d[:-32]), "mac1 over bytes before it")
    res = w.NoiseIK(False, w.prologue(), node.x_secret)
    payload = res.read_message_1(d[8:-32])
    check(res.rs == me.x_pub and payload[:32] == me.ed_pub, "identity binding")
    (m,) = struct.unpack_from("<H", payload, 40)
    check(payload[42:42 + m] == early and not any(payload[42 + m:]), "early data block")
    idx = 0x01020304
    body = bytes([2, 0, 0, 0]) + struct.pack("<II", idx, s.local_index) + res.write_message_2(b"")
    resp = body + w.mac16(w.mac1_key(me.x_pub), body) + bytes(16)
    s.handle_response(resp)
    rrecv, rsend = res.split()
    t = s.seal(w.frame_ping(1))
    check(struct.unpack_from("<I", t, 4)[0] == idx, "transport receiver index")
    check(rrecv.decrypt(b"", t[16:]) == w.frame_ping(1), "transport opens at the responder")
    back = bytes([4, 0, 0, 0]) + struct.pack("<IQ", s.local_index, 0) + rsend.encrypt(b"", w.frame_pong(1))
    check(s.open(back) == w.frame_pong(1), "transport from the responder opens")


if __name__ == "__main__":
    n = noise_vectors()
    hchacha()
    conversion()
    datagram_round_trip()
    if failures:
        print(f"selftest: {len(failures)} failure(s)")
        sys.exit(1)
    print(f"selftest: ok ({n} Noise IK vectors, HChaCha20, key conversion, datagram round trip)")
