"""An independent Python implementation of Umbra's wire protocol (docs/protocol.md), for the
adversarial suite: Noise_IK_25519_ChaChaPoly_BLAKE2b (initiator side), mac1/mac2 and cookies,
timestamps, early data, transport data with counters, and encoders for the frames the suite sends.

Written from docs/protocol.md. Only `cryptography` (X25519, Ed25519, ChaCha20-Poly1305) and
hashlib.blake2b are used; HChaCha20 (for the XChaCha20-Poly1305 cookie reply) is implemented here.
"""

import hashlib
import hmac
import os
import socket
import struct
import time

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

RAW = serialization.Encoding.Raw
RAWPUB = serialization.PublicFormat.Raw
RAWPRIV = serialization.PrivateFormat.Raw
NOENC = serialization.NoEncryption()

PROTOCOL_NAME = b"Noise_IK_25519_ChaChaPoly_BLAKE2b"
HASHLEN = 64
BLOCKLEN = 128

# ---------------------------------------------------------------------------------------------
# Primitives


def blake2b(data, size=64, key=b""):
    return hashlib.blake2b(data, digest_size=size, key=key).digest()


def hmac_blake2b(key, data):
    return hmac.new(key, data, lambda: hashlib.blake2b(digest_size=64)).digest()


def hkdf(ck, ikm, n):
    temp = hmac_blake2b(ck, ikm)
    out1 = hmac_blake2b(temp, b"\x01")
    out2 = hmac_blake2b(temp, out1 + b"\x02")
    if n == 2:
        return out1, out2
    out3 = hmac_blake2b(temp, out2 + b"\x03")
    return out1, out2, out3


def nonce12(n):
    return b"\x00\x00\x00\x00" + struct.pack("<Q", n)


def x25519_pub(secret):
    return X25519PrivateKey.from_private_bytes(secret).public_key().public_bytes(RAW, RAWPUB)


def x25519(secret, public):
    shared = X25519PrivateKey.from_private_bytes(secret).exchange(X25519PublicKey.from_public_bytes(public))
    if shared == bytes(32):
        raise ValueError("low-order point")
    return shared


P25519 = 2**255 - 19


def ed25519_pk_to_x25519(pk):
    """Montgomery u = (1 + y) / (1 - y) mod p (libsodium crypto_sign_ed25519_pk_to_curve25519)."""
    y = int.from_bytes(pk, "little") & ((1 << 255) - 1)
    u = (1 + y) * pow((1 - y) % P25519, P25519 - 2, P25519) % P25519
    return u.to_bytes(32, "little")


def ed25519_seed_to_x25519(seed):
    h = bytearray(hashlib.sha512(seed).digest()[:32])
    h[0] &= 248
    h[31] &= 127
    h[31] |= 64
    return bytes(h)


def _rotl(v, c):
    return ((v << c) & 0xFFFFFFFF) | (v >> (32 - c))


def hchacha20(key, nonce16):
    c = [0x61707865, 0x3320646E, 0x79622D32, 0x6B206574]
    s = c + list(struct.unpack("<8I", key)) + list(struct.unpack("<4I", nonce16))

    def qr(a, b, cc, d):
        s[a] = (s[a] + s[b]) & 0xFFFFFFFF; s[d] = _rotl(s[d] ^ s[a], 16)
        s[cc] = (s[cc] + s[d]) & 0xFFFFFFFF; s[b] = _rotl(s[b] ^ s[cc], 12)
        s[a] = (s[a] + s[b]) & 0xFFFFFFFF; s[d] = _rotl(s[d] ^ s[a], 8)
        s[cc] = (s[cc] + s[d]) & 0xFFFFFFFF; s[b] = _rotl(s[b] ^ s[cc], 7)

    for _ in range(10):
        qr(0, 4, 8, 12); qr(1, 5, 9, 13); qr(2, 6, 10, 14); qr(3, 7, 11, 15)
        qr(0, 5, 10, 15); qr(1, 6, 11, 12); qr(2, 7, 8, 13); qr(3, 4, 9, 14)
    return struct.pack("<8I", *(s[0:4] + s[12:16]))


def xchacha20poly1305_decrypt(key, nonce24, ciphertext, ad):
    sub = hchacha20(key, nonce24[:16])
    return ChaCha20Poly1305(sub).decrypt(b"\x00" * 4 + nonce24[16:], ciphertext, ad)


