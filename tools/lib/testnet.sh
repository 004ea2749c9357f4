# The library behind tools/testnet: a topology of Linux network namespaces with real NATs
# (nftables masquerade) for testing NAT traversal. Sourced by tools/testnet; every function
# assumes `set -euo pipefail` and root. Read tools/testnet's header for the commands and the
# topology; this file holds the building blocks.
#
# Nothing here touches the root namespace's interfaces: every veth is created with both ends
# directly inside testnet namespaces, so deleting the namespaces removes every link and bridge.
# Every namespace is named NET-… and carries the marker "umbra-testnet:NET" as the alias of its
# loopback device, so `down` finds them even when the state dir is gone.

TESTNET_BASE=${UMBRA_TESTNET_BASE:-/run/umbra-testnet}
TESTNET_MARK=umbra-testnet
TESTNET_GATEWAY=198.18.0.1 # the "internet" bridge's own address, in NET-inet (forwards nothing)
TESTNET_PUBLIC_PREFIX=15   # 198.18.0.0/15 (RFC 2544 benchmark range), one flat L2 segment
TESTNET_DEFAULT_SPEC='public relay1
public relay2
public pub1
web web
home home1 eim h1
home home2 eim h2
home home3 sym h3'

tn_die() {
    echo "testnet: $*" >&2
    exit 1
}

tn_check_net() { # NET: a short lower-case name without dashes, so NET- prefixes never overlap
    [[ $1 =~ ^[a-z][a-z0-9]{0,9}$ ]] || tn_die "bad testnet name '$1' (want [a-z][a-z0-9]{0,9})"
}

tn_state_dir() { # NET -> its state dir (may not exist); --state DIRs are reached by a symlink
    local link="$TESTNET_BASE/$1"
    if [[ -L $link ]]; then readlink -f "$link"; else echo "$link"; fi
}

tn_require_up() { # NET: exits unless NET has a hosts file
    [[ -f $(tn_state_dir "$1")/hosts ]] || tn_die "testnet '$1' is not up (no $(tn_state_dir "$1")/hosts)"
}

# --- hosts file ------------------------------------------------------------------------------
# One line per host, whitespace-separated, "-" for an empty field:
#   name role nat home ns address public lan
# role: gateway | public | web | router | lan. nat: eim | sym for routers and their LAN hosts.
# address: the host's own address (LAN hosts: their 192.168.K.x; routers: their WAN address).
# public: the address the public segment sees for this host (LAN hosts: their router's WAN address).
# lan: routers: their LAN address (the LAN hosts' gateway); LAN hosts: the gateway; else "-".

tn_host_line() { # NET HOST -> its hosts line, or exit 1
    local line
    line=$(awk -v n="$2" '$1 == n' "$(tn_state_dir "$1")/hosts")
    [[ -n $line ]] || tn_die "no host '$2' in testnet '$1' (hosts: $(tn_host_names "$1" | tr '\n' ' '))"
    echo "$line"
}

tn_host_field() { # NET HOST FIELD(1-based column)
    tn_host_line "$1" "$2" | awk -v f="$3" '{ print $f }'
}

tn_host_names() { # NET [ROLE] -> host names, one a line
    awk -v r="${2:-}" '!/^#/ && (r == "" || $2 == r) { print $1 }' "$(tn_state_dir "$1")/hosts"
}

# --- spec --------------------------------------------------------------------------------------
# One element a line ('#' starts a comment):
#   public NAME [ADDR]           a host on the public segment (ADDR: pin it inside 198.18.0.0/15)
#   web NAME [ADDR]              a public host running the HTTP server on port 80
#   home NAME eim|sym HOST...    a NAT router (namespace NET-NAME-r) with HOSTs on its LAN
# Names: [a-z][a-z0-9]{0,11}, unique over the whole testnet; "inet" is taken.

TN_ELEMENTS=() # normalised spec lines

