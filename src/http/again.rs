//! A deferred response answered as the server would answer another
//! request: a CGI script's local redirect (RFC 3875 §6.2.2: "the server
//! MUST generate the response that it would have produced in response to
//! a request containing the URL"). The request is made up (its head as
//! text, parsed as any other), given to the loop's own handler with the
//! client's connection, from within a job of the response's `Reply`, and
//! what the handler answers is written to the waiting response through
//! its `Writer` (`Writer::reprocess`), on either engine. An answer that
//! would itself come later or from elsewhere (another deferral, a
//! hand-off) is not followed.

use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::Instant;

use super::body::{Body, BodyStream};
use super::deferred::{Again, Misuse, ReadState, Writer};
use super::head::{self, Head};
use super::limits::Limits;
use super::request::{Request, Via};
use super::response::Response;
use crate::sys::Addr;

/// What answering again needs of the loop, lent for a job's run: the
/// handler (as a function: this room does not name the engine's types)
/// and the request's connection.
pub(crate) struct Lent<'a> {
    pub handle: &'a dyn Fn(&Request<'_>, &mut Response<'_>),
    pub peer: &'a Addr,
    pub via: Via<'a>,
    pub now: Instant,
    pub limits: &'a Limits,
    pub scratch: &'a mut Vec<u8>,
}

/// A file body up to this size is read and sent with its length; a larger
/// one is streamed (the writer takes no declared length with a stream).
const READ_WHOLE: u64 = 256 * 1024;

impl Again for Lent<'_> {
    fn reprocess(&mut self, head: &[u8], w: &mut Writer<'_>) -> Result<(), Misuse> {
        let mut parsed = Head::default();
        let mut scanned = 0;
        if !matches!(
            head::parse(head, &mut scanned, self.limits, &mut parsed),
            Ok(true)
        ) {
            return Err(Misuse("the request to answer again does not parse"));
        }
        let req = Request::new(
            head,
            &parsed,
            &[],
            &[],
            (self.peer, self.via),
            ReadState::Finished,
            w.st.is_h2(),
            self.now,
        );
        let mut res = Response::new(self.scratch);
        (self.handle)(&req, &mut res);
        if res.hand_off || res.deferred.is_some() || res.misuse.is_some() {
            return Err(Misuse("that path is answered later or elsewhere"));
        }
        let status = res.status;
        let body = std::mem::replace(&mut res.body, Body::Empty);
        let fields = std::mem::take(res.headers);
        drop(res);
        w.status(status)?;
        for line in fields.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                continue;
            };
            let name = std::str::from_utf8(&line[..colon]).unwrap_or_default();
            // Framing is the writer's: the length is declared below.
            if !matches!(
                name.to_ascii_lowercase().as_str(),
                "content-length" | "transfer-encoding" | "connection" | "date" | "trailer"
            ) {
                w.header(name, line[colon + 1..].trim_ascii())?;
            }
        }
        if super::status::has_no_body(status) {
            return w.finish();
        }
        send(w, body)
    }
}

/// Sends `body` and ends the response.
fn send(w: &mut Writer<'_>, body: Body) -> Result<(), Misuse> {
    let head_only = w.st.is_head;
    if let Some(n) = body.len()
        && (n <= READ_WHOLE || head_only)
    {
        w.header("Content-Length", n.to_string())?;
    }
    match body {
        _ if head_only => {}
        Body::Empty => {}
        Body::Bytes(b) => w.write(&b)?,
        Body::Static(b) => w.write(b)?,
        Body::Shared { bytes, start, len } => w.write(&bytes[start..start + len])?,
        Body::File { file, offset, len } if len <= READ_WHOLE => {
            let mut b = vec![0; len as usize];
            if file.read_exact_at(&mut b, offset).is_err() {
                return Err(Misuse("the file could not be read"));
            }
            w.write(&b)?;
        }
        Body::File { file, offset, len } => {
            return w.stream(Box::new(FileStream {
                file,
                at: offset,
                left: len,
            }));
        }
        Body::Stream(s) => return w.stream(s),
    }
    w.finish()
}

/// A large file's part, read as the client takes it.
struct FileStream {
    file: Arc<std::fs::File>,
    at: u64,
    left: u64,
}

impl BodyStream for FileStream {
    fn read_into(&mut self, buf: &mut Vec<u8>, max: usize) -> std::io::Result<bool> {
        let n = (max as u64).min(self.left) as usize;
        let from = buf.len();
        buf.resize(from + n, 0);
        let got = self.file.read_at(&mut buf[from..], self.at)?;
        buf.truncate(from + got);
        if got == 0 && n > 0 {
            // Shorter than it was: a truncated body, never one that looks whole.
            return Err(std::io::Error::other("the file shrank while it was sent"));
        }
        self.at += got as u64;
        self.left -= got as u64;
        Ok(self.left > 0)
    }
}
