#!/usr/bin/env python3
"""handoff side by side with lighttpd, nginx and a canned-response floor.

Run by scripts/bench.sh, which installs the tools and builds the binaries.
Every server gets equivalent settings: access logs off, one process and one
event loop (nginx: one worker; handoff: --threads 1 unless BENCH_THREADS),
keep-alive without a request limit, sendfile on. Throughput cases alternate
the servers round by round and report medians; the ratios in one run are
what count, since this machine's figures drift from run to run.

Environment: BENCH_SECONDS (per wrk run, default 5), BENCH_ROUNDS (default
3), BENCH_CASES (comma-separated subset of the case names below),
BENCH_THREADS (handoff's --threads, default 1), HANDOFF, FLOOR, APP_WORKER (binaries).
"""

import os
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HANDOFF = os.environ.get("HANDOFF", f"{ROOT}/target/release/handoff")
APP_WORKER = os.environ.get("APP_WORKER", f"{ROOT}/target/release/examples/app_worker")
FLOOR = os.environ.get("FLOOR", f"{ROOT}/benches/floor/target/release/floor")
SECONDS = int(os.environ.get("BENCH_SECONDS", "5"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
THREADS = os.environ.get("BENCH_THREADS", "1")
SMALL = b"hello, this is 24 bytes\n"
SERVERS = ["floor", "lighttpd", "nginx", "handoff"]

work = tempfile.mkdtemp(prefix="handoff-bench-")
www = f"{work}/www"
os.makedirs(www)
with open(f"{www}/small.txt", "wb") as f:
    f.write(SMALL)
with open(f"{www}/256k.bin", "wb") as f:
    f.write(os.urandom(256 * 1024))
with open(f"{www}/1m.bin", "wb") as f:
    f.write(os.urandom(1024 * 1024))


def stylesheet(size):
    """A made-up stylesheet of `size` bytes, varied as real ones are."""
    props = ["color", "margin", "padding", "border-top", "font-size", "line-height", "background"]
    out, i = [], 0
    while sum(map(len, out)) < size:
        h = (i * 2654435761) & 0xFFFFFF
        out.append(f".c{i:x}-{h % 977} > .item:hover {{ {props[i % 7]}: #{h:06x}; "
                   f"{props[(i * 3) % 7]}: {h % 37}px {i % 11}em; }}\n")
        i += 1
    return "".join(out)[:size].encode()


with open(f"{www}/100k.css", "wb") as f:
    f.write(stylesheet(100 * 1024))
subprocess.run(
    ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
     "-nodes", "-days", "1", "-subj", "/CN=localhost",
     "-keyout", f"{work}/key.pem", "-out", f"{work}/cert.pem"],
    check=True, capture_output=True)
with open(f"{work}/pipeline.lua", "w") as f:
    f.write("""
init = function(args)
  local r = {}
  for i = 1, 16 do r[i] = wrk.format(nil, wrk.path) end
  req = table.concat(r)
end
request = function() return req end
""")

# The compression case: nginx on the fly at its default level (and a
# precompressed .gz when there is one: there is not), lighttpd brotli or
# gzip compressed once into its cache.
NGINX_GZIP = """
    gzip on;
    gzip_static on;
    gzip_types text/css;
    gzip_min_length 1024;
    gzip_vary on;"""
LIGHTTPD_DEFLATE = """
server.modules += ("mod_deflate")
deflate.mimetypes = ("text/css")
deflate.allowed-encodings = ("br", "gzip")
deflate.cache-dir = "{work}/lighttpd-deflate"
"""

PORT, TLS_PORT = 18400, 18401
# nginx 1.22 takes h2c (prior knowledge) only on a listener of its own,
# which then speaks nothing else: the h2c cases reach nginx here, the
# others on PORT, where HTTP/1.1 and h2c share the listener.
H2C_PORT = 18402
APP_PORT = 18403


def config(name, compress=False):
    """The command line that starts `name` on PORT (and TLS_PORT); with
    `compress`, nginx and lighttpd compress stylesheets (only for that
    case: their compression modules cost them on every request)."""
    if name == "floor":
        return [FLOOR, f"127.0.0.1:{PORT}"]
    if name == "handoff":
        return [HANDOFF, "serve", "--listen", f"127.0.0.1:{PORT}",
                "--listen", f"127.0.0.1:{TLS_PORT},tls=on",
                "--tls-cert", f"{work}/cert.pem", "--tls-key", f"{work}/key.pem",
                "--root", www, "--max-concurrent", "20000"] + (
                    ["--threads", THREADS] if has_threads() else [])
    if name == "nginx":
        conf = f"{work}/nginx.conf"
        with open(conf, "w") as f:
            f.write(f"""
daemon off;
user root;
master_process off;
worker_processes 1;
worker_rlimit_nofile 19000;
pid {work}/nginx.pid;
error_log {work}/nginx.err warn;
events {{ worker_connections 18000; }}
http {{
    access_log off;
    sendfile on;
    # No TCP_CORK, as for the others: with it nginx answers pipelined
    # requests 40 ms apart (11.7k req/s instead of 128k here).
    tcp_nopush off;
    tcp_nodelay on;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    types {{ text/plain txt; application/octet-stream bin; text/css css; }}{NGINX_GZIP if compress else ""}
    client_body_temp_path {work}/nginx-body;
    proxy_temp_path {work}/nginx-proxy;
    fastcgi_temp_path {work}/nginx-fcgi;
    uwsgi_temp_path {work}/nginx-uwsgi;
    scgi_temp_path {work}/nginx-scgi;
    # HTTP/2 as nginx 1.22 has it: `http2` on the listen line. Streams and
    # requests per connection high enough that it never sends GOAWAY in
    # a run (http2_max_requests is keepalive_requests since 1.19.7).
    http2_max_concurrent_streams 128;
    server {{ listen 127.0.0.1:{PORT}; root {www}; }}
    server {{ listen 127.0.0.1:{H2C_PORT} http2; root {www}; }}
    server {{
        listen 127.0.0.1:{TLS_PORT} ssl http2;
        ssl_certificate {work}/cert.pem;
        ssl_certificate_key {work}/key.pem;
        root {www};
    }}
}}
""")
        return ["nginx", "-p", work, "-c", conf]
    if name == "lighttpd":
        conf = f"{work}/lighttpd.conf"
        with open(conf, "w") as f:
            f.write(f"""
server.document-root = "{www}"
server.bind = "127.0.0.1"
server.port = {PORT}
server.errorlog = "{work}/lighttpd.err"
server.max-keep-alive-requests = 65535
server.max-keep-alive-idle = 300
server.max-fds = 19000
server.max-connections = 20000
server.network-backend = "sendfile"
mimetype.assign = (".txt" => "text/plain", ".bin" => "application/octet-stream", ".css" => "text/css")
{LIGHTTPD_DEFLATE.format(work=work) if compress else ""}
# HTTP/2 is on by default in 1.4.69 (server.h2proto), h2c by prior
# knowledge on the plain port and h2 by ALPN on the TLS one.
server.modules += ("mod_openssl")
$SERVER["socket"] == "127.0.0.1:{TLS_PORT}" {{
    ssl.engine = "enable"
    ssl.pemfile = "{work}/cert.pem"
    ssl.privkey = "{work}/key.pem"
}}
""")
        return ["lighttpd", "-D", "-f", conf]
    raise ValueError(name)


_threads = None


def has_threads():
    """Older builds (the 'before' table) have no --threads."""
    global _threads
    if _threads is None:
        out = subprocess.run([HANDOFF, "serve", "--help"], capture_output=True, text=True).stdout
        _threads = "--threads" in out
    return _threads


def wait_port(port, proc, timeout=60):
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.args}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"no server on {port}")


