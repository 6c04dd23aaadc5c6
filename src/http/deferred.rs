//! Responses written in steps, later than the handler call: Emilua's
//! `write_response_metadata` / `write` / `write_trailers` /
//! `write_end_of_message` and Moonbridge's `send_status` / `send_header` /
//! `finish_headers` / `send_data` / `flush` / `finish`.
//!
//! The engine still owns framing: a body of unknown length is chunked (or
//! close-delimited to HTTP/1.0), a declared length is enforced, and any
//! misuse (a header after the body began, a second status, data after the
//! end) is an error returned to the caller, never bytes on the wire.

use std::io::Write as _;

/// Emilua's `write_state` of an outgoing response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteState {
    /// Nothing sent yet.
    Empty,
    /// Status and headers sent; body, trailers or the end may follow.
    MetadataIssued,
    /// The response is complete.
    Finished,
}

/// Emilua's `read_state` of the incoming request, as a handler sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadState {
    /// The head is here; the body has not been read (`on_head`).
    MessageReady,
    /// The whole message, body and trailers, has been read.
    Finished,
}

/// What a writer was asked to do out of order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Misuse(pub &'static str);

impl std::fmt::Display for Misuse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for Misuse {}

/// The state of a response being written in steps.
pub(crate) struct Stepwise {
    pub state: WriteState,
    status: u16,
    headers: Vec<u8>,
    length: Option<u64>,
    sent: u64,
    chunked: bool,
    /// Data held back until `min_chunk` bytes gather (Moonbridge's
    /// `minimum_output_chunk_size`) or a flush.
    pending: Vec<u8>,
    pub is_head: bool,
    pub minor: u8,
    pub keep_alive: bool,
    trailers_allowed: bool,
    /// For an HTTP/2 stream: no head is written (the stream sends the
    /// status and fields as HEADERS), the body goes out as it is (DATA
    /// frames delimit it), and trailers are kept for the stream to send.
    h2: bool,
    /// HTTP/2: the trailers `end` was given.
    pub(crate) trailers: Vec<(String, Vec<u8>)>,
    /// What the `Reply` shares with us (dropped with us: the response is
    /// over), and the response's own deadline.
    deferral: Option<super::link::Deferral>,
    /// HTTP/2: the body `Writer::stream` ended the response with, for the
    /// stream to send once what was written before it went.
    pub(crate) stream: Option<Box<dyn super::body::BodyStream>>,
}

impl Stepwise {
    pub(crate) fn new(is_head: bool, minor: u8, keep_alive: bool) -> Stepwise {
        Stepwise {
            state: WriteState::Empty,
            status: 0,
            headers: Vec::new(),
            length: None,
            sent: 0,
            chunked: false,
            pending: Vec::new(),
            is_head,
            minor,
            keep_alive,
            trailers_allowed: false,
            h2: false,
            trailers: Vec::new(),
            deferral: None,
            stream: None,
        }
    }

    /// Tied to the `Reply` that writes it (`Response::defer`).
    pub(crate) fn linked(mut self, d: Option<super::link::Deferral>) -> Stepwise {
        self.deferral = d;
        self
    }

    /// How long it may take: its own limit (`Response::defer_within`), else
    /// `default` (`Timeouts::response`).
    pub(crate) fn limit(&self, default: std::time::Duration) -> std::time::Duration {
        self.deferral
            .as_ref()
            .and_then(|d| d.within)
            .unwrap_or(default)
    }

    /// The steps of a response on an HTTP/2 stream (see `http::h2`).
    /// On an HTTP/2 stream.
    pub(crate) fn is_h2(&self) -> bool {
        self.h2
    }

    pub(crate) fn for_h2(is_head: bool) -> Stepwise {
        Stepwise {
            h2: true,
            ..Stepwise::new(is_head, 1, true)
        }
    }

    /// The handler's header lines (`Name: value\r\n` each).
    pub(crate) fn header_lines(&self) -> &[u8] {
        &self.headers
    }

    /// The body's declared length, if `Content-Length` was given.
    pub(crate) fn length(&self) -> Option<u64> {
        self.length
    }

    pub(crate) fn status_code(&self) -> u16 {
        self.status
    }

    /// Body bytes sent so far.
    pub(crate) fn body_sent(&self) -> u64 {
        self.sent
    }

