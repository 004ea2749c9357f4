#!/usr/bin/env bash
# End-to-end checks of the node store (`<data dir>/node.sqlite`) with real `umbra up` processes on
# loopback, started with the flags a user passes: a record put on one node is held by another; that
# node is restarted cleanly (`umbra down`) and after a crash (`kill -9`), each time with no bootstrap
# list, and still holds the record, rejoins from its stored contacts, and serves the record to a
# fresh node that knows only it. A damaged store is refused with its path and what to do.
# Prints "N passed, M failed"; exit 1 on any failure. Run it under `flock /tmp/umbra-e2e.lock`.
set -uo pipefail
cd "$(dirname "$0")/../.."
source tools/lib/cluster.sh

CLUSTER_DIR=$(mktemp -d /tmp/umbra-storage.XXXXXX)
trap 'cluster_stop; rm -rf "$CLUSTER_DIR"' EXIT
passed=0
failed=0
check() {
    local name=$1
    shift
    if "$@"; then passed=$((passed + 1)); echo "ok   $name ($SECONDS s)"; else failed=$((failed + 1)); echo "FAIL $name ($SECONDS s)"; fi
}
dht_field() { # INDEX FIELD -> a field of GET /v1/dht (-1 when the node does not answer)
    "$UMBRA" api --data-dir "$CLUSTER_DIR/node$1" --timeout 5 /v1/dht 2>/dev/null \
        | python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$2" 2>/dev/null || echo -1
}
wait_field() { # INDEX FIELD MINIMUM SECONDS
    local deadline=$((SECONDS + $4))
    while ((SECONDS < deadline)); do (($(dht_field "$1" "$2") >= $3)) && return 0; sleep 0.3; done
    return 1
}
rows() { # INDEX NAMESPACE -> rows of that namespace in the node's store
    sqlite3 "$CLUSTER_DIR/node$1/node.sqlite" "SELECT count(*) FROM entry WHERE namespace = '$2'" 2>/dev/null || echo -1
}
start_bare() { # INDEX: `umbra up` with an empty bootstrap list (what it knows comes from its store)
    "$UMBRA" up --data-dir "$CLUSTER_DIR/node$1" --listen "127.0.0.1:$((CLUSTER_BASE_PORT + $1))" \
        --bootstrap "$CLUSTER_DIR/empty-bootstrap.txt" >> "$CLUSTER_DIR/node$1.log" 2>&1 &
    CLUSTER_PIDS[$1]=$!
}
holds_note() { # INDEX -> the node holds the e2e record: `umbra dht get` on it finds it
    "$UMBRA" dht get --data-dir "$CLUSTER_DIR/node$1" e2e-storage 2>&1 | grep -q "kept across restarts"
}

cluster_create 5
: > "$CLUSTER_DIR/empty-bootstrap.txt"
# Nodes 1-4 start from the bootstrap list; node 5 is the fresh reader used at the end.
head -5 "$CLUSTER_DIR/bootstrap-peers.txt" > "$CLUSTER_DIR/four.txt"
cp "$CLUSTER_DIR/four.txt" "$CLUSTER_DIR/bootstrap-peers.txt"
for i in 1 2 3 4; do cluster_start_node "$i"; done
ready=1
for i in 1 2 3 4; do wait_field "$i" table_size 3 60 || ready=0; done
check "4 nodes joined the DHT (each table holds the 3 others)" test $ready = 1
check "each node created its store" test -s "$CLUSTER_DIR/node2/node.sqlite"

stored=0
for ((t = 0; t < 40; t++)); do
    output=$("$UMBRA" dht put --data-dir "$CLUSTER_DIR/node1" --key e2e-storage --value "kept across restarts" 2>&1)
    stored=$(sed -nE 's/^stored on ([0-9]+) of.*/\1/p' <<< "$output")
    ((${stored:-0} >= 3)) && break
    sleep 0.5
done
check "a record put on node1 is stored on ${stored:-0} nodes (at least 3)" test "${stored:-0}" -ge 3
wait_field 2 records 1 10
records=$(dht_field 2 records)
check "node2 holds records ($records)" test "$records" -ge 1
for ((t = 0; t < 30; t++)); do (($(rows 2 dht.records) >= records)) && break; sleep 0.2; done
check "node2's records are in its store ($(rows 2 dht.records) rows)" test "$(rows 2 dht.records)" -ge "$records"
for ((t = 0; t < 50; t++)); do (($(rows 2 dht.contacts) >= 3)) && break; sleep 0.2; done
check "node2's routing table is in its store ($(rows 2 dht.contacts) contacts)" test "$(rows 2 dht.contacts)" -ge 3

# --- a clean restart: umbra down, then up with no bootstrap list ----------------------------------
"$UMBRA" down --data-dir "$CLUSTER_DIR/node2" > /dev/null
wait "${CLUSTER_PIDS[2]}"; code=$?
check "umbra down stops node2 (exit 0)" test $code = 0
start_bare 2
check "after umbra down and up, node2 holds its $records records again" wait_field 2 records "$records" 15
check "node2 rejoined from its stored contacts" wait_field 2 table_size 3 30
output=$("$UMBRA" status --data-dir "$CLUSTER_DIR/node2" 2>&1)
check "umbra status counts the records stored" grep -qE "[0-9]+ records stored" <<< "$output"

# --- a crash: kill -9, then up with no bootstrap list ---------------------------------------------
kill -KILL "${CLUSTER_PIDS[2]}"
wait "${CLUSTER_PIDS[2]}" 2>/dev/null
start_bare 2
check "after kill -9 and up, node2 holds its $records records again" wait_field 2 records "$records" 15
check "node2 rejoined from its stored contacts again" wait_field 2 table_size 3 30

# --- node2 serves the record: the others stop, a fresh node asks node2 alone ------------------------
for i in 1 3 4; do "$UMBRA" down --data-dir "$CLUSTER_DIR/node$i" > /dev/null 2>&1; done
for i in 1 3 4; do wait "${CLUSTER_PIDS[$i]}" 2>/dev/null; unset "CLUSTER_PIDS[$i]"; done
sed -n '3p' "$CLUSTER_DIR/four.txt" > "$CLUSTER_DIR/only-node2.txt"
"$UMBRA" up --data-dir "$CLUSTER_DIR/node5" --listen "127.0.0.1:$((CLUSTER_BASE_PORT + 5))" \
    --bootstrap "$CLUSTER_DIR/only-node2.txt" > "$CLUSTER_DIR/node5.log" 2>&1 &
CLUSTER_PIDS[5]=$!
cluster_wait_sessions 5 1 20
found=0
for ((t = 0; t < 20; t++)); do holds_note 5 && { found=1; break; }; sleep 0.5; done
check "a fresh node that knows only node2 reads the record from it" test $found = 1

# --- a damaged store is refused with its path and what to do ----------------------------------------
"$UMBRA" identity new --data-dir "$CLUSTER_DIR/broken" > /dev/null
head -c 8192 /dev/urandom > "$CLUSTER_DIR/broken/node.sqlite"
message=$(timeout 20 "$UMBRA" up --data-dir "$CLUSTER_DIR/broken" --listen "127.0.0.1:$((CLUSTER_BASE_PORT + 6))" \
    --bootstrap "$CLUSTER_DIR/empty-bootstrap.txt" 2>&1)
check "a damaged node.sqlite is refused, naming the file" grep -q "$CLUSTER_DIR/broken/node.sqlite" <<< "$message"
check "the refusal says to move it aside" grep -q "move it aside" <<< "$message"

echo "storage e2e: $passed passed, $failed failed"
((failed == 0))