tn_parse_spec() { # TEXT -> TN_ELEMENTS, validated
    local line kind name rest seen=" inet " number=0
    TN_ELEMENTS=()
    while IFS= read -r line || [[ -n $line ]]; do
        number=$((number + 1))
        line=${line%%#*}
        read -r kind name rest <<< "$line" || true
        [[ -n ${kind:-} ]] || continue
        [[ -n ${name:-} ]] || tn_die "spec line $number: '$kind' needs a name"
        [[ $name =~ ^[a-z][a-z0-9]{0,11}$ ]] || tn_die "spec line $number: bad name '$name' (want [a-z][a-z0-9]{0,11})"
        [[ $name != inet ]] || tn_die "spec line $number: the name 'inet' is reserved (the public segment)"
        [[ $seen != *" $name "* ]] || tn_die "spec line $number: name '$name' used twice"
        seen+="$name "
        case $kind in
            public | web)
                if [[ -n $rest ]]; then
                    [[ $rest =~ ^198\.(18|19)\.([0-9]{1,3})\.([0-9]{1,3})$ ]] && ((BASH_REMATCH[2] <= 255 && BASH_REMATCH[3] <= 255)) \
                        || tn_die "spec line $number: address '$rest' is not one address inside 198.18.0.0/15"
                    [[ $rest != 198.18.0.0 && $rest != 198.19.255.255 && $rest != "$TESTNET_GATEWAY" ]] \
                        || tn_die "spec line $number: address '$rest' is reserved"
                fi
                TN_ELEMENTS+=("$kind $name ${rest:--}")
                ;;
            home)
                local flavour hosts host
                read -r flavour hosts <<< "$rest" || true
                [[ ${flavour:-} == eim || ${flavour:-} == sym ]] || tn_die "spec line $number: home '$name' needs a NAT flavour eim or sym"
                [[ -n ${hosts:-} ]] || tn_die "spec line $number: home '$name' needs at least one host"
                for host in $hosts; do
                    [[ $host =~ ^[a-z][a-z0-9]{0,11}$ ]] || tn_die "spec line $number: bad host name '$host'"
                    [[ $host != inet ]] || tn_die "spec line $number: the name 'inet' is reserved (the public segment)"
                    [[ $seen != *" $host "* ]] || tn_die "spec line $number: name '$host' used twice"
                    seen+="$host "
                done
                TN_ELEMENTS+=("home $name $flavour $hosts")
                ;;
            *) tn_die "spec line $number: unknown element '$kind' (want public, web or home)" ;;
        esac
    done <<< "$1"
    ((${#TN_ELEMENTS[@]})) || tn_die "the spec defines no element"
    local homes=0 hostcount=0 element
    for element in "${TN_ELEMENTS[@]}"; do
        if [[ $element == home* ]]; then
            homes=$((homes + 1))
            set -- $element
            (($# - 3 <= 240)) || tn_die "home '$2' has more than 240 hosts"
        else
            hostcount=$((hostcount + 1))
        fi
    done
    ((homes <= 255 && hostcount <= 254)) || tn_die "too many elements (at most 254 public hosts and 255 homes)"
}

# --- building ----------------------------------------------------------------------------------

tn_netns_add() { # NET NS: record it, create it, mark it, bring lo up
    echo "$2" >> "$TN_STATE/namespaces"
    ip netns add "$2"
    ip -n "$2" link set lo alias "$TESTNET_MARK:$1"
    ip -n "$2" link set lo up
    # Its own resolv.conf: `ip netns exec` bind-mounts /etc/netns/NS/* over /etc, so a process in
    # the testnet that sets DNS (umbra connect --dns) changes this file, never the machine's.
    mkdir -p "/etc/netns/$2"
    echo "# tools/testnet $1: $2 (no resolver)" > "/etc/netns/$2/resolv.conf"
}

tn_sysctl() { # NS KEY=VALUE: set a per-namespace sysctl
    ip netns exec "$1" sysctl -q -w "$2" > /dev/null
}

tn_attach_public() { # NET NAME NS IFNAME ADDR: veth from NS (IFNAME) to the inet bridge, default route
    local inet="$1-inet"
    ip link add "p-$2" netns "$inet" type veth peer name "$4" netns "$3"
    ip -n "$inet" link set "p-$2" master br0 up
    ip -n "$3" addr add "$5/$TESTNET_PUBLIC_PREFIX" dev "$4"
    ip -n "$3" link set "$4" up
    ip -n "$3" route add default via "$TESTNET_GATEWAY" dev "$4"
}

tn_nat_rules() { # FLAVOUR -> the router's nftables ruleset (WAN wan0, LAN lan0)
    local masquerade="masquerade"
    [[ $1 == sym ]] && masquerade="masquerade fully-random"
    cat << EOF
table ip umbra_nat {
    chain input {
        type filter hook input priority filter; policy accept;
        iifname "wan0" ct state established,related accept
        iifname "wan0" icmp type echo-request accept
        iifname "wan0" drop
    }
    chain forward {
        type filter hook forward priority filter; policy drop;
        ct state established,related accept
        iifname "lan0" oifname "wan0" accept
    }
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "wan0" $masquerade
    }
}
EOF
}

tn_write_helpers() { # DIR: the Python helpers the web hosts and the UDP probes run
    mkdir -p "$1"
    cat > "$1/web.py" << 'EOF'
# Tiny HTTP server of a testnet web host: GET /ip answers the client's address, anything else a
# short page naming it. Every request is appended to ACCESS_LOG as
# "TIME CLIENT_IP CLIENT_PORT METHOD PATH". Usage: web.py ADDR PORT ACCESS_LOG NAME
import http.server, socketserver, sys, time

addr, port, access_log, name = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]

class Handler(http.server.BaseHTTPRequestHandler):
    def answer(self, send_body):
        ip, client_port = self.client_address[:2]
        with open(access_log, "a") as log:
            log.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {ip} {client_port} {self.command} {self.path}\n")
        body = f"{ip}\n" if self.path == "/ip" else f"umbra testnet web host {name}\nyou are {ip}:{client_port}\n"
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if send_body:
            self.wfile.write(data)

    def do_GET(self):
        self.answer(True)

    def do_HEAD(self):
        self.answer(False)

    def log_message(self, *args):
        pass

class Server(http.server.ThreadingHTTPServer):
    allow_reuse_address = True

    def server_bind(self):
        # HTTPServer.server_bind would resolve the address's name (getfqdn): no DNS in a testnet.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = addr, port

server = Server((addr, port), Handler)
print(f"web host {name} serving http://{addr}:{port}/", flush=True)
server.serve_forever()
EOF
    cat > "$1/udp.py" << 'EOF'
# UDP probes for the testnet; every mode is bounded in time.
#   udp.py echo ADDR PORT SECONDS      answer each datagram with the sender's "ip:port" (reflector)
#   udp.py observe LPORT SECONDS TARGET...
#                                      from one socket bound to 0.0.0.0:LPORT (0: any) ask each
#                                      reflector TARGET (ip:port) what it sees; prints
#                                      "local PORT" then "TARGET OBSERVED|none" per target
#   udp.py punch LPORT PEER SECONDS    from 0.0.0.0:LPORT send to PEER (ip:port) every 100 ms and
#                                      listen; stops 0.5 s after the first packet from PEER's address
#                                      or at SECONDS; prints what it received; exit 0 if any
#   udp.py listen LPORT SECONDS        prints every datagram received; exit 0 if any arrived
#   udp.py send TARGET COUNT           sends COUNT datagrams to TARGET, 50 ms apart
import socket, sys, time

def endpoint(text):
    host, port = text.rsplit(":", 1)
    return host, int(port)

def bound(lport):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", lport))
    return s

mode, args = sys.argv[1], sys.argv[2:]
if mode == "echo":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((args[0], int(args[1])))
    deadline = time.monotonic() + float(args[2])
    print(f"udp echo on {args[0]}:{args[1]}", flush=True)
    while time.monotonic() < deadline:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data, peer = s.recvfrom(2048)
        except socket.timeout:
            break
        s.sendto(f"{peer[0]}:{peer[1]}".encode(), peer)
        print(f"{peer[0]}:{peer[1]} {data[:40]!r}", flush=True)
elif mode == "observe":
    s = bound(int(args[0]))
    print(f"local {s.getsockname()[1]}")
    seconds = float(args[1])
    ok = True
    for target in args[2:]:
        dest, seen = endpoint(target), None
        deadline = time.monotonic() + seconds
        while seen is None and time.monotonic() < deadline:
            try:
                s.sendto(b"observe", dest)
            except OSError:
                pass
            s.settimeout(0.3)
            try:
                while True:
                    data, peer = s.recvfrom(2048)
                    if peer == dest:
                        seen = data.decode()
                        break
            except (socket.timeout, OSError):
                pass
        print(f"{target} {seen or 'none'}")
        ok = ok and seen is not None
    sys.exit(0 if ok else 2)
elif mode == "punch":
    s = bound(int(args[0]))
    peer, seconds = endpoint(args[1]), float(args[2])
    start = time.monotonic()
    deadline, got, seq, next_send = start + seconds, [], 0, start
    while time.monotonic() < deadline:
        now = time.monotonic()
        if now >= next_send:
            try:
                s.sendto(f"punch {seq}".encode(), peer)
            except OSError:
                pass
            seq, next_send = seq + 1, now + 0.1
        s.settimeout(max(0.005, min(next_send, deadline) - time.monotonic()))
        try:
            data, source = s.recvfrom(2048)
        except (socket.timeout, OSError):
            continue
        if source[0] == peer[0]:
            if not got:
                deadline = min(deadline, time.monotonic() + 0.5)
            got.append((source, data))
    if got:
        print(f"received {len(got)} from {got[0][0][0]}:{got[0][0][1]} (first: {got[0][1].decode(errors='replace')}); sent {seq}")
        sys.exit(0)
    print(f"received nothing; sent {seq}")
    sys.exit(2)
elif mode == "listen":
    s = bound(int(args[0]))
    deadline, count = time.monotonic() + float(args[1]), 0
    while time.monotonic() < deadline:
        s.settimeout(max(0.005, deadline - time.monotonic()))
        try:
            data, source = s.recvfrom(2048)
        except socket.timeout:
            break
        count += 1
        print(f"{source[0]}:{source[1]} {data[:40]!r}", flush=True)
    print(f"received {count}")
    sys.exit(0 if count else 2)
elif mode == "send":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for i in range(int(args[1])):
        try:
            s.sendto(f"send {i}".encode(), endpoint(args[0]))
        except OSError as error:
            print(f"send {i}: {error}")
        time.sleep(0.05)
else:
    sys.exit(f"unknown mode {mode}")
EOF
}

tn_build() { # NET: builds TN_ELEMENTS into namespaces; writes $TN_STATE/hosts
    local net=$1 element hosts="$TN_STATE/hosts"
    local used=" $TESTNET_GATEWAY " next_public=1 home_index=0
    echo "#name role nat home ns address public lan" > "$hosts"

    # Pinned public addresses first, so automatic ones avoid them.
    for element in "${TN_ELEMENTS[@]}"; do
        set -- $element
        if [[ $1 != home && $3 != - ]]; then
            [[ $used != *" $3 "* ]] || tn_die "address $3 used twice"
            used+="$3 "
        fi
    done

    # The public segment: a bridge in NET-inet holding the gateway address (no forwarding there).
    tn_netns_add "$net" "$net-inet"
    tn_sysctl "$net-inet" net.ipv4.ip_forward=0
    tn_sysctl "$net-inet" net.bridge.bridge-nf-call-iptables=0 2> /dev/null || true
    ip -n "$net-inet" link add br0 type bridge
    ip -n "$net-inet" addr add "$TESTNET_GATEWAY/$TESTNET_PUBLIC_PREFIX" dev br0
    ip -n "$net-inet" link set br0 up
    echo "inet gateway - - $net-inet $TESTNET_GATEWAY $TESTNET_GATEWAY -" >> "$hosts"

    for element in "${TN_ELEMENTS[@]}"; do
        set -- $element
        local kind=$1 name=$2
        case $kind in
            public | web)
                local address=$3
                if [[ $address == - ]]; then
                    while [[ $used == *" 198.18.$next_public.1 "* ]]; do next_public=$((next_public + 1)); done
                    address=198.18.$next_public.1
                    used+="$address "
                fi
                tn_netns_add "$net" "$net-$name"
                tn_attach_public "$net" "$name" "$net-$name" eth0 "$address"
                echo "$name $kind - - $net-$name $address $address -" >> "$hosts"
                ;;
            home)
                local flavour=$3 ns="$net-$name-r"
                shift 3
                home_index=$((home_index + 1))
                local wan=198.19.$home_index.1 lan=192.168.$home_index.1
                [[ $used != *" $wan "* ]] || tn_die "address $wan is pinned by a public host; home $name needs it"
                used+="$wan "
                tn_netns_add "$net" "$ns"
                tn_attach_public "$net" "$name" "$ns" wan0 "$wan"
                ip -n "$ns" link add lan0 type bridge
                ip -n "$ns" addr add "$lan/24" dev lan0
                ip -n "$ns" link set lan0 up
                tn_sysctl "$ns" net.ipv4.ip_forward=1
                tn_sysctl "$ns" net.bridge.bridge-nf-call-iptables=0 2> /dev/null || true
                tn_nat_rules "$flavour" | ip netns exec "$ns" nft -f -
                if [[ -n ${TN_UDP_TIMEOUT:-} ]]; then
                    tn_sysctl "$ns" "net.netfilter.nf_conntrack_udp_timeout=$TN_UDP_TIMEOUT"
                    tn_sysctl "$ns" "net.netfilter.nf_conntrack_udp_timeout_stream=$TN_UDP_TIMEOUT"
                fi
                echo "$name router $flavour $name $ns $wan $wan $lan" >> "$hosts"
                local host host_index=9
                for host in "$@"; do
                    host_index=$((host_index + 1))
                    local host_ns="$net-$name-$host" address=192.168.$home_index.$host_index
                    tn_netns_add "$net" "$host_ns"
                    ip link add "p-$host" netns "$ns" type veth peer name eth0 netns "$host_ns"
                    ip -n "$ns" link set "p-$host" master lan0 up
                    ip -n "$host_ns" addr add "$address/24" dev eth0
                    ip -n "$host_ns" link set eth0 up
                    ip -n "$host_ns" route add default via "$lan" dev eth0
                    echo "$host lan $flavour $name $host_ns $address $wan $lan" >> "$hosts"
                done
                ;;
        esac
    done
}

