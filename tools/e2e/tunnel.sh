#!/usr/bin/env bash
# End-to-end tunnel (`umbra connect`) with real `umbra up` processes in tools/testnet: network
# namespaces, nftables NATs, real TUN devices, routes and firewalls.
#   relay1 relays; pub1 (public) provides ip-tunnel in DE; h1 (behind an EIM NAT) provides it in NL;
#   h2 (EIM NAT) and h3 (symmetric NAT) are consumers; web is the "internet" web host (GET /ip
#   answers the client's address as the web host sees it).
# Checks:
#   - h2 connects by country (DE -> pub1, direct): curl from h2's namespace reaches web, and web saw
#     pub1's public address; `umbra status` shows the tunnel with bytes both ways.
#   - a forged source address, the metadata address and the provider's private network get nothing
#     through (counted by the provider's egress policy).
#   - `umbra disconnect` restores routes, rules, addresses, firewall and DNS exactly (compared).
#   - a split tunnel (--split web/32): web sees pub1, other destinations keep their path; undone.
#   - h3 (symmetric NAT) connects to NL -> h1 behind NAT: the path is relayed, curl works, web saw
#     h1's public address; disconnect restores.
#   - SIGKILL of the connected consumer node (with DNS and kill switch set), then a restart: the
#     node undoes the leftovers; the host is exactly as before.
#   - kill switch on, provider killed: nothing from h2 reaches web (web's log is checked); after
#     disconnect h2 reaches web directly again.
# Needs root and a debug build; about 90 s. Prints PASS/FAIL lines and "tunnel e2e: N/M passed".
set -uo pipefail
cd "$(dirname "$0")/../.."
source tools/lib/natnet.sh

natnet_e2e_begin tunnel tu '*.log'

in_ns() { # HOST COMMAND…: runs COMMAND in the host's namespace (with its /etc/netns files)
    local host=$1
    shift
    tools/testnet exec "$NET" "$host" -- "$@"
}
host_state() { # HOST -> everything the tunnel may change on the host, as text
    local host=$1 ns
    ns=$(tools/testnet ns "$NET" "$host")
    echo "## routes"; ip -n "$ns" route show table all | grep -v '^local\|^broadcast\|^multicast\|fe80::\|ff00::' | sort
    echo "## rules"; ip -n "$ns" rule show
    echo "## links"; ip -n "$ns" -o link show | awk '{print $2}' | sort
    echo "## addresses"; ip -n "$ns" -o addr show | awk '{print $2, $3, $4}' | sort
    echo "## nftables"; ip netns exec "$ns" nft list ruleset
    echo "## resolv.conf"; cat "/etc/netns/$ns/resolv.conf"
}
web_ip() { # HOST -> the address web sees for an HTTP request from HOST (empty on failure)
    in_ns "$1" curl -s --max-time "${2:-5}" "http://$WEB/ip" 2> /dev/null
}
tunnel_json() { # HOST PYTHON-EXPR(t = the tunnel part of the status) -> its value
    natnet_cli "$1" status --json 2> /dev/null | python3 -c "import json,sys; t=json.load(sys.stdin).get('tunnel') or {}; print($2)" 2> /dev/null
}
has_proposal() { natnet_cli "$1" proposals --country "$2" 2> /dev/null | grep -q "$3"; }
connect() { # HOST ARGS… -> connects, keeps the report in $WORK/connect-HOST.txt
    local host=$1
    shift
    natnet_cli "$host" connect "$@" > "$WORK/connect-$host.txt" 2>&1
    local status=$?
    sed 's/^/     /' "$WORK/connect-$host.txt"
    return $status
}
same_state() { # FILE-BEFORE HOST -> status 0 when the host's state is unchanged (else prints the diff)
    local now
    now=$(host_state "$2")
    if [[ $now == "$(< "$1")" ]]; then return 0; fi
    diff <(cat "$1") <(echo "$now") | sed 's/^/     /'
    return 1
}
crash() { # HOST: SIGKILL the host's node (no chance to clean up), then forget its process
    local pid
    read -r pid _ < "$(tools/testnet dir "$NET")/pids/umbra-$1.pid"
    kill -KILL -- "-$pid" 2> /dev/null || kill -KILL "$pid"
    wait_until 5 bash -c "! kill -0 $pid 2> /dev/null"
    natnet_stop "$1"
}
first_reply_ms() { # HOST START_MS -> prints ms from START_MS until a ping to web answers (bounded 5 s)
    local deadline=$((SECONDS + 5))
    while ((SECONDS < deadline)); do
        if in_ns "$1" ping -c 1 -W 0.2 "$WEB" > /dev/null 2>&1; then echo $(($(date +%s%3N) - $2)); return 0; fi
    done
    return 1
}
restart_consumer() { natnet_start "$1"; wait_until 10 natnet_cli "$1" status > /dev/null 2>&1; }

