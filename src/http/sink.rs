//! Streamed request bodies: when a request head arrives, the handler says
//! what to do with its body (`Handler::on_head`): read it whole (the
//! default), stream it chunk by chunk to a `BodySink` (so a large upload
//! never sits in memory), or skip it and answer at once (Moonbridge's
//! `defer_reading`: the unread body is then never parsed as a request: the
//! connection closes after the answer).

use std::borrow::Cow;

use super::{Request, Response};

/// Why a sink stopped taking the body: answered with this status, and the
/// connection closes (the rest of the body is not read).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SinkError {
    /// The status answered.
    pub status: u16,
    /// Why, in the answer's body and the log.
    pub reason: Cow<'static, str>,
}

impl SinkError {
    /// Refuses the body with `status`, saying why.
    pub fn new(status: u16, reason: impl Into<Cow<'static, str>>) -> Self {
        SinkError {
            status,
            reason: reason.into(),
        }
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
}
