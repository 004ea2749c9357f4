#!/usr/bin/env bash
# End-to-end: small networks work with default flags. Each topology below is built with
# tools/testnet (network namespaces, real nftables NATs), every node runs `umbra up` with default
# flags (only --relay and --provide, the roles under test), and each is checked end to end:
# reachability verdicts, reservations, DHT lookups and a put read elsewhere, the market, the ping
# path, `umbra connect` and a page fetched through the provider from the web host.
#   relay-homes   one public relay (everyone's bootstrap, the DHT's only server) + three homes
#                 (two endpoint-independent NATs, one symmetric); h1 provides from behind its NAT
#   two-public    a public relay and a public provider + the same three homes (h1 provides too)
#   lan           four nodes on one LAN behind one NAT, no relay; a provides
# The loopback part of the matrix (50 nodes, 20 with providers) is tools/e2e/dht.sh 50 and
# tools/e2e/proposals.sh 20, which use the same defaults.
# Usage: tools/e2e/small-networks.sh [TOPOLOGY...]   (default: all three; about 3 minutes)
# Needs root and a debug build. Prints PASS/FAIL lines and "small-networks e2e: N/M passed".
set -uo pipefail
cd "$(dirname "$0")/../.."
source tools/lib/natnet.sh

natnet_e2e_begin small-networks sn 'umbra-*.log'

in_ns() { # HOST COMMAND…: runs COMMAND in the host's namespace
    local host=$1
    shift
    tools/testnet exec "$NET" "$host" -- "$@"
}
web_ip() { in_ns "$1" curl -s --max-time 5 "http://$WEB/ip" 2> /dev/null; }
ping_field() { # FROM TO-HOST KEY -> KEY of the last ping's JSON document
    natnet_cli "$1" ping "$(natnet_address "$2")" --json --timeout 3 2> /dev/null | python3 -c 'import json,sys
docs, depth, buf = [], 0, ""
for line in sys.stdin:
    buf += line
    depth += line.count("{") - line.count("}")
    if depth == 0 and buf.strip():
        docs.append(json.loads(buf)); buf = ""
print(docs[-1].get(sys.argv[1]) if docs else None)' "$3"
}
ping_replies() { [[ $(ping_field "$1" "$2" reply) == True ]]; }
ping_path() { # FROM TO PATH-REGEX -> status 0 once a ping replies on a matching path
    local path
    ping_replies "$1" "$2" || return 1
    path=$(ping_field "$1" "$2" path)
    echo "     $1 -> $2: path $path"
    [[ $path =~ ^($3)$ ]]
}
reserved_on() { # HOST RELAY-HOST -> status 0 when HOST holds a connected reservation on RELAY-HOST
    [[ $(natnet_relay_json "$1" "any(x['endpoint'] == '$(tools/testnet addr "$NET" "$2"):4747' and x['connected'] for x in r['reservations'])") == True ]]
}
lookup_finds() { # FROM TO-HOST -> status 0 when a DHT lookup from FROM finds TO's endpoint
    natnet_cli "$1" dht lookup "$(natnet_address "$2")" 2> /dev/null | grep -q "^found .*@$(tools/testnet addr "$NET" "$2"):4747"
}
get_reads() { natnet_cli "$1" dht get "$2" 2> /dev/null | grep -q "$3"; }
all_ok() { # "COMMAND ARGS" … -> status 0 when every command (split at spaces) succeeds
    local command
    for command in "$@"; do $command || return 1; done
}
has_proposal() { natnet_cli "$1" proposals --country "$2" 2> /dev/null | grep -q "$(natnet_address "$3")"; }
connected_fetch() { # CONSUMER COUNTRY EXPECTED-WEB-IP: connect, fetch a page through the tunnel, disconnect
    local consumer=$1 country=$2 want=$3 seen
    natnet_cli "$consumer" connect --country "$country" > "$WORK/connect.txt" 2>&1 || { sed 's/^/     /' "$WORK/connect.txt"; return 1; }
    seen=$(web_ip "$consumer")
    natnet_cli "$consumer" disconnect > /dev/null 2>&1
    echo "     $consumer --country $country: web saw ${seen:-nothing} (want $want)"
    [[ $seen == "$want" ]]
}
verdict() { # HOST public|private [BASIS] -> the wait expression for that verdict
    if [[ $2 == public ]]; then
        echo "r['reachability'] == 'public' and r['dht_server']"
    else
        echo "r['reachability'] == 'private' and not r['dht_server']"
    fi
}

