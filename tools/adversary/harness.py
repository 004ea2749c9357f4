"""Starts real `umbra up` processes on loopback for the property scripts, and always cleans up.

Each node listens on its own 127.x.y.z address; attacker and victim sockets bind other 127/8
addresses. The binary comes from $UMBRA (default .build/debug/umbra under the repo root).
"""

import atexit
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import umbra_wire as w  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
UMBRA = os.path.abspath(os.environ.get("UMBRA", os.path.join(ROOT, ".build", "debug", "umbra")))

_nodes = []
_dirs = []
_used = set()


def _cleanup():
    for n in list(_nodes):
        n.stop()
    for d in list(_dirs):
        shutil.rmtree(d, ignore_errors=True)
    _dirs.clear()


atexit.register(_cleanup)


def _on_signal(signum, _frame):
    _cleanup()
    sys.exit(128 + signum)


for _s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(_s, _on_signal)


def _die_with_parent():
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def tempdir(prefix="umbra-adv-"):
    # Under $ADV_TMPDIR when the suite runner sets it, so it can remove everything even after a kill.
    d = tempfile.mkdtemp(prefix=prefix, dir=os.environ.get("ADV_TMPDIR") or None)
    _dirs.append(d)
    return d


def free_address():
    """A random 127.a.b.c with a UDP port nothing listens on (checked by binding it)."""
    for _ in range(200):
        host = f"127.{random.randint(64, 250)}.{random.randint(1, 250)}.{random.randint(2, 250)}"
        port = random.randint(20000, 60000)
        if (host, port) in _used:
            continue
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind((host, port))
        except OSError:
            continue
        finally:
            s.close()
        _used.add((host, port))
        return host, port
    raise RuntimeError("no free loopback address")


def bound_socket():
    """A UDP socket on a fresh loopback address (an attacker or victim address)."""
    for _ in range(50):
        host, port = free_address()
        try:
            return w.udp(host, port)
        except OSError:
            continue
    raise RuntimeError("cannot bind")


class Node:
    def __init__(self, name, extra=(), bootstrap=(), log_level="warning"):
        self.name = name
        self.dir = tempdir(f"umbra-adv-{name}-")
        self.host, self.port = free_address()
        out = subprocess.run([UMBRA, "identity", "new", "--data-dir", self.dir], capture_output=True, text=True,
                             timeout=30)
        if out.returncode != 0:
            raise RuntimeError(f"identity new: {out.stderr}")
        self.address = [ln.split()[1] for ln in out.stdout.splitlines() if ln.startswith("address")][0]
        self.ed_pub = w.parse_node_address(self.address)
        args = [UMBRA, "up", "--data-dir", self.dir, "--listen", f"{self.host}:{self.port}", "--log-level",
                log_level]
        if bootstrap:
            path = os.path.join(self.dir, "bootstrap-peers.txt")
            with open(path, "w") as f:
                for b in bootstrap:
                    f.write(f"{b.address}@{b.host}:{b.port}\n")
            args += ["--bootstrap", path]
        args += list(extra)
        self.log = open(os.path.join(self.dir, "node.log"), "w")
        # Same process group as this script (the suite runner ends the group), and killed with it.
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        _nodes.append(self)
        self.wait_ready()

    @property
    def addr(self):
        return (self.host, self.port)

    @property
    def pid(self):
        return self.proc.pid

    def wait_ready(self, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {open(self.log.name).read()[-2000:]}")
            if self.status() is not None:
                return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready")

    def control(self, method, path, timeout=20):
        """One request to the node's control API, through the CLI (`umbra api`): (HTTP status, JSON)."""
        try:
            done = subprocess.run([UMBRA, "api", "--data-dir", self.dir, "--method", method, "--timeout",
                                   str(timeout), path], capture_output=True, text=True, timeout=timeout + 5)
        except subprocess.TimeoutExpired as error:
            raise OSError(f"umbra api {path}: no answer in {timeout} s") from error
        if done.returncode != 0:
            answered = done.stderr.partition("the node answered ")[2].split(":")[0]
            if not answered.isdigit():
                raise OSError(done.stderr.strip())  # not running, or an unreadable answer
            return int(answered), None
        return 200, (json.loads(done.stdout) if done.stdout.strip() else None)

    def status(self):
        try:
            code, body = self.control("GET", "/v1/status")
        except OSError:
            return None
        return body if code == 200 else None

    def cpu_seconds(self):
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_kib(self):
        with open(f"/proc/{self.pid}/status") as f:
            for ln in f:
                if ln.startswith("VmRSS:"):
                    return int(ln.split()[1])
        return 0

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self in _nodes:
            _nodes.remove(self)
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                try:
                    self.proc.kill()
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=5)
        self.log.close()

    def peer(self, sock=None, ident=None):
        return w.Peer(sock or bound_socket(), self.addr, self.ed_pub, ident)


def drain(sock, duration):
    """Counts (datagrams, bytes) arriving at `sock` for `duration` seconds."""
    n = b = 0
    deadline = time.monotonic() + duration
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return n, b
        sock.settimeout(left)
        try:
            d, _ = sock.recvfrom(65536)
        except (socket.timeout, BlockingIOError):
            return n, b
        n += 1
        b += len(d)


def verdict(name, failures):
    if failures:
        print(f"{name}: FAIL")
        for f in failures:
            print(f"  - {f}")
        _cleanup()
        sys.exit(1)
    print(f"{name}: PASS")
    _cleanup()
    sys.exit(0)


