#!/usr/bin/env bash
# What one request costs in syscalls: runs the release binary under
# `strace -c -f` while a Python client makes N keep-alive requests one after
# another, then N pipelined in batches of 16, and prints syscalls per request.
# Usage: scripts/syscalls.sh [N]   (RUST_LOG=warn to leave out access logs)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-5000}
command -v strace >/dev/null || { apt-get update -qq && apt-get install -y -qq strace; }
cargo build --release --quiet --features cli
out=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; rm -rf "$out"' EXIT
run() {
    local mode=$1
    strace -c -f -o "$out/$mode.strace" target/release/handoff serve --listen 127.0.0.1:0 >"$out/addr" 2>/dev/null &
    pid=$!
    until grep -q listening "$out/addr" 2>/dev/null; do sleep 0.05; done
    port=$(sed -n 's/.*127.0.0.1:\([0-9]*\).*/\1/p' "$out/addr")
    python3 - "$port" "$N" "$mode" <<'PY'
import socket, sys
port, n, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
s = socket.create_connection(("127.0.0.1", port))
req = b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n"
batch = 1 if mode == "sequential" else 16
got = 0
buf = b""
while got < n:
    s.sendall(req * batch)
    want = got + batch
    while got < want:
        chunk = s.recv(65536)
        buf += chunk
        while b"Hello from handoff.\n" in buf:
            buf = buf.split(b"Hello from handoff.\n", 1)[1]
            got += 1
s.close()
PY
    kill -TERM "$(pgrep -P $pid)"; wait $pid 2>/dev/null || true
    echo "== $mode, $N requests (syscalls of the server process, per request)"
    awk -v n="$N" '$1 ~ /^[0-9.]+$/ && NF>=5 { name=$NF; calls=$4; if ($5 ~ /^[0-9]+$/) calls=$4; printf "  %-14s %8d calls  %.3f per request\n", name, calls, calls/n }' "$out/$mode.strace" | sort -k2 -n -r | sed -n 1,8p
}
run sequential
run pipelined
