#!/usr/bin/env bash
# End-to-end checks of the foundation through the real CLI and real processes on loopback:
# identity files and their permissions, clear CLI errors, a 5-node overlay, 10,000 random datagrams
# against one node (it stays up, counts the drops, and still completes a fresh handshake),
# `umbra down`, SIGTERM and SIGINT shutdown. Prints "N passed, M failed"; exit 1 on any failure.
set -uo pipefail
cd "$(dirname "$0")/../.."
source tools/lib/cluster.sh

CLUSTER_DIR=$(mktemp -d /tmp/umbra-e2e.XXXXXX)
trap 'cluster_stop; rm -rf "$CLUSTER_DIR"' EXIT
passed=0
failed=0
check() { # NAME COMMAND… : runs COMMAND, records the result
    local name=$1
    shift
    if "$@"; then
        passed=$((passed + 1)); echo "ok   $name"
    else
        failed=$((failed + 1)); echo "FAIL $name"
    fi
}
json_field() { python3 -c "import json,sys; d=json.load(sys.stdin); print(eval('d' + sys.argv[1]))" "$1"; }

# --- identity ---------------------------------------------------------------------------------
"$UMBRA" identity new --data-dir "$CLUSTER_DIR/id" > /dev/null
check "identity file is created with mode 600" test "$(stat -c %a "$CLUSTER_DIR/id/identity.key")" = 600
check "identity new refuses to overwrite" bash -c "! '$UMBRA' identity new --data-dir '$CLUSTER_DIR/id' 2>/dev/null"
chmod 644 "$CLUSTER_DIR/id/identity.key"
message=$("$UMBRA" identity show --data-dir "$CLUSTER_DIR/id" 2>&1)
check "a group-readable key is refused with how to fix it" grep -q "chmod 600" <<< "$message"
chmod 600 "$CLUSTER_DIR/id/identity.key"
check "identity show prints an umbra1 address" bash -c "'$UMBRA' identity show --data-dir '$CLUSTER_DIR/id' | grep -q 'address  umbra1'"
message=$(UMBRA_DATA_DIR="$CLUSTER_DIR/id" "$UMBRA" identity show 2>&1)
check "UMBRA_DATA_DIR selects the data dir" grep -q "umbra1" <<< "$message"

# --- CLI errors ---------------------------------------------------------------------------------
message=$("$UMBRA" up --data-dir "$CLUSTER_DIR/id" --listen 127.0.0.1 2>&1)
check "a --listen without port names the problem" grep -q "missing port" <<< "$message"
message=$("$UMBRA" up --data-dir "$CLUSTER_DIR/id" --listen 127.0.0.1:4747 --bootstrap /nonexistent 2>&1)
check "a missing --bootstrap file is named" grep -q "/nonexistent" <<< "$message"
message=$("$UMBRA" status --data-dir "$CLUSTER_DIR/id" 2>&1)
check "status without a running node says to start one" grep -q "umbra up" <<< "$message"

# --- a 5-node overlay ---------------------------------------------------------------------------
cluster_create 5
echo "bogus line" >> "$CLUSTER_DIR/bootstrap-peers.txt"
for i in 1 2 3 4 5; do cluster_start_node "$i"; done
all=1
for i in 1 2 3 4 5; do cluster_wait_sessions "$i" 4 30 || all=0; done
check "every node of 5 has 4 authenticated peers" test $all = 1
check "a bad bootstrap line is logged with its line number" grep -q 'line=7' "$CLUSTER_DIR/node1.log"
check "control socket is mode 600" test "$(stat -c %a "$CLUSTER_DIR/node1/control.sock")" = 600
peers=$(cluster_json 1 peers)
check "peers --json lists 4 established bootstrap peers" test \
    "$(json_field '["peers"]' <<< "$peers" | python3 -c 'import sys,ast; p=ast.literal_eval(sys.stdin.read()); print(sum(1 for x in p if x["state"]=="established" and x["bootstrap"]))')" = 4
message=$("$UMBRA" up --data-dir "$CLUSTER_DIR/node1" --listen 127.0.0.1:$((CLUSTER_BASE_PORT + 40)) 2>&1)
check "a second node on the same data dir is refused, naming the process that holds it" grep -qE "in use by process [0-9]+" <<< "$message"

# --- 10,000 random datagrams at node 1 -----------------------------------------------------------
port=$((CLUSTER_BASE_PORT + 1))
before=$(cluster_json 1 status | json_field '["dropped_total"]')
python3 - "$port" <<'PY'
import os, random, socket, sys, time
port = int(sys.argv[1])
rng = random.Random(2026)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(10_000):
    data = bytearray(os.urandom(rng.randint(0, 300)))
    if data and i % 4 == 0:
        data[0] = rng.randint(1, 4)   # look like a handshake, cookie or transport datagram
    s.sendto(bytes(data), ("127.0.0.1", port))
    if i % 200 == 199:
        time.sleep(0.002)
PY
sleep 1
status=$(cluster_json 1 status)
after=$(json_field '["dropped_total"]' <<< "$status")
check "node 1 survived 10,000 random datagrams" kill -0 "${CLUSTER_PIDS[1]}"
check "status --json counts all 10,000 drops (was $before, now $after)" test $((after - before)) -eq 10000
check "no random datagram reached the Diffie-Hellman" test "$(json_field '["dropped"]["handshake_failed"]' <<< "$status")" = 0
check "node 1 kept its 4 sessions" test "$(json_field '["sessions"]' <<< "$status")" -ge 4
# A node that was not in the bootstrap list (node 6) dials node 1 fresh.
"$UMBRA" identity new --data-dir "$CLUSTER_DIR/node6" > /dev/null
head -2 "$CLUSTER_DIR/bootstrap-peers.txt" > "$CLUSTER_DIR/node6-bootstrap.txt"
"$UMBRA" up --data-dir "$CLUSTER_DIR/node6" --listen "127.0.0.1:$((CLUSTER_BASE_PORT + 6))" \
    --bootstrap "$CLUSTER_DIR/node6-bootstrap.txt" > "$CLUSTER_DIR/node6.log" 2>&1 &
CLUSTER_PIDS[6]=$!
check "a fresh handshake with node 1 completes after the flood" cluster_wait_sessions 6 1 15

# --- shutdown paths -------------------------------------------------------------------------------
"$UMBRA" down --data-dir "$CLUSTER_DIR/node6" > /dev/null
wait "${CLUSTER_PIDS[6]}"; code=$?
unset 'CLUSTER_PIDS[6]'
check "umbra down stops the node with exit status 0" test $code = 0
check "umbra down removes the control socket" test ! -e "$CLUSTER_DIR/node6/control.sock"
kill -TERM "${CLUSTER_PIDS[5]}"
wait "${CLUSTER_PIDS[5]}"; code=$?
unset 'CLUSTER_PIDS[5]'
check "SIGTERM stops the node gracefully (exit 0)" test $code = 0
check "the node logged its graceful stop" grep -q "stopped" "$CLUSTER_DIR/node5.log"
kill -INT "${CLUSTER_PIDS[4]}"
wait "${CLUSTER_PIDS[4]}"; code=$?
unset 'CLUSTER_PIDS[4]'
check "SIGINT stops the node gracefully (exit 0)" test $code = 0

echo "foundation e2e: $passed passed, $failed failed"
((failed == 0))
