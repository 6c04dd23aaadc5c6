#!/usr/bin/env python3
"""How long a server keeps a connection open after a client that sent its
request and then shut down its sending side (nc -N, health checkers).

    python3 scripts/half-close.py PORT
"""
import socket
import sys
import time

port = int(sys.argv[1])
for path in ["/", "/no-such-file", "/index.html"]:
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    s.shutdown(socket.SHUT_WR)
    t = time.monotonic()
    data = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        data += d
    status = data.split(b"\r\n")[0].decode()
    print(f"{path}: {status}, closed {1000 * (time.monotonic() - t):.1f} ms after the half-close")
