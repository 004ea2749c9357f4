#!/usr/bin/env bash
# End-to-end checks of signed service proposals over gossip with real `umbra up` processes on
# loopback (issue: proposals over gossip): NODES (default 20) nodes bootstrap from the first three;
# three of them provide ip-tunnel (two in DE, one in NL); every node lists all three within 5 s;
# country and price filters work; a node started later holds all of them within 3 s (join sync);
# a provider stopped cleanly vanishes everywhere at once (tombstone); one killed with SIGKILL
# vanishes within its proposal lifetime (20 s here, so the test need not wait the default 180 s).
# A consumer opens a dialogue with a provider (an inner address from its pool) and declares it dead
# within 15 s of the provider's SIGKILL.
# Prints "N passed, M failed"; exit 1 on any failure.
set -uo pipefail
cd "$(dirname "$0")/../.."
source tools/lib/cluster.sh

NODES=${1:-20}
LATE=$((NODES + 1))
CLUSTER_DIR=$(mktemp -d /tmp/umbra-proposals.XXXXXX)
trap 'cluster_stop; rm -rf "$CLUSTER_DIR"' EXIT
passed=0
failed=0
check() {
    local name=$1
    shift
    if "$@"; then passed=$((passed + 1)); echo "ok   $name"; else failed=$((failed + 1)); echo "FAIL $name"; fi
}
wait_proposals() { # NODES SECONDS WANT GONE
    env UMBRA="$UMBRA" python3 tools/e2e/bulk.py wait-proposals "$CLUSTER_DIR/node" "$@"
}

cluster_create "$LATE"
cp "$CLUSTER_DIR/bootstrap-peers.txt" "$CLUSTER_DIR/everyone.txt"
head -4 "$CLUSTER_DIR/everyone.txt" > "$CLUSTER_DIR/bootstrap-peers.txt"
p1=$(cluster_address "$CLUSTER_DIR/node5")
p2=$(cluster_address "$CLUSTER_DIR/node10")
p3=$(cluster_address "$CLUSTER_DIR/node15")
lifetime=(--proposal-lifetime 20)
launched=$(date +%s.%N)
for ((i = 1; i <= NODES; i++)); do
    case $i in
        5) cluster_start_node "$i" --provide ip-tunnel --tunnel-device none --country DE --price-gib 500000 --price-min 1000 "${lifetime[@]}" ;;
        10) cluster_start_node "$i" --provide ip-tunnel --tunnel-device none --country NL --region Amsterdam --ip-type hosting \
            --price-gib 300000 --price-min 800 "${lifetime[@]}" ;;
        15) cluster_start_node "$i" --provide ip-tunnel --tunnel-device none --country de --price-gib 200000 --price-min 2000 "${lifetime[@]}" ;;
        *) cluster_start_node "$i" ;;
    esac
done
# Every node up (control socket answering) before the clock starts.
for ((i = 1; i <= NODES; i++)); do cluster_wait_sessions "$i" 1 30 || echo "node$i has no session yet"; done
ready=$(date +%s.%N)
output=$(wait_proposals "1-$NODES" 5 "$p1,$p2,$p3")
echo "  $output (processes launched $(python3 -c "import time; print(f'{time.time() - $launched:.1f}')") s ago;" \
    "all answering with a session after $(python3 -c "print(f'{$ready - $launched:.1f}')") s)"
check "every one of $NODES nodes lists all 3 providers within 5 s" grep -q "agree" <<< "$output"

output=$("$UMBRA" proposals --data-dir "$CLUSTER_DIR/node2" --country DE)
echo "$output" | sed 's/^/  /'
first=$(sed -n 2p <<< "$output" | awk '{print $1}')
check "--country DE lists exactly the two German providers" grep -q "2 matching of 3 live proposals" <<< "$output"
check "cheapest first: the 200000/GiB provider leads" test "$first" = "$p3"
output=$("$UMBRA" proposals --data-dir "$CLUSTER_DIR/node3" --max-price-gib 300000)
check "--max-price-gib 300000 keeps two" grep -q "2 matching of 3" <<< "$output"
output=$("$UMBRA" proposals --data-dir "$CLUSTER_DIR/node7" --country DE --dht 2>&1)
echo "$output" | tail -1 | sed 's/^/  /'
check "the DHT provider index names both German providers" grep -q "DHT provider index: 2 providers" <<< "$output"
output=$("$UMBRA" proposals --data-dir "$CLUSTER_DIR/node3" --country Germany 2>&1)
check "a bad country is refused with what to give" grep -q "two-letter" <<< "$output"
output=$("$UMBRA" proposals --data-dir "$CLUSTER_DIR/node4" --json)
check "--json lists the region and ip type" grep -q '"region" : "Amsterdam"' <<< "$output"

