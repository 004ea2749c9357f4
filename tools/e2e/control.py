"""Talks to running umbra nodes over their control sockets (HTTP/1.1 + JSON on a unix socket).

Used by the end-to-end tests to run thousands of requests quickly, without a process per request.
Usage: python3 tools/e2e/control.py lookup-all DATA_DIR_PREFIX COUNT
  Every node (DATA_DIR_PREFIX1 .. DATA_DIR_PREFIX<COUNT>) looks up every other node's address
  and checks the endpoint found; prints a summary and exits 1 on any miss.
Usage: python3 tools/e2e/control.py wait-proposals DATA_DIR_PREFIX NODES SECONDS WANT [GONE]
  NODES is a list of node numbers and ranges such as 1-9,11-20. Polls every node's GET /v1/proposals until each lists every provider address in WANT and none in
  GONE (comma-separated, may be empty); prints the time it took and exits 1 on timeout.
"""
import time
import concurrent.futures
import json
import socket
import sys
import urllib.parse


def request(data_dir, method, path, timeout=30):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(f"{data_dir}/control.sock")
        s.sendall(f"{method} {path} HTTP/1.1\r\nHost: umbra\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    return status, json.loads(body) if body else None


def lookup_all(prefix, count):
    nodes = {}
    for i in range(1, count + 1):
        status, report = request(f"{prefix}{i}", "GET", "/v1/status")
        nodes[i] = report
    jobs = [(i, j) for i in nodes for j in nodes if i != j]

    def run(job):
        i, j = job
        target = urllib.parse.quote(nodes[j]["address"])
        status, report = request(f"{prefix}{i}", "GET", f"/v1/dht/lookup?target={target}")
        contact = (report or {}).get("contact")
        ok = status == 200 and contact is not None and contact["endpoint"] == nodes[j]["listen"]
        return ok, (report or {}).get("hops", 0), (report or {}).get("latency_ms", 0.0), job

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(run, jobs))
    misses = [job for ok, _, _, job in results if not ok]
    hops = sorted(h for ok, h, _, _ in results if ok)
    latency = sorted(l for ok, _, l, _ in results if ok)
    found = len(results) - len(misses)
    print(f"lookups: {found} of {len(results)} found every node's address"
          + (f"; hops p50 {hops[len(hops) // 2]} max {hops[-1]}; latency p50 {latency[len(latency) // 2]:.1f} ms"
             if hops else ""))
    for i, j in misses[:10]:
        print(f"  node{i} did not find node{j}")
    return 0 if not misses else 1


def wait_proposals(prefix, nodes, seconds, want, gone):
    want = set(a for a in want.split(",") if a)
    gone = set(a for a in gone.split(",") if a)
    start = time.monotonic()
    pending = set()
    for part in nodes.split(","):
        low, _, high = part.partition("-")
        pending |= set(range(int(low), int(high or low) + 1))
    nodes = len(pending)
    last = {}
    while pending and time.monotonic() - start < seconds:
        for i in sorted(pending):
            try:
                status, report = request(f"{prefix}{i}", "GET", "/v1/proposals", timeout=5)
            except OSError:
                continue
            listed = set(p["provider"] for p in (report or {}).get("proposals", []))
            last[i] = listed
            if status == 200 and want <= listed and not (gone & listed):
                pending.discard(i)
        if pending:
            time.sleep(0.1)
    elapsed = time.monotonic() - start
    if pending:
        print(f"after {elapsed:.1f} s, {len(pending)} of {nodes} nodes still differ:")
        for i in sorted(pending)[:5]:
            listed = last.get(i, set())
            print(f"  node{i}: missing {len(want - listed)}, still listing {len(gone & listed)} withdrawn")
        return 1
    print(f"all {nodes} nodes agree after {elapsed:.2f} s")
    return 0


if __name__ == "__main__":
    if len(sys.argv) in (6, 7) and sys.argv[1] == "wait-proposals":
        sys.exit(wait_proposals(sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5],
                                sys.argv[6] if len(sys.argv) == 7 else ""))
    if len(sys.argv) == 4 and sys.argv[1] == "lookup-all":
        sys.exit(lookup_all(sys.argv[2], int(sys.argv[3])))
    print(__doc__)
    sys.exit(2)
