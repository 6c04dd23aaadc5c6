//! Where a response body comes from on HTTP/2: bytes, a file read a
//! frame's worth at a time straight into the frame (no `sendfile` under
//! framing), or a stream.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use crate::http::response::{Body, BodyStream};

/// Where the response body comes from.
pub(super) enum Source {
    /// An in-memory body (`Bytes`, `Static` or `Shared`), sent from `pos`.
    Mem {
        body: Body,
        pos: usize,
    },
    File {
        file: Arc<File>,
        offset: u64,
        left: u64,
    },
    Stream(Box<dyn BodyStream>),
}

/// The bytes of an in-memory body.
fn bytes(body: &Body) -> &[u8] {
    match body {
        Body::Bytes(v) => v,
        Body::Static(s) => s,
        Body::Shared { bytes, start, len } => &bytes[*start..*start + *len],
        Body::Empty | Body::File { .. } | Body::Stream(_) => &[],
    }
}

impl Source {
    pub(super) fn of(body: Body) -> Source {
        match body {
            Body::File { file, offset, len } => Source::File {
                file,
                offset,
                left: len,
            },
            Body::Stream(s) => Source::Stream(s),
            body => Source::Mem { body, pos: 0 },
        }
    }

    /// Appends up to `max` bytes to `out` (a DATA frame being written);
    /// `Ok(true)` when they are the last.
    pub(super) fn fill(&mut self, out: &mut Vec<u8>, max: usize) -> io::Result<bool> {
        match self {
            Source::Mem { body, pos } => {
                let b = bytes(body);
                let n = (b.len() - *pos).min(max);
                out.extend_from_slice(&b[*pos..*pos + n]);
                *pos += n;
                Ok(*pos == b.len())
            }
            Source::File { file, offset, left } => {
                let n = (*left).min(max as u64) as usize;
                let start = out.len();
                out.resize(start + n, 0);
                if let Err(e) = file.read_exact_at(&mut out[start..], *offset) {
                    out.truncate(start);
                    return Err(e);
                }
                *offset += n as u64;
                *left -= n as u64;
                Ok(*left == 0)
            }
            Source::Stream(s) => {
                let start = out.len();
                let more = s.read_into(out, max)?;
                if out.len() - start > max {
                    out.truncate(start);
                    return Err(io::Error::other(
                        "a BodyStream gave more than it was asked for",
                    ));
                }
                Ok(!more)
            }
        }
    }
}