class Server:
    def __init__(self, name, wrapper=(), compress=False):
        self.name = name
        env = dict(os.environ, RUST_LOG="warn")
        self.proc = subprocess.Popen(list(wrapper) + config(name, compress), env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(PORT, self.proc)

    def stop(self, sig=15):
        if self.proc.poll() is None:
            # Under strace, the server is strace's child: signal it, and
            # strace writes its count when the server has exited.
            target = self.proc.pid
            if self.proc.args[0] == "strace":
                target = (children(self.proc.pid) or [target])[0]
            os.kill(target, sig)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.stop()


def wrk(url, conns, script=None, pid=None, header=None):
    """req/s, bytes/s and errors of wrk for SECONDS, and the server's CPU
    microseconds per request (`pid`'s and its children's)."""
    cmd = ["wrk", "-t1", f"-c{conns}", f"-d{SECONDS}s", url]
    if script:
        cmd[1:1] = ["-s", script]
    if header:
        cmd[1:1] = ["-H", header]
    before = cpu_seconds(pid) if pid else 0
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    cpu = cpu_seconds(pid) - before if pid else 0
    rps = float(next(l.split()[1] for l in out.splitlines() if l.startswith("Requests/sec")))
    tr = next(l.split()[1] for l in out.splitlines() if l.startswith("Transfer/sec"))
    unit = {"B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9}
    num = tr.rstrip("KMGB")
    bps = float(num) * unit[tr[len(num):]]
    errors = [l for l in out.splitlines() if "Non-2xx" in l or "Socket errors" in l]
    # wrk counts responses, pipelined ones each.
    n = int(next(l.split()[0] for l in out.splitlines() if "requests in" in l))
    return rps, bps, errors, cpu * 1e6 / max(n, 1)


def cpu_seconds(pid):
    """User and system CPU time of `pid` and its children so far."""
    ticks = 0
    for p in [pid] + children(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return ticks / os.sysconf("SC_CLK_TCK")


def h2load(url, conns, streams, pid=None):
    """req/s of h2load for SECONDS on `conns` connections with `streams`
    requests in flight on each, and the server's CPU microseconds per
    request (h2load's one thread can be what caps the req/s on a small
    machine: the CPU each request cost the server is the figure that
    compares then); failed requests are reported."""
    before = cpu_seconds(pid) if pid else 0
    out = subprocess.run(
        ["h2load", "-D", str(SECONDS), "-c", str(conns), "-m", str(streams), "-t", "1", url],
        capture_output=True, text=True, check=True).stdout
    cpu = cpu_seconds(pid) - before if pid else 0
    line = next(l for l in out.splitlines() if l.startswith("finished in"))
    rps = float(line.split(",")[1].split()[0])
    done = next(l for l in out.splitlines() if l.startswith("requests:"))
    n = int(done.split()[1])
    errors = [] if " 0 failed, 0 errored" in done else [done]
    return rps, errors, cpu * 1e6 / max(n, 1)


# name: (servers, connections, streams per connection, tls)
H2 = {
    "h2c-small-c10m10": (SERVERS[1:], 10, 10, False),
    "h2c-small-c100m1": (SERVERS[1:], 100, 1, False),
    "h2-small-c10m10": (SERVERS[1:], 10, 10, True),
    "h2-small-c100m1": (SERVERS[1:], 100, 1, True),
}


def h2_throughput(case):
    servers, conns, streams, tls = H2[case]
    got = {s: [] for s in servers}
    cpu = {s: [] for s in servers}
    for _ in range(ROUNDS):
        for s in servers:
            with Server(s) as srv:
                if tls:
                    url = f"https://127.0.0.1:{TLS_PORT}/small.txt"
                else:
                    port = H2C_PORT if s == "nginx" else PORT
                    url = f"http://127.0.0.1:{port}/small.txt"
                rps, errors, us = h2load(url, conns, streams, srv.proc.pid)
                if errors:
                    print(f"  {case} {s}: {errors}", file=sys.stderr)
                got[s].append(rps)
                cpu[s].append(us)
    median = lambda d: {s: statistics.median(v) for s, v in d.items()}
    return median(got), "req/s", median(cpu)


# name: (servers, path, connections, script, tls, figure)
THROUGHPUT = {
    "small": (SERVERS, "/small.txt", 32, None, False, "req/s"),
    "pipelined16": (SERVERS, "/small.txt", 32, f"{work}/pipeline.lua", False, "req/s"),
    "1MiB": (SERVERS[1:], "/1m.bin", 8, None, False, "GB/s"),
    "256KiB": (SERVERS[1:], "/256k.bin", 8, None, False, "GB/s"),
    "404": (SERVERS[1:], "/missing", 32, None, False, "req/s"),
    "https-small": (["nginx", "handoff"], "/small.txt", 32, None, True, "req/s"),
    "https-1MiB": (["nginx", "handoff"], "/1m.bin", 8, None, True, "GB/s"),
}


def app_config(name):
    """`name` in front of the same app (examples/app_worker.rs, one
    process, one loop), small answers on /api: nginx proxies to it on TCP
    with keep-alive upstream connections; handoff lends it each client
    connection and takes it back (`--app /api=exec:`)."""
    if name == "handoff":
        return [HANDOFF, "serve", "--listen", f"127.0.0.1:{PORT}", "--root", www,
                "--app", f"/api=exec:{APP_WORKER}", "--app-workers", "1",
                "--max-concurrent", "20000", "--threads", THREADS]
    conf = f"{work}/nginx-app.conf"
    with open(conf, "w") as f:
        f.write(f"""
daemon off;
user root;
master_process off;
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/nginx.err warn;
events {{ worker_connections 18000; }}
http {{
    access_log off;
    tcp_nodelay on;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    client_body_temp_path {work}/nginx-body;
    proxy_temp_path {work}/nginx-proxy;
    fastcgi_temp_path {work}/nginx-fcgi;
    uwsgi_temp_path {work}/nginx-uwsgi;
    scgi_temp_path {work}/nginx-scgi;
    upstream app {{ server 127.0.0.1:{APP_PORT}; keepalive 64; keepalive_requests 100000000; }}
    server {{
        listen 127.0.0.1:{PORT};
        root {www};
        location /api/ {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering on;
        }}
    }}
}}
""")
    return ["nginx", "-p", work, "-c", conf]


def app_throughput():
    """Small answers from the app through each front: req/s, and the CPU
    per request of the front and the app together."""
    got = {s: [] for s in ("nginx", "handoff")}
    cpu = {s: [] for s in ("nginx", "handoff")}
    env = dict(os.environ, RUST_LOG="warn")
    for _ in range(ROUNDS):
        for s in ("nginx", "handoff"):
            app = None
            if s == "nginx":
                app = subprocess.Popen([APP_WORKER, f"tcp:127.0.0.1:{APP_PORT}"], env=env,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                wait_port(APP_PORT, app)
            front = subprocess.Popen(app_config(s), env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
            try:
                wait_port(PORT, front)
                time.sleep(0.3)  # an exec: app says it is ready
                pids = [front.pid] + ([app.pid] if app else [])
                before = sum(cpu_seconds(p) for p in pids)
                rps, _, errors, _ = wrk(f"http://127.0.0.1:{PORT}/api/x", 32)
                used = sum(cpu_seconds(p) for p in pids) - before
                if errors:
                    print(f"  app-small {s}: {errors}", file=sys.stderr)
                got[s].append(rps)
                cpu[s].append(used * 1e6 / max(rps * SECONDS, 1))
            finally:
                for p in (front, app):
                    if p and p.poll() is None:
                        p.terminate()
                        p.wait(timeout=30)
    median = lambda d: {s: statistics.median(v) for s, v in d.items()}
    return median(got), "req/s", median(cpu)


def throughput(case):
    servers, path, conns, script, tls, figure = THROUGHPUT[case]
    got = {s: [] for s in servers}
    cpu = {s: [] for s in servers}
    for _ in range(ROUNDS):
        for s in servers:
            with Server(s) as srv:
                url = f"{'https' if tls else 'http'}://127.0.0.1:{TLS_PORT if tls else PORT}{path}"
                rps, bps, errors, us = wrk(url, conns, script, srv.proc.pid)
                if errors and case != "404":
                    print(f"  {case} {s}: {errors}", file=sys.stderr)
                got[s].append(bps / 1e9 if figure == "GB/s" else rps)
                cpu[s].append(us)
    median = lambda d: {s: statistics.median(v) for s, v in d.items()}
    return median(got), figure, median(cpu)


def compressed():
    """A 100 KiB stylesheet to clients that take brotli and gzip: req/s,
    bytes per response (head included) and the server's CPU per request."""
    servers = SERVERS[1:]
    rps, size, cpu = ({s: [] for s in servers} for _ in range(3))
    url = f"http://127.0.0.1:{PORT}/100k.css"
    header = "Accept-Encoding: br, gzip"
    for _ in range(ROUNDS):
        for s in servers:
            with Server(s, compress=True) as srv:
                # lighttpd compresses into its cache on the first request.
                subprocess.run(["curl", "-s", "-o", "/dev/null", "-H", header, url])
                r, bps, errors, us = wrk(url, 32, None, srv.proc.pid, header)
                if errors:
                    print(f"  compressed {s}: {errors}", file=sys.stderr)
                rps[s].append(r)
                size[s].append(bps / r)
                cpu[s].append(us)
    median = lambda d: {s: statistics.median(v) for s, v in d.items()}
    return median(rps), median(size), median(cpu)


def requests(n, batch=1):
    """n small keep-alive GETs on one connection, `batch` at a time."""
    s = socket.create_connection(("127.0.0.1", PORT))
    req = b"GET /small.txt HTTP/1.1\r\nHost: x\r\n\r\n" * batch
    buf, got = b"", 0
    while got < n:
        s.sendall(req)
        want = got + batch
        while got < want:
            i = buf.find(SMALL)
            if i >= 0:
                buf = buf[i + len(SMALL):]
                got += 1
                continue
            chunk = s.recv(65536)
            if not chunk:
                raise RuntimeError("closed")
            buf += chunk
    s.close()


def strace_count(name, n, batch):
    out = f"{work}/strace-{name}-{n}-{batch}"
    with Server(name, ["strace", "-f", "-c", "-o", out]) as srv:
        requests(n, batch)
        time.sleep(0.3)
        srv.stop(2)
    total = 0
    for line in open(out):
        parts = line.split()
        if len(parts) >= 5 and parts[-1] == "total":
            total = int(parts[3]) if parts[3].isdigit() else int(parts[2])
    return total


def syscalls(case_batch):
    res = {}
    for s in SERVERS:
        a = strace_count(s, 800, case_batch)
        b = strace_count(s, 2400, case_batch)
        res[s] = (b - a) / 1600
    return res


def callgrind_total(name, n):
    out = f"{work}/cg-{name}-{n}"
    with Server(name, ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]) as srv:
        requests(n)
        # Let the server see the client's close first: nginx under
        # valgrind may miss a signal that arrives while it is closing.
        time.sleep(0.5)
        srv.stop(2)
    for line in open(out):
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError(f"no total in {out}")


def instructions():
    res = {}
    for s in SERVERS:
        a = callgrind_total(s, 1000)
        b = callgrind_total(s, 3000)
        res[s] = (b - a) / 2000
    return res


def rss_kib(pid):
    total = 0
    for p in [pid] + children(pid):
        with open(f"/proc/{p}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def children(pid):
    """Every descendant of `pid`: each thread's children (a process started
    by a thread other than the main one is that thread's child)."""
    kids = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                kids += [int(x) for x in f.read().split()]
    except OSError:
        return kids
    return kids + [g for k in kids for g in children(k)]


def idle_count():
    """10,000, unless the hard fd limit is too low for it: lighttpd takes at
    most max-fds / 2 connections, and the limit here may not be raised."""
    import resource
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    want = int(os.environ.get("BENCH_IDLE_CONNS", "10000"))
    return min(want, (hard - 1000) // 2) if hard != resource.RLIM_INFINITY else want


def idle_rss(count, hello, port_of=lambda s: PORT):
    """Bytes of server RSS per idle connection: `count` connections each
    send `hello`, get one response (the small file), then sit idle."""
    res = {}
    for s in SERVERS[1:]:
        port = port_of(s)
        with Server(s) as srv:
            wait_port(port, srv.proc)
            requests(100)
            time.sleep(0.3)
            before = rss_kib(srv.proc.pid)
            sel = selectors.DefaultSelector()
            socks = []
            for _ in range(count):
                c = socket.create_connection(("127.0.0.1", port))
                c.sendall(hello)
                c.setblocking(False)
                sel.register(c, selectors.EVENT_READ)
                socks.append(c)
            pending, bufs = count, {}
            while pending:
                ready = sel.select(timeout=10)
                if not ready:
                    raise RuntimeError(f"{s}: answers stopped coming")
                for key, _ in ready:
                    data = key.fileobj.recv(65536)
                    if not data:
                        raise RuntimeError(f"{s} closed a connection meant to stay")
                    bufs[key.fd] = bufs.get(key.fd, b"") + data
                    if SMALL in bufs[key.fd]:
                        sel.unregister(key.fileobj)
                        pending -= 1
            time.sleep(0.5)
            after = rss_kib(srv.proc.pid)
            res[s] = (after - before) * 1024 / count
            for c in socks:
                c.close()
    return res


def idle_memory(count):
    """Per idle keep-alive HTTP/1.1 connection."""
    return idle_rss(count, b"GET /small.txt HTTP/1.1\r\nHost: x\r\n\r\n")


def h2_idle_memory(count):
    """Per idle HTTP/2 connection (h2c by prior knowledge)."""
    def frame(ty, flags, stream, payload):
        return len(payload).to_bytes(3, "big") + bytes([ty, flags]) + stream.to_bytes(4, "big") + payload
    block = b"\x82\x86\x04\x0a/small.txt\x01\x01x"
    hello = (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0, b"")
             + frame(4, 1, 0, b"") + frame(1, 5, 1, block))
    return idle_rss(count, hello, lambda s: H2C_PORT if s == "nginx" else PORT)


def fmt(v, figure):
    if figure == "GB/s":
        return f"{v:.2f} GB/s"
    if figure == "req/s":
        return f"{v / 1000:.1f}k"
    if figure == "B":
        return f"{v:.0f} B"
    if figure == "us":
        return f"{v:.2f} us"
    return f"{v:.2f}"


def main():
    # Started in the background by a shell without job control, this
    # process and every server it starts inherit SIGINT ignored: the floor
    # (no handler of its own) would then never end on the SIGINT that
    # stops it under callgrind, and is killed without writing its counts.
    # A handler here is reset to the default in each server it execs.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    cases = os.environ.get("BENCH_CASES")
    want = cases.split(",") if cases else list(THROUGHPUT) + ["css100k-br-gzip", "app-small"] + list(H2) + ["memory", "h2-memory", "syscalls", "instructions"]
    rows = []
    for case in want:
        t0 = time.time()
        if case in THROUGHPUT:
            res, figure, cpu = throughput(case)
            rows.append((case, res, figure))
            res, figure, case = cpu, "us", f"{case} server CPU/req"
        elif case in H2:
            res, figure, cpu = h2_throughput(case)
            rows.append((case, res, figure))
            res, figure, case = cpu, "us", f"{case} server CPU/req"
        elif case == "app-small":
            res, figure, cpu = app_throughput()
            rows.append((case, res, figure))
            res, figure, case = cpu, "us", f"{case} front+app CPU/req"
        elif case == "css100k-br-gzip":
            r, size, cpu = compressed()
            rows.append((case, r, "req/s"))
            rows.append((f"{case} bytes/response", size, "B"))
            res, figure, case = cpu, "us", f"{case} server CPU/req"
        elif case == "memory":
            n = idle_count()
            res, figure = idle_memory(n), "B"
            case = f"idle RSS per keep-alive conn ({n})"
        elif case == "h2-memory":
            n = idle_count()
            res, figure = h2_idle_memory(n), "B"
            case = f"idle RSS per HTTP/2 conn ({n})"
        elif case == "syscalls":
            rows.append(("syscalls per small request", syscalls(1), "n"))
            res, figure, case = syscalls(16), "n", "syscalls per request, pipelined x16"
        elif case == "instructions":
            res, figure, case = instructions(), "n", "instructions per request (callgrind)"
        else:
            raise SystemExit(f"unknown case {case}")
        rows.append((case, res, figure))
        print(f"  ({case}: {time.time() - t0:.0f} s)", file=sys.stderr)
    lower_is_better = ("n", "B", "us")
    print()
    print(f"{'case':<40} " + " ".join(f"{s:>12}" for s in SERVERS) + "   handoff/floor  handoff/lighttpd  handoff/nginx")
    for case, res, figure in rows:
        cells = " ".join(f"{fmt(res[s], figure) if s in res else '-':>12}" for s in SERVERS)
        ratios = []
        for peer in ("floor", "lighttpd", "nginx"):
            if peer in res and res.get(peer) and "handoff" in res:
                ratios.append(f"{res['handoff'] / res[peer]:.2f}x")
            else:
                ratios.append("-")
        print(f"{case:<40} {cells}   {ratios[0]:>13}  {ratios[1]:>16}  {ratios[2]:>13}")
    print(f"\n(ratios: handoff's figure over the peer's; for syscalls, instructions, memory and CPU lower is better)")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