tn_wait_tcp_listen() { # NS PORT SECONDS: status 0 once something listens on TCP PORT in NS
    local deadline=$((SECONDS + $3))
    while ((SECONDS <= deadline)); do
        ip netns exec "$1" ss -Hltn "sport = :$2" 2> /dev/null | grep -q . && return 0
        sleep 0.1
    done
    return 1
}

# --- processes ---------------------------------------------------------------------------------
# Each started process leads its own session (setsid); $STATE/pids/LABEL.pid holds
# "PID HOST COMMAND..." and its output goes to $STATE/logs/LABEL.log.

tn_start() { # NET HOST LABEL CMD... -> prints the pid
    local net=$1 host=$2 label=$3
    shift 3
    [[ $label =~ ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$ ]] || tn_die "bad process name '$label'"
    local state ns
    state=$(tn_state_dir "$net")
    ns=$(tn_host_field "$net" "$host" 5)
    mkdir -p "$state/pids" "$state/logs"
    local pidfile="$state/pids/$label.pid"
    if [[ -f $pidfile ]]; then
        local old
        read -r old _ < "$pidfile"
        ! kill -0 "$old" 2> /dev/null || tn_die "a process named '$label' is already running (pid $old)"
    fi
    rm -f "$pidfile.new"
    # The wrapper records its pid (= process group = session), closes every inherited descriptor
    # above 2 (a caller's pipe must not stay open for the process's lifetime), then becomes CMD.
    ip netns exec "$ns" setsid bash -c 'for fd in $(ls /proc/$$/fd); do ((fd > 2)) && eval "exec $fd>&-"; done
        echo $$ > "$0"; exec "$@"' "$pidfile.new" "$@" \
        < /dev/null >> "$state/logs/$label.log" 2>&1 &
    local waited=0
    while [[ ! -s $pidfile.new ]] && ((waited < 50)); do sleep 0.1; waited=$((waited + 1)); done
    [[ -s $pidfile.new ]] || tn_die "process '$label' did not start (see $state/logs/$label.log)"
    local pid
    pid=$(< "$pidfile.new")
    echo "$pid $host $*" > "$pidfile"
    rm -f "$pidfile.new"
    echo "$pid"
}

