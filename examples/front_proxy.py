#!/usr/bin/env python3
"""A front proxy in Python, with nothing but the standard library: it accepts
TCP connections, reads the first bytes the client sends, and passes each
connection with those bytes to a handoff control socket in the protocol of
docs/handoff-protocol.md (SOCK_SEQPACKET, SCM_RIGHTS via socket.send_fds).

    python3 examples/front_proxy.py --listen 127.0.0.1:0 --to /run/handoff/control.sock

It prints "listening on http://HOST:PORT" once it is ready.
"""
import argparse
import socket
import struct
import sys

MAGIC, VERSION = b"HOFF", 1
PASS_LISTENER, PASS_CONNECTION, ACK, REFUSE = 1, 2, 3, 4
T_ID, T_PEER, T_LOCAL, T_FLAGS, T_DATA, T_HEAD, T_REASON, T_NAME = range(1, 9)


def field(tag, value):
    return struct.pack(">HI", tag, len(value)) + value


def encode(kind, fields):
    body = b"".join(field(t, v) for t, v in fields)
    return MAGIC + struct.pack(">BBHI", VERSION, kind, 0, len(body)) + body


def decode(rec):
    if len(rec) < 12 or rec[:4] != MAGIC:
        raise ValueError("bad answer")
    version, kind, _, length = struct.unpack(">BBHI", rec[4:12])
    fields, body = {}, rec[12:12 + length]
    while body:
        tag, n = struct.unpack(">HI", body[:6])
        fields[tag] = body[6:6 + n]
        body = body[6 + n:]
    return kind, fields


def pass_connection(control, conn, msg_id, pre_read):
    peer = "%s:%d" % conn.getpeername()[:2]
    msg = encode(PASS_CONNECTION, [
        (T_ID, struct.pack(">Q", msg_id)),
        (T_PEER, peer.encode()),
        (T_DATA, pre_read),
    ])
    socket.send_fds(control, [msg], [conn.fileno()])
    kind, fields = decode(control.recv(65536))
    if kind == ACK and struct.unpack(">Q", fields[T_ID])[0] == msg_id:
        return None
    return fields.get(T_REASON, b"?").decode()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", required=True)
    ap.add_argument("--to", required=True)
    ap.add_argument("--count", type=int, default=0, help="exit after this many connections")
    args = ap.parse_args()
    host, port = args.listen.rsplit(":", 1)
    lsock = socket.create_server((host, int(port)))
    print("listening on http://%s:%d" % lsock.getsockname()[:2], flush=True)
    control = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    control.connect(args.to)
    n = 0
    while args.count == 0 or n < args.count:
        conn, _ = lsock.accept()
        n += 1
        # Read what the client sent first, as a proxy routing on the request
        # line would; handoff serves these bytes before reading the socket.
        conn.settimeout(5)
        try:
            pre_read = conn.recv(65536)
        except OSError:
            conn.close()
            continue
        why = pass_connection(control, conn, n, pre_read)
        if why is not None:
            print("refused: " + why, file=sys.stderr, flush=True)
            conn.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        conn.close()  # after an ACK the server owns its own copy


if __name__ == "__main__":
    main()