class Swarm:
    """Many fresh identities talking to one node over one socket (one source address)."""

    def __init__(self, node, sock=None):
        self.node = node
        self.sock = sock or bound_socket()
        self.by_index = {}
        self.cookie = None

    def new_peer(self, ident=None):
        return w.Peer(self.sock, self.node.addr, self.node.ed_pub, ident)

    def _initiate(self, p, early):
        if self.cookie:
            p.session.cookie = self.cookie
        d = p.session.initiation(early)
        self.by_index[p.session.local_index] = p
        self.sock.sendto(d, self.node.addr)

    def handshake_all(self, peers, early_of=None, batch=64, timeout=3.0, on_frame=None, pace=0.0):
        """Handshakes every peer (batches, cookie replies handled). Returns those that completed."""
        done = []
        for start in range(0, len(peers), batch):
            pending = {}
            for p in peers[start:start + batch]:
                self._initiate(p, early_of(p) if early_of else None)
                pending[p.session.local_index] = p
                if pace:
                    time.sleep(pace)
            retries = 0
            deadline = time.monotonic() + timeout
            while pending and time.monotonic() < deadline:
                got = self.receive(0.2, on_frame=on_frame, pending=pending, done=done)
                if not got and pending and retries < 3:
                    retries += 1
                    for idx, p in list(pending.items()):
                        del pending[idx]
                        self._initiate(p, early_of(p) if early_of else None)
                        pending[p.session.local_index] = p
        return done

    def receive(self, duration, on_frame=None, pending=None, done=None):
        """Handles what arrives for `duration`: responses, cookie replies, transport (to on_frame)."""
        got = 0
        deadline = time.monotonic() + duration
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or (pending is not None and not pending):
                return got
            self.sock.settimeout(left)
            try:
                d, _ = self.sock.recvfrom(65536)
            except (socket.timeout, BlockingIOError):
                return got
            got += 1
            if len(d) < 8:
                continue
            t = d[0]
            if t == w.T_RESP and len(d) == w.RESPONSE_SIZE:
                idx = struct.unpack_from("<I", d, 8)[0]
                p = pending.pop(idx, None) if pending is not None else None
                if p is not None:
                    try:
                        p.session.handle_response(d)
                    except Exception:
                        continue
                    p.session.send_counter = 0
                    self.sock.sendto(p.session.seal(b""), self.node.addr)  # confirm
                    done.append(p)
            elif t == w.T_COOKIE and len(d) == w.COOKIE_SIZE:
                idx = struct.unpack_from("<I", d, 4)[0]
                p = self.by_index.get(idx)
                if p is not None:
                    try:
                        self.cookie = p.session.handle_cookie(d)
                    except Exception:
                        pass
            elif t == w.T_DATA and on_frame is not None:
                idx = struct.unpack_from("<I", d, 4)[0]
                p = self.by_index.get(idx)
                if p is not None and p.session.recv is not None:
                    frame = p.session.open(d)
                    if frame is not None:
                        on_frame(p, frame)

    def stream_handshakes(self, count, rate=200.0, seconds=60.0, on_frame=None):
        """Initiates `count` fresh identities at `rate` per second without waiting for each other
        (a flood), confirming each response as it arrives. Returns the peers that completed."""
        done = []
        pending = {}
        t0 = time.monotonic()
        i = 0
        while time.monotonic() - t0 < seconds and (i < count or pending):
            due = min(count, int((time.monotonic() - t0) * rate) + 1)
            while i < due:
                p = self.new_peer()
                self._initiate(p, None)
                pending[p.session.local_index] = p
                i += 1
            self.receive(0.005, on_frame=on_frame, pending=pending if pending else {}, done=done)
            if i >= count and pending:
                self.receive(2.0, on_frame=on_frame, pending=pending, done=done)
                break
        return done


FAKE_SERVERS = 24
FAKE_PROVIDERS, SERVICES = 24, 4


def populate(node, providers=FAKE_PROVIDERS):
    """Gives `node` the state a node of a live overlay has: DHT servers in its routing table (fake
    identities that answer its verification PINGs as servers) and 4 live proposals per fake provider
    (valid, signed offers, published over gossip; ~100 by default)."""
    swarm = Swarm(node)
    host, port = swarm.sock.getsockname()

    def answer(peer, frame):
        if len(frame) >= 11 and frame[0] == w.CH_DHT:
            rid = struct.unpack_from("<Q", frame, 2)[0]
            reply = None
            if frame[1] == w.DHT_PING:
                reply = w.dht_pong(rid, host, port, server=True)
            elif frame[1] in (w.DHT_FIND_NODE, w.DHT_FIND_VALUE):
                reply = w.dht_nodes(rid, server=True)
            if reply:
                swarm.sock.sendto(peer.session.seal(reply), node.addr)

    peers = swarm.handshake_all([swarm.new_peer() for _ in range(FAKE_SERVERS)], on_frame=answer)
    for p in peers:
        swarm.sock.sendto(p.session.seal(w.dht_ping(random.getrandbits(63), server=True)), node.addr)
    publishers = peers[:8]  # a node takes at most 256 messages per peer per heartbeat
    for p in publishers:
        swarm.sock.sendto(p.session.seal(w.gossip_subscribe()), node.addr)
    for i in range(providers):
        provider = w.Identity()
        publisher = publishers[i % len(publishers)]
        for k in range(SERVICES):
            offer = w.signed_offer(provider, service=f"svc-{k}")
            swarm.sock.sendto(publisher.session.seal(w.gossip_publish(offer)), node.addr)
        swarm.receive(0.01, on_frame=answer)
    swarm.receive(2.0, on_frame=answer)
    return swarm, answer
