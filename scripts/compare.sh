#!/usr/bin/env bash
# Two builds of handoff side by side on a small keep-alive GET: instructions
# per request from callgrind (the steady figure on a noisy machine) and
# wrk medians, servers alternating. Not part of the test command.
#
#   bash scripts/compare.sh OLD_BINARY NEW_BINARY [ROUNDS]
#
# Needs valgrind, wrk and python3 (installed here when missing).
set -euo pipefail
old=$1 new=$2 rounds=${3:-5}
missing=()
command -v valgrind >/dev/null || missing+=(valgrind)
command -v wrk >/dev/null || missing+=(wrk)
if ((${#missing[@]})); then apt-get install -y -qq "${missing[@]}"; fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
printf 'hello, this is 24 bytes\n' >"$dir/small.txt"
port=18190
export RUST_LOG=warn

wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && return; sleep 0.1; done; }

# N sequential keep-alive requests on one connection.
requests() {
    python3 - "$port" "$1" <<'PY'
import socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
s = socket.create_connection(("127.0.0.1", port))
req, buf = b"GET /small.txt HTTP/1.1\r\nHost: x\r\n\r\n", b""
for _ in range(n):
    s.sendall(req)
    while True:
        i = buf.find(b"\r\n\r\n")
        if i >= 0:
            cl = int(buf[:i].lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            if len(buf) >= i + 4 + cl:
                buf = buf[i + 4 + cl:]
                break
        buf += s.recv(65536)
PY
}

instructions() { # binary n
    valgrind --tool=callgrind --callgrind-out-file="$dir/cg.out" "$1" --listen 127.0.0.1:$port --root "$dir" >/dev/null 2>&1 &
    local pid=$!
    wait_port
    requests "$2"
    kill -INT $pid
    wait $pid 2>/dev/null || true
    awk '/^(summary|totals):/ { print $2; exit }' "$dir/cg.out"
}

for b in "$old" "$new"; do
    a=$(instructions "$b" 1000)
    c=$(instructions "$b" 3000)
    echo "$b: $(( (c - a) / 2000 )) instructions per request (callgrind)"
done

declare -A got
for r in $(seq "$rounds"); do
    for b in "$old" "$new"; do
        "$b" --listen 127.0.0.1:$port --root "$dir" >/dev/null 2>&1 &
        pid=$!
        wait_port
        got[$b]+="$(wrk -t1 -c32 -d5s http://127.0.0.1:$port/small.txt | awk '/Requests\/sec/{print $2}') "
        kill $pid
        wait $pid 2>/dev/null || true
    done
done
for b in "$old" "$new"; do
    echo "$b: wrk -t1 -c32 median $(tr ' ' '\n' <<<"${got[$b]}" | grep . | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}') req/s over $rounds rounds: ${got[$b]}"
done
