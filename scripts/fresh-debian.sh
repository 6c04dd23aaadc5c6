#!/usr/bin/env bash
# Proves that the test command's installs work on Debian 12 as it ships:
# debootstraps a clean bookworm root (Debian's packages only: no pyenv, no
# NodeSource, nothing of this machine's), binds in this machine's Rust
# toolchain (rustup cannot download here) and a clean clone of HEAD, then,
# inside it, runs scripts/test-deps.sh and the tests that need the most
# from outside Rust: Autobahn's cases (kosoku) and the demo page in
# Chromium (playwright). Usage: bash scripts/fresh-debian.sh [CARGO TEST ARGS]
# (default: --test autobahn --test browser_demo). Needs root, debootstrap
# and systemd-nspawn (scripts/test-deps.sh installs them). Prints the wall
# time of each step.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
work=${FRESH_DIR:-$repo/.cache/fresh-debian}
root=$work/root
rm -rf "$work"
mkdir -p "$work"
step() { printf '== %s (%s)\n' "$1" "$(date +%T)"; }
t0=$(date +%s)

step "debootstrap bookworm (minbase) into $root"
mirror=$(grep -hoE '^(URIs:|deb) *https?://[^ ]+' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
    | awk '!/security/ && !found { print $2; found = 1 }' || true)
mirror=${mirror:-http://deb.debian.org/debian}
debootstrap --variant=minbase bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1 \
    || { tail -n 30 "$work/debootstrap.log" >&2; exit 1; }
# The sources a Debian 12 installation has: the release, its updates and
# its security archive (where Debian's Chromium is kept current).
security=${mirror%/debian}/debian-security
cat >"$root/etc/apt/sources.list" <<SOURCES
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb $security bookworm-security main
SOURCES
t1=$(date +%s)

step "a clean clone of HEAD"
git clone -q "$repo" "$work/src"

tests=("$@")
((${#tests[@]})) || tests=(--test autobahn --test browser_demo)
step "inside the root: scripts/test-deps.sh, then cargo test ${tests[*]}"
# The toolchain read-only; cargo's own registry cache is the root's. Where
# this machine reaches PyPI and crates.io through a TLS-intercepting proxy
# (this workplace does), the root is given the host's CA bundle for them:
# a property of the network, like the mirror, not of Debian.
ca=()
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
    ca=(--bind-ro=/etc/ssl/certs/ca-certificates.crt:/opt/network-ca.crt
        --setenv=PIP_CERT=/opt/network-ca.crt --setenv=CARGO_HTTP_CAINFO=/opt/network-ca.crt
        --setenv=SSL_CERT_FILE=/opt/network-ca.crt)
fi
systemd-nspawn -q -D "$root" --register=no --keep-unit --resolv-conf=copy-host "${ca[@]}" \
    --bind-ro="$HOME/.rustup:/opt/rustup" \
    --bind-ro="$HOME/.cargo/bin:/opt/cargo-bin" \
    --bind="$work/src:/src" \
    --setenv=RUSTUP_HOME=/opt/rustup --setenv=CARGO_HOME=/root/.cargo \
    --setenv=PATH=/opt/cargo-bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --setenv=TESTS="${tests[*]}" \
    /bin/bash -c '
        set -euo pipefail
        cd /src
        grep PRETTY_NAME /etc/os-release
        s=$(date +%s)
        bash scripts/test-deps.sh
        echo "== test-deps.sh: $(( $(date +%s) - s )) s; node: $(command -v node || echo none); python3: $(python3 --version)"
        s=$(date +%s)
        cargo test $TESTS
        echo "== cargo test $TESTS: $(( $(date +%s) - s )) s"
    '
t2=$(date +%s)
echo "== done: debootstrap $((t1 - t0)) s, the rest $((t2 - t1)) s, $(du -sh "$work" | cut -f1) on disk"