# A node that joins now syncs the live set from its peers.
cluster_start_node "$LATE"
cluster_wait_sessions "$LATE" 1 30
output=$(wait_proposals "$LATE" 3 "$p1,$p2,$p3")
echo "  late joiner: $output"
check "a node joining later holds all 3 within 3 s" grep -q "agree" <<< "$output"
"$UMBRA" api --data-dir "$CLUSTER_DIR/node$LATE" /v1/market > "$CLUSTER_DIR/market.json"
python3 - "$CLUSTER_DIR/market.json" <<'PY'
import json, sys
market = json.load(open(sys.argv[1]))
print(f"  late joiner sync: {market['sync_phase']} in {market['sync_seconds']} s, {market['sync_items']} items, "
      f"{market['proposals']} proposals, {len(market['gossip_peers'])} gossip peers, mesh {market['mesh_size']}")
PY

# Clean stop: a tombstone withdraws the proposal everywhere at once.
"$UMBRA" down --data-dir "$CLUSTER_DIR/node10" > /dev/null
output=$(wait_proposals "1-9,11-$LATE" 2 "$p1,$p3" "$p2")
echo "  after umbra down: $output"
check "a provider stopped cleanly vanishes everywhere within 2 s" grep -q "agree" <<< "$output"

# A dialogue with provider p3: an inner address from its pool; SIGKILL of the provider is noticed
# within 15 s (3 missed 5 s keepalives).
output=$("$UMBRA" session open --data-dir "$CLUSTER_DIR/node3" "$p3" 2>&1)
echo "$output" | sed 's/^/  /'
check "umbra session open gets an inner address from the provider" grep -q "inner       10.182.0.2/16 via 10.182.0.1" <<< "$output"
output=$("$UMBRA" session list --data-dir "$CLUSTER_DIR/node15" 2>&1)
check "the provider lists the consumer it serves" grep -q "from $(cluster_address "$CLUSTER_DIR/node3")" <<< "$output"
output=$("$UMBRA" session open --data-dir "$CLUSTER_DIR/node3" "$(cluster_address "$CLUSTER_DIR/node4")" 2>&1)
check "a session with a node that sells nothing is refused with a reason" grep -q "no live ip-tunnel proposal" <<< "$output"

# SIGKILL: no tombstone; the proposal expires (lifetime 20 s).
killed_at=$(date +%s.%N)
kill -KILL "${CLUSTER_PIDS[15]}"
wait "${CLUSTER_PIDS[15]}" 2> /dev/null
unset 'CLUSTER_PIDS[15]'
dead_after=-1
for ((t = 0; t < 200; t++)); do
    if "$UMBRA" session list --data-dir "$CLUSTER_DIR/node3" 2>&1 | grep -q "closed"; then
        dead_after=$(python3 -c "import time; print(f'{time.time() - $killed_at:.1f}')")
        break
    fi
    sleep 0.1
done
echo "  $(grep -m1 'ended with' "$CLUSTER_DIR/node3.log" | sed 's/.*event=//') after $dead_after s"
check "the consumer declares the killed provider's session dead within 15 s" \
    python3 -c "import sys; sys.exit(0 if 0 <= $dead_after <= 15.5 else 1)"
output=$(wait_proposals "1-9,11-14,16-$LATE" 25 "$p1" "$p3")
echo "  after SIGKILL: $output"
check "a provider killed with SIGKILL vanishes within its lifetime (20 s)" grep -q "agree" <<< "$output"

check "the remaining provider is still listed everywhere" wait_proposals "1-9,11-14,16-$LATE" 3 "$p1"

echo "proposals e2e: $passed passed, $failed failed"
((failed == 0))