topology_begin() { # NAME SPEC BOOTSTRAP-HOSTS: builds the testnet
    TOPOLOGY=$1
    echo "--- $TOPOLOGY"
    printf '%s\n' "$2" > "$WORK/$TOPOLOGY.spec"
    mkdir -p "$WORK/$TOPOLOGY"
    NATNET_SPEC="$WORK/$TOPOLOGY.spec" NATNET_BOOTSTRAP=$3 natnet_up "$NET" "$WORK/$TOPOLOGY" \
        || { cat "$WORK/$TOPOLOGY/testnet-up.log"; failed=$((failed + 1)); echo "FAIL $TOPOLOGY: testnet up"; return 1; }
    WEB=$(tools/testnet addr "$NET" web)
    failed_before=$failed
}
topology_end() { # keeps the logs of a failed topology, then takes the testnet down
    if ((failed > failed_before)); then
        cp "$(tools/testnet dir "$NET")"/logs/umbra-*.log "$WORK/$TOPOLOGY/" 2> /dev/null
        echo "     $TOPOLOGY: logs in $WORK/$TOPOLOGY"
    fi
    natnet_down
}

relay_homes() {
    topology_begin relay-homes "public relay1
web web
home home1 eim h1
home home2 eim h2
home home3 sym h3" relay1 || return
    natnet_start relay1 --relay
    natnet_start h1 --provide ip-tunnel --country NL --price-gib 100000
    natnet_start h2
    natnet_start h3
    check "relay-homes: relay1 finds out it is public (own address) and serves the DHT" \
        natnet_wait 15 relay1 "$(verdict relay1 public) and r['reachability_basis'] == 'own-address'"
    for host in h1 h2 h3; do
        check "relay-homes: $host finds out it is private" natnet_wait 20 "$host" "$(verdict "$host" private)"
        check "relay-homes: $host reserves on relay1 (told by the relay, the DHT has one server)" \
            wait_until 10 reserved_on "$host" relay1
    done
    check "relay-homes: h3 finds relay1 by DHT lookup" wait_until 10 lookup_finds h3 relay1
    natnet_cli h2 dht put --key small-relay-homes --value put-on-h2 > /dev/null 2>&1
    check "relay-homes: a record put on h2 is read on h3" wait_until 10 get_reads h3 small-relay-homes put-on-h2
    check "relay-homes: h2 and h3 hold h1's NL proposal" \
        wait_until 20 all_ok "has_proposal h2 NL h1" "has_proposal h3 NL h1"
    check "relay-homes: h2 (eim) pings h1 (eim) through the relay or a punched hole" \
        wait_until 10 ping_path h2 h1 'relayed|hole-punched'
    check "relay-homes: h3 (sym) pings h1" wait_until 10 ping_path h3 h1 'relayed|hole-punched'
    check "relay-homes: h3 connects to NL (h1 behind NAT) and fetches a page through it" \
        connected_fetch h3 NL "$(tools/testnet public "$NET" h1)"
    topology_end
}