    pub(crate) fn status(&mut self, code: u16) -> Result<(), Misuse> {
        if self.state != WriteState::Empty {
            return Err(Misuse("the status line was already sent"));
        }
        if self.status != 0 {
            return Err(Misuse("a second status"));
        }
        if !(200..=999).contains(&code) {
            return Err(Misuse("status outside 200..=999"));
        }
        self.status = code;
        Ok(())
    }

    pub(crate) fn header(&mut self, name: &str, value: &[u8]) -> Result<(), Misuse> {
        if self.state != WriteState::Empty {
            return Err(Misuse("a header after the header section was sent"));
        }
        if self.status == 0 {
            return Err(Misuse("a header before the status"));
        }
        if !super::token::is_token(name)
            || value.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0)
        {
            return Err(Misuse("an invalid header name or value"));
        }
        let lower = name.to_ascii_lowercase();
        match lower.as_str() {
            "content-length" => {
                let n = std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.trim().parse().ok());
                self.length = Some(n.ok_or(Misuse("Content-Length is not a number"))?);
                return Ok(());
            }
            "transfer-encoding" | "connection" | "date" | "trailer" => {
                return Err(Misuse("framing headers are set by the engine"));
            }
            _ => {}
        }
        self.headers.extend_from_slice(name.as_bytes());
        self.headers.extend_from_slice(b": ");
        self.headers.extend_from_slice(value);
        self.headers.extend_from_slice(b"\r\n");
        Ok(())
    }

    /// Writes the status line and headers into `out`.
    pub(crate) fn finish_headers(
        &mut self,
        out: &mut Vec<u8>,
        date: &[u8],
        static_headers: &[u8],
    ) -> Result<(), Misuse> {
        match self.state {
            WriteState::Empty => {}
            WriteState::MetadataIssued => return Ok(()), // Moonbridge: may be called again
            WriteState::Finished => return Err(Misuse("the response is finished")),
        }
        if self.status == 0 {
            // As on `Response`: 200 unless said otherwise.
            self.status = 200;
        }
        if self.h2 {
            self.trailers_allowed = true;
            self.state = WriteState::MetadataIssued;
            return Ok(());
        }
        let f = super::encode::ResponseFraming::decide(
            self.status,
            self.length,
            self.is_head,
            self.minor,
            self.keep_alive,
        );
        self.chunked = f.chunked;
        self.keep_alive = f.keep_alive;
        self.trailers_allowed = self.chunked;
        super::encode::head(
            out,
            self.status,
            date,
            static_headers,
            &self.headers,
            self.length,
            self.minor,
            f,
        );
        self.state = WriteState::MetadataIssued;
        Ok(())
    }

    /// Queues body data; emitted into `out` once `min_chunk` bytes gather.
    pub(crate) fn data(
        &mut self,
        data: &[u8],
        out: &mut Vec<u8>,
        min_chunk: usize,
    ) -> Result<(), Misuse> {
        if self.state != WriteState::MetadataIssued {
            return Err(Misuse(if self.state == WriteState::Empty {
                "body data before the header section"
            } else {
                "body data after the end"
            }));
        }
        if super::status::has_no_body(self.status) && !data.is_empty() {
            return Err(Misuse("this status has no body"));
        }
        if let Some(n) = self.length
            && self.sent + (self.pending.len() + data.len()) as u64 > n
        {
            return Err(Misuse("more body than Content-Length said"));
        }
        self.pending.extend_from_slice(data);
        if self.pending.len() >= min_chunk.max(1) {
            self.flush(out);
        }
        Ok(())
    }

    /// Emits what is held back.
    pub(crate) fn flush(&mut self, out: &mut Vec<u8>) {
        if self.pending.is_empty() || self.state != WriteState::MetadataIssued {
            return;
        }
        let n = self.pending.len();
        self.sent += n as u64;
        if self.is_head {
            self.pending.clear();
            return;
        }
        if self.chunked {
            let _ = write!(out, "{n:x}\r\n");
        }
        out.append(&mut self.pending);
        if self.chunked {
            out.extend_from_slice(b"\r\n");
        }
    }

    /// Ends the message, with trailers if the body is chunked.
    pub(crate) fn end(
        &mut self,
        trailers: &[(&str, &[u8])],
        out: &mut Vec<u8>,
    ) -> Result<(), Misuse> {
        if self.state == WriteState::Finished {
            return Err(Misuse("the response is already finished"));
        }
        if self.state == WriteState::Empty {
            return Err(Misuse("finish before the header section"));
        }
        if !trailers.is_empty() && !self.trailers_allowed {
            return Err(Misuse(
                "trailers need a chunked body (no Content-Length, HTTP/1.1)",
            ));
        }
        for (n, v) in trailers {
            if !super::token::is_token(n) || v.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0) {
                return Err(Misuse("an invalid trailer name or value"));
            }
        }
        self.flush(out);
        if let Some(n) = self.length
            && self.sent != n
            && !self.is_head
        {
            return Err(Misuse("less body than Content-Length said"));
        }
        if self.h2 {
            self.trailers = trailers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_vec()))
                .collect();
        }
        if self.chunked && !self.is_head {
            out.extend_from_slice(b"0\r\n");
            for (n, v) in trailers {
                out.extend_from_slice(n.as_bytes());
                out.extend_from_slice(b": ");
                out.extend_from_slice(v);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"\r\n");
        }
        self.state = WriteState::Finished;
        Ok(())
    }

    /// Ends the message with a body of unknown length still to come (a
    /// `BodyStream`): what is held back is emitted, and the answer says
    /// whether the stream is sent and, on HTTP/1.1, chunked (else it is
    /// close-delimited: the framing chose to close). `None`: nothing of it
    /// is sent (a HEAD request).
    pub(crate) fn end_streamed(&mut self, out: &mut Vec<u8>) -> Result<Option<bool>, Misuse> {
        match self.state {
            WriteState::MetadataIssued => {}
            WriteState::Empty => return Err(Misuse("a stream before the header section")),
            WriteState::Finished => return Err(Misuse("the response is already finished")),
        }
        if self.length.is_some() {
            return Err(Misuse("a streamed body with a Content-Length"));
        }
        if super::status::has_no_body(self.status) {
            return Err(Misuse("this status has no body"));
        }
        self.flush(out);
        self.state = WriteState::Finished;
        Ok((!self.is_head).then_some(self.chunked))
    }
}

