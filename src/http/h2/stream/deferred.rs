//! A response the handler deferred, on an HTTP/2 stream: jobs its `Reply`
//! sends run with the same `Writer` as on HTTP/1.1, over a `Stepwise`
//! that writes no framing; what they wrote goes as HEADERS, DATA as the
//! windows allow, and trailers.

use std::time::Instant;

use super::super::fields::{response_block, trailer_block};
use super::super::frame::INTERNAL_ERROR;
use super::super::session::Session;
use super::{Phase, Stream};
use crate::http::conn::{Ctx, run_job};
use crate::http::deferred::{Stepwise, WriteState};
use crate::http::events::{Event, Kept, Severity};
use crate::http::output::Output;
use crate::http::reply::Job;
use crate::http::status::{Reject, has_no_body};
use crate::sys::Addr;

/// A response the handler deferred (`Response::defer`), written in steps
/// by jobs its `Reply` sends: the same `Writer` as on HTTP/1.1, over a
/// `Stepwise` that writes no framing (`Stepwise::for_h2`).
pub(super) struct Deferred {
    pub(super) st: Stepwise,
    /// What the jobs wrote: body bytes only.
    pub(super) out: Output,
    /// Body bytes waiting for the windows, from `pos`.
    pub(super) queued: Vec<u8>,
    pub(super) pos: usize,
    /// What the access line repeats, kept from the request.
    pub(super) kept: Kept,
    /// The body `Writer::stream` ended the response with: sent once the
    /// bytes before it went.
    pub(super) stream: Option<Box<dyn crate::http::response::BodyStream>>,
}

