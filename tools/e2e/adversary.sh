#!/usr/bin/env bash
# The adversarial suite (tools/adversary): an independent Python implementation of the wire
# protocol attacks real `umbra up` processes on loopback, one script per property:
#   1 reflection <= 3x toward an unvalidated address, for every request type
#   2 no datagram to an address that is not validated (forged relays, hole-punch candidates)
#   3 one source cannot fill a provider's capacity, a relay's reservations or the DHT record store
#   4 CPU per input independent of the peer table's size
#   5 memory bounded under a flood of fresh identities (and freed when their keys expire)
# Installs nothing: needs python3 with `cryptography` (tools/adversary/requirements.txt).
# Binary: $UMBRA (default .build/debug/umbra). Usage: tools/e2e/adversary.sh [PROPERTY...]
# (e.g. `tools/e2e/adversary.sh 1 4`). Exits non-zero if the self-test or any property fails.
# Every property script kills the nodes it started and removes its temp dirs (also on failure,
# SIGINT and SIGTERM); this script bounds each in time and kills any that outlive it.
set -uo pipefail

cd "$(dirname "$0")/../.."
export UMBRA="${UMBRA:-.build/debug/umbra}"
export PYTHONDONTWRITEBYTECODE=1
ADV=tools/adversary
SUITE_LIMIT=${ADV_SUITE_SECONDS:-290}

if ! command -v python3 >/dev/null; then
    echo "adversary: python3 is required" >&2
    exit 2
fi
if ! python3 -c 'import cryptography.hazmat.primitives.ciphers.aead, cryptography.hazmat.primitives.asymmetric.x25519' 2>/dev/null; then
    echo "adversary: the Python package cryptography is required (pip install -r $ADV/requirements.txt)" >&2
    exit 2
fi
if [[ ! -x "$UMBRA" ]]; then
    echo "adversary: no umbra binary at $UMBRA (swift build --product umbra, or set UMBRA)" >&2
    exit 2
fi

LOGDIR=$(mktemp -d /tmp/umbra-adversary.XXXXXX)
export ADV_TMPDIR="$LOGDIR"   # the property scripts' data dirs live here too
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do
        # each property script runs in its own process group: end it and whatever it started
        kill -TERM -- "-$pid" 2>/dev/null
    done
    sleep 1
    for pid in "${PIDS[@]}"; do kill -KILL -- "-$pid" 2>/dev/null; done
    rm -rf "$LOGDIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

python3 "$ADV/selftest.py" || { echo "adversary: self-test failed" >&2; exit 1; }

declare -A SCRIPT=(
    [1]=prop1_reflection.py [2]=prop2_unvalidated.py [3]=prop3_capacity.py [4]=prop4_cpu.py [5]=prop5_memory.py)
declare -A LIMIT=([1]=90 [2]=40 [3]=150 [4]=150 [5]=280)
WANT=("$@")
[[ ${#WANT[@]} -eq 0 ]] && WANT=(5 1 2 3 4)

start=$(date +%s)
# Property 5 waits ~3 minutes for keys to expire and is otherwise idle: it runs beside the others.
run() {
    local p=$1
    setsid timeout --signal=TERM --kill-after=10 "${LIMIT[$p]}" python3 "$ADV/${SCRIPT[$p]}" >"$LOGDIR/$p.log" 2>&1 &
    PIDS+=($!)
    eval "PID_$p=$!"
}
finish() {
    local p=$1 pid rc
    eval "pid=\$PID_$p"
    wait "$pid"
    rc=$?
    echo "---- property $p (${SCRIPT[$p]}) ----"
    cat "$LOGDIR/$p.log"
    [[ $rc -eq 124 ]] && echo "property $p: FAIL (timed out after ${LIMIT[$p]} s)"
    return $rc
}

failed=()
background=()
for p in "${WANT[@]}"; do
    [[ -n "${SCRIPT[$p]:-}" ]] || { echo "adversary: unknown property $p" >&2; exit 2; }
    if [[ $p == 5 && ${#WANT[@]} -gt 1 ]]; then
        run 5
        background+=(5)
        continue
    fi
    run "$p"
    finish "$p" || failed+=("$p")
done
for p in "${background[@]}"; do finish "$p" || failed+=("$p"); done

elapsed=$(( $(date +%s) - start ))
if (( elapsed > SUITE_LIMIT )); then
    echo "adversary: the suite took ${elapsed} s (over its ${SUITE_LIMIT} s budget)" >&2
fi
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "adversary: FAILED properties: ${failed[*]} (${elapsed} s)"
    exit 1
fi
echo "adversary: every property holds (${elapsed} s)"
