#!/usr/bin/env python3
"""Many idle connections closed at once (issue 13): N connections that
send nothing are cut together at the setup deadline, while a probe fetches
a small file every 10 ms on a new connection. Prints the probe's worst and
99th-percentile latency; exits non-zero past 100 ms.

  scripts/mass-close.py [--handoff PATH] [--connections N] [--deadline S]

N is bounded by this shell's hard fd limit (both ends are here).
"""
import argparse
import os
import re
import resource
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--handoff", default=os.path.join(ROOT, "target/release/handoff"))
    ap.add_argument("--connections", type=int, default=15000)
    ap.add_argument("--deadline", type=int, default=3)
    a = ap.parse_args()
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    n = min(a.connections, hard - 100)
    site = tempfile.mkdtemp()
    with open(os.path.join(site, "a.txt"), "w") as f:
        f.write("alpha\n")
    p = subprocess.Popen(
        [a.handoff, "serve", "--listen", "127.0.0.1:0", "--root", site,
         "--setup-timeout", str(a.deadline), "--max-concurrent", str(n + 1000)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    port = int(re.search(r":(\d+)$", p.stdout.readline().strip()).group(1))
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
    start, lat = time.monotonic(), []
    while time.monotonic() - start < a.deadline + 3:
        t = time.monotonic()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"GET /a.txt HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n")
            while s.recv(4096):
                pass
        lat.append(time.monotonic() - t)
        time.sleep(0.01)
    p.terminate()
    p.wait()
    del idle
    lat.sort()
    worst, p99 = lat[-1] * 1000, lat[int(len(lat) * 0.99) - 1] * 1000
    print(f"{n} idle connections cut at {a.deadline} s: probes {len(lat)}, "
          f"max {worst:.0f} ms, p99 {p99:.0f} ms")
    sys.exit(0 if worst < 100 else 1)


if __name__ == "__main__":
    main()
