#!/usr/bin/env bash
# Self-test of tools/testnet with real packets through real NATs (network namespaces, nftables):
# reachability from a home to the public segment and not the other way; the public side sees the
# router's address; EIM keeps one external port per inner socket, SYM a new one per destination;
# UDP hole punching works between two EIM homes and fails between SYM and EIM; the web host logs
# the router's address; a second testnet built from a spec coexists and is torn down without its
# state dir, and its --udp-timeout expires NAT mappings; `down` leaves no namespace, link or
# process behind. Needs root; about 15 s.
# Prints one "PASS"/"FAIL" line per check and "testnet e2e: N/M passed"; exit 1 on any failure.
set -uo pipefail
cd "$(dirname "$0")/../.."

TESTNET=tools/testnet
NET=te$(printf '%x' $$)
NET2=tf$(printf '%x' $$)
WORK=$(mktemp -d /tmp/umbra-testnet-e2e.XXXXXX)
cleanup() {
    "$TESTNET" down "$NET" > /dev/null 2>&1
    "$TESTNET" down "$NET2" > /dev/null 2>&1
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

passed=0
failed=0
check() { # NAME COMMAND…
    local name=$1
    shift
    if "$@"; then
        passed=$((passed + 1)); echo "PASS $name ($SECONDS s)"
    else
        failed=$((failed + 1)); echo "FAIL $name ($SECONDS s)"
    fi
}
tn() { timeout 20 "$TESTNET" "$@"; }
on() { local host=$1; shift; timeout 10 "$TESTNET" exec "$NET" "$host" -- "$@"; }
fails() { ! "$@"; }
quiet() { "$@" > /dev/null 2>&1; }
observed() { # HOST LPORT TARGET... -> the observed ip:port per target, one a line
    local host=$1 lport=$2
    shift 2
    tn observe "$NET" "$host" "$lport" "$@" | awk 'NR > 1 { print $2 }'
}
port_of() { echo "${1##*:}"; }
links_in_root() { { ip -o link show type veth; ip -o link show type bridge; } | awk -F': ' '{ print $2 }' | sed 's/@.*//' | sort; }

for tool in ip nft python3 ping curl timeout; do
    command -v "$tool" > /dev/null || { echo "testnet e2e: missing $tool (apt: iproute2 nftables python3 iputils-ping curl coreutils)"; exit 1; }
done
[[ $(id -u) -eq 0 ]] || { echo "testnet e2e: needs root"; exit 1; }
root_links_before=$(links_in_root)

# --- the default topology ------------------------------------------------------------------------
if ! tn up --name "$NET" > "$WORK/up.log" 2>&1; then
    sed 's/^/     /' "$WORK/up.log"
    echo "FAIL up builds the default topology"
    echo "testnet e2e: 0/1 passed"
    exit 1
fi
check "up builds the default topology (10 hosts + gateway)" test "$(tn hosts "$NET" | wc -l)" = 11
sed 's/^/     /' "$WORK/up.log"
for host in relay1 relay2 pub1; do tn udp-echo "$NET" "$host" 3478 > /dev/null; done
PUB1=$(tn addr "$NET" pub1) RELAY1=$(tn addr "$NET" relay1) RELAY2=$(tn addr "$NET" relay2) WEB=$(tn addr "$NET" web)
HOME1=$(tn public "$NET" h1) HOME3=$(tn public "$NET" h3) H1=$(tn addr "$NET" h1)

check "h1 (behind eim) pings pub1" quiet on h1 ping -c 1 -W 1 "$PUB1"
mapfile -t seen < <(observed h1 40001 "$PUB1:3478")
echo "     pub1 saw h1's UDP from ${seen[0]:-nothing} (h1 sent from $H1:40001, home1 is $HOME1)"
check "h1 exchanges UDP with pub1" test -n "${seen[0]:-}" -a "${seen[0]:-none}" != none
check "pub1 sees home1's public address as the source" test "${seen[0]%:*}" = "$HOME1"
check "home1 (eim) kept h1's source port 40001" test "$(port_of "${seen[0]:-x:0}")" = 40001

check "pub1 cannot reach h1's private address (no route)" quiet fails on pub1 ping -c 1 -W 1 "$H1"
check "pub1 reaches home1's public address (ping)" quiet on pub1 ping -c 1 -W 1 "$HOME1"
check "pub1 can route 192.168.1.0/24 via home1 (for the next checks)" on pub1 ip route add 192.168.1.0/24 via "$HOME1"
check "pub1 cannot reach h1's private address even routed via home1" quiet fails on pub1 ping -c 1 -W 1 "$H1"
timeout 5 "$TESTNET" exec "$NET" h1 -- python3 "$(tn dir "$NET")/bin/udp.py" listen 40100 1.5 > "$WORK/listen.log" 2>&1 &
listener=$!
sleep 0.3
on pub1 python3 "$(tn dir "$NET")/bin/udp.py" send "$H1:40100" 5 > /dev/null 2>&1
on pub1 python3 "$(tn dir "$NET")/bin/udp.py" send "$HOME1:40100" 5 > /dev/null 2>&1
wait "$listener"
listen_status=$?
on pub1 ip route del 192.168.1.0/24 via "$HOME1"
check "unsolicited UDP from pub1 (to h1's address and to home1's) reaches no home host" test "$listen_status" = 2

# --- mapping behaviour -----------------------------------------------------------------------------
mapfile -t eim < <(observed h1 40002 "$RELAY1:3478" "$RELAY2:3478")
echo "     h1:40002 via home1 (eim): relay1 saw ${eim[0]:-none}, relay2 saw ${eim[1]:-none}"
check "eim: one inner socket has the same external port towards two public hosts" \
    test -n "${eim[1]:-}" -a "${eim[0]:-none}" != none -a "$(port_of "${eim[0]:-x:1}")" = "$(port_of "${eim[1]:-x:2}")"
mapfile -t sym < <(observed h3 40002 "$RELAY1:3478" "$RELAY2:3478")
echo "     h3:40002 via home3 (sym): relay1 saw ${sym[0]:-none}, relay2 saw ${sym[1]:-none}"
check "sym: one inner socket has different external ports towards two public hosts" \
    test "${sym[0]:-none}" != none -a "${sym[1]:-none}" != none -a "$(port_of "${sym[0]:-x:1}")" != "$(port_of "${sym[1]:-x:1}")"
check "sym: both mappings carry home3's public address" test "${sym[0]%:*}" = "$HOME3" -a "${sym[1]%:*}" = "$HOME3"

# --- hole punching ---------------------------------------------------------------------------------
punch_pair() { # HOST_A HOST_B LPORT -> status 0 when both received the other's packets
    local a=$1 b=$2 lport=$3 ea eb
    ea=$(observed "$a" "$lport" "$PUB1:3478")
    eb=$(observed "$b" "$lport" "$PUB1:3478")
    echo "     $a is seen as $ea, $b as $eb; both punch for at most 2 s"
    tn punch "$NET" "$a" "$lport" "$eb" 2 > "$WORK/punch-$a.log" 2>&1 &
    local pa=$!
    tn punch "$NET" "$b" "$lport" "$ea" 2 > "$WORK/punch-$b.log" 2>&1 &
    local pb=$!
    wait "$pa"
    local sa=$?
    wait "$pb"
    local sb=$?
    echo "     $a: $(cat "$WORK/punch-$a.log")"
    echo "     $b: $(cat "$WORK/punch-$b.log")"
    ((sa == 0 && sb == 0))
}
punch_none() { # HOST_A HOST_B LPORT -> status 0 when neither received anything
    punch_pair "$@"
    ! grep -q "^received [1-9]" "$WORK/punch-$1.log" "$WORK/punch-$2.log"
}
check "hole punching h1 (eim) <-> h2 (eim) succeeds both ways" punch_pair h1 h2 40010
check "hole punching h3 (sym) <-> h1 (eim) fails both ways" punch_none h3 h1 40020

# --- web host ----------------------------------------------------------------------------------------
body=$(on h1 curl -s -m 3 "http://$WEB/ip")
check "web serves h1 and answers home1's public address" test "$body" = "$HOME1"
check "web's access log names home1's public address" grep -q " $HOME1 [0-9]* GET /ip\$" "$(tn dir "$NET")/logs/web-access.log"

# --- a second testnet from a spec, torn down after losing its state dir ----------------------------
cat > "$WORK/spec" << 'EOF'
# two hosts behind one symmetric NAT and one public host with a pinned address
public p 198.18.7.7
home hx sym a b
EOF
mkdir "$WORK/state2"
tn up --name "$NET2" --spec "$WORK/spec" --state "$WORK/state2" --udp-timeout 2 > "$WORK/up2.log" 2>&1
check "a second testnet from a spec coexists (a pings p at its pinned address)" \
    quiet timeout 5 "$TESTNET" exec "$NET2" a -- ping -c 1 -W 1 198.18.7.7
check "two hosts on one home LAN reach each other" \
    quiet timeout 5 "$TESTNET" exec "$NET2" a -- ping -c 1 -W 1 "$(tn addr "$NET2" b)"
tn udp-echo "$NET2" p 3478 > /dev/null
first=$(tn observe "$NET2" a 40030 198.18.7.7:3478 | awk 'NR == 2 { print $2 }')
again=$(tn observe "$NET2" a 40030 198.18.7.7:3478 | awk 'NR == 2 { print $2 }')
sleep 3
later=$(tn observe "$NET2" a 40030 198.18.7.7:3478 | awk 'NR == 2 { print $2 }')
echo "     a:40030 -> p via sym with --udp-timeout 2: seen as $first, at once again as $again, 3 s later as $later"
check "sym keeps a live mapping per destination; --udp-timeout 2 expires it" \
    test "${first:-none}" != none -a "$first" = "$again" -a "${later:-none}" != none -a "$later" != "$first"
check "the first testnet still works (h2 pings relay2)" quiet on h2 ping -c 1 -W 1 "$RELAY2"
rm -rf "$WORK/state2" "${UMBRA_TESTNET_BASE:-/run/umbra-testnet}/$NET2"
tn down "$NET2" > /dev/null 2>&1
check "down without a state dir removes the second testnet's namespaces" \
    test -z "$(ip netns list | awk '{ print $1 }' | grep "^$NET2-")"

# --- down ------------------------------------------------------------------------------------------
sleeper=$(tn start "$NET" pub1 --name sleeper -- sleep 300)
# A stray process nobody recorded (not our child, so no zombie stays behind to confuse the check).
(timeout 300 ip netns exec "$NET-home2-h2" sleep 300 > /dev/null 2>&1 &)
sleep 0.3
stray=$(ip netns pids "$NET-home2-h2" | head -1)
inodes=$(for ns in $(ip netns list | awk '{ print $1 }' | grep "^$NET-"); do stat -L -c %i "/run/netns/$ns"; done)
state=$(tn dir "$NET")
check "a started and a stray process run in the testnet" test -n "$stray" -a -n "$sleeper"
check "status lists the started process" bash -c "'$TESTNET' status '$NET' | grep -q 'sleeper  pid $sleeper on pub1  running'"
tn down "$NET" > /dev/null
check "down leaves no namespace with the prefix" test -z "$(ip netns list | awk '{ print $1 }' | grep "^$NET-")"
gone() { [[ ! -e /proc/$1 || $(sed 's/.*) //' "/proc/$1/stat" 2> /dev/null) == Z* ]]; }
check "down killed the started process" gone "$sleeper"
check "down killed the stray process too" gone "$stray"
in_our_netns() {
    local link
    for link in /proc/[0-9]*/ns/net; do
        link=$(readlink "$link" 2> /dev/null) || continue
        grep -qx "${link//[^0-9]/}" <<< "$inodes" && return 0
    done
    return 1
}
check "no process is left in any of its network namespaces" fails in_our_netns
check "no veth or bridge appeared in the root namespace" test "$(links_in_root)" = "$root_links_before"
check "down removed the state dir" test ! -e "$state"
check "down again is a no-op that succeeds" quiet tn down "$NET"

echo "testnet e2e: $passed/$((passed + failed)) passed"
((failed == 0))
