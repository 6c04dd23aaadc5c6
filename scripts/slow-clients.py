#!/usr/bin/env python3
"""Slow clients by the thousand against handoff (issue 13): Debian's
slowhttptest in each mode with 1,000 connections, while a probe fetches a
small file every 100 ms on a new connection. Prints one line per attack:
what slowhttptest saw, the probe's latencies, and the server's fds before
and after; exits non-zero if a probe failed or took 100 ms or more, or if
the fds did not come back to their baseline.

  scripts/slow-clients.py [--handoff PATH] [--seconds N] [--modes slowloris,slowbody,slowread]

The binary defaults to target/release/handoff (built if missing).
"""
import argparse
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MODES = {
    # slowloris: headers a line every 10 s
    "slowloris": ["-H", "-i", "10", "-u", "{base}/a.txt"],
    # R.U.D.Y.: a POST whose 8 KiB body trickles
    "slowbody": ["-B", "-i", "10", "-s", "8192", "-u", "{base}/a.txt"],
    # slow read: a 1 MiB file read 32 bytes at a time through a 512-byte window
    "slowread": ["-X", "-w", "512", "-y", "1024", "-n", "5", "-z", "32", "-k", "3",
                 "-u", "{base}/big.bin"],
}


def fds(pid):
    """Sockets, pipes and the like of a process (files left out)."""
    n = 0
    for f in os.listdir(f"/proc/{pid}/fd"):
        try:
            n += not os.readlink(f"/proc/{pid}/fd/{f}").startswith("/")
        except OSError:
            pass  # closed meanwhile
    return n


def probe(port, stop, out):
    while not stop.is_set():
        t = time.monotonic()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(b"GET /a.txt HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n")
                got = b""
                while True:
                    b = s.recv(4096)
                    if not b:
                        break
                    got += b
            ok = got.startswith(b"HTTP/1.1 200 ") and got.endswith(b"alpha\n")
            out.append((time.monotonic() - t, ok))
        except OSError:
            out.append((time.monotonic() - t, False))
        stop.wait(0.1)


def settle(pid, baseline, within=30.0):
    end = time.monotonic() + within
    while time.monotonic() < end:
        if fds(pid) <= baseline:
            return fds(pid)
        time.sleep(0.2)
    return fds(pid)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--handoff", default=os.path.join(ROOT, "target/release/handoff"))
    ap.add_argument("--seconds", type=int, default=40)
    ap.add_argument("--modes", default=",".join(MODES))
    a = ap.parse_args()
    if shutil.which("slowhttptest") is None:
        subprocess.run(["apt-get", "install", "-y", "-qq", "slowhttptest"], check=True,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    if not os.path.exists(a.handoff):
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(65536, hard), hard))
    site = tempfile.mkdtemp()
    with open(os.path.join(site, "a.txt"), "w") as f:
        f.write("alpha\n")
    with open(os.path.join(site, "big.bin"), "wb") as f:
        f.write(os.urandom(1 << 20))
    server = subprocess.Popen(
        [a.handoff, "serve", "--listen", "127.0.0.1:0", "--root", site],
        stdout=subprocess.PIPE, stderr=open(os.environ.get("HANDOFF_LOG", os.devnull), "w"), text=True)
    line = server.stdout.readline()
    port = int(re.search(r":(\d+)$", line.strip()).group(1))
    base = f"http://127.0.0.1:{port}"
    failed = False
    try:
        time.sleep(0.5)
        baseline = fds(server.pid)
        for mode in a.modes.split(","):
            args = [x.format(base=base) for x in MODES[mode]]
            stop, probes = threading.Event(), []
            t = threading.Thread(target=probe, args=(port, stop, probes))
            t.start()
            r = subprocess.run(
                ["slowhttptest", "-c", "1000", "-r", "200", "-l", str(a.seconds), "-p", "3"]
                + args, capture_output=True, text=True)
            stop.set()
            t.join()
            after = settle(server.pid, baseline)
            lat = sorted(p[0] for p in probes)
            bad = sum(1 for p in probes if not p[1])
            p99 = lat[int(len(lat) * 0.99) - 1] if lat else 0
            plain = re.sub(r"\x1b\[[0-9;]*m", "", r.stdout)
            status = [" ".join(l.split()) for l in plain.splitlines()
                      if "service available" in l or "closed:" in l
                      or "connected:" in l][-3:]
            ok = bad == 0 and lat and lat[-1] < 0.1 and after <= baseline
            failed |= not ok
            print(f"{mode}: probes {len(lat)}, failed {bad}, max {lat[-1] * 1000:.0f} ms, "
                  f"p99 {p99 * 1000:.0f} ms; fds {baseline} before, {after} after; "
                  f"slowhttptest: {' | '.join(s.strip() for s in status)}"
                  f"{'' if ok else '  <-- FAIL'}", flush=True)
    finally:
        server.terminate()
        server.wait()
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