// ---- the writer a reply's jobs are given ----

use super::output::Output;
use super::pool::BufPool;

/// Writes a deferred response in steps (on the event loop).
pub struct Writer<'a> {
    pub(crate) st: &'a mut Stepwise,
    pub(crate) out: &'a mut Output,
    pub(crate) pool: &'a mut BufPool,
    pub(crate) date: &'a [u8],
    pub(crate) static_headers: &'a [u8],
    pub(crate) min_chunk: usize,
    /// The loop's handler and the request's connection, to answer this
    /// response as another request would be (`Writer::reprocess`).
    pub(crate) again: Option<&'a mut dyn Again>,
}

/// Answers a made-up request as the loop's handler does, into a writer
/// (`http::again::Lent`, lent for a job's run).
pub(crate) trait Again {
    fn reprocess(&mut self, head: &[u8], w: &mut Writer<'_>) -> Result<(), Misuse>;
}

impl Writer<'_> {
    /// Answers this response as the server answers the request whose head
    /// is `head` (`METHOD TARGET HTTP/1.x`, fields, the empty line): a CGI
    /// script's local redirect. An error, with nothing written: the head
    /// does not parse, a response was begun already, or the handler would
    /// answer later or hand the connection off.
    pub(crate) fn reprocess(&mut self, head: &[u8]) -> Result<(), Misuse> {
        if self.st.state != WriteState::Empty {
            return Err(Misuse("a response already begun is not answered again"));
        }
        let Some(again) = self.again.take() else {
            return Err(Misuse("no handler to answer again with"));
        };
        let r = again.reprocess(head, self);
        self.again = Some(again);
        r
    }

    /// How far the response has been written.
    pub fn write_state(&self) -> WriteState {
        self.st.state
    }

    /// The request was read whole before the handler ran.
    pub fn read_state(&self) -> ReadState {
        ReadState::Finished
    }

    /// Sets the status; only before anything was sent.
    pub fn status(&mut self, code: u16) -> Result<(), Misuse> {
        self.st.status(code)
    }