two_public() {
    topology_begin two-public "public pub1
public pub2
web web
home home1 eim h1
home home2 eim h2
home home3 sym h3" "pub1 pub2" || return
    natnet_start pub1 --relay
    natnet_start pub2 --provide ip-tunnel --country DE --price-gib 100000
    natnet_start h1 --provide ip-tunnel --country NL --price-gib 100000
    natnet_start h2
    natnet_start h3
    for host in pub1 pub2; do
        check "two-public: $host finds out it is public and serves the DHT" \
            natnet_wait 15 "$host" "$(verdict "$host" public)"
    done
    for host in h1 h2 h3; do
        check "two-public: $host finds out it is private and reserves on pub1" \
            wait_until 25 reserved_on "$host" pub1
    done
    check "two-public: h3 finds pub2 and h2 finds pub1 by DHT lookup" \
        wait_until 10 all_ok "lookup_finds h3 pub2" "lookup_finds h2 pub1"
    natnet_cli h1 dht put --key small-two-public --value put-on-h1 > /dev/null 2>&1
    check "two-public: a record put on h1 is read on pub2 and on h3" \
        wait_until 10 all_ok "get_reads pub2 small-two-public put-on-h1" "get_reads h3 small-two-public put-on-h1"
    check "two-public: h3 holds pub2's DE and h1's NL proposals" \
        wait_until 20 all_ok "has_proposal h3 DE pub2" "has_proposal h3 NL h1"
    check "two-public: h3 pings pub2 directly" wait_until 10 ping_path h3 pub2 direct
    check "two-public: h2 pings h1 through the relay or a punched hole" wait_until 10 ping_path h2 h1 'relayed|hole-punched'
    check "two-public: h3 connects to DE (pub2, public) and fetches a page through it" \
        connected_fetch h3 DE "$(tools/testnet public "$NET" pub2)"
    check "two-public: h2 connects to NL (h1 behind NAT) and fetches a page through it" \
        connected_fetch h2 NL "$(tools/testnet public "$NET" h1)"
    topology_end
}

lan() {
    topology_begin lan "web web
home home1 eim a b c d" a || return
    natnet_start a --provide ip-tunnel --country DE --price-gib 100000
    for host in b c d; do natnet_start "$host"; done
    for host in a b c d; do
        check "lan: $host finds out it is reachable on the LAN (own address) and serves the DHT" \
            natnet_wait 15 "$host" "$(verdict "$host" public) and r['reachability_basis'] == 'own-address'"
    done
    local from to all=1
    for from in a b c d; do
        for to in a b c d; do
            [[ $from == "$to" ]] && continue
            wait_until 10 lookup_finds "$from" "$to" || { all=0; echo "     lookup $from -> $to failed"; }
        done
    done
    check "lan: every node finds every other by DHT lookup" test $all = 1
    natnet_cli b dht put --key small-lan --value put-on-b > /dev/null 2>&1
    check "lan: a record put on b is read on d" wait_until 10 get_reads d small-lan put-on-b
    check "lan: c holds a's DE proposal" wait_until 15 has_proposal c DE a
    check "lan: c pings a directly" wait_until 10 ping_path c a direct
    natnet_cli b connect --country DE > "$WORK/connect.txt" 2>&1
    local status=$? seen served
    seen=$(web_ip b)
    served=$(natnet_cli a status --json 2> /dev/null | python3 -c 'import json,sys; t=json.load(sys.stdin).get("tunnel") or {}; print(any(s["received"]["bytes"] > 0 and s["sent"]["bytes"] > 0 for s in t.get("served", [])))' 2> /dev/null)
    natnet_cli b disconnect > /dev/null 2>&1
    echo "     b --country DE: connect status $status, web saw ${seen:-nothing}, a served bytes both ways: $served"
    check "lan: b connects to DE (a, on the same LAN) and fetches a page through it" \
        test "$status" = 0 -a "$seen" = "$(tools/testnet public "$NET" a)" -a "$served" = True
    topology_end
}

[[ $(id -u) -eq 0 ]] || { echo "small-networks e2e: needs root"; exit 1; }
[[ -x $UMBRA ]] || { echo "small-networks e2e: build first ($UMBRA is missing)"; exit 1; }
[[ -c /dev/net/tun ]] || { echo "small-networks e2e: /dev/net/tun is missing"; exit 1; }
for topology in "${@:-relay-homes two-public lan}"; do
    for name in $topology; do
        case $name in
            relay-homes) relay_homes ;;
            two-public) two_public ;;
            lan) lan ;;
            *) echo "small-networks e2e: unknown topology $name (relay-homes, two-public, lan)"; exit 2 ;;
        esac
    done
done
echo "small-networks e2e: $passed/$((passed + failed)) passed"
((failed == 0))
