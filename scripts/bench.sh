#!/usr/bin/env bash
# handoff side by side with lighttpd, nginx and a canned-response floor, in
# one run, as ratios (scripts/bench.py says what each case is). Not part of
# the test command: it takes about ten minutes and wants a quiet machine.
#
#   bash scripts/bench.sh                      # every case
#   BENCH_CASES=small,instructions bash scripts/bench.sh
#   HANDOFF=/path/to/old/handoff bash scripts/bench.sh   # another build
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
for tool in wrk nginx lighttpd strace valgrind openssl; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
command -v h2load >/dev/null || missing+=(nghttp2-client)
[ -e /usr/lib/lighttpd/mod_openssl.so ] || missing+=(lighttpd-mod-openssl)
[ -e /usr/lib/lighttpd/mod_deflate.so ] || missing+=(lighttpd-mod-deflate)
command -v curl >/dev/null || missing+=(curl)
if ((${#missing[@]})); then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
fi
cargo build --release --quiet --features cli
cargo build --release --quiet --example app_worker
cargo build --release --quiet --manifest-path benches/floor/Cargo.toml
# 10,000 idle connections, client and server on this machine.
ulimit -n "$(ulimit -Hn)"
echo "handoff bench: $(nproc) cores, $(date -u +%Y-%m-%d), $(uname -r)"
echo "  lighttpd $(lighttpd -v 2>&1 | awk 'NR == 1 {print $1}'), $(nginx -v 2>&1 | sed 's/.*: //'), $(wrk -v 2>&1 | awk 'NR == 1 {print $1, $2}')"
exec python3 scripts/bench.py