[[ $(id -u) -eq 0 ]] || { echo "tunnel e2e: needs root"; exit 1; }
[[ -x $UMBRA ]] || { echo "tunnel e2e: build first ($UMBRA is missing)"; exit 1; }
[[ -c /dev/net/tun ]] || { echo "tunnel e2e: /dev/net/tun is missing"; exit 1; }
natnet_up "$NET" "$WORK" || { cat "$WORK/testnet-up.log"; echo "FAIL testnet up"; exit 1; }
WEB=$(tools/testnet addr "$NET" web)
PUB1_PUBLIC=$(tools/testnet public "$NET" pub1)
H1_PUBLIC=$(tools/testnet public "$NET" h1)
H2_PUBLIC=$(tools/testnet public "$NET" h2)
PUB1=$(natnet_address pub1)
H1=$(natnet_address h1)

natnet_start relay1 --relay
natnet_start relay2
natnet_start pub1 --provide ip-tunnel --country DE --price-gib 100000
sleep 1
natnet_start h1 --provide ip-tunnel --country NL --price-gib 100000
for host in h2 h3; do natnet_start "$host"; done
check "h2 holds pub1's DE proposal" wait_until 20 has_proposal h2 DE "$PUB1"
check "h3 holds h1's NL proposal (with its relay as contact)" wait_until 25 has_proposal h3 NL "$H1"
check "before connecting, web sees h2 at its NAT's public address" test "$(web_ip h2)" = "$H2_PUBLIC"
host_state h2 > "$WORK/h2-before.txt"
host_state h3 > "$WORK/h3-before.txt"

# --- h2 (EIM NAT) -> pub1 by country, direct ---------------------------------------------------
start_ms=$(date +%s%3N)
check "h2: umbra connect --country DE" connect h2 --country DE
echo "     direct: $(first_reply_ms h2 "$start_ms") ms from umbra connect to the first ping reply from web"
check "h2 -> web through the tunnel: web saw pub1's public address ($PUB1_PUBLIC)" \
    test "$(web_ip h2)" = "$PUB1_PUBLIC"
check "web's access log shows the request from $PUB1_PUBLIC" \
    grep -q " $PUB1_PUBLIC " "$(tools/testnet dir "$NET")/logs/web-access.log"
check "h2's status: connected to pub1, direct, bytes both ways" \
    test "$(tunnel_json h2 "t['state'] == 'connected' and t['consumer']['path'] == 'direct' and t['consumer']['sent']['bytes'] > 0 and t['consumer']['received']['bytes'] > 0")" = True
if [[ $(ip netns exec "$(tools/testnet ns "$NET" h2)" sysctl -n net.ipv6.conf.all.disable_ipv6 2> /dev/null) == 0 ]]; then
    check "IPv6 cannot leave around the IPv4 tunnel (unreachable ::/1 and 8000::/1)" \
        test "$(ip -n "$(tools/testnet ns "$NET" h2)" -6 route show | grep -c '^unreachable \(::/1\|8000::/1\)')" = 2
fi
check "pub1's status: serving h2 with bytes both ways" \
    test "$(tunnel_json pub1 "len(t['served']) == 1 and t['served'][0]['received']['bytes'] > 0 and t['served'][0]['sent']['bytes'] > 0")" = True

