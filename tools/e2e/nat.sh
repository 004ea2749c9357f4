#!/usr/bin/env bash
# End-to-end NAT traversal with real `umbra up` processes in tools/testnet (network namespaces,
# nftables NATs): relay1 is the only relay (--relay); relay2 and pub1 are plain public nodes; h1 and
# h2 sit behind endpoint-independent NATs, h3 behind a symmetric NAT. Every node runs with default
# flags and finds out its reachability on its own (docs/architecture.md §10).
# Checks: the NATed nodes become private DHT clients and reserve on relay1; h1 -> h2 opens through
# the relay and becomes hole-punched within seconds; h3 -> h1 works and stays relayed; after a relay
# restart the NATed nodes re-reserve and h2 is reachable again within 10 s; a circuit over the
# relay's byte limit is cut with over_byte_limit while another circuit keeps working.
# Needs root and a debug build; about 60 s. Prints PASS/FAIL lines and "nat e2e: N/M passed".
set -uo pipefail
cd "$(dirname "$0")/../.."
source tools/lib/natnet.sh

natnet_e2e_begin nat na 'umbra-*.log'

ping_json() { # FROM TO-HOST [ping args…] -> the last ping's JSON document (one line)
    local from=$1 to=$2
    shift 2
    natnet_cli "$from" ping "$(natnet_address "$to")" --json --timeout 3 "$@" 2> /dev/null \
        | python3 -c 'import json,sys
docs, depth, buf = [], 0, ""
for line in sys.stdin:
    buf += line
    depth += line.count("{") - line.count("}")
    if depth == 0 and buf.strip():
        docs.append(json.loads(buf)); buf = ""
print(json.dumps(docs[-1]) if docs else "{}")'
}
field() { python3 -c "import json,sys; d=json.loads(sys.argv[1]); print(d.get('$2'))" "$1"; }
ping_path_within() { # SECONDS FROM TO PATH -> status 0 once a ping from FROM to TO replies on PATH
    local deadline=$((SECONDS + $1)) from=$2 to=$3 want=$4 doc
    while ((SECONDS < deadline)); do
        doc=$(ping_json "$from" "$to")
        echo "     $from -> $to: reply=$(field "$doc" reply) path=$(field "$doc" path) rtt=$(field "$doc" rtt_ms) ms"
        [[ $(field "$doc" reply) == True && $(field "$doc" path) == "$want" ]] && return 0
        sleep 0.5
    done
    return 1
}
reserved_on_relay1() { # HOST -> status 0 when it holds a connected reservation on relay1
    [[ $(natnet_relay_json "$1" "any(x['endpoint'] == '$RELAY1:4747' and x['connected'] and x['expires_in_seconds'] > 3500 for x in r['reservations'])") == True ]]
}

[[ $(id -u) -eq 0 ]] || { echo "nat e2e: needs root"; exit 1; }
[[ -x $UMBRA ]] || { echo "nat e2e: build first ($UMBRA is missing)"; exit 1; }
natnet_up "$NET" "$WORK" || { cat "$WORK/testnet-up.log"; echo "FAIL testnet up"; exit 1; }
RELAY1=$(tools/testnet addr "$NET" relay1)

natnet_start relay1 --relay
natnet_start relay2
natnet_start pub1
sleep 1
natnet_start h1 --provide ip-tunnel --country DE --price-gib 100000
for host in h2 h3; do natnet_start "$host"; done

for host in h1 h2 h3; do
    check "$host finds out it is private and runs as a DHT client" \
        natnet_wait 25 "$host" "r['reachability'] == 'private' and not r['dht_server']"
done
for host in h1 h2 h3; do check "$host reserves on relay1 (found in the DHT)" wait_until 15 reserved_on_relay1 "$host"; done
check "h1 and h2 (eim) learnt their public endpoint from their peers" \
    natnet_wait 5 h1 "r['observed_endpoint'] == '$(tools/testnet public "$NET" h1):4747'"