    /// A header field; `Content-Length` declares the body's length (then
    /// enforced), other framing fields are the engine's.
    pub fn header(&mut self, name: &str, value: impl AsRef<[u8]>) -> Result<(), Misuse> {
        self.st.header(name, value.as_ref())
    }

    /// Sends the status line and header section (done by the first `write`
    /// or `finish` if not called).
    pub fn finish_headers(&mut self) -> Result<(), Misuse> {
        let (st, date, sh) = (&mut *self.st, self.date, self.static_headers);
        self.out
            .with_mem(self.pool, |b| st.finish_headers(b, date, sh))
    }

    /// Body data (dropped for HEAD requests; held until the minimum output
    /// chunk size gathers or `flush`).
    pub fn write(&mut self, data: &[u8]) -> Result<(), Misuse> {
        if self.st.state == WriteState::Empty {
            self.finish_headers()?;
        }
        let (st, min) = (&mut *self.st, self.min_chunk);
        self.out.with_mem(self.pool, |b| st.data(data, b, min))
    }

    /// Sends held-back body data now.
    pub fn flush(&mut self) {
        let st = &mut *self.st;
        self.out.with_mem(self.pool, |b| st.flush(b));
    }

    /// Ends the response with a body of unknown length pulled as the peer
    /// takes it (chunked on HTTP/1.1, close-delimited to HTTP/1.0, DATA
    /// frames on HTTP/2), after what was written before: a producer on
    /// another thread feeds the stream and wakes it (`StreamWaker`), and is
    /// held back by the client's pace instead of queueing without bound.
    /// The response counts as finished when this returns; the stream's end
    /// (or its error, which cuts the connection or resets the stream)
    /// ends the body. Not with a declared `Content-Length`.
    pub fn stream(&mut self, body: Box<dyn super::body::BodyStream>) -> Result<(), Misuse> {
        if self.st.state == WriteState::Empty {
            self.finish_headers()?;
        }
        let st = &mut *self.st;
        let send = self.out.with_mem(self.pool, |b| st.end_streamed(b))?;
        match send {
            Some(_) if st.h2 => st.stream = Some(body),
            Some(chunked) => {
                self.out
                    .push_body(self.pool, super::body::Body::Stream(body), chunked)
            }
            None => {}
        }
        Ok(())
    }

    /// Ends the response.
    pub fn finish(&mut self) -> Result<(), Misuse> {
        self.finish_with_trailers(&[])
    }

