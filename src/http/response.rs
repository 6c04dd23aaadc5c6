//! What a handler writes: a status, header fields and a body. The engine
//! owns framing (`Content-Length`, `Transfer-Encoding`, `Connection`,
//! `Date`), so a handler cannot produce a malformed or ambiguous message:
//! misuse is recorded and answered with a 500 instead.

pub use super::body::{Body, BodyStream};
use super::link::{Deferral, Link, Shared};
use super::reply::{Letter, Mailer, Reply, ReplyKey, StreamWaker};

/// What a handler tells the hand-off's receiver (`Response::hand_off_with`):
/// any type, downcast there.
pub type HandOffContext = Box<dyn std::any::Any + Send>;

/// The response a handler fills in. Status 200 and an empty body unless set.
pub struct Response<'a> {
    pub(crate) status: u16,
    pub(crate) headers: &'a mut Vec<u8>,
    pub(crate) body: Body,
    pub(crate) close: bool,
    pub(crate) misuse: Option<&'static str>,
    pub(crate) hand_off: bool,
    /// What the handler knew when it handed off (`hand_off_with`).
    pub(crate) hand_off_context: Option<HandOffContext>,
    /// Set by the engine: how to make a `Reply` for this response.
    pub(crate) reply: Option<(&'a std::sync::Arc<dyn Mailer>, ReplyKey)>,
    pub(crate) deferred: Option<Deferral>,
}

use super::token::is_token;

impl<'a> Response<'a> {
    pub(crate) fn new(headers: &'a mut Vec<u8>) -> Self {
        headers.clear();
        Response {
            status: 200,
            headers,
            body: Body::Empty,
            close: false,
            misuse: None,
            hand_off: false,
            hand_off_context: None,
            reply: None,
            deferred: None,
        }
    }

    /// Sets the status code (200 by default).
    pub fn status(&mut self, code: u16) -> &mut Self {
        if !(200..=999).contains(&code) {
            self.misuse.get_or_insert("status outside 200..=999");
        } else {
            self.status = code;
        }
        self
    }

    /// Adds a header field. Framing fields are the engine's: setting one, or
    /// a name or value that would break the message, is misuse (500).
    /// `Connection: close` is allowed and closes after this response.
    pub fn header(&mut self, name: &str, value: impl AsRef<[u8]>) -> &mut Self {
        let value = value.as_ref();
        if !is_token(name) {
            self.misuse.get_or_insert("invalid header name");
            return self;
        }
        if value.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0) {
            self.misuse.get_or_insert("CR, LF or NUL in a header value");
            return self;
        }
        let lower = |s: &str| name.eq_ignore_ascii_case(s);
        if lower("connection") {
            if value.eq_ignore_ascii_case(b"close") {
                self.close = true;
            } else {
                self.misuse.get_or_insert("Connection is set by the engine");
            }
            return self;
        }
        if lower("content-length")
            || lower("transfer-encoding")
            || lower("date")
            || lower("trailer")
        {
            self.misuse
                .get_or_insert("framing headers are set by the engine");
            return self;
        }
        self.headers.extend_from_slice(name.as_bytes());
        self.headers.extend_from_slice(b": ");
        self.headers.extend_from_slice(value);
        self.headers.extend_from_slice(b"\r\n");
        self
    }

    /// Appends header lines the crate built and checked itself (`Name:
    /// value\r\n` each, no framing field): a cached file's, once per file
    /// rather than once per request.
    pub(crate) fn checked_headers(&mut self, lines: &[u8]) -> &mut Self {
        self.headers.extend_from_slice(lines);
        self
    }

    /// Sets the body (bytes, a string, a file).
    pub fn body(&mut self, body: impl Into<Body>) -> &mut Self {
        let old = std::mem::replace(&mut self.body, body.into());
        // Usually none was set: nothing to drop, and no call to the drop
        // glue of every kind of body to find that out (14 instructions a
        // request, callgrind).
        match old {
            Body::Empty => std::mem::forget(old),
            old => drop(old),
        }
        self
    }

    /// A plain-text answer: `status`, its `Content-Type` and `body` (the
    /// server's own refusals and redirects).
    pub(crate) fn plain(&mut self, status: u16, body: impl Into<Body>) -> &mut Self {
        self.status(status)
            .header("Content-Type", "text/plain; charset=utf-8")
            .body(body)
    }

    /// Closes the connection after this response.
    pub fn close(&mut self) -> &mut Self {
        self.close = true;
        self
    }

    /// Takes the connection away from HTTP (lua-http's "an onstream handler
    /// may take ownership of the connection"): no response is written; once
    /// earlier pipelined responses are sent, the server gives the socket,
    /// this request's head and every byte read after it to its hand-off
    /// hook (`Server::on_hand_off`). Anything else set on this response is
    /// ignored.
    pub fn hand_off(&mut self) -> &mut Self {
        self.hand_off = true;
        self
    }

    /// `hand_off`, with what the handler knows for the hook to receive
    /// (`HandedOff::context`): what it matched and computed, so that the
    /// connection's next owner need not parse the request again.
    pub fn hand_off_with(&mut self, context: impl std::any::Any + Send) -> &mut Self {
        self.hand_off_context = Some(Box::new(context));
        self.hand_off()
    }

    /// Answers later, from any thread: the handler returns, the connection
    /// waits (later pipelined requests wait behind it), and the `Reply`
    /// writes the response in steps when it is ready, for example when work
    /// on a thread pool is done (see `handoff::blocking`), or a future
    /// completes it (`Reply::spawn`). It must end within
    /// `Timeouts::response` ([`Response::defer_within`] sets another limit
    /// for this one). Anything else set on this response is ignored.
    pub fn defer(&mut self) -> Reply {
        let shared = std::sync::Arc::new(Shared::default());
        self.deferred = Some(Deferral {
            link: Link(shared.clone()),
            within: None,
        });
        let (mailer, key) = self.mailer();
        Reply::new(key, mailer, shared)
    }

    /// [`Response::defer`], with `limit` for this response instead of
    /// `Timeouts::response`: a long stream (Server-Sent Events) on one
    /// route, a short deadline on the others. Past it the connection is
    /// closed (a 503 if nothing was sent yet).
    pub fn defer_within(&mut self, limit: std::time::Duration) -> Reply {
        let reply = self.defer();
        if let Some(d) = &mut self.deferred {
            d.within = Some(limit);
        }
        reply
    }

    /// Wakes this response's connection so that its streamed body
    /// (`Body::Stream`) is asked again: a stream that had nothing to give
    /// waits for this (or for the socket) instead of being polled.
    pub fn stream_waker(&self) -> StreamWaker {
        let (mailer, key) = self.mailer();
        StreamWaker::new(key, mailer)
    }

    fn mailer(&self) -> (std::sync::Arc<dyn Mailer>, ReplyKey) {
        match &self.reply {
            Some((mailer, key)) => ((*mailer).clone(), *key),
            None => (
                std::sync::Arc::new(NoMailer),
                ReplyKey {
                    token: usize::MAX,
                    generation: 0,
                    id: 0,
                },
            ),
        }
    }

    /// The status code set so far.
    pub fn status_code(&self) -> u16 {
        self.status
    }
}

/// Where replies go when the engine runs without a server (tests): nowhere.
struct NoMailer;

impl Mailer for NoMailer {
    fn send(&self, _: ReplyKey, _: Letter) {}
}
