#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpus (fuzz/seeds/<target>/): requests,
bodies, hand-off records and PROXY headers like the ones the tests use,
good and bad. The committed seeds are this script's output plus any
input a fuzzer found failing (kept as a regression)."""
import os, struct, sys

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fuzz", "seeds")

def put(target, name, data):
    d = os.path.join(root, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())

heads = {
    "get": "GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n",
    "post-length": "POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello",
    "post-chunked": "POST /a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n",
    "expect": "POST /a HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
    "absolute": "GET http://t/a?b=c HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    "asterisk": "OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n",
    "http10": "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    "upgrade": "GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    "cl-te": "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "two-cl": "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
    "folded": "GET / HTTP/1.1\r\nHost: t\r\nX-Folded: a\r\n  b\r\n\r\n",
    "space-colon": "GET / HTTP/1.1\r\nHost: t\r\nX-Space : a\r\n\r\n",
    "bare-cr": "GET / HTTP/1.1\r\nHost: t\r\nX: a\rb\r\n\r\n",
    "two-hosts": "GET / HTTP/1.1\r\nHost: t\r\nHost: u\r\n\r\n",
    "no-host": "GET / HTTP/1.1\r\n\r\n",
    "bare-lf": "GET / HTTP/1.1\nHost: t\n\n",
    "empty-lines": "\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n",
    "gzip-te": "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
    "http2": "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    "tls": "\x16\x03\x01\x00\x05hello",
    "percent": "GET /%2e%2e/%00?x=%zz HTTP/1.1\r\nHost: t\r\n\r\n",
}
for k, v in heads.items():
    put("head", k, v)

chunked = {
    "simple": "5\r\nhello\r\n0\r\n\r\n",
    "two": "5\r\nhello\r\n6;ext=\"q\"\r\n world\r\n0\r\n\r\nGET / HTTP/1.1\r\n",
    "trailers": "3\r\nabc\r\n0\r\nX-T: 1\r\nX-U: 2\r\n\r\n",
    "bad-size": "5x\r\nhello\r\n0\r\n\r\n",
    "negative": "-5\r\nhello\r\n0\r\n\r\n",
    "huge": "ffffffffffffffffff\r\n",
    "no-crlf": "3\r\nabcX0\r\n\r\n",
    "upper": "A\r\n0123456789\r\n0\r\n\r\n",
}
for k, v in chunked.items():
    put("chunked", k, b"\x04\x01\x02\x05\x3f" + v.encode())

part = lambda name, data, extra="": f"--B\r\nContent-Disposition: form-data; name=\"{name}\"{extra}\r\n\r\n{data}\r\n"
multipart = {
    "one": part("t", "v") + "--B--\r\n",
    "file": part("f", "x\r\n--Bnot\r\ny", "; filename=\"a.txt\"\r\nContent-Type: text/plain") + "--B--\r\n",
    "two": "preamble\r\n" + part("a", "1") + part("b", "") + "--B--\r\nepilogue",
    "quoted": "--B\r\nContent-Disposition: form-data; name=\"a;b\"; filename*=UTF-8''%C3%A9\r\n\r\nz\r\n--B--",
    "unterminated": part("t", "v"),
    "no-name": "--B\r\nContent-Disposition: form-data\r\n\r\nv\r\n--B--\r\n",
}
for k, v in multipart.items():
    put("multipart", k, b"\x03\x07\x01\x20" + v.encode())

for k, v in {
    "pairs": "a=1&b=%20x+y&c",
    "repeat": "a=1&a=2&&=&b=",
    "bad-escape": "a=%zz&b=%4",
    "utf8": "n=%C3%A9t%C3%A9",
    "bad-utf8": "n=%C3%28",
}.items():
    put("urlencoded", k, v)

def field(t, v):
    return struct.pack(">HI", t, len(v)) + v

def record(kind, fields):
    body = b"".join(fields)
    return b"HOFF" + bytes([1, kind, 0, 0]) + struct.pack(">I", len(body)) + body

idf = lambda i: field(1, struct.pack(">Q", i))
wire = {
    "listener": record(1, [idf(7), field(8, b"http"), field(4, struct.pack(">I", 0))]),
    "connection": record(2, [idf(1), field(2, b"192.0.2.1:5000"), field(3, b"127.0.0.1:80"),
                             field(4, struct.pack(">I", 3)), field(5, b"GET / HTTP/1.1\r\n")]),
    "refuse": record(4, [idf(9), field(7, b"full")]),
    "broadcast": record(5, [idf(0), field(8, b"/chat"), field(9, struct.pack(">Q", 42)),
                            field(5, b"hi"), field(4, struct.pack(">I", 4))]),
    "websocket": record(9, [idf(3), field(8, b"/cat"), field(12, struct.pack(">I", 1234)),
                            field(10, b"in"), field(11, b"out"), field(13, b"\x00\x00\x00\x02hi"),
                            field(4, struct.pack(">I", 8 | 16 | 32))]),
    "unknown-tag": record(3, [idf(5), field(0x77, b"skip me")]),
    "critical-tag": record(3, [idf(5), field(0x8077, b"must know")]),
    "unknown-kind": record(99, [idf(5)]),
    "short": b"HOFF\x01",
    "bad-version": b"HOFF\x09\x01\x00\x00\x00\x00\x00\x00",
    "truncated-field": record(2, [idf(1)])[:-3],
}
for k, v in wire.items():
    put("wire", k, v)

sig = b"\r\n\r\n\x00\r\nQUIT\n"
def v2(cmd, fam, addr, tlvs=b""):
    body = addr + tlvs
    return sig + bytes([0x20 | cmd, fam]) + struct.pack(">H", len(body)) + body
ip4 = bytes([192, 0, 2, 1, 127, 0, 0, 1]) + struct.pack(">HH", 5000, 80)
ip6 = bytes(15) + b"\x01" + bytes(15) + b"\x02" + struct.pack(">HH", 5000, 80)
unix = b"/run/a".ljust(108, b"\x00") + b"/run/b".ljust(108, b"\x00")
proxy = {
    "v1-tcp4": b"PROXY TCP4 192.0.2.1 127.0.0.1 5000 80\r\nGET / HTTP/1.1\r\n",
    "v1-tcp6": b"PROXY TCP6 2001:db8::1 ::1 5000 80\r\n",
    "v1-unknown": b"PROXY UNKNOWN\r\n",
    "v1-long": b"PROXY TCP4 " + b"1" * 120 + b"\r\n",
    "v1-bad": b"PROXY TCP4 999.0.0.1 127.0.0.1 5000 80\r\n",
    "v2-tcp4": v2(1, 0x11, ip4),
    "v2-tcp6": v2(1, 0x21, ip6),
    "v2-unix": v2(1, 0x31, unix),
    "v2-local": v2(0, 0x00, b""),
    "v2-tlvs": v2(1, 0x11, ip4, b"\x01\x00\x08http/1.1" + b"\x02\x00\x01t" + b"\x04\x00\x00"),
    "v2-bad-version": sig + b"\x31\x11\x00\x0c" + ip4,
    "v2-short-addr": v2(1, 0x11, ip4[:5]),
    "plain": b"GET / HTTP/1.1\r\n",
}
for k, v in proxy.items():
    put("proxy", k, v)

pipeline = (
    "GET / HTTP/1.1\r\nHost: t\r\n\r\n"
    "POST /b HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello"
    "POST /s HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX: y\r\n\r\n"
    "POST /d HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc"
    "GET /close HTTP/1.1\r\nHost: t\r\n\r\n"
)
engine = {
    "pipeline": b"\x00" + pipeline.encode(),
    "pieces": b"\x06\x00\x07\x41\x02\x83\x3f" + pipeline.encode(),
    "skip": b"\x00POST /k HTTP/1.1\r\nHost: t\r\nContent-Length: 40\r\n\r\nGET /hidden HTTP/1.1\r\nHost: t\r\n\r\n",
    "discard-chunked": b"\x02\x10\x90POST /d HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n",
    "expect": b"\x01\x20POST /b HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\nabcd",
    "sink-refuses": b"\x00POST /s HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nab!dGET / HTTP/1.1\r\nHost: t\r\n\r\n",
    "hand-off": b"\x00GET / HTTP/1.1\r\nHost: t\r\n\r\nGET /h HTTP/1.1\r\nHost: t\r\n\r\nframe",
    "smuggle": b"\x00POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n",
    "deadline": b"\x02\x03\x45GET / HTTP/1.1\r\nHo",
    "head-too-big": b"\x00GET / HTTP/1.1\r\nHost: t\r\nX: " + b"x" * 700 + b"\r\n\r\n",
    "many": b"\x00" + b"GET / HTTP/1.1\r\nHost: t\r\n\r\n" * 12,
}
for k, v in engine.items():
    put("engine", k, v)
