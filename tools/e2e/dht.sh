#!/usr/bin/env bash
# End-to-end DHT checks with real `umbra up` processes on loopback (issue: Kademlia DHT):
# NODES (default 50) nodes start with default flags from a bootstrap list naming only the first
# three; every node finds every other node's address by lookup; a record put on one node is read on
# every node; a node
# restarted with its data dir and no bootstrap list rejoins from the routing table in its node.sqlite.
# Prints "N passed, M failed"; exit 1 on any failure.
set -uo pipefail
cd "$(dirname "$0")/../.."
source tools/lib/cluster.sh

NODES=${1:-50}
CLUSTER_DIR=$(mktemp -d /tmp/umbra-dht.XXXXXX)
trap 'cluster_stop; rm -rf "$CLUSTER_DIR"' EXIT
passed=0
failed=0
check() {
    local name=$1
    shift
    if "$@"; then passed=$((passed + 1)); echo "ok   $name ($SECONDS s)"; else failed=$((failed + 1)); echo "FAIL $name ($SECONDS s)"; fi
}
table_size() { # INDEX -> DHT routing table size (-1 when the node does not answer)
    "$UMBRA" peers --data-dir "$CLUSTER_DIR/node$1" 2>/dev/null | sed -n 's/^DHT routing table: \([0-9]*\) contacts.*/\1/p' | grep . || echo -1
}
wait_table() { # INDEX MINIMUM SECONDS
    local deadline=$((SECONDS + $3))
    while ((SECONDS < deadline)); do (($(table_size "$1") >= $2)) && return 0; sleep 0.5; done
    return 1
}

cluster_create "$NODES"
# Only the first three nodes are in the bootstrap list everyone gets.
head -4 "$CLUSTER_DIR/bootstrap-peers.txt" > "$CLUSTER_DIR/all-contacts.txt"
cp "$CLUSTER_DIR/bootstrap-peers.txt" "$CLUSTER_DIR/everyone.txt"
head -4 "$CLUSTER_DIR/everyone.txt" > "$CLUSTER_DIR/bootstrap-peers.txt"
started=$SECONDS
for ((i = 1; i <= NODES; i++)); do cluster_start_node "$i"; done
ready=1
for ((i = 1; i <= NODES; i++)); do wait_table "$i" 8 90 || { ready=0; echo "node$i table: $(table_size "$i")"; }; done
check "$NODES nodes joined; every routing table holds at least 8 contacts ($((SECONDS - started)) s)" test $ready = 1
# A node serves the DHT once it knows it is reachable (peers see it at its own socket address on
# loopback); until then others do not put it in their tables, so lookups wait for every verdict.
all_public() {
    local i
    for ((i = 1; i <= NODES; i++)); do
        "$UMBRA" api --data-dir "$CLUSTER_DIR/node$i" --timeout 5 /v1/relay 2>/dev/null | python3 -c '
import json, sys
relay = json.load(sys.stdin)
sys.exit(0 if relay.get("reachability") == "public" and relay.get("dht_server") is True else 1)' || return 1
    done
    return 0
}
for ((t = 0; t < 60; t++)); do all_public && break; sleep 0.5; done
check "every node found out it is publicly reachable and serves the DHT" all_public

check "every node finds every other node's address by lookup" \
    env UMBRA="$UMBRA" python3 tools/e2e/bulk.py lookup-all "$CLUSTER_DIR/node" "$NODES"

seven=$(cluster_address "$CLUSTER_DIR/node7")
output=$("$UMBRA" dht lookup --data-dir "$CLUSTER_DIR/node2" "$seven" 2>&1)
check "umbra dht lookup prints the address found" grep -q "found      $seven@127.0.0.1:$((CLUSTER_BASE_PORT + 7))" <<< "$output"
"$UMBRA" dht put --data-dir "$CLUSTER_DIR/node7" --key e2e-note --value "written on node7" > /dev/null
output=$("$UMBRA" dht get --data-dir "$CLUSTER_DIR/node$((NODES - 8))" e2e-note 2>&1)
check "a record put on node7 is read on node$((NODES - 8))" grep -q "written on node7" <<< "$output"
check "the record names its publisher" grep -q "by $seven" <<< "$output"
unread=""
for ((i = 1; i <= NODES; i++)); do
    "$UMBRA" dht get --data-dir "$CLUSTER_DIR/node$i" e2e-note 2>&1 | grep -q "written on node7" || unread+=" node$i"
done
check "the record put on node7 is read on every node${unread:+ (not on$unread)}" test -z "$unread"
output=$("$UMBRA" dht lookup --data-dir "$CLUSTER_DIR/node2" not-an-address 2>&1)
check "a bad lookup target is refused with what to give" grep -q "umbra1" <<< "$output"

# Restart node 13 from its data dir with an empty bootstrap list.
"$UMBRA" down --data-dir "$CLUSTER_DIR/node13" > /dev/null
wait "${CLUSTER_PIDS[13]}" 2>/dev/null
saved=$(sqlite3 "$CLUSTER_DIR/node13/node.sqlite" "SELECT count(*) FROM entry WHERE namespace = 'dht.contacts'" 2>/dev/null)
check "the stopped node saved its routing table (${saved:-0} contacts in node.sqlite)" test "${saved:-0}" -ge 8
: > "$CLUSTER_DIR/empty-bootstrap.txt"
"$UMBRA" up --data-dir "$CLUSTER_DIR/node13" --listen "127.0.0.1:$((CLUSTER_BASE_PORT + 13))" \
    --bootstrap "$CLUSTER_DIR/empty-bootstrap.txt" >> "$CLUSTER_DIR/node13.log" 2>&1 &
CLUSTER_PIDS[13]=$!
check "the restarted node rejoins from its saved table" wait_table 13 8 30
thirty=$(cluster_address "$CLUSTER_DIR/node30")
quiet() { "$@" > /dev/null 2>&1; }
check "the restarted node finds others" quiet "$UMBRA" dht lookup --data-dir "$CLUSTER_DIR/node13" "$thirty"
thirteen=$(cluster_address "$CLUSTER_DIR/node13")
check "others find the restarted node" quiet "$UMBRA" dht lookup --data-dir "$CLUSTER_DIR/node30" "$thirteen"

echo "dht e2e: $passed passed, $failed failed"
((failed == 0))