# Forged source, metadata, the provider's private side: nothing through, each counted.
inner=$(tunnel_json h2 "t['consumer']['inner_address']")
forged=${inner%.*}.$(( (${inner##*.} + 100) % 250 + 2 ))
ns2=$(tools/testnet ns "$NET" h2)
ip -n "$ns2" addr add "$forged/32" dev umbra0
in_ns h2 curl -s --max-time 2 --interface "$forged" "http://$WEB/ip" > /dev/null 2>&1
ip -n "$ns2" addr del "$forged/32" dev umbra0
in_ns h2 curl -s --max-time 2 "http://169.254.169.254/" > /dev/null 2>&1
in_ns h2 curl -s --max-time 2 "http://10.182.0.1/" > /dev/null 2>&1
check "a forged source address is dropped by the provider (egress_spoofed_source)" \
    test "$(tunnel_json pub1 "t['drops'].get('egress_spoofed_source', 0) > 0")" = True
check "the metadata address 169.254.169.254 is dropped (egress_blocked_destination_cloud_metadata)" \
    test "$(tunnel_json pub1 "t['drops'].get('egress_blocked_destination_cloud_metadata', 0) > 0")" = True
check "the provider's own pool network is dropped (egress_blocked_destination_private)" \
    test "$(tunnel_json pub1 "t['drops'].get('egress_blocked_destination_private', 0) > 0")" = True

check "h2: umbra disconnect" natnet_cli h2 disconnect
check "after disconnect h2's routes, rules, links, firewall and DNS are exactly as before" \
    same_state "$WORK/h2-before.txt" h2
check "after disconnect web sees h2 at its own public address again" test "$(web_ip h2)" = "$H2_PUBLIC"

# --- split tunnel: only web's address goes through pub1 -------------------------------------------
check "h2: umbra connect --country DE --split $WEB/32" connect h2 --country DE --split "$WEB/32"
check "split: web (in the split block) saw pub1's address" test "$(web_ip h2)" = "$PUB1_PUBLIC"
relay1_route=$(ip -n "$ns2" route get "$(tools/testnet addr "$NET" relay1)")
check "split: other destinations keep the host's own path ($relay1_route)" \
    bash -c "! grep -q umbra0 <<< '$relay1_route'"
check "split: h2 disconnects" natnet_cli h2 disconnect
check "split: after disconnect h2's host state is exactly as before" same_state "$WORK/h2-before.txt" h2

# --- a provider's proposal names a third party: it must not bypass the tunnel (issue #12.2) -----
# A second provider in relay2's namespace lists web's address among its contacts (as a malicious
# provider could list a tracker or the user's resolver). The consumer must route web into the
# tunnel all the same: no host route, no rule for any address the proposal names.
tools/testnet start "$NET" relay2 --name umbra-fr -- "$(realpath "$UMBRA")" up --data-dir "$WORK/fr" \
    --listen "$(tools/testnet addr "$NET" relay2):4750" --bootstrap "$NATNET_DIR/bootstrap-peers.txt" \
    --provide ip-tunnel --country FR --price-gib 100000 --tunnel-device umbrafr0 \
    --advertise "$WEB:4747" > /dev/null
check "h2 holds the FR proposal that lists web ($WEB) as a contact" \
    wait_until 25 bash -c "'$UMBRA' proposals --data-dir '$NATNET_DIR/h2' --country FR --json 2> /dev/null | grep -q '$WEB'"
check "h2: umbra connect --country FR" connect h2 --country FR
check "FR: h2 -> web goes through the tunnel (web saw relay2's address)" \
    test "$(web_ip h2)" = "$(tools/testnet public "$NET" relay2)"
check "FR: the kernel routes web into umbra0 (ip route get $WEB)" \
    bash -c "ip -n '$ns2' route get '$WEB' | grep -q 'dev umbra0'"
check "FR: no route and no rule on h2 names web's address" \
    bash -c "! ip -n '$ns2' route show table all | grep -q '$WEB' && ! ip -n '$ns2' rule show | grep -q '$WEB'"
check "FR: only the node's marked socket bypasses (ip rule: fwmark 0x4747)" \
    bash -c "ip -n '$ns2' rule show | grep -q 'fwmark 0x4747 lookup 4747'"
check "FR: h2 disconnects" natnet_cli h2 disconnect
check "FR: after disconnect h2's host state is exactly as before" same_state "$WORK/h2-before.txt" h2
tools/testnet stop "$NET" umbra-fr > /dev/null 2>&1 || true

# --- h3 (symmetric NAT) -> h1 (behind EIM NAT): relayed ---------------------------------------
start_ms=$(date +%s%3N)
check "h3: umbra connect --country NL (h1, behind NAT)" connect h3 --country NL
echo "     relayed: $(first_reply_ms h3 "$start_ms") ms from umbra connect to the first ping reply from web"
check "h3's tunnel is relayed" test "$(tunnel_json h3 "t['consumer']['path'].startswith('relayed')")" = True
check "h3 -> web through the relayed tunnel: web saw h1's public address ($H1_PUBLIC)" \
    wait_until 5 test "$(web_ip h3)" = "$H1_PUBLIC"
in_ns h3 curl -s --max-time 2 "http://$(tools/testnet addr "$NET" h1 | sed 's/\.[0-9]*$/.1/')/" > /dev/null 2>&1
check "h1's own LAN (its router) is unreachable for its consumer (egress_blocked_destination_private)" \
    test "$(tunnel_json h1 "t['drops'].get('egress_blocked_destination_private', 0) > 0")" = True
check "h3: umbra disconnect" natnet_cli h3 disconnect
check "after disconnect h3's host state is exactly as before" same_state "$WORK/h3-before.txt" h3

# --- crash: SIGKILL while connected with DNS and kill switch, then restart ----------------------
check "h2: connect with --dns 9.9.9.9 --kill-switch" connect h2 --country DE --dns 9.9.9.9 --kill-switch
check "h2's resolv.conf names 9.9.9.9 while connected" grep -q 9.9.9.9 "/etc/netns/$ns2/resolv.conf"
# --- a second `umbra up` on the live data dir is refused and changes nothing (issue #12.3) -------
host_state h2 > "$WORK/h2-connected.txt"
in_ns h2 "$(realpath "$UMBRA")" up --data-dir "$NATNET_DIR/h2" \
    --listen "$(tools/testnet addr "$NET" h2):4749" > "$WORK/second-up.txt" 2>&1
second_up=$?
sed 's/^/     /' "$WORK/second-up.txt" | tail -2
check "a second umbra up on h2's live data dir is refused" test "$second_up" -ne 0
check "... naming the process that holds the data dir" grep -q "in use by process" "$WORK/second-up.txt"
check "... and h2's routes, rules, TUN, kill switch and DNS are unchanged" same_state "$WORK/h2-connected.txt" h2
check "... and traffic still flows through the tunnel" test "$(web_ip h2)" = "$PUB1_PUBLIC"

# --- the control socket checks the peer's uid, not only its mode (issue #12.8) -------------------
chmod 0711 "$NATNET_DIR" "$NATNET_DIR/h2"
chmod 0666 "$NATNET_DIR/h2/control.sock"
check "with the modes opened up, uid 65534 can reach the control socket" \
    setpriv --reuid 65534 --regid 65534 --clear-groups test -w "$NATNET_DIR/h2/control.sock"
check "... yet the node refuses it (SO_PEERCRED: neither root nor the data dir's owner)" \
    bash -c "! setpriv --reuid 65534 --regid 65534 --clear-groups curl -sf --max-time 3 \
        --unix-socket '$NATNET_DIR/h2/control.sock' http://umbra/v1/status > /dev/null"
check "... and still answers root" \
    curl -sf --max-time 3 --unix-socket "$NATNET_DIR/h2/control.sock" http://umbra/v1/status -o /dev/null
chmod 0600 "$NATNET_DIR/h2/control.sock"
chmod 0700 "$NATNET_DIR" "$NATNET_DIR/h2"

crash h2
check "after SIGKILL the kill switch is still in place (nothing leaks while the node is dead)" \
    ip netns exec "$ns2" nft list table inet umbra_killswitch
restart_consumer h2
check "a restarted node undoes what the dead one left: h2's host state is exactly as before" \
    wait_until 5 same_state "$WORK/h2-before.txt" h2

# --- kill switch: provider killed, nothing leaks -----------------------------------------------
wait_until 20 has_proposal h2 DE "$PUB1"
check "h2: connect --kill-switch" connect h2 --country DE --kill-switch
check "h2 -> web through the tunnel" test "$(web_ip h2)" = "$PUB1_PUBLIC"
crash pub1
log="$(tools/testnet dir "$NET")/logs/web-access.log"
lines_before=$(wc -l < "$log")
leaked=0
for _ in 1 2 3; do
    [[ -n $(web_ip h2 2) ]] && leaked=1
    in_ns h2 ping -c 1 -W 1 "$WEB" > /dev/null 2>&1 && leaked=1
done
check "kill switch, provider dead: no answer from web for h2" test "$leaked" = 0
check "kill switch, provider dead: web's log has nothing new" test "$(wc -l < "$log")" = "$lines_before"
check "h2: disconnect" natnet_cli h2 disconnect
check "after disconnect h2 reaches web directly again" test "$(web_ip h2)" = "$H2_PUBLIC"
check "and its host state is exactly as before" same_state "$WORK/h2-before.txt" h2

echo "tunnel e2e: $passed/$((passed + failed)) passed"
((failed == 0))
