#!/usr/bin/env bash
# End-to-end checks of the ledger with real `umbra up` processes on loopback, started with the flags
# a user passes: `umbra ledger genesis` writes a genesis for 4 validators; the validators run
# `umbra up --genesis FILE --validator`, five more nodes `umbra up --genesis FILE`. A transfer is
# certified and every node shows the same balances; refused actions say why and change nothing; a
# validator killed with -9 during a burst of entries restarts from its store (no genesis flag: the
# data dir remembers it), never signs two entries for one slot, and votes again; every node ends
# with the same entries at every height; a node started last catches up from the committee.
# Prints "N passed, M failed"; exit 1 on any failure. Run it under `flock /tmp/umbra-e2e.lock`.
set -uo pipefail
cd "$(dirname "$0")/../.."
source tools/lib/cluster.sh

CLUSTER_DIR=$(mktemp -d /tmp/umbra-ledger.XXXXXX)
trap 'cluster_stop; rm -rf "$CLUSTER_DIR"' EXIT
passed=0
failed=0
check() {
    local name=$1
    shift
    if "$@"; then passed=$((passed + 1)); echo "ok   $name ($SECONDS s)"; else failed=$((failed + 1)); echo "FAIL $name ($SECONDS s)"; fi
}
GENESIS=$CLUSTER_DIR/genesis.json
NODES=10
cli() { # INDEX ARGS… -> the CLI against node INDEX
    local i=$1
    shift
    "$UMBRA" "$@" --data-dir "$CLUSTER_DIR/node$i"
}
ADDRS=()
addr() { local list=($ADDR_LIST); echo "${list[$(($1 - 1))]}"; }
ledger_field() { # INDEX PYTHON-EXPRESSION over the status document `r` -> its value (or "error")
    "$UMBRA" api --data-dir "$CLUSTER_DIR/node$1" --timeout 5 /v1/ledger 2>/dev/null \
        | python3 -c 'import json, sys; r = json.load(sys.stdin); print(eval(sys.argv[1]))' "$2" 2>/dev/null || echo error
}
balance() { # INDEX ACCOUNT-INDEX -> the balance node INDEX shows for that account (or "none")
    "$UMBRA" api --data-dir "$CLUSTER_DIR/node$1" --timeout 5 "/v1/ledger/balance?account=$(addr "$2")" 2>/dev/null \
        | python3 -c 'import json, sys; print(json.load(sys.stdin)["balance"])' 2>/dev/null || echo none
}
wait_until() { # SECONDS COMMAND… -> status 0 once COMMAND succeeds
    local deadline=$((SECONDS + $1))
    shift
    while ((SECONDS < deadline)); do "$@" && return 0; sleep 0.3; done
    return 1
}
start() { # INDEX [flags…]: `umbra up` as a user runs it
    local i=$1
    shift
    cluster_start_node "$i" "$@"
}
everyone_sees() { # ACCOUNT-INDEX BALANCE NODE-INDEX… -> status 0 when each node shows that balance
    local account=$1 want=$2 i
    shift 2
    for i in "$@"; do [[ $(balance "$i" "$account") == "$want" ]] || return 1; done
}
entries_digest() { # INDEX -> one line per account and height: "account height hash", sorted
    local i=$1 account
    for account in 1 2 3 4 5 6 7 8 9 10; do
        cli "$i" ledger entries "$(addr "$account")" --limit 1000 --json 2>/dev/null \
            | python3 -c 'import json, sys
d = json.load(sys.stdin)
for e in d["entries"]: print(d["account"], e["height"], e["hash"])' 2>/dev/null
    done | sort
}

echo "==> $NODES identities, a genesis for validators 1-4, funds for node 5"
cluster_create "$NODES"
for ((i = 1; i <= NODES; i++)); do ADDRS[$i]=$(cluster_address "$CLUSTER_DIR/node$i"); done
export ADDR_LIST="${ADDRS[*]}"
"$UMBRA" ledger genesis --network e2e-ledger --validator "$(addr 1)=1000" --validator "$(addr 2)=1000" \
    --validator "$(addr 3)=1000" --validator "$(addr 4)=1000" --allocate "$(addr 5)=1000000" \
    --unbonding-delay 600 --output "$GENESIS" > "$CLUSTER_DIR/genesis.txt" 2>&1