impl Stream {
    /// Runs a deferred response's job (`None`: every `Reply` was dropped).
    pub(in crate::http::h2) fn deferred_job(
        &mut self,
        job: Option<Job>,
        sess: &mut Session,
        (peer, via): (&Addr, crate::http::request::Via<'_>),
        now: Instant,
        ctx: &mut Ctx<'_>,
    ) {
        let id = self.sid();
        let Phase::Deferred(d) = &mut self.phase else {
            return;
        };
        let Some(job) = job else {
            return self.abandon(sess, peer, ctx);
        };
        if !run_job(job, &mut d.st, &mut d.out, (peer, via, now), ctx) {
            return self.abandon(sess, peer, ctx);
        }
        let Ok(bytes) = d.out.take_all() else {
            return self.abandon(sess, peer, ctx);
        };
        if d.pos == d.queued.len() {
            d.queued.clear();
            d.pos = 0;
        }
        d.queued.extend_from_slice(&bytes);
        if let Some(s) = d.st.stream.take() {
            d.stream = Some(s);
        }
        if !self.answered && d.st.state != WriteState::Empty {
            let status = d.st.status_code();
            let ended = d.st.state == WriteState::Finished
                && d.queued.is_empty()
                && d.st.trailers.is_empty()
                && d.stream.is_none();
            let no_body = self.head.is_head || has_no_body(status);
            let length = if no_body { None } else { d.st.length() };
            let end = ended || (no_body && d.st.state == WriteState::Finished);
            let (date, statics, lines) = (ctx.date, ctx.static_headers, d.st.header_lines());
            let blocks = &mut *ctx.heads;
            let sent = sess.send_headers(id, end, |b| {
                response_block(b, blocks, status, date, statics, lines, length)
            });
            if !sent {
                self.phase = Phase::Done;
                return;
            }
            self.answered = true;
            if end {
                d.queued.clear();
                d.pos = 0;
                d.st.trailers.clear();
            }
        }
        if d.st.state == WriteState::Finished {
            ctx.observer.event(Event::Answered {
                peer,
                request: d.kept.seen(),
                status: d.st.status_code(),
                sent: d.st.body_sent(),
                took: d.kept.took(now),
                note: "deferred",
                http2: true,
            });
        }
        self.send_deferred(sess);
    }

    /// Every `Reply` was dropped (or a job panicked): a 500 if nothing
    /// went yet, else the stream is reset (a body cut short must not look
    /// whole).
    pub(super) fn abandon(&mut self, sess: &mut Session, peer: &Addr, ctx: &mut Ctx<'_>) {
        let Phase::Deferred(d) = &mut self.phase else {
            return;
        };
        if d.st.state == WriteState::Finished {
            return;
        }
        if self.answered {
            let what = "a deferred response was dropped half-written; stream reset";
            super::trouble(ctx, peer, Severity::Error, &what);
            sess.reset(self.sid(), INTERNAL_ERROR);
            self.phase = Phase::Done;
        } else {
            let what = "a deferred response was dropped unanswered; 500";
            super::trouble(ctx, peer, Severity::Error, &what);
            self.refuse(
                Reject::new(500, "the response was dropped"),
                sess,
                peer,
                ctx,
            );
        }
    }

    /// A deferred response not finished by `deadline`: as `abandon`, 504
    /// if nothing went yet.
    pub(in crate::http::h2) fn deferred_late(
        &mut self,
        sess: &mut Session,
        peer: &Addr,
        ctx: &mut Ctx<'_>,
    ) {
        let Phase::Deferred(_) = &self.phase else {
            return;
        };
        let what = "a deferred response was not finished in time";
        super::trouble(ctx, peer, Severity::Warn, &what);
        if self.answered {
            self.abandon(sess, peer, ctx);
        } else {
            self.refuse(
                Reject::new(504, "the response was not ready in time"),
                sess,
                peer,
                ctx,
            );
        }
    }

    /// When a deferred response must be finished by: `response` after
    /// the request began.
    pub(in crate::http::h2) fn deferred_until(
        &self,
        response: std::time::Duration,
    ) -> Option<Instant> {
        match &self.phase {
            Phase::Deferred(d) if d.st.state != WriteState::Finished => {
                Some(self.began + d.st.limit(response))
            }
            _ => None,
        }
    }

    /// Sends what a deferred response's jobs wrote, as the windows allow,
    /// and its end once the jobs finished it.
    pub(super) fn send_deferred(&mut self, sess: &mut Session) -> bool {
        let id = self.sid();
        let Phase::Deferred(d) = &mut self.phase else {
            return false;
        };
        if !self.answered {
            return false;
        }
        let finished = d.st.state == WriteState::Finished;
        let mut moved = false;
        while d.pos < d.queued.len() {
            let Some(cap) = sess.capacity(id) else {
                self.phase = Phase::Done;
                return true;
            };
            if cap == 0 {
                return moved;
            }
            let (pos, queued) = (&mut d.pos, &d.queued);
            let last_bytes = finished && d.st.trailers.is_empty() && d.stream.is_none();
            let sent = sess.send_data_with(id, cap, |out, max| {
                let n = (queued.len() - *pos).min(max);
                out.extend_from_slice(&queued[*pos..*pos + n]);
                *pos += n;
                Ok(last_bytes && *pos == queued.len())
            });
            match sent {
                Ok((_, true)) => {
                    self.phase = Phase::Done;
                    return true;
                }
                Ok(_) => moved = true,
                Err(_) => {
                    self.phase = Phase::Done;
                    return true;
                }
            }
        }
        if !finished {
            return moved;
        }
        if sess.capacity(id).is_none() {
            // Ended with the HEADERS, or gone.
            self.phase = Phase::Done;
            return true;
        }
        // What was written before a stream went: the stream follows, as
        // any streamed body does.
        if let Some(s) = d.stream.take() {
            self.phase = Phase::Sending(super::body::Source::Stream(s));
            return true;
        }
        // Everything went: the end, with the trailers if any.
        if d.st.trailers.is_empty() {
            let _ = sess.send_data_with(id, 0, |_, _| Ok(true));
        } else {
            let trailers = std::mem::take(&mut d.st.trailers);
            sess.send_headers(id, true, |b| trailer_block(b, &trailers));
        }
        self.phase = Phase::Done;
        true
    }
}
