#!/usr/bin/env python3
"""Clients run inside the systemd container while a unit restarts or
reloads; prints one JSON line with what they saw.

  clients.py new PORT SECONDS        a new connection per request
  clients.py keepalive PORT SECONDS N  N connections, each reused
"""
import json
import socket
import sys
import threading
import time

REQUEST = b"GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n"
CLOSE = b"GET /a.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"


def read_answer(s, buf):
    """One whole answer (its body is the 6 bytes of a.txt)."""
    while b"\r\n\r\nalpha\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            raise ConnectionError("closed after %r" % buf[:80])
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\nalpha\n")
    if not head.startswith(b"HTTP/1.1 200 "):
        raise ConnectionError("answer %r" % head[:80])
    return rest


def new_connections(port, seconds):
    out = {"ok": 0, "refused": 0, "failed": 0, "errors": []}
    end = time.time() + seconds
    while time.time() < end:
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
        except ConnectionRefusedError:
            out["refused"] += 1
            continue
        try:
            s.sendall(CLOSE)
            read_answer(s, b"")
            out["ok"] += 1
        except Exception as e:  # noqa: BLE001 - every failure is counted
            out["failed"] += 1
            out["errors"].append(str(e))
        finally:
            s.close()
        time.sleep(0.005)
    return out


def keep_alive(port, seconds, n):
    results = []

    def one():
        r = {"ok": 0, "failed": 0, "error": None}
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        r["port_before"] = s.getsockname()[1]
        end = time.time() + seconds
        buf = b""
        try:
            while time.time() < end:
                s.sendall(REQUEST)
                buf = read_answer(s, buf)
                r["ok"] += 1
                time.sleep(0.01)
        except Exception as e:  # noqa: BLE001
            r["failed"] += 1
            r["error"] = str(e)
        r["port_after"] = s.getsockname()[1]
        s.close()
        results.append(r)

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"connections": results}


if __name__ == "__main__":
    mode, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    if mode == "new":
        print(json.dumps(new_connections(port, seconds)))
    else:
        print(json.dumps(keep_alive(port, seconds, int(sys.argv[4]))))