check "umbra ledger genesis writes a genesis file that checks" \
    bash -c "'$UMBRA' ledger genesis --check '$GENESIS' | grep -q '^network *e2e-ledger'"
check "a second genesis over the same file is refused" \
    bash -c "! '$UMBRA' ledger genesis --network x --validator '$(addr 1)=1000' --output '$GENESIS' 2>/dev/null"

echo "==> starting validators 1-4 and nodes 5-9"
for i in 1 2 3 4; do start "$i" --genesis "$GENESIS" --validator; done
for i in 5 6 7 8 9; do start "$i" --genesis "$GENESIS"; done
check "node 5 reaches all 4 committee members" \
    wait_until 30 bash -c "[[ \$('$UMBRA' api --data-dir '$CLUSTER_DIR/node5' /v1/ledger/committee 2>/dev/null | python3 -c 'import json,sys; print(sum(m[\"connected\"] for m in json.load(sys.stdin)[\"members\"]))' 2>/dev/null) == 4 ]]"
check "validators vote, other nodes are replicas" \
    bash -c "[[ \$(for i in 1 5; do '$UMBRA' api --data-dir '$CLUSTER_DIR/node'\$i /v1/ledger | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"voting\"])'; done | tr '\n' ' ') == 'True False ' ]]"

cli 5 ledger transfer "$(addr 6)" 2500 > "$CLUSTER_DIR/transfer.txt" 2>&1
check "a transfer from node 5 to node 6 is certified" grep -q "^certified *transfer at height 0" "$CLUSTER_DIR/transfer.txt"
check "all 9 nodes show node 6's balance 2500 and node 5's 997500" \
    wait_until 10 bash -c "$(declare -f balance addr everyone_sees); UMBRA='$UMBRA' CLUSTER_DIR='$CLUSTER_DIR'; everyone_sees 6 2500 1 2 3 4 5 6 7 8 9 && everyone_sees 5 997500 1 2 3 4 5 6 7 8 9"

echo "==> refusals say why and change nothing"
refused() { # EXPECTED-TEXT INDEX ARGS…: the command fails with EXPECTED-TEXT, the node's height unchanged
    local want=$1 i=$2 before after output
    shift 2
    before=$(ledger_field "$i" "(r['account'] or {}).get('next_height')")
    if output=$(cli "$i" "$@" 2>&1); then echo "     unexpected success: $output"; return 1; fi
    after=$(ledger_field "$i" "(r['account'] or {}).get('next_height')")
    echo "     $output" | head -1
    [[ $output == *"$want"* && $before == "$after" ]]
}
check "a transfer above the balance: insufficient balance" refused "insufficient balance" 5 ledger transfer "$(addr 7)" 99999999
check "a transfer from an account without funds: says it needs a transfer first" refused "no funds" 7 ledger transfer "$(addr 8)" 5
check "a bond below the minimum: bond below the minimum" refused "bond below the minimum" 5 ledger bond provider 50
check "a withdraw with nothing unbonding: nothing to withdraw" refused "nothing to withdraw" 5 ledger withdraw
cli 5 ledger bond provider 150 > /dev/null 2>&1 && cli 5 ledger unbond provider 150 > /dev/null 2>&1
check "bond then unbond are certified; an early withdraw says when it is released" \
    refused "nothing to withdraw yet: the first unbonding is released at" 5 ledger withdraw
check "a bad address is refused before the node is asked" refused "expected 52" 5 ledger transfer umbra1abc 5
other=$CLUSTER_DIR/other-genesis.json
"$UMBRA" ledger genesis --network other --validator "$(addr 1)=1000" --output "$other" > /dev/null 2>&1
check "a node refuses to start with another network's genesis than its data dir joined" \
    bash -c "'$UMBRA' up --data-dir '$CLUSTER_DIR/node9' --genesis '$other' 2>&1 | grep -q 'joined ledger network .e2e-ledger.'"
