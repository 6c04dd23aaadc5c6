//! Where a response body comes from on HTTP/2: bytes, a file read a
//! window's worth at a time (no `sendfile` under framing), or a stream.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::Bytes;

use super::STEP;
use crate::http::response::{Body, BodyStream};

/// Where the response body comes from.
pub(super) enum Source {
    Mem(Bytes),
    File {
        file: Arc<File>,
        offset: u64,
        left: u64,
    },
    Stream(Box<dyn BodyStream>),
}

impl Source {
    pub(super) fn of(body: Body) -> Source {
        match body {
            Body::Empty => Source::Mem(Bytes::new()),
            Body::Bytes(v) => Source::Mem(Bytes::from(v)),
            Body::Static(s) => Source::Mem(Bytes::from_static(s)),
            Body::Shared { bytes, start, len } => {
                Source::Mem(Bytes::copy_from_slice(&bytes[start..start + len]))
            }
            Body::File { file, offset, len } => Source::File {
                file,
                offset,
                left: len,
            },
            Body::Stream(s) => Source::Stream(s),
        }
    }

    /// How much it would send now, at most.
    pub(super) fn wants(&self) -> usize {
        match self {
            Source::Mem(b) => b.len().min(STEP),
            Source::File { left, .. } => (*left).min(STEP as u64) as usize,
            Source::Stream(_) => STEP,
        }
    }

    /// Up to `max` bytes, and whether they are the last.
    pub(super) fn take(&mut self, max: usize) -> std::io::Result<(Bytes, bool)> {
        match self {
            Source::Mem(b) => {
                let n = b.len().min(max);
                let chunk = b.split_to(n);
                Ok((chunk, b.is_empty()))
            }
            Source::File { file, offset, left } => {
                // No sendfile under framing: a window's worth is read.
                let n = (*left).min(max as u64) as usize;
                let mut v = vec![0u8; n];
                file.read_exact_at(&mut v, *offset)?;
                *offset += n as u64;
                *left -= n as u64;
                Ok((Bytes::from(v), *left == 0))
            }
            Source::Stream(s) => {
                let mut v = Vec::new();
                let more = s.read_into(&mut v, max)?;
                Ok((Bytes::from(v), !more))
            }
        }
    }
}
