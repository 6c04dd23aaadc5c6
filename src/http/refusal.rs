//! How the engine's own refusals read to the client: plain text unless
//! the handler renders it (`Handler::refusal`), so that an API keeps its
//! own error format (JSON, problem details) for the 400, 408, 413 and 431
//! it never sees, and for the 500 of a handler that failed.

use std::borrow::Cow;
use std::panic::{AssertUnwindSafe, catch_unwind};

use super::Handler;
use super::body::Body;
use super::status::{Reject, reason_phrase};

/// A request the engine answers itself: its status, and why.
#[derive(Clone, Copy, Debug)]
pub struct Refusal<'a> {
    /// The status answered (400, 408, 413, 431, 500, …).
    pub status: u16,
    /// Why, as the log line says it.
    pub reason: &'a str,
}

/// A refusal's body as the handler renders it.
#[derive(Clone, Debug)]
pub struct Rendered {
    /// Its `Content-Type`.
    pub content_type: Cow<'static, str>,
    /// The body.
    pub body: Vec<u8>,
}

impl Rendered {
    /// A body of this type.
    pub fn new(content_type: impl Into<Cow<'static, str>>, body: impl Into<Vec<u8>>) -> Rendered {
        Rendered {
            content_type: content_type.into(),
            body: body.into(),
        }
    }
}

/// The header line and body answering `rej`: the handler's rendering if
/// it gives one (a panic in it, or a type that would break the header
/// section, falls back to plain text), else `plain`.
pub(crate) fn render(
    handler: &dyn Handler,
    rej: &Reject,
    plain: impl FnOnce() -> String,
) -> (Vec<u8>, Body) {
    let refusal = Refusal {
        status: rej.status,
        reason: &rej.reason,
    };
    let rendered = catch_unwind(AssertUnwindSafe(|| handler.refusal(&refusal)))
        .ok()
        .flatten()
        .filter(|r| {
            r.content_type
                .bytes()
                .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
        });
    match rendered {
        Some(r) => (
            format!("Content-Type: {}\r\n", r.content_type).into_bytes(),
            Body::Bytes(r.body),
        ),
        None => (
            b"Content-Type: text/plain; charset=utf-8\r\n".to_vec(),
            Body::Bytes(plain().into_bytes()),
        ),
    }
}

/// The plain-text body of a refusal on HTTP/1.1.
pub(crate) fn plain_h1(rej: &Reject) -> String {
    format!(
        "{} {}: {}\n",
        rej.status,
        reason_phrase(rej.status),
        rej.reason
    )
}
