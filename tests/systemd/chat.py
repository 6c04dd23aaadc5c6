#!/usr/bin/env python3
"""Broadcast clients run inside the systemd container (python3, no
WebSocket library): opens CLIENTS connections to HOST:PORT/PATH (through a
load balancer, so spread over instances); each sends MESSAGES numbered
texts, one every INTERVAL seconds, taking turns; every client must receive
every message once, all in one order. Prints "ok TOTAL" or exits with what
went wrong.

  chat.py HOST PORT PATH CLIENTS MESSAGES INTERVAL
"""
import struct
import sys
import threading
import time

# Beside it in the container (tests/systemd.rs puts both in /opt/pkg).
from ws import frame, handshake, recv_exactly


def read_texts(s, want, got, errors):
    try:
        while len(got) < want:
            b0, b1 = recv_exactly(s, 2)
            n = b1 & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", recv_exactly(s, 2))
            elif n == 127:
                (n,) = struct.unpack("!Q", recv_exactly(s, 8))
            payload = recv_exactly(s, n)
            if b0 & 0x0F == 0x1:
                got.append(payload.decode())
            elif b0 & 0x0F == 0x8:
                raise ConnectionError("closed by the server: %r" % payload)
    except Exception as e:  # reported by the main thread
        errors.append("%s after %d messages" % (e, len(got)))


def main():
    host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    clients, messages, interval = int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])
    socks = [handshake(host, port, path, timeout=30) for _ in range(clients)]
    total = clients * messages
    got = [[] for _ in socks]
    errors = []
    readers = [
        threading.Thread(target=read_texts, args=(s, total, g, errors), daemon=True)
        for s, g in zip(socks, got)
    ]
    for r in readers:
        r.start()
    for m in range(messages):
        for i, s in enumerate(socks):
            s.sendall(frame(0x1, b"c%d-%d" % (i, m)))
        time.sleep(interval)
    for r in readers:
        r.join(30)
    if errors:
        sys.exit("; ".join(errors))
    for i, g in enumerate(got):
        if len(g) != total or len(set(g)) != total:
            sys.exit("client %d got %d messages (%d distinct) of %d" % (i, len(g), len(set(g)), total))
        if g != got[0]:
            sys.exit("client %d saw another order than client 0" % i)
        for c in range(clients):
            mine = [x for x in g if x.startswith("c%d-" % c)]
            if mine != ["c%d-%d" % (c, k) for k in range(messages)]:
                sys.exit("client %d: client %d's messages out of order" % (i, c))
    print("ok %d" % total)


main()
