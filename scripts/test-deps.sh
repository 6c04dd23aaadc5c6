#!/usr/bin/env bash
# Installs what the tests need, idempotently, on Debian 12 with Rust
# (rustup): Debian's packages and a Python virtualenv with pinned PyPI
# packages. Nothing else: no pyenv, no NodeSource. scripts/test.sh runs it
# first; it needs root (apt-get), and re-runs itself with sudo when that
# works without a password.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/need-root.sh
need_root "$0" "$@"

# Tools the tests use. A test that needs one fails when it is missing; it
# never skips, so they are installed here.
missing=()
command -v curl >/dev/null || missing+=(curl)
command -v python3 >/dev/null || missing+=(python3)
# python3 -m venv needs ensurepip, which Debian ships apart; some tests run
# Debian's own python3 as another user.
python3 -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
[ -x /usr/bin/python3 ] || missing+=(python3)
command -v cc >/dev/null || missing+=(gcc libc6-dev)
{ command -v prlimit && command -v setpriv; } >/dev/null || missing+=(util-linux)
command -v pgrep >/dev/null || missing+=(procps)
command -v xinetd >/dev/null || missing+=(xinetd)
command -v openssl >/dev/null || missing+=(openssl)
# htpasswd writes the password files basic auth reads (tests/access.rs).
command -v htpasswd >/dev/null || missing+=(apache2-utils)
# A real load balancer in front, speaking the PROXY protocol
# (tests/proxy.rs), and TLS to us for Autobahn over wss (tests/autobahn.rs).
command -v haproxy >/dev/null || missing+=(haproxy)
# A real Redis for broadcast routes across instances (tests/bus.rs); the
# tests start their own redis-server, not the package's service.
{ command -v redis-server && command -v redis-cli; } >/dev/null || missing+=(redis-server redis-tools)
# HTTP/2 clients we did not write: nghttp and h2load (tests/http2.rs,
# scripts/bench.sh); curl's --http2 comes with Debian's curl.
{ command -v nghttp && command -v h2load; } >/dev/null || missing+=(nghttp2-client)
# systemd-socket-activate and systemd-analyze come with systemd.
{ command -v systemd-socket-activate && command -v systemd-analyze; } >/dev/null || missing+=(systemd)
# The man page is rendered by man, the completions loaded by each shell
# (tests/operator.rs).
command -v man >/dev/null || missing+=(man-db)
command -v zsh >/dev/null || missing+=(zsh)
command -v fish >/dev/null || missing+=(fish)
# The demo page is tested in Debian's Chromium, driven by Python's playwright.
command -v chromium >/dev/null || missing+=(chromium)
# The packages: lintian checks the .deb, rpm reads the .rpm
# (scripts/package.sh, tests/systemd.rs installs the .deb).
command -v lintian >/dev/null || missing+=(lintian)
command -v rpm >/dev/null || missing+=(rpm)
# A real systemd booted in a container (tests/systemd.rs).
{ command -v debootstrap && command -v systemd-nspawn && command -v nsenter; } >/dev/null \
    || missing+=(debootstrap systemd-container util-linux)
if ((${#missing[@]})); then
    echo "== apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}"
fi

# PyPI packages, pinned (tests/requirements.txt), in a virtualenv of
# Debian's python3: kosoku (Autobahn's cases), playwright, prometheus_client.
# Made again when the pins change.
reqs=tests/requirements.txt
if ! cmp -s "$reqs" .venv-py/requirements.txt 2>/dev/null; then
    echo "== .venv-py from $reqs"
    rm -rf .venv-py
    /usr/bin/python3 -m venv .venv-py
    .venv-py/bin/pip install -q --disable-pip-version-check -r "$reqs"
    cp "$reqs" .venv-py/requirements.txt
fi

components=$(rustup component list --installed 2>/dev/null || true)
grep -q '^clippy' <<<"$components" || rustup component add clippy rustfmt
