//! An HTTP/2 client by hand, frame by frame, for the tests that hold the
//! server to RFC 9113's MUSTs: each sends what a broken or hostile peer
//! would, and reads the frames that come back (a GOAWAY's or RST_STREAM's
//! error code). Header blocks are HPACK literals without Huffman coding,
//! which every decoder must take (RFC 7541 §6.2.2).

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

pub const DATA: u8 = 0;
pub const HEADERS: u8 = 1;
pub const PRIORITY: u8 = 2;
pub const RST_STREAM: u8 = 3;
pub const SETTINGS: u8 = 4;
pub const PUSH_PROMISE: u8 = 5;
pub const PING: u8 = 6;
pub const GOAWAY: u8 = 7;
pub const WINDOW_UPDATE: u8 = 8;
pub const CONTINUATION: u8 = 9;

pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;

/// Error codes (RFC 9113 §7).
pub const NO_ERROR: u32 = 0;
pub const PROTOCOL_ERROR: u32 = 1;
pub const FLOW_CONTROL_ERROR: u32 = 3;
pub const STREAM_CLOSED: u32 = 5;
pub const FRAME_SIZE_ERROR: u32 = 6;
pub const REFUSED_STREAM: u32 = 7;
pub const COMPRESSION_ERROR: u32 = 9;
pub const ENHANCE_YOUR_CALM: u32 = 11;

pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

#[derive(Debug, Clone)]
pub struct Frame {
    pub ty: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

impl Frame {
    /// A GOAWAY's or RST_STREAM's error code.
    pub fn error_code(&self) -> u32 {
        let p = match self.ty {
            GOAWAY => &self.payload[4..8],
            _ => &self.payload[0..4],
        };
        u32::from_be_bytes([p[0], p[1], p[2], p[3]])
    }
}

pub struct H2 {
    pub s: TcpStream,
}

/// An HPACK string literal, not Huffman-coded (lengths under 127).
fn string(out: &mut Vec<u8>, s: &[u8]) {
    assert!(s.len() < 127);
    out.push(s.len() as u8);
    out.extend_from_slice(s);
}

/// A header block: each field a literal without indexing with a literal
/// name (`0x00`), so the encoding is exactly what the test says.
pub fn block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut b = Vec::new();
    for (n, v) in fields {
        b.push(0x00);
        string(&mut b, n.as_bytes());
        string(&mut b, v.as_bytes());
    }
    b
}

/// A GET's fields for `path`.
pub fn get_fields(path: &str) -> Vec<(&'static str, String)> {
    vec![
        (":method", "GET".into()),
        (":scheme", "http".into()),
        (":authority", "t".into()),
        (":path", path.into()),
    ]
}

impl H2 {
    /// Connects, sends the preface and an empty SETTINGS, and acknowledges
    /// the server's SETTINGS.
    pub fn connect(addr: SocketAddr) -> H2 {
        let mut h = H2::open(addr);
        h.s.write_all(PREFACE).unwrap();
        h.send(SETTINGS, 0, 0, &[]);
        let f = h.next().expect("the server's SETTINGS");
        assert_eq!((f.ty, f.flags), (SETTINGS, 0), "{f:?}");
        h.send(SETTINGS, ACK, 0, &[]);
        h
    }

    /// A TCP connection and nothing sent.
    pub fn open(addr: SocketAddr) -> H2 {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        H2 { s }
    }

    pub fn send(&mut self, ty: u8, flags: u8, stream: u32, payload: &[u8]) {
        let mut f = Vec::with_capacity(9 + payload.len());
        f.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
        f.push(ty);
        f.push(flags);
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        // The server may have closed already: what it sent is still read.
        let _ = self.s.write_all(&f);
    }

    /// HEADERS with END_HEADERS (and END_STREAM when `end`).
    pub fn headers(&mut self, stream: u32, fields: &[(&str, &str)], end: bool) {
        let flags = END_HEADERS | if end { END_STREAM } else { 0 };
        self.send(HEADERS, flags, stream, &block(fields));
    }

    /// A GET for `path` on `stream`.
    pub fn get(&mut self, stream: u32, path: &str) {
        self.get_with(stream, path, &[], true);
    }

    /// A GET for `path` with `extra` fields after the usual ones; `end`:
    /// END_STREAM on its HEADERS.
    pub fn get_with(&mut self, stream: u32, path: &str, extra: &[(&str, &str)], end: bool) {
        let f = get_fields(path);
        let mut f: Vec<(&str, &str)> = f.iter().map(|(n, v)| (*n, v.as_str())).collect();
        f.extend_from_slice(extra);
        self.headers(stream, &f, end);
    }

    /// Fills `buf`; `None` at the end of the connection.
    fn read_or_end(&mut self, buf: &mut [u8]) -> Option<()> {
        match self.s.read_exact(buf) {
            Ok(()) => Some(()),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset
                ) =>
            {
                None
            }
            Err(e) => panic!("reading a frame: {e}"),
        }
    }

    /// The next frame; `None` at the end of the connection.
    pub fn next(&mut self) -> Option<Frame> {
        let mut h = [0u8; 9];
        self.read_or_end(&mut h)?;
        let len = u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize;
        let mut payload = vec![0u8; len];
        self.read_or_end(&mut payload)?;
        Some(Frame {
            ty: h[3],
            flags: h[4],
            stream: u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff,
            payload,
        })
    }

    /// Reads until a frame of type `ty` (on `stream`, if given) comes.
    pub fn until(&mut self, ty: u8, stream: Option<u32>) -> Option<Frame> {
        while let Some(f) = self.next() {
            if f.ty == ty && stream.is_none_or(|s| s == f.stream) {
                return Some(f);
            }
        }
        None
    }

    /// The GOAWAY's error code; panics without one.
    pub fn goaway(&mut self) -> u32 {
        let f = self
            .until(GOAWAY, None)
            .expect("a GOAWAY before the connection ended");
        eprintln!("GOAWAY {:?}", String::from_utf8_lossy(&f.payload[8..]));
        f.error_code()
    }

    /// The error code of the RST_STREAM on `stream`, or of a GOAWAY if the
    /// server ended the connection instead (then `Err`).
    pub fn reset(&mut self, stream: u32) -> Result<u32, u32> {
        while let Some(f) = self.next() {
            match f.ty {
                RST_STREAM if f.stream == stream => return Ok(f.error_code()),
                GOAWAY => return Err(f.error_code()),
                _ => {}
            }
        }
        panic!("the connection ended without RST_STREAM or GOAWAY")
    }

    /// The response on `stream`: the first byte of its header block (an
    /// indexed `:status` from the static table: 0x88 is 200, 0x8d 404)
    /// and its body.
    pub fn response(&mut self, stream: u32) -> (u8, Vec<u8>) {
        let h = self
            .until(HEADERS, Some(stream))
            .expect("HEADERS for the stream");
        let mut body = Vec::new();
        if h.flags & END_STREAM == 0 {
            while let Some(f) = self.next() {
                if f.ty == DATA && f.stream == stream {
                    body.extend_from_slice(&f.payload);
                    if f.flags & END_STREAM != 0 {
                        break;
                    }
                }
            }
        }
        (h.payload[0], body)
    }
}
