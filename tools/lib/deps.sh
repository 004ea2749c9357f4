# Installs the system packages Umbra needs when they are missing (Debian/Ubuntu, apt).
# Sourced by tools/test and tools/demo; safe to run repeatedly. libsqlite3-dev is for GRDB (the node
# store), sqlite3 for its tests, spin and gcc for tools/check-model. iperf3, wireguard-go and
# wireguard-tools are for tools/bench-tunnel; they go in without their recommends, because
# wireguard-tools recommends the WireGuard kernel module, which apt satisfies with a whole kernel image.
umbra_install_deps() {
    local packages=(libsodium-dev libsqlite3-dev sqlite3 pkg-config python3 iproute2 procps nftables iputils-ping curl
        spin gcc)
    local bench_packages=(iperf3 wireguard-go wireguard-tools)
    local missing=() missing_bench=()
    for package in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
    done
    for package in "${bench_packages[@]}"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing_bench+=("$package")
    done
    ((${#missing[@]} + ${#missing_bench[@]})) || return 0
    echo "installing missing packages: ${missing[*]} ${missing_bench[*]}"
    local sudo=()
    [[ $(id -u) -eq 0 ]] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    if ((${#missing[@]})); then
        DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    if ((${#missing_bench[@]})); then
        DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing_bench[@]}" >/dev/null
    fi
}

# The adversarial suite (tools/adversary) speaks the wire protocol from Python: it needs the
# `cryptography` package (PyPI), installed for the user's python3 when missing.
umbra_install_python_deps() {
    python3 -c 'import cryptography.hazmat.primitives.asymmetric.x25519' 2>/dev/null && return 0
    echo "installing the Python packages of tools/adversary/requirements.txt"
    python3 -m pip install --quiet -r tools/adversary/requirements.txt
}
