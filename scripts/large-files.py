#!/usr/bin/env python3
"""Where large files go: handoff, lighttpd and nginx serving 1 MiB (or
LARGE_FILE=256k) to wrk -c8, each looked at from the kernel's side.

For each server, one after another on the same files (scripts/bench.py's
configurations): the throughput; the server's system calls per response
(strace -c); the TCP state of its connections mid-run (ss -tin: send
queue, bytes not yet sent, congestion window); and where the CPU went,
server and client apart, kernel symbols included (perf record -a).

Run by hand after `bash scripts/bench.sh` has installed the peers and built
the binaries; perf comes from Debian's linux-perf.

    python3 scripts/large-files.py
"""

import os
import re
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (its configurations, files and Server)

SIZE = os.environ.get("LARGE_FILE", "1m")
URL = f"http://127.0.0.1:{bench.PORT}/{SIZE}.bin"
BYTES = {"1m": 1 << 20, "256k": 256 << 10}[SIZE]
SECONDS = 4


def wrk():
    out = subprocess.run(["wrk", "-t1", "-c8", f"-d{SECONDS}s", URL],
                         capture_output=True, text=True, check=True).stdout
    n = int(re.search(r"(\d+) requests in", out).group(1))
    tr = re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", out)
    gbs = float(tr.group(1)) * {"MB": 1e-3, "GB": 1}[tr.group(2)]
    return n, gbs


def syscalls(name):
    out = f"{bench.work}/strace-{name}"
    with bench.Server(name, ("strace", "-f", "-c", "-o", out)) as s:
        n, _ = wrk()
        time.sleep(0.3)
        s.stop(2)
    counts = {}
    for line in open(out):
        f = line.split()
        if len(f) >= 5 and f[-1].isidentifier() and f[3].isdigit():
            counts[f[-1]] = int(f[3])
    return n, counts


def sockets():
    """ss -tin of the server's established connections (one sample)."""
    out = subprocess.run(["ss", "-tinpH", "state", "established", "sport", f"= :{bench.PORT}"],
                         capture_output=True, text=True).stdout
    return out


def profile(name):
    data = f"{bench.work}/perf-{name}"
    with bench.Server(name):
        states = []

        def sample():
            time.sleep(SECONDS / 2)
            states.append(sockets())

        t = threading.Thread(target=sample)
        t.start()
        rec = subprocess.Popen(["perf", "record", "-a", "-g", "-e", "cpu-clock", "-o", data,
                                "--", "sleep", str(SECONDS - 1)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        n, gbs = wrk()
        rec.wait()
        t.join()
    rep = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children",
                          "--sort", "comm,dso,sym", "-g", "none", "--percent-limit", "1.5"],
                         capture_output=True, text=True).stdout
    return gbs, states[0] if states else "", rep


def main():
    names = os.environ.get("LARGE_SERVERS", "lighttpd,nginx,handoff").split(",")
    for name in names:
        n, counts = syscalls(name)
        calls = {k: v / n for k, v in sorted(counts.items(), key=lambda kv: -kv[1]) if v / n >= 0.05}
        gbs, ss, rep = profile(name)
        print(f"\n===== {name}: {gbs:.2f} GB/s of {SIZE}.bin")
        print(f"  syscalls per response ({n} responses under strace):")
        for k, v in calls.items():
            print(f"    {k:<16} {v:8.2f}")
        if "sendfile" in counts:
            print(f"    bytes per sendfile {n * BYTES / counts['sendfile']:,.0f}")
        print("  TCP state mid-run (ss -tin):")
        for line in ss.split("\n"):
            m = {k: re.search(rf"\b{k}[: ]([\w./]+)", line) for k in
                 ("cwnd", "notsent", "unacked", "send", "delivery_rate", "rtt", "mss")}
            got = " ".join(f"{k}={v.group(1)}" for k, v in m.items() if v)
            if got:
                print(f"    {got}")
        print("  CPU (perf, all CPUs, cpu-clock samples):")
        for line in rep.splitlines():
            if line.strip() and not line.startswith("#"):
                print("    " + line.strip())


if __name__ == "__main__":
    main()