def xchacha20poly1305_encrypt(key, nonce24, plaintext, ad):
    sub = hchacha20(key, nonce24[:16])
    return ChaCha20Poly1305(sub).encrypt(b"\x00" * 4 + nonce24[16:], plaintext, ad)


# ---------------------------------------------------------------------------------------------
# Noise IK (initiator and, for the self-test, responder)


class CipherState:
    def __init__(self, key=None):
        self.k = key
        self.n = 0

    def encrypt(self, ad, plaintext):
        if self.k is None:
            return plaintext
        out = ChaCha20Poly1305(self.k).encrypt(nonce12(self.n), plaintext, ad)
        self.n += 1
        return out

    def decrypt(self, ad, ciphertext):
        if self.k is None:
            return ciphertext
        out = ChaCha20Poly1305(self.k).decrypt(nonce12(self.n), ciphertext, ad)
        self.n += 1
        return out


class NoiseIK:
    """Noise_IK_25519_ChaChaPoly_BLAKE2b: `<- s ... -> e, es, s, ss  <- e, ee, se`."""

    def __init__(self, initiator, prologue, s_secret, rs=None, e_secret=None):
        self.initiator = initiator
        self.s = s_secret
        self.s_pub = x25519_pub(s_secret)
        self.e = e_secret if e_secret is not None else os.urandom(32)
        self.e_pub = x25519_pub(self.e)
        self.rs = rs
        self.re = None
        h = PROTOCOL_NAME + bytes(HASHLEN - len(PROTOCOL_NAME))
        self.h = h
        self.ck = h
        self.cs = CipherState()
        self.mix_hash(prologue)
        self.mix_hash(rs if initiator else self.s_pub)

    def mix_hash(self, data):
        self.h = blake2b(self.h + data)

    def mix_key(self, ikm):
        self.ck, temp = hkdf(self.ck, ikm, 2)
        self.cs = CipherState(temp[:32])

    def encrypt_and_hash(self, pt):
        ct = self.cs.encrypt(self.h, pt)
        self.mix_hash(ct)
        return ct

    def decrypt_and_hash(self, ct):
        pt = self.cs.decrypt(self.h, ct)
        self.mix_hash(ct)
        return pt

    # initiator
    def write_message_1(self, payload):
        out = self.e_pub
        self.mix_hash(self.e_pub)
        self.mix_key(x25519(self.e, self.rs))
        out += self.encrypt_and_hash(self.s_pub)
        self.mix_key(x25519(self.s, self.rs))
        out += self.encrypt_and_hash(payload)
        return out

    def read_message_2(self, msg):
        self.re = msg[:32]
        self.mix_hash(self.re)
        self.mix_key(x25519(self.e, self.re))
        self.mix_key(x25519(self.s, self.re))
        return self.decrypt_and_hash(msg[32:])

    # responder (self-test only)
    def read_message_1(self, msg):
        self.re = msg[:32]
        self.mix_hash(self.re)
        self.mix_key(x25519(self.s, self.re))
        self.rs = self.decrypt_and_hash(msg[32:80])
        self.mix_key(x25519(self.s, self.rs))
        return self.decrypt_and_hash(msg[80:])

    def write_message_2(self, payload):
        out = self.e_pub
        self.mix_hash(self.e_pub)
        self.mix_key(x25519(self.e, self.re))
        self.mix_key(x25519(self.e, self.rs))
        out += self.encrypt_and_hash(payload)
        return out

    def split(self):
        k1, k2 = hkdf(self.ck, b"", 2)
        return CipherState(k1[:32]), CipherState(k2[:32])


# ---------------------------------------------------------------------------------------------
# Identities, endpoints


class Identity:
    def __init__(self, seed=None):
        self.seed = seed or os.urandom(32)
        self.signer = Ed25519PrivateKey.from_private_bytes(self.seed)
        self.ed_pub = self.signer.public_key().public_bytes(RAW, RAWPUB)
        self.x_secret = ed25519_seed_to_x25519(self.seed)
        self.x_pub = x25519_pub(self.x_secret)

    def sign(self, data):
        return self.signer.sign(data)

    @property
    def address(self):
        return node_address(self.ed_pub)


B32 = "abcdefghijklmnopqrstuvwxyz234567"


def node_address(pk):
    bits = int.from_bytes(pk, "big") << 4  # 256 bits -> 260 bits (52 chars of 5 bits)
    chars = [B32[(bits >> (5 * (51 - i))) & 31] for i in range(52)]
    return "umbra1" + "".join(chars)


