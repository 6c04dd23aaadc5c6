#!/usr/bin/env python3
"""What a broadcast bus costs (docs/bus.md): messages fanned out to 1,000
WebSocket clients on one broadcast route, in two layouts, one after the
other on this machine:

- one handoff instance, no bus (its pool orders the messages);
- one instance with a bus (`bus=redis://…`): the Redis hop alone;
- three instances on one Redis, the clients spread over them, the sender
  on the first.

examples/fanout.rs is the client: one sender keeping at most WINDOW
messages ahead of the first client, 1,000 clients read by one mio
thread; a round ends when every client has every message. Prints each
round and the medians, deliveries per second (messages × clients / s).

    python3 scripts/bus-bench.py            # builds what it needs
    BUS_BENCH_ROUNDS=5 BUS_BENCH_MESSAGES=4000 python3 scripts/bus-bench.py

Not part of the test command (a timed figure on a shared machine); needs
redis-server (scripts/test-deps.sh installs it).
"""
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HANDOFF = os.environ.get("HANDOFF", os.path.join(ROOT, "target/release/handoff"))
FANOUT = os.path.join(ROOT, "target/release/examples/fanout")
CLIENTS = int(os.environ.get("BUS_BENCH_CLIENTS", "1000"))
MESSAGES = int(os.environ.get("BUS_BENCH_MESSAGES", "2000"))
SIZE = int(os.environ.get("BUS_BENCH_SIZE", "32"))
ROUNDS = int(os.environ.get("BUS_BENCH_ROUNDS", "3"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_handoff(args, site):
    p = subprocess.Popen(
        [HANDOFF, "serve", "--listen", "127.0.0.1:0", "--root", site] + args,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env=dict(os.environ, RUST_LOG="warn"))
    line = p.stdout.readline()
    if not line.startswith("listening on http://"):
        p.kill()
        sys.exit("handoff did not start: %r" % line)
    return p, line.strip().removeprefix("listening on http://")


def fanout(targets):
    out = subprocess.run(
        [FANOUT, ",".join(targets), "/chat", str(CLIENTS), str(MESSAGES), str(SIZE)],
        capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        sys.exit("fanout: %s" % out.stderr.strip())
    return json.loads(out.stdout)


def rounds(targets):
    got = []
    for r in range(ROUNDS):
        res = fanout(targets)
        print("    round %d: %.0f deliveries/s (%.2f s)" % (r + 1, res["deliveries_per_s"], res["seconds"]))
        got.append(res["deliveries_per_s"])
    return statistics.median(got)


def main():
    subprocess.run(["cargo", "build", "--release", "--quiet", "--features", "cli"], cwd=ROOT, check=True)
    subprocess.run(["cargo", "build", "--release", "--quiet", "--example", "fanout"], cwd=ROOT, check=True)
    if not shutil.which("redis-server"):
        sys.exit("redis-server is missing (scripts/test-deps.sh installs it)")
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print("bus bench: %d cores, %s, %d clients, %d messages of %d bytes, %d rounds" % (
        os.cpu_count(), time.strftime("%Y-%m-%d", time.gmtime()), CLIENTS, MESSAGES, SIZE, ROUNDS))
    with tempfile.TemporaryDirectory() as tmp:
        site = os.path.join(tmp, "site")
        os.mkdir(site)
        print("  one instance, no bus:")
        p, addr = start_handoff(["--ws", "/chat=broadcast"], site)
        time.sleep(0.5)
        try:
            alone = rounds([addr])
        finally:
            p.terminate()
            p.wait()
        port = free_port()
        redis = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", tmp],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(0.5)
            bus_url = "/chat=broadcast,bus=redis://127.0.0.1:%d/" % port
            print("  one instance with a Redis bus:")
            p, addr = start_handoff(["--ws", bus_url], site)
            time.sleep(1.0)
            try:
                one_bus = rounds([addr])
            finally:
                p.terminate()
                p.wait()
            print("  three instances on one Redis:")
            ps = [start_handoff(["--ws", bus_url], site) for _ in range(3)]
            time.sleep(1.0)
            try:
                bus = rounds([a for _, a in ps])
            finally:
                for p, _ in ps:
                    p.terminate()
                    p.wait()
        finally:
            redis.terminate()
            redis.wait()
    print()
    print("%-40s %14s" % ("layout", "deliveries/s"))
    print("%-40s %14.0f" % ("one instance, no bus", alone))
    print("%-40s %14.0f" % ("one instance, Redis bus", one_bus))
    print("%-40s %14.0f" % ("three instances, Redis bus", bus))
    print("%-40s %13.2fx" % ("one instance: bus / no bus", one_bus / alone))
    print("%-40s %13.2fx" % ("three with bus / one without", bus / alone))


main()
