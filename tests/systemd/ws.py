#!/usr/bin/env python3
"""A WebSocket client run inside the systemd container (whose Debian root
has python3 and no WebSocket library): opens HOST:PORT/PATH, checks the
101's Sec-WebSocket-Accept, sends TEXT in one masked text frame and prints
the text of the frame that comes back, then closes.

  ws.py HOST PORT PATH TEXT
"""
import base64
import hashlib
import os
import socket
import struct
import sys

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def recv_exactly(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed after %r" % buf)
        buf += chunk
    return buf


def frame(opcode, payload):
    """A masked client frame (payloads under 126 bytes)."""
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return struct.pack("!BB", 0x80 | opcode, 0x80 | len(payload)) + mask + body


def handshake(host, port, path, timeout=5):
    """A connected socket past a checked 101 (nothing after it read)."""
    s = socket.create_connection((host, port), timeout=timeout)
    key = base64.b64encode(os.urandom(16))
    s.sendall(
        b"GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n" % (path.encode(), host.encode(), key)
    )
    # The head a byte at a time, so no frame is read with it.
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        head += recv_exactly(s, 1)
    lines = head.decode("latin-1").split("\r\n")
    if not lines[0].startswith("HTTP/1.1 101 "):
        sys.exit("answer: %r" % head)
    want = base64.b64encode(hashlib.sha1(key + GUID).digest()).decode()
    fields = {l.split(":", 1)[0].lower(): l.split(":", 1)[1].strip() for l in lines[1:] if ":" in l}
    if fields.get("sec-websocket-accept") != want:
        sys.exit("Sec-WebSocket-Accept %r, not %r" % (fields.get("sec-websocket-accept"), want))
    return s


def main():
    host, port, path, text = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    s = handshake(host, port, path)
    s.sendall(frame(0x1, text.encode()))
    b0, b1 = recv_exactly(s, 2)
    if b0 != 0x81 or b1 & 0x80 or (b1 & 0x7F) > 125:
        sys.exit("frame header %02x %02x" % (b0, b1))
    print(recv_exactly(s, b1 & 0x7F).decode())
    s.sendall(frame(0x8, struct.pack("!H", 1000)))
    b0, _ = recv_exactly(s, 2)
    if b0 & 0x0F != 0x8:
        sys.exit("no close frame back: %02x" % b0)


if __name__ == "__main__":
    main()