def parse_node_address(text):
    text = text.lower()
    assert text.startswith("umbra1") and len(text) == 58, text
    bits = 0
    for ch in text[6:]:
        bits = (bits << 5) | B32.index(ch)
    return (bits >> 4).to_bytes(32, "big")


def encode_endpoint(host, port):
    raw = socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    return bytes([4 if len(raw) == 4 else 6]) + raw + struct.pack("<H", port)


def decode_endpoint(buf, off=0):
    fam = buf[off]
    n = 4 if fam == 4 else 16
    raw = buf[off + 1: off + 1 + n]
    host = socket.inet_ntop(socket.AF_INET if n == 4 else socket.AF_INET6, raw)
    port = struct.unpack_from("<H", buf, off + 1 + n)[0]
    return (host, port), off + 3 + n


# ---------------------------------------------------------------------------------------------
# Datagrams (§1, §3)

T_INIT, T_RESP, T_COOKIE, T_DATA = 1, 2, 3, 4
INITIATION_SIZE = 176
RESPONSE_SIZE = 92
COOKIE_SIZE = 64
MIN_EARLY_INITIATION = 400


def mac1_key(static_pub):
    return blake2b(b"mac1----" + static_pub, 32)


def cookie_key(static_pub):
    return blake2b(b"cookie--" + static_pub, 32)


def mac16(key, data):
    return blake2b(data, 16, key)


def prologue(network_id="umbra-main"):
    return b"umbra/noise/v1" + b"\x00" + network_id.encode()


class Clock:
    last = 0

    @classmethod
    def timestamp(cls):
        now = time.time_ns() & ~((1 << 24) - 1)
        cls.last = max(now, cls.last + 1)
        return cls.last


def rand_index():
    while True:
        i = struct.unpack("<I", os.urandom(4))[0]
        if i:
            return i


class Session:
    """One initiator-side session of `ident` with the responder `peer_ed` (an Ed25519 key)."""

    def __init__(self, ident, peer_ed, network_id="umbra-main"):
        self.ident = ident
        self.peer_ed = peer_ed
        self.peer_x = ed25519_pk_to_x25519(peer_ed)
        self.network_id = network_id
        self.local_index = None
        self.remote_index = None
        self.send = None
        self.recv = None
        self.send_counter = 0
        self.noise = None
        self.cookie = None

    def initiation(self, early=None, timestamp=None, mac1_ok=True):
        self.noise = NoiseIK(True, prologue(self.network_id), self.ident.x_secret, self.peer_x)
        self.local_index = rand_index()
        payload = self.ident.ed_pub + struct.pack("<Q", timestamp if timestamp is not None else Clock.timestamp())
        if early is not None:
            assert 1 <= len(early) <= 1200
            payload += struct.pack("<H", len(early)) + early
            pad = MIN_EARLY_INITIATION - (INITIATION_SIZE + len(payload) - 40)
            if pad > 0:
                payload += bytes(pad)
        body = bytes([T_INIT, 0, 0, 0]) + struct.pack("<I", self.local_index) + self.noise.write_message_1(payload)
        m1 = mac16(mac1_key(self.peer_x), body) if mac1_ok else os.urandom(16)
        m2 = mac16(self.cookie, body + m1) if self.cookie else bytes(16)
        self.last_mac1 = m1
        return body + m1 + m2

    def handle_cookie(self, dgram):
        """A cookie reply (type 3) to our initiation: store the cookie for mac2."""
        nonce, enc = dgram[8:32], dgram[32:64]
        self.cookie = xchacha20poly1305_decrypt(cookie_key(self.peer_x), nonce, enc, self.last_mac1)
        return self.cookie

    def handle_response(self, dgram):
        assert len(dgram) == RESPONSE_SIZE and dgram[0] == T_RESP, "not a response"
        sender, receiver = struct.unpack_from("<II", dgram, 4)
        assert receiver == self.local_index, "response to another index"
        assert hmac.compare_digest(dgram[60:76], mac16(mac1_key(self.ident.x_pub), dgram[:60])), "bad mac1"
        self.noise.read_message_2(dgram[12:60])
        self.send, self.recv = self.noise.split()
        self.remote_index = sender
        self.send_counter = 0
        return True

    def seal(self, frame):
        c = self.send_counter
        self.send_counter += 1
        ct = ChaCha20Poly1305(self.send.k).encrypt(nonce12(c), frame, b"")
        return bytes([T_DATA, 0, 0, 0]) + struct.pack("<IQ", self.remote_index, c) + ct

    def open(self, dgram):
        """Decrypts a transport datagram addressed to our index; None when it is not ours."""
        if len(dgram) < 32 or dgram[0] != T_DATA:
            return None
        idx, ctr = struct.unpack_from("<IQ", dgram, 4)
        if idx != self.local_index:
            return None
        try:
            return ChaCha20Poly1305(self.recv.k).decrypt(nonce12(ctr), dgram[16:], b"")
        except Exception:
            return None


