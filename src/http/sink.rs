//! Streamed request bodies: when a request head arrives, the handler says
//! what to do with its body (`Handler::on_head`): read it whole (the
//! default), stream it chunk by chunk to a `BodySink` (so a large upload
//! never sits in memory), skip it and answer at once (Moonbridge's
//! `defer_reading`: the unread body is then never parsed as a request: the
//! connection closes after the answer), or answer at once and throw the
//! body away as it comes, so the connection can stay open (nginx's
//! discarded body: what a handler that never wants a body should say).

use std::borrow::Cow;

use super::{Request, Response};

/// Why a sink stopped taking the body: answered with this status, and the
/// connection closes (the rest of the body is not read).
#[derive(Clone, Debug)]
pub struct SinkError {
    /// The status answered.
    pub status: u16,
    /// Why, in the answer's body and the log.
    pub reason: Cow<'static, str>,
    /// What failed on our side (a disk full, a database gone): in the log
    /// line, never in the answer.
    cause: Option<std::sync::Arc<dyn std::error::Error + Send + Sync>>,
}

impl PartialEq for SinkError {
    fn eq(&self, other: &Self) -> bool {
        (self.status, &self.reason) == (other.status, &other.reason)
    }
}

impl SinkError {
    /// Refuses the body with `status`, saying why.
    pub fn new(status: u16, reason: impl Into<Cow<'static, str>>) -> Self {
        SinkError {
            status,
            reason: reason.into(),
            cause: None,
        }
    }

    /// Keeps the error behind it (for a 5xx: the server failed), which the
    /// log line gives.
    pub fn because(mut self, cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        self.cause = Some(std::sync::Arc::from(cause.into()));
        self
    }

    /// The error behind it, if one was kept.
    pub fn cause(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        self.cause.as_deref()
    }

    /// What the log says of it: a server failure (5xx) as an error with
    /// its cause, a refusal of the client's body as information.
    pub(crate) fn logged(&self) -> (super::events::Severity, String) {
        use super::events::Severity;
        let severity = if self.status >= 500 {
            Severity::Error
        } else {
            Severity::Info
        };
        let mut what = format!(
            "body refused by the handler: {} ({})",
            self.reason, self.status
        );
        if let Some(c) = &self.cause {
            what += &format!(": {c}");
        }
        (severity, what)
    }
}

/// Takes a request body as it arrives.
pub trait BodySink {
    /// The next piece of the body (chunked framing removed), at most
    /// `Limits::max_input_chunk` bytes, never empty.
    fn data(&mut self, chunk: &[u8]) -> Result<(), SinkError>;
    /// The body has ended (`req.trailers()` holds a chunked body's
    /// trailers; `req.body()` is empty): answer the request.
    fn finish(&mut self, req: &Request<'_>, res: &mut Response<'_>);
}

/// What to do with a request's body.
pub enum BodyPlan {
    /// Read it whole (up to `Limits::max_body`), then call `handle`.
    Buffer,
    /// Stream it to this sink (up to `Limits::max_streamed_body`).
    Stream(Box<dyn BodySink>),
    /// Do not read it: call `handle` now with an empty body, and close the
    /// connection after the answer. `100 Continue` is not sent.
    Skip,
    /// Do not keep it: call `handle` now with an empty body, then read the
    /// body and throw it away, and keep the connection if it ends within
    /// `Limits::max_discarded_body` bytes and arrives without a gap longer
    /// than `Timeouts::linger` (nor in all longer than
    /// `Timeouts::body_progress`); otherwise the connection closes after
    /// the answer. A client waiting for `100 Continue` gets the answer and
    /// a close instead (it may or may not send the body then, RFC 9110
    /// §10.1.1, so nothing after it could be parsed safely). For a handler
    /// that never wants a body (a static file's 405): the client hears at
    /// once, and a body trickled in slowly holds nothing for long.
    Discard,
}
