//! Response bodies: bytes, a file range for `sendfile`, or a stream pulled
//! as the socket takes it. Apart from `response.rs` so that the output
//! queue, which sends them, depends on bodies and not on responses.

use std::fs::File;
use std::io;
use std::sync::Arc;

/// A response body.
pub enum Body {
    /// No body.
    Empty,
    /// Bytes owned by the response.
    Bytes(Vec<u8>),
    /// Bytes that live for the whole program.
    Static(&'static [u8]),
    /// Part of bytes shared with other responses (a cached small file).
    Shared {
        /// All of the bytes.
        bytes: Arc<[u8]>,
        /// Where the part sent begins.
        start: usize,
        /// How many bytes are sent.
        len: usize,
    },
    /// `len` bytes of `file` from `offset`, sent with `sendfile(2)`. The
    /// file may be shared (a cached fd): `sendfile` is given the offset and
    /// never moves the file's position.
    File {
        /// The open file.
        file: Arc<File>,
        /// Where the part sent begins.
        offset: u64,
        /// How many bytes are sent.
        len: u64,
    },
    /// A body of unknown length, pulled as the socket can take it, sent
    /// chunked (or close-delimited to an HTTP/1.0 client).
    Stream(Box<dyn BodyStream>),
}

impl Body {
    /// The length when it is known before sending.
    pub fn len(&self) -> Option<u64> {
        match self {
            Body::Empty => Some(0),
            Body::Bytes(b) => Some(b.len() as u64),
            Body::Static(b) => Some(b.len() as u64),
            Body::Shared { len, .. } => Some(*len as u64),
            Body::File { len, .. } => Some(*len),
            Body::Stream(_) => None,
        }
    }

    /// True when no body byte would be sent.
    pub fn is_empty(&self) -> bool {
        self.len() == Some(0)
    }
}

impl From<Vec<u8>> for Body {
    fn from(v: Vec<u8>) -> Self {
        Body::Bytes(v)
    }
}
impl From<String> for Body {
    fn from(v: String) -> Self {
        Body::Bytes(v.into_bytes())
    }
}
impl From<&'static str> for Body {
    fn from(v: &'static str) -> Self {
        Body::Static(v.as_bytes())
    }
}
impl From<&'static [u8]> for Body {
    fn from(v: &'static [u8]) -> Self {
        Body::Static(v)
    }
}

/// A streamed body. It runs on the event loop, so it must not block: it is
/// called when the socket has room, and gives what it has.
pub trait BodyStream {
    /// Appends at most `max` bytes to `buf`. Returns `Ok(false)` when the
    /// body has ended (it may append on that call too). An error aborts the
    /// connection, so the client sees a truncated body, never a short one
    /// that looks whole.
    fn read_into(&mut self, buf: &mut Vec<u8>, max: usize) -> io::Result<bool>;
}
