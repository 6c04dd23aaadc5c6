#!/usr/bin/env bash
# Every test, on a fresh Debian machine with Rust: installs what the tests
# need (idempotently), then runs the quality gates, the engine's unit tests
# and the integration tests that start the real binary.
set -euo pipefail
cd "$(dirname "$0")/.."

# Tools the tests use. A test that needs one fails when it is missing; it
# never skips, so they are installed here.
missing=()
command -v curl >/dev/null || missing+=(curl)
command -v python3 >/dev/null || missing+=(python3)
# python3 -m venv (for the Autobahn tools) needs ensurepip, which Debian
# ships apart; some tests run Debian's own python3 as another user.
python3 -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
[ -x /usr/bin/python3 ] || missing+=(python3)
# Autobahn's pinned packages build C extensions.
command -v cc >/dev/null || missing+=(gcc libc6-dev)
{ command -v prlimit && command -v setpriv; } >/dev/null || missing+=(util-linux)
command -v pgrep >/dev/null || missing+=(procps)
command -v xinetd >/dev/null || missing+=(xinetd)
command -v openssl >/dev/null || missing+=(openssl)
# A real load balancer in front, speaking the PROXY protocol (tests/proxy.rs).
command -v haproxy >/dev/null || missing+=(haproxy)
# systemd-socket-activate and systemd-analyze come with systemd.
{ command -v systemd-socket-activate && command -v systemd-analyze; } >/dev/null || missing+=(systemd)
# The man page is rendered by man, the completions loaded by each shell
# (tests/operator.rs).
command -v man >/dev/null || missing+=(man-db)
command -v zsh >/dev/null || missing+=(zsh)
command -v fish >/dev/null || missing+=(fish)
# The demo page is tested in Debian's Chromium, driven by playwright-core.
command -v chromium >/dev/null || missing+=(chromium)
command -v node >/dev/null || missing+=(nodejs npm)
# The packages: lintian checks the .deb, rpm reads the .rpm
# (scripts/package.sh, tests/systemd.rs installs the .deb).
command -v lintian >/dev/null || missing+=(lintian)
command -v rpm >/dev/null || missing+=(rpm)
# A real systemd booted in a container (tests/systemd.rs).
{ command -v debootstrap && command -v systemd-nspawn && command -v nsenter; } >/dev/null \
    || missing+=(debootstrap systemd-container util-linux)
if ((${#missing[@]})); then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}"
fi
# Autobahn|Testsuite (its wstest) runs on Python 2.7: the image's pyenv
# has one; a virtualenv made with virtualenv<20.22 can still create a 2.7
# environment, and tests/autobahn-py27-requirements.txt pins the packages
# that install there.
if [ ! -x .venv-autobahn/bin/wstest ]; then
    py27=$(ls -1 "${PYENV_ROOT:-$HOME/.pyenv}"/versions/2.7*/bin/python2.7 2>/dev/null | head -n 1 || true)
    [ -n "$py27" ] || { echo "Python 2.7 is needed for Autobahn|Testsuite and was not found under pyenv" >&2; exit 1; }
    reqs=tests/autobahn-py27-requirements.txt
    rm -rf .venv-tools .venv-autobahn
    python3 -m venv .venv-tools
    .venv-tools/bin/pip install -q 'virtualenv<20.22'
    .venv-tools/bin/virtualenv -q -p "$py27" .venv-autobahn
    .venv-autobahn/bin/pip install -q -r "$reqs"
    .venv-autobahn/bin/pip install -q autobahntestsuite==0.8.2
fi
export WSTEST="$PWD/.venv-autobahn/bin/wstest"
# The Prometheus project's own parser of the text format reads /metrics
# (tests/metrics.rs).
if ! .venv-py/bin/python -c 'import prometheus_client' 2>/dev/null; then
    rm -rf .venv-py
    python3 -m venv .venv-py
    .venv-py/bin/pip install -q 'prometheus_client==0.21.1'
fi

if [ ! -d tests/browser/node_modules/playwright-core ]; then
    (cd tests/browser && npm ci --silent --no-audit --no-fund)
fi

# The container's root: built once (about a minute), then kept in .cache.
bash scripts/systemd-root.sh

rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt

echo "== cargo fmt --check"
cargo fmt --check
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --quiet --all-targets -- -D warnings
echo "== packages (scripts/package.sh): .deb, .rpm, lintian"
# Before the tests: tests/systemd.rs installs the .deb in a clean root.
bash scripts/package.sh
rpm -qlp target/generate-rpm/handoff-*.rpm | grep -qx /usr/bin/handoff
echo "== cargo test"
# Integration tests start servers; two test threads keep a 2-core machine
# responsive enough that deadline tests measure the server, not the load.
cargo test --quiet -- --test-threads="${TEST_THREADS:-4}"
echo "== fuzzing, ${FUZZ_SECONDS:-10} s a target (scripts/fuzz.sh runs longer)"
# Every parser under libFuzzer for a few seconds from the committed seeds,
# so a regression a seed or a short run finds fails CI. The seeds also
# replay in `cargo test` (the_fuzz_corpus_replays_without_a_failure).
bash scripts/fuzz.sh "${FUZZ_SECONDS:-10}"
