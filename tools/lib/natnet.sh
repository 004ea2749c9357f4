# Umbra nodes in a tools/testnet topology (network namespaces with real NATs), for tools/e2e/nat.sh,
# tunnel.sh, small-networks.sh and tools/bench-nat. Default topology: relay1, relay2, pub1 public
# (198.18.1-3.1); h1, h2 behind endpoint-independent NATs, h3 behind a symmetric NAT. Every node
# listens on UDP 4747 of its own address and bootstraps from relay1 and pub1. Another topology:
# NATNET_SPEC (a tools/testnet spec file) and NATNET_BOOTSTRAP (the hosts in the bootstrap list).
# The control sockets live in $NATNET_DIR/HOST, in the root namespace's file system, so
# `umbra … --data-dir` works from outside the namespaces.
# Needs root. natnet_down (from an EXIT trap) stops the nodes and removes the testnet.

UMBRA=${UMBRA:-.build/debug/umbra}
TESTNET=${TESTNET:-tools/testnet}

natnet_up() { # NET DIR: builds the testnet and an identity per host, and the bootstrap list
    NATNET=$1 NATNET_DIR=$2
    local spec=()
    [[ -n ${NATNET_SPEC:-} ]] && spec=(--spec "$NATNET_SPEC")
    timeout 60 "$TESTNET" up --name "$NATNET" "${spec[@]}" > "$NATNET_DIR/testnet-up.log" 2>&1 || return 1
    local host
    for host in $("$TESTNET" hosts "$NATNET" public) $("$TESTNET" hosts "$NATNET" lan); do
        "$UMBRA" identity new --data-dir "$NATNET_DIR/$host" > /dev/null
    done
    : > "$NATNET_DIR/bootstrap-peers.txt"
    for host in ${NATNET_BOOTSTRAP:-relay1 pub1}; do
        echo "$(natnet_address "$host")@$("$TESTNET" addr "$NATNET" "$host"):4747" >> "$NATNET_DIR/bootstrap-peers.txt"
    done
}

natnet_address() { # HOST -> umbra1… address
    "$UMBRA" identity show --data-dir "$NATNET_DIR/$1" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["address"])'
}

natnet_start() { # HOST [umbra up args…]: starts the node in its namespace
    local host=$1
    shift
    "$TESTNET" start "$NATNET" "$host" --name "umbra-$host" -- "$(realpath "$UMBRA")" up \
        --data-dir "$NATNET_DIR/$host" --listen "$("$TESTNET" addr "$NATNET" "$host"):4747" \
        --bootstrap "$NATNET_DIR/bootstrap-peers.txt" --log-level "${NATNET_LOG_LEVEL:-info}" "$@" > /dev/null
}

natnet_stop() { # HOST: stops the node (SIGKILL: a relay that vanishes, no goodbye)
    "$TESTNET" stop "$NATNET" "umbra-$1" > /dev/null 2>&1 || true
    rm -f "$NATNET_DIR/$1/control.sock"
}

natnet_cli() { # HOST COMMAND… : runs `umbra COMMAND … --data-dir` against the node
    local host=$1
    shift
    "$UMBRA" "$@" --data-dir "$NATNET_DIR/$host"
}

natnet_relay_json() { # HOST PYTHON-EXPR(r = the relay part of the status) -> its value
    natnet_cli "$1" status --json 2>/dev/null | python3 -c "import json,sys; r=json.load(sys.stdin)['relay']; print($2)" 2>/dev/null
}

natnet_wait() { # SECONDS HOST PYTHON-EXPR -> status 0 once the expression prints True
    local deadline=$((SECONDS + $1)) host=$2 expr=$3
    while ((SECONDS < deadline)); do
        [[ $(natnet_relay_json "$host" "$expr") == True ]] && return 0
        sleep 0.25
    done
    return 1
}

natnet_down() {
    [[ -n ${NATNET:-} ]] && "$TESTNET" down "$NATNET" > /dev/null 2>&1
    return 0
}

# --- end-to-end scripts over natnet (tools/e2e/nat.sh, tunnel.sh) ------------------------------

natnet_e2e_begin() { # NAME NET-PREFIX LOG-GLOB: sets NET, WORK and the PASS/FAIL counters; on exit
    # the testnet goes down and, when a check failed, the logs matching LOG-GLOB are kept in WORK
    E2E_NAME=$1 E2E_LOGS=$3
    NET=$2$(printf '%x' $$ | tail -c 6)
    WORK=$(mktemp -d "/tmp/umbra-$1-e2e.XXXXXX")
    passed=0
    failed=0
    trap natnet_e2e_cleanup EXIT
    trap 'exit 130' INT TERM
}

natnet_e2e_cleanup() {
    natnet_down
    if ((failed > 0)); then
        local log
        for log in "$(tools/testnet dir "$NET" 2> /dev/null)"/logs/$E2E_LOGS; do
            [[ -f $log ]] && cp "$log" "$WORK/"
        done
        echo "$E2E_NAME e2e: logs kept in $WORK"
    else
        rm -rf "$WORK"
    fi
}

check() { # NAME COMMAND…: runs COMMAND, prints PASS/FAIL NAME and counts it
    local name=$1
    shift
    if "$@"; then
        passed=$((passed + 1)); echo "PASS $name ($SECONDS s)"
    else
        failed=$((failed + 1)); echo "FAIL $name ($SECONDS s)"
    fi
}

wait_until() { # SECONDS COMMAND… -> status 0 once COMMAND succeeds
    local deadline=$((SECONDS + $1))
    shift
    while ((SECONDS < deadline)); do "$@" && return 0; sleep 0.25; done
    return 1
}