# ---------------------------------------------------------------------------------------------
# Frames (§6) and messages

CH_PING, CH_PONG, CH_DHT, CH_GOSSIP, CH_SYNC, CH_RELAY, CH_DIALOGUE, CH_TUNNEL = (
    0x01, 0x02, 0x10, 0x20, 0x21, 0x30, 0x40, 0x50)


def frame_ping(nonce):
    return bytes([CH_PING]) + struct.pack("<Q", nonce)


def frame_pong(nonce):
    return bytes([CH_PONG]) + struct.pack("<Q", nonce)


# DHT (§8)
DHT_PING, DHT_PONG, DHT_FIND_NODE, DHT_NODES, DHT_FIND_VALUE, DHT_VALUES, DHT_STORE, DHT_STORED = range(1, 9)


def dht(msg_type, request_id, body=b"", server=False):
    return bytes([CH_DHT, msg_type]) + struct.pack("<Q", request_id) + bytes([1 if server else 0]) + body


def dht_ping(rid, server=False):
    return dht(DHT_PING, rid, server=server)


def dht_pong(rid, observed_host, observed_port, server=True):
    return dht(DHT_PONG, rid, encode_endpoint(observed_host, observed_port), server=server)


def dht_find_node(rid, target, server=False):
    return dht(DHT_FIND_NODE, rid, target, server=server)


def dht_find_value(rid, key, page=0, server=False):
    return dht(DHT_FIND_VALUE, rid, key + struct.pack("<H", page), server=server)


def dht_nodes(rid, contacts=(), server=True):
    body = bytes([len(contacts)]) + b"".join(pk + encode_endpoint(h, p) for pk, (h, p) in contacts)
    return dht(DHT_NODES, rid, body, server=server)


def dht_store(rid, record, server=False):
    return dht(DHT_STORE, rid, record, server=server)


def text_record_key(name):
    return blake2b(b"umbra/text" + b"\x00" + name.encode(), 32)


def signed_text_record(ident, name, text, seq=None, lifetime_s=3600, network_id="umbra-main"):
    """A kind-3 text record (§8.4, §8.5), signed over the canonical bytes."""
    key = text_record_key(name)
    seq = seq if seq is not None else time.time_ns() // 1_000_000
    expires = time.time_ns() + lifetime_s * 1_000_000_000
    nb, tb = name.encode(), text.encode()
    value = b"\x01" + struct.pack("<H", len(nb)) + nb + struct.pack("<H", len(tb)) + tb
    net = network_id.encode()
    canonical = (b"umbra/record/v1\x00" + struct.pack("<H", len(net)) + net + b"\x03" + key + ident.ed_pub
                 + struct.pack("<QQ", seq, expires) + struct.pack("<H", len(value)) + value)
    sig = ident.sign(canonical)
    return b"\x03" + key + ident.ed_pub + struct.pack("<QQH", seq, expires, len(value)) + value + sig


# Proposal sync (§11)
def sync_request(rid, first=bytes(32), last=b"\xff" * 32, max_pages=256):
    return bytes([CH_SYNC, 1]) + struct.pack("<I", rid) + first + last + struct.pack("<H", max_pages)


# Relay (§12)
def relay(tag, fields=b""):
    return bytes([CH_RELAY, tag]) + fields


def relay_reserve(rid):
    return relay(0x01, struct.pack("<I", rid))


def relay_forward(peer, data):
    return relay(0x04, peer + struct.pack("<H", len(data)) + data)


def relay_deliver(peer, data):
    return relay(0x05, peer + struct.pack("<H", len(data)) + data)


def relay_dial_back_request(nonce, host, port):
    return relay(0x07, struct.pack("<Q", nonce) + encode_endpoint(host, port))


def relay_punch_connect(nonce, endpoints):
    return relay(0x0B, struct.pack("<QB", nonce, len(endpoints)) + b"".join(encode_endpoint(h, p) for h, p in endpoints))