tn_alive() { # PID: status 0 while it runs (a zombie waiting for its parent counts as gone)
    local stat
    stat=$(cat "/proc/$1/stat" 2> /dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat:0:1} != Z ]]
}

tn_kill_groups() { # PID...: SIGTERM each process group, wait up to 3 s, then SIGKILL what is left
    (($#)) || return 0
    local pid waited=0 alive
    for pid in "$@"; do kill -TERM -- "-$pid" 2> /dev/null || kill -TERM "$pid" 2> /dev/null || true; done
    while ((waited < 30)); do
        alive=0
        for pid in "$@"; do tn_alive "$pid" && alive=1; done
        ((alive)) || return 0
        sleep 0.1
        waited=$((waited + 1))
    done
    for pid in "$@"; do kill -KILL -- "-$pid" 2> /dev/null || kill -KILL "$pid" 2> /dev/null || true; done
}

tn_marked_namespaces() { # NET -> every namespace named NET-… carrying NET's marker
    local ns
    for ns in $(ip netns list 2> /dev/null | awk '{ print $1 }'); do
        [[ $ns == "$1-"* ]] || continue
        ip -n "$ns" -o link show lo 2> /dev/null | grep -q "alias $TESTNET_MARK:$1\$" && echo "$ns"
    done
    return 0
}

tn_netns_inode() { # NS -> the inode naming its network namespace
    stat -L -c %i "/run/netns/$1" 2> /dev/null
}

tn_in_netns() { # PID INODE...: status 0 when PID runs in one of these network namespaces
    local link pid=$1
    shift
    link=$(readlink "/proc/$pid/ns/net" 2> /dev/null) || return 1
    link=${link//[^0-9]/}
    [[ " $* " == *" $link "* ]]
}

tn_stop() { # NET LABEL
    local pidfile
    pidfile="$(tn_state_dir "$1")/pids/$2.pid"
    [[ -f $pidfile ]] || tn_die "no process named '$2' in testnet '$1'"
    local pid host
    read -r pid host _ < "$pidfile"
    # Only a pid still inside the host's namespace is ours (a recorded pid may have been reused).
    if tn_in_netns "$pid" "$(tn_netns_inode "$(tn_host_field "$1" "$host" 5)")"; then tn_kill_groups "$pid"; fi
    rm -f "$pidfile"
}

tn_down() { # NET: idempotent; works from a partial state dir or none
    local net=$1 state link="$TESTNET_BASE/$1"
    state=$(tn_state_dir "$net")

    local namespaces=() inodes=() ns
    if [[ -f $state/namespaces ]]; then
        while read -r ns; do
            [[ $ns == "$net-"* && -e /run/netns/$ns ]] && namespaces+=("$ns")
        done < "$state/namespaces"
    fi
    for ns in $(tn_marked_namespaces "$net"); do
        [[ " ${namespaces[*]} " == *" $ns "* ]] || namespaces+=("$ns")
    done
    for ns in "${namespaces[@]}"; do inodes+=("$(tn_netns_inode "$ns")"); done

    # Started processes, by process group; only pids still inside our namespaces (no reused pid).
    local pids=() pidfile pid
    if [[ -d $state/pids ]]; then
        for pidfile in "$state"/pids/*.pid; do
            [[ -f $pidfile ]] || continue
            read -r pid _ < "$pidfile" || continue
            if [[ $pid =~ ^[0-9]+$ ]] && tn_in_netns "$pid" "${inodes[@]}"; then pids+=("$pid"); fi
        done
    fi
    tn_kill_groups "${pids[@]}"

    # Anything still running inside (started by `exec … &`, or by hand).
    pids=()
    for ns in "${namespaces[@]}"; do
        for pid in $(ip netns pids "$ns" 2> /dev/null); do pids+=("$pid"); done
    done
    if ((${#pids[@]})); then
        kill -TERM "${pids[@]}" 2> /dev/null || true
        local waited=0 alive=1
        while ((alive && waited < 20)); do
            alive=0
            for pid in "${pids[@]}"; do tn_alive "$pid" && alive=1; done
            ((alive)) && sleep 0.1
            waited=$((waited + 1))
        done
        ((alive == 0)) || kill -KILL "${pids[@]}" 2> /dev/null || true
    fi
    for ns in "${namespaces[@]}"; do
        ip netns del "$ns" 2> /dev/null || true
        [[ $ns == "$net"-* && -d /etc/netns/$ns ]] && rm -rf "/etc/netns/${ns:?}"
    done

    if [[ -d $state && -f $state/.umbra-testnet ]]; then rm -rf "$state"; fi
    if [[ -L $link ]]; then rm -f "$link"; fi
    echo "testnet $net down (${#namespaces[@]} namespaces removed)"
}

tn_all_nets() { # -> every testnet name known by state dir or by marked namespace
    {
        if [[ -d $TESTNET_BASE ]]; then
            local entry
            for entry in "$TESTNET_BASE"/*; do [[ -e $entry || -L $entry ]] && basename "$entry"; done
        fi
        local ns
        for ns in $(ip netns list 2> /dev/null | awk '{ print $1 }'); do
            ip -n "$ns" -o link show lo 2> /dev/null | sed -n "s/.*alias $TESTNET_MARK:\([a-z0-9]*\)\$/\1/p"
        done
    } | sort -u
}