    /// Ends the response with trailer fields (a chunked body only).
    pub fn finish_with_trailers(&mut self, trailers: &[(&str, &[u8])]) -> Result<(), Misuse> {
        if self.st.state == WriteState::Empty {
            self.finish_headers()?;
        }
        let st = &mut *self.st;
        self.out.with_mem(self.pool, |b| st.end(trailers, b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(
        steps: impl FnOnce(&mut Stepwise, &mut Vec<u8>) -> Result<(), Misuse>,
    ) -> (Result<(), Misuse>, String) {
        let mut s = Stepwise::new(false, 1, true);
        let mut out = Vec::new();
        let r = steps(&mut s, &mut out);
        (r, String::from_utf8_lossy(&out).into_owned())
    }

    #[test]
    fn writes_a_chunked_body_in_steps_with_trailers() {
        let (r, out) = run(|s, o| {
            s.status(200)?;
            s.header("X-A", b"1")?;
            s.finish_headers(o, b"D", b"Server: t\r\n")?;
            s.data(b"hel", o, 1)?;
            s.data(b"lo", o, 1)?;
            s.end(&[("X-Sum", b"5")], o)
        });
        r.unwrap();
        assert_eq!(
            out,
            "HTTP/1.1 200 OK\r\nDate: D\r\nServer: t\r\nX-A: 1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n2\r\nlo\r\n0\r\nX-Sum: 5\r\n\r\n"
        );
    }

    #[test]
    fn holds_small_writes_until_the_minimum_chunk_or_a_flush() {
        let (r, out) = run(|s, o| {
            s.status(200)?;
            s.finish_headers(o, b"D", b"")?;
            s.data(b"a", o, 4)?;
            s.data(b"b", o, 4)?;
            s.flush(o);
            s.data(b"cdef", o, 4)?;
            s.end(&[], o)
        });
        r.unwrap();
        assert!(out.ends_with("2\r\nab\r\n4\r\ncdef\r\n0\r\n\r\n"), "{out}");
    }

    #[test]
    fn enforces_a_declared_length() {
        let (r, _) = run(|s, o| {
            s.status(200)?;
            s.header("Content-Length", b"3")?;
            s.finish_headers(o, b"D", b"")?;
            s.data(b"abcd", o, 1)
        });
        assert_eq!(r.unwrap_err().0, "more body than Content-Length said");
        let (r, _) = run(|s, o| {
            s.status(200)?;
            s.header("Content-Length", b"3")?;
            s.finish_headers(o, b"D", b"")?;
            s.data(b"ab", o, 1)?;
            s.end(&[], o)
        });
        assert_eq!(r.unwrap_err().0, "less body than Content-Length said");
    }

    #[test]
    fn reports_misuse_instead_of_writing_it() {
        type Steps<'a> = &'a dyn Fn(&mut Stepwise, &mut Vec<u8>) -> Result<(), Misuse>;
        let misuse = |f: Steps<'_>| {
            let mut s = Stepwise::new(false, 1, true);
            let mut out = Vec::new();
            let e = f(&mut s, &mut out).unwrap_err();
            (e.0, out.len())
        };
        assert_eq!(
            misuse(&|s, _| s.header("X", b"1")).0,
            "a header before the status"
        );
        assert_eq!(
            misuse(&|s, _| {
                s.status(200)?;
                s.status(404)
            })
            .0,
            "a second status"
        );
        let (e, _) = misuse(&|s, o| {
            s.status(200)?;
            s.finish_headers(o, b"D", b"")?;
            s.header("X", b"1")
        });
        assert_eq!(e, "a header after the header section was sent");
        assert_eq!(
            misuse(&|s, o| s.data(b"x", o, 1)).0,
            "body data before the header section"
        );
        assert_eq!(
            misuse(&|s, _| {
                s.status(200)?;
                s.header("X", b"a\r\nInjected: 1")
            })
            .0,
            "an invalid header name or value"
        );
        let (e, _) = misuse(&|s, o| {
            s.status(200)?;
            s.finish_headers(o, b"D", b"")?;
            s.end(&[], o)?;
            s.data(b"x", o, 1)
        });
        assert_eq!(e, "body data after the end");
        let (e, _) = misuse(&|s, o| {
            s.status(200)?;
            s.header("Content-Length", b"0")?;
            s.finish_headers(o, b"D", b"")?;
            s.end(&[("T", b"1")], o)
        });
        assert!(e.contains("trailers need a chunked body"));
    }

    #[test]
    fn drops_the_body_of_a_head_request_but_keeps_its_framing() {
        let mut s = Stepwise::new(true, 1, true);
        let mut out = Vec::new();
        s.status(200).unwrap();
        s.header("Content-Length", b"5").unwrap();
        s.finish_headers(&mut out, b"D", b"").unwrap();
        s.data(b"hello", &mut out, 1).unwrap();
        s.end(&[], &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with("Content-Length: 5\r\n\r\n"), "{text}");
    }

    #[test]
    fn a_stream_ends_the_message_but_not_with_a_content_length_or_on_a_head_request() {
        let (r, out) = run(|s, o| {
            s.status(200)?;
            s.finish_headers(o, b"d", b"")?;
            s.data(b"early", o, 1 << 20)?;
            assert_eq!(s.end_streamed(o)?, Some(true));
            s.end(&[], o)
        });
        assert_eq!(r.unwrap_err().0, "the response is already finished");
        assert!(out.ends_with("5\r\nearly\r\n"), "{out}");
        let (r, _) = run(|s, o| {
            s.status(200)?;
            s.header("Content-Length", b"5")?;
            s.finish_headers(o, b"d", b"")?;
            s.end_streamed(o).map(|_| ())
        });
        assert_eq!(r.unwrap_err().0, "a streamed body with a Content-Length");
        let mut head = Stepwise::new(true, 1, true);
        let mut o = Vec::new();
        head.status(200).unwrap();
        head.finish_headers(&mut o, b"d", b"").unwrap();
        assert_eq!(head.end_streamed(&mut o).unwrap(), None, "HEAD: no body");
    }
}