def relay_punch_connect_reply(nonce, endpoints):
    return relay(0x0C, struct.pack("<QB", nonce, len(endpoints)) + b"".join(encode_endpoint(h, p) for h, p in endpoints))


def relay_punch_sync(nonce):
    return relay(0x0D, struct.pack("<Q", nonce))


# Dialogue (§13)
def dialogue_request(rid, service="ip-tunnel", proposal_seq=2**64 - 1, mode=1, wants_ipv6=0):
    s = service.encode()
    return (bytes([CH_DIALOGUE, 0x01]) + struct.pack("<Q", rid) + struct.pack("<H", len(s)) + s
            + struct.pack("<QBB", proposal_seq, mode, wants_ipv6))


def dialogue_tag(frame):
    """The dialogue message tag of a decrypted frame (1 request ... 6 end), or None."""
    return frame[1] if len(frame) > 1 and frame[0] == CH_DIALOGUE else None


# ---------------------------------------------------------------------------------------------
# A UDP peer that talks to one node


class Peer:
    """An attacker-controlled identity with its own session to one node, over a given socket."""

    def __init__(self, sock, node_addr, node_ed, ident=None, network_id="umbra-main"):
        self.sock = sock
        self.node_addr = node_addr
        self.ident = ident or Identity()
        self.session = Session(self.ident, node_ed, network_id)

    def handshake(self, early=None, timeout=2.0, tries=3):
        """Runs the handshake (handling a cookie reply). Returns the frames that arrived with it."""
        frames = []
        for _ in range(tries):
            self.sock.sendto(self.session.initiation(early), self.node_addr)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                self.sock.settimeout(max(0.01, deadline - time.monotonic()))
                try:
                    d, _ = self.sock.recvfrom(65536)
                except (socket.timeout, BlockingIOError):
                    break
                if d[0] == T_COOKIE and len(d) == COOKIE_SIZE and struct.unpack_from("<I", d, 4)[0] == self.session.local_index:
                    self.session.handle_cookie(d)
                    break
                if d[0] == T_RESP and len(d) == RESPONSE_SIZE and struct.unpack_from("<I", d, 8)[0] == self.session.local_index:
                    self.session.handle_response(d)
                    return frames
            # retry (with the cookie, if one came)
        raise TimeoutError("no handshake response")

    def send(self, frame, sock=None, addr=None):
        d = self.session.seal(frame)
        (sock or self.sock).sendto(d, addr or self.node_addr)
        return len(d)

    def recv_frames(self, duration, sock=None):
        """Collects (bytes, frame or None) arriving on `sock` for `duration` seconds."""
        sock = sock or self.sock
        out = []
        deadline = time.monotonic() + duration
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return out
            sock.settimeout(left)
            try:
                d, _ = sock.recvfrom(65536)
            except (socket.timeout, BlockingIOError):
                return out
            out.append((len(d), self.session.open(d)))


def udp(host, port=0):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind((host, port))
    return s


# Gossip (§9) and service proposals (§10)
def topic(name="proposals"):
    b = name.encode()
    return bytes([len(b)]) + b


def gossip_subscribe(names=("proposals",)):
    return bytes([CH_GOSSIP, 0x01, len(names)]) + b"".join(topic(n) for n in names)


def gossip_publish(data, name="proposals"):
    return bytes([CH_GOSSIP, 0x03]) + topic(name) + struct.pack("<H", len(data)) + data


def signed_offer(ident, service="ip-tunnel", country="DE", lifetime_s=170, seq=None, capacity=64,
                 endpoints=(), network_id="umbra-main"):
    """A signed offer (§10.1, §10.2)."""
    now = time.time_ns()
    seq = seq if seq is not None else now // 1_000_000
    s = service.encode()
    wire = (bytes([1]) + struct.pack("<H", 1) + ident.ed_pub + struct.pack("<QQQ", seq, now, now + lifetime_s * 10**9)
            + struct.pack("<H", len(s)) + s
            + country.encode() + struct.pack("<H", 0) + bytes([0]) + struct.pack("<QQI", 1000, 10, capacity)
            + bytes([0]) + bytes([len(endpoints)]) + b"".join(encode_endpoint(hh, pp) for hh, pp in endpoints)
            + bytes([0]))
    net = network_id.encode()
    sig = ident.sign(b"umbra/proposal/v1" + b"\x00" + struct.pack("<H", len(net)) + net + wire)
    return wire + sig
