#!/usr/bin/env python3
"""Run inside the systemd container against a service of xinetd: opens N
connections from 127.0.0.1 to PORT and holds them, sending nothing; then
prints, a line each, "open" for a connection still open after a second
and "closed" for one closed without a word (xinetd's per_source refusal);
then asks for /hello.txt on the first and prints its status line.

  per_source.py PORT N
"""
import socket
import sys
import time


def main():
    port, n = int(sys.argv[1]), int(sys.argv[2])
    held = []
    for _ in range(n):
        held.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        # xinetd counts a connection once its server has started.
        time.sleep(0.1)
    time.sleep(1)
    for s in held:
        s.setblocking(False)
        try:
            print("closed" if s.recv(1) == b"" else "data")
        except BlockingIOError:
            print("open")
        except ConnectionResetError:
            print("closed")
    first = held[0]
    first.setblocking(True)
    first.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    answer = b""
    while True:
        chunk = first.recv(4096)
        if not chunk:
            break
        answer += chunk
    print(answer.split(b"\r\n")[0].decode())


main()
