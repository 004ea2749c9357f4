# Umbra nodes in a tools/testnet topology (network namespaces with real NATs), for tools/e2e/nat.sh
# and tools/bench-nat. Default topology: relay1, relay2, pub1 public (198.18.1-3.1); h1, h2 behind
# endpoint-independent NATs, h3 behind a symmetric NAT. Every node listens on UDP 4747 of its own
# address and bootstraps from relay1 and pub1. The control sockets live in $NATNET_DIR/HOST, in the
# root namespace's file system, so `umbra … --data-dir` works from outside the namespaces.
# Needs root. natnet_down (from an EXIT trap) stops the nodes and removes the testnet.

UMBRA=${UMBRA:-.build/debug/umbra}
TESTNET=${TESTNET:-tools/testnet}

natnet_up() { # NET DIR: builds the testnet and an identity per host, and the bootstrap list
    NATNET=$1 NATNET_DIR=$2
    timeout 60 "$TESTNET" up --name "$NATNET" > "$NATNET_DIR/testnet-up.log" 2>&1 || return 1
    local host
    for host in relay1 relay2 pub1 h1 h2 h3; do
        "$UMBRA" identity new --data-dir "$NATNET_DIR/$host" > /dev/null
    done
    : > "$NATNET_DIR/bootstrap-peers.txt"
    for host in relay1 pub1; do
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
