# Installs the system packages Umbra needs when they are missing (Debian/Ubuntu, apt).
# Sourced by tools/test and tools/demo; safe to run repeatedly.
umbra_install_deps() {
    local packages=(libsodium-dev pkg-config python3 iproute2 procps nftables iputils-ping curl)
    local missing=()
    for package in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
    done
    ((${#missing[@]})) || return 0
    echo "installing missing packages: ${missing[*]}"
    local sudo=()
    [[ $(id -u) -eq 0 ]] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
}
