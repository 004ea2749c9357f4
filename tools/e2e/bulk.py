"""Many control requests to many running nodes, through the umbra CLI (the one control client).

The end-to-end tests use it where a shell loop would be slow to write: a lookup of every node from
every node, and waiting until every node's market agrees. Every request is an `umbra … --json`
run, exactly as a user would type it; the binary is $UMBRA (default .build/debug/umbra).

Usage: python3 tools/e2e/bulk.py lookup-all DATA_DIR_PREFIX COUNT
  Every node (DATA_DIR_PREFIX1 .. DATA_DIR_PREFIX<COUNT>) looks up every other node's address
  (one `umbra dht lookup` per node, naming all the others) and checks the endpoint found; prints a
  summary and exits 1 on any miss.
Usage: python3 tools/e2e/bulk.py wait-proposals DATA_DIR_PREFIX NODES SECONDS WANT [GONE]
  NODES is a list of node numbers and ranges such as 1-9,11-20. Asks every node (`umbra proposals
  --json`) until each lists every provider address in WANT and none in GONE (comma-separated, may
  be empty); prints the time it took and exits 1 on timeout.
"""
import concurrent.futures
import json
import os
import subprocess
import sys
import time

UMBRA = os.environ.get("UMBRA", ".build/debug/umbra")


def umbra(*args, timeout=60):
    """Runs `umbra ARGS`; returns (exit status, stdout). A run that hangs counts as a failure."""
    try:
        done = subprocess.run([UMBRA, *args], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return 124, ""
    return done.returncode, done.stdout


def status(data_dir):
    code, out = umbra("status", "--json", "--data-dir", data_dir)
    if code != 0:
        raise SystemExit(f"umbra status --data-dir {data_dir} failed ({code})")
    return json.loads(out)


def lookup_all(prefix, count):
    nodes = {i: status(f"{prefix}{i}") for i in range(1, count + 1)}

    def run(i):
        others = [j for j in nodes if j != i]
        code, out = umbra("dht", "lookup", "--json", "--data-dir", f"{prefix}{i}",
                          *[nodes[j]["address"] for j in others], timeout=300)
        reports = [json.loads(line) for line in out.splitlines() if line.strip()]
        results = []
        for position, j in enumerate(others):
            report = reports[position] if position < len(reports) else {}
            contact = report.get("contact")
            ok = contact is not None and contact["endpoint"] == nodes[j]["listen"]
            results.append((ok, report.get("hops", 0), report.get("latency_ms", 0.0), (i, j)))
        return results

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        results = [result for batch in pool.map(run, nodes) for result in batch]
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

    def listed(i):
        code, out = umbra("proposals", "--json", "--data-dir", f"{prefix}{i}", timeout=10)
        if code != 0:
            return i, None
        return i, set(p["provider"] for p in json.loads(out).get("proposals", []))

    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        while pending and time.monotonic() - start < seconds:
            for i, providers in pool.map(listed, sorted(pending)):
                if providers is None:
                    continue
                last[i] = providers
                if want <= providers and not (gone & providers):
                    pending.discard(i)
            if pending:
                time.sleep(0.1)
    elapsed = time.monotonic() - start
    if pending:
        print(f"after {elapsed:.1f} s, {len(pending)} of {nodes} nodes still differ:")
        for i in sorted(pending)[:5]:
            providers = last.get(i, set())
            print(f"  node{i}: missing {len(want - providers)}, still listing {len(gone & providers)} withdrawn")
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