# --- eim <-> eim: relayed, then hole-punched ---------------------------------------------------
first=$(ping_json h1 h2)
echo "     first ping h1 -> h2: $first"
# The path is read again after the reply: under load the punch may finish first, so the path the
# ping was sent on is what tells that the first contact went through the relay.
check "h1 -> h2: the first ping is answered through the relay" \
    test "$(field "$first" reply)" = True -a "$(field "$first" path_at_send)" = relayed
check "h1 -> h2: the session becomes hole-punched within 5 s" ping_path_within 5 h1 h2 hole-punched
check "h2 sees the session with h1 as hole-punched too" \
    natnet_wait 3 h2 "any(s['path'] == 'hole-punched' for s in r['sessions'])"
check "h1 closed its circuit on relay1 after the punch" \
    natnet_wait 3 relay1 "r['counters'].get('relay_circuits_closed_closed', 0) >= 1"

# --- sym -> eim: stays relayed, and works ------------------------------------------------------
doc=$(ping_json h3 h1 -c 4)
echo "     h3 -> h1 after 4 pings: $doc"
check "h3 (sym) -> h1: replies through the relay" test "$(field "$doc" reply)" = True
check "h3 -> h1: the session stays relayed (punching fails through a symmetric NAT)" \
    test "$(field "$doc" path)" = relayed
check "h3 keeps trying to upgrade (punch attempts counted)" \
    natnet_wait 5 h3 "any(s['path'] == 'relayed' and s['punch_attempts'] >= 1 for s in r['sessions'])"

# --- the dialogue through NATs: h1 provides ip-tunnel ------------------------------------------------
H1=$(natnet_address h1)
has_h1_proposal() { natnet_cli "$1" proposals 2> /dev/null | grep -q "$H1"; }
check "h3 holds h1's proposal (gossip through NATs), with h1's relay as its contact" wait_until 10 has_h1_proposal h3
out=$(natnet_cli h3 session open "$H1" 2>&1)
echo "$out" | sed 's/^/     /'
check "h3 (sym) opens a dialogue with provider h1 through the relay" grep -q "path relayed" <<< "$out"
check "... and gets an inner address from h1's pool" grep -q "inner       10.182.0." <<< "$out"
out=$(natnet_cli h2 session open "$H1" 2>&1)
echo "$out" | sed 's/^/     /'
check "h2 (eim) opens a dialogue with provider h1 on the hole-punched path" grep -Eq "path (hole-punched|direct)" <<< "$out"

# --- relay restart (with a small circuit byte limit for the next checks) -------------------------
natnet_stop relay1
sleep 0.5
natnet_start relay1 --relay --relay-circuit-bytes 1000
restarted=$SECONDS
H2=$(natnet_address h2)
check "after a relay restart the restarted relay1 holds h2's reservation again within 10 s" \
    natnet_wait 10 relay1 "any(x['peer'] == '$H2' for x in r['hosted_reservations'])"
echo "     relay1 holds h2's reservation $((SECONDS - restarted)) s after its restart"
check "... and h2 sees it connected" wait_until 5 reserved_on_relay1 h2
check "after a relay restart h3 -> h2 is answered (relayed) within 10 s of the restart" \
    ping_path_within $((restarted + 10 - SECONDS)) h3 h2 relayed

# --- relay limits ----------------------------------------------------------------------------------
natnet_cli h3 ping "$(natnet_address h2)" -c 10 --timeout 1 > /dev/null 2>&1
check "a circuit over the byte limit is cut: relay1 counts over_byte_limit" \
    natnet_wait 5 relay1 "r['counters'].get('relay_circuits_closed_over_byte_limit', 0) >= 1"
check "the end that sent over the limit heard over_byte_limit from the relay" \
    natnet_wait 5 h3 "r['counters'].get('circuits_ended_over_byte_limit', 0) >= 1"
doc=$(ping_json h3 h1)
check "another circuit (h3 -> h1) keeps working" test "$(field "$doc" reply)" = True

echo "nat e2e: $passed/$((passed + failed)) passed"
((failed == 0))