check "--validator without a genesis is refused and creates no data dir" \
    bash -c "! '$UMBRA' up --data-dir '$CLUSTER_DIR/nowhere' --validator 2>/dev/null && [[ ! -e '$CLUSTER_DIR/nowhere' ]]"

echo "==> a burst of entries from nodes 5 and 7; validator 2 is killed with -9 during it and restarted"
cli 5 ledger transfer "$(addr 7)" 5000 > /dev/null 2>&1
burst() { # FROM TO COUNT -> certified transfers of 1, counted into $CLUSTER_DIR/burst-FROM
    local from=$1 to=$2 count=$3 n=0 k
    for ((k = 0; k < count; k++)); do
        cli "$from" ledger transfer "$(addr "$to")" 1 > /dev/null 2>&1 && n=$((n + 1))
    done
    echo "$n" > "$CLUSTER_DIR/burst-$from"
}
burst 5 8 30 &
b1=$!
burst 7 9 30 &
b2=$!
sleep 1.5
kill -9 "${CLUSTER_PIDS[2]}"
wait "${CLUSTER_PIDS[2]}" 2>/dev/null
sleep 1
start 2 --validator
wait "$b1" "$b2"
certified=$(($(cat "$CLUSTER_DIR/burst-5") + $(cat "$CLUSTER_DIR/burst-7")))
echo "     $certified of 60 transfers certified"
check "at least 40 of the 60 transfers were certified with a validator down and back" test "$certified" -ge 40
check "the restarted validator restored its locks from its store and votes again" \
    wait_until 15 bash -c "$(declare -f ledger_field); UMBRA='$UMBRA' CLUSTER_DIR='$CLUSTER_DIR'; [[ \$(ledger_field 2 \"r['voting'] and r['counters']['locks_restored'] > 0 and r['counters']['entries_replayed'] > 0\") == True ]]"
cli 5 ledger transfer "$(addr 9)" 7 > /dev/null 2>&1
check "a transfer after the restart is certified and applied by the restarted validator" \
    bash -c "[[ \$('$UMBRA' ledger entries '$(addr 5)' --data-dir '$CLUSTER_DIR/node2' --json | python3 -c 'import json,sys; e = json.load(sys.stdin)[\"entries\"]; print(e[-1][\"counterparty\"])') == '$(addr 9)' ]]"

echo "==> every node ends with the same entries at every height, and a late node catches up"
start 10 --genesis "$GENESIS"
want8=$(balance 5 8)
check "node 10, started last, catches up to node 8's balance ($want8)" \
    wait_until 30 bash -c "$(declare -f balance addr); UMBRA='$UMBRA' CLUSTER_DIR='$CLUSTER_DIR'; [[ \$(balance 10 8) == '$want8' ]]"
reference=$(entries_digest 1)
echo "     $(wc -l <<< "$reference") certified entries on validator 1"
same_everywhere() {
    local i
    for i in 2 3 4 5 6 7 8 9 10; do
        [[ $(entries_digest "$i") == "$reference" ]] || { echo "     node $i differs"; return 1; }
    done
}
check "all 10 nodes hold the same certified entry at every (account, height): one certificate per slot" \
    wait_until 20 same_everywhere
locks_once() { # validator 2's store holds at most one lock per (account, height, epoch)
    local rows
    rows=$(sqlite3 "$CLUSTER_DIR/node2/node.sqlite" "SELECT count(*) FROM entry WHERE namespace = 'ledger.locks'" 2>/dev/null)
    echo "     validator 2 holds $rows locks"
    ((rows > 0))
}
check "validator 2's locks are on disk" locks_once
supply_conserved() {
    [[ $(ledger_field 10 "r['supply'] - r['burned']") == 1004000 ]]
}
check "supply is conserved on the late node" supply_conserved

echo "ledger e2e: $passed passed, $failed failed"
((failed == 0))
