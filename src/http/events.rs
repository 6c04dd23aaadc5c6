//! The engine's one way out: what happened to a request, as typed events,
//! handed to the `Observer` of the connection that owns the engine. The
//! engine writes no log line and counts nothing itself (hyper's `proto/h1`
//! hands its results to a dispatcher the same way); the server's
//! connection turns these into the access line, the metrics and the error
//! log. Another protocol's engine (HTTP/2) gives the same events, so logs
//! and metrics need not know which one served.

use std::fmt;
use std::time::{Duration, Instant};

use crate::sys::Addr;

/// What an access line repeats of a request, borrowed from it.
#[derive(Clone, Copy)]
pub(crate) struct Seen<'a> {
    /// `METHOD TARGET HTTP/1.x`.
    pub line: &'a dyn fmt::Display,
    pub referer: Option<&'a [u8]>,
    pub agent: Option<&'a [u8]>,
}

impl<'a> Seen<'a> {
    /// What the observer wants of `req` for its events (`line`: the
    /// request line as its protocol writes it), if anything.
    #[inline]
    pub(crate) fn of(
        req: &'a crate::http::Request<'a>,
        line: &'a dyn fmt::Display,
        wants: Wants,
    ) -> Option<Seen<'a>> {
        let client = wants == Wants::LineAndClient;
        (wants != Wants::Nothing).then(|| Seen {
            line,
            referer: client.then(|| req.header_bytes("referer")).flatten(),
            agent: client.then(|| req.header_bytes("user-agent")).flatten(),
        })
    }
}

/// `Seen`, kept where the request is answered later than it was read (a
/// deferred response): made only when the observer wants it.
#[derive(Default)]
pub(crate) struct Kept {
    line: String,
    referer: Option<Box<[u8]>>,
    agent: Option<Box<[u8]>>,
    began: Option<Instant>,
}

impl Kept {
    pub(crate) fn of(seen: Seen<'_>, began: Instant) -> Kept {
        Kept {
            line: seen.line.to_string(),
            referer: seen.referer.map(Box::from),
            agent: seen.agent.map(Box::from),
            began: Some(began),
        }
    }

    /// What was kept (`None` where nothing was: no access log).
    pub(crate) fn seen(&self) -> Option<Seen<'_>> {
        self.began.map(|_| Seen {
            line: &self.line,
            referer: self.referer.as_deref(),
            agent: self.agent.as_deref(),
        })
    }

    /// From the request's first byte to `now`.
    pub(crate) fn took(&self, now: Instant) -> Option<Duration> {
        self.began.map(|b| now.saturating_duration_since(b))
    }
}

/// How much of a request the observer wants in its events: making the
/// request line and finding `Referer` costs, and with no access log
/// nothing needs them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wants {
    Nothing,
    Line,
    LineAndClient,
}

/// How bad a `Trouble` is, as a log level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Severity {
    /// The application's fault or the server's: a handler panicked.
    Error,
    Warn,
    /// The client's doing, worth a line (a body the handler refused).
    Info,
    /// The client's doing, not worth one by default (it hung up).
    Debug,
}

/// One thing that happened on a connection.
pub(crate) enum Event<'a> {
    /// A response was queued for a request (a deferred one: when it was
    /// finished). `request` is there as far as the observer wants it.
    Answered {
        peer: &'a Addr,
        request: Option<Seen<'a>>,
        status: u16,
        sent: u64,
        took: Option<Duration>,
        /// What there is to add (`deferred`, `handler panicked`).
        note: &'a str,
        /// On an HTTP/2 stream (else HTTP/1.x).
        http2: bool,
    },
    /// A handler took the connection away from HTTP; its next owner
    /// answers, and writes the request's access line, which travels with
    /// the connection (the server's `AccessLine`).
    HandedOff { peer: &'a Addr },
    /// The engine refused what the client sent, answering `status`.
    Refused {
        peer: &'a Addr,
        status: u16,
        reason: &'a str,
    },
    /// An HTTP/2 connection is ended by GOAWAY with an error `code`
    /// (RFC 9113 §7) for what the client sent: a frame of the wrong
    /// shape, or a flood (`ENHANCE_YOUR_CALM`).
    GoAway {
        peer: &'a Addr,
        code: u32,
        why: &'a str,
    },
    /// Something that is no answer but is worth saying.
    Trouble {
        peer: &'a Addr,
        severity: Severity,
        what: &'a dyn fmt::Display,
    },
}

/// Who hears a connection's events (the server's connection; a test's
/// recorder).
pub(crate) trait Observer {
    fn wants(&self) -> Wants;
    fn event(&mut self, e: Event<'_>);
}

/// Hears nothing (the fuzzer).
#[cfg(any(test, fuzzing))]
pub(crate) struct Deaf;

#[cfg(any(test, fuzzing))]
impl Observer for Deaf {
    fn wants(&self) -> Wants {
        Wants::Nothing
    }
    fn event(&mut self, _: Event<'_>) {}
}
