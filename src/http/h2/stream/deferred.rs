//! A response the handler deferred, on an HTTP/2 stream: jobs its `Reply`
//! sends run with the same `Writer` as on HTTP/1.1, over a `Stepwise`
//! that writes no framing; what they wrote goes as HEADERS, DATA as the
//! windows allow, and trailers.

use std::task::Context;
use std::time::Instant;

use bytes::Bytes;
use h2::SendStream;

use super::{Phase, STEP, Stream, window};
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
    /// Once the status and fields went as HEADERS.
    pub(super) send: Option<SendStream<Bytes>>,
    /// Body bytes waiting for the windows.
    pub(super) queued: std::collections::VecDeque<Bytes>,
    /// What the access line repeats, kept from the request.
    pub(super) kept: Kept,
}

impl Stream {
    /// Runs a deferred response's job (`None`: every `Reply` was dropped).
    pub(in crate::http::h2) fn deferred_job(
        &mut self,
        job: Option<Job>,
        peer: &Addr,
        now: Instant,
        ctx: &mut Ctx<'_>,
    ) {
        let Phase::Deferred(d) = &mut self.phase else {
            return;
        };
        let Some(job) = job else {
            return self.abandon(peer, ctx);
        };
        if !run_job(job, &mut d.st, &mut d.out, peer, ctx) {
            return self.abandon(peer, ctx);
        }
        let Ok(bytes) = d.out.take_all() else {
            return self.abandon(peer, ctx);
        };
        if !bytes.is_empty() {
            d.queued.push_back(Bytes::from(bytes));
        }
        if d.send.is_none() && d.st.state != WriteState::Empty {
            let status = d.st.status_code();
            let ended = d.st.state == WriteState::Finished
                && d.queued.is_empty()
                && d.st.trailers.is_empty();
            let no_body = self.head.is_head || has_no_body(status);
            let length = if no_body { None } else { d.st.length() };
            let Some(respond) = self.respond.as_mut() else {
                self.phase = Phase::Done;
                return;
            };
            let Some(head) = ctx.heads.response(
                status,
                ctx.date,
                ctx.static_headers,
                d.st.header_lines(),
                length,
            ) else {
                respond.send_reset(h2::Reason::INTERNAL_ERROR);
                self.phase = Phase::Done;
                return;
            };
            let end = ended || (no_body && d.st.state == WriteState::Finished);
            match respond.send_response(head, end) {
                Ok(send) => d.send = Some(send),
                Err(_) => {
                    self.phase = Phase::Done;
                    return;
                }
            }
            if end {
                d.queued.clear();
                d.st.trailers.clear();
                d.send = None;
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
            if d.send.is_none() {
                // The end went with the HEADERS.
                self.phase = Phase::Done;
            }
        }
    }

    /// Every `Reply` was dropped (or a job panicked): a 500 if nothing
    /// went yet, else the stream is reset (a body cut short must not look
    /// whole).
    pub(super) fn abandon(&mut self, peer: &Addr, ctx: &mut Ctx<'_>) {
        let Phase::Deferred(d) = &mut self.phase else {
            return;
        };
        if d.st.state == WriteState::Finished {
            return;
        }
        match d.send.as_mut() {
            None => {
                let what = "a deferred response was dropped unanswered; 500";
                super::trouble(ctx, peer, Severity::Error, &what);
                self.refuse(
                    Reject::new(500, "the response was dropped"),
                    None,
                    peer,
                    ctx,
                );
            }
            Some(send) => {
                let what = "a deferred response was dropped half-written; stream reset";
                super::trouble(ctx, peer, Severity::Error, &what);
                send.send_reset(h2::Reason::INTERNAL_ERROR);
                self.phase = Phase::Done;
            }
        }
    }

    /// A deferred response not finished by `deadline`: as `abandon`, 504
    /// if nothing went yet.
    pub(in crate::http::h2) fn deferred_late(&mut self, peer: &Addr, ctx: &mut Ctx<'_>) {
        let Phase::Deferred(d) = &mut self.phase else {
            return;
        };
        let what = "a deferred response was not finished in time";
        super::trouble(ctx, peer, Severity::Warn, &what);
        if d.send.is_none() {
            self.refuse(
                Reject::new(504, "the response was not ready in time"),
                None,
                peer,
                ctx,
            );
        } else {
            self.abandon(peer, ctx);
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

    /// Sends what a deferred response's jobs wrote, as the windows allow.
    pub(super) fn send_deferred(&mut self, cx: &mut Context<'_>) -> bool {
        let Phase::Deferred(d) = &mut self.phase else {
            return false;
        };
        let Some(send) = d.send.as_mut() else {
            return false;
        };
        let finished = d.st.state == WriteState::Finished;
        let mut moved = false;
        while let Some(front) = d.queued.front_mut() {
            let Some(cap) = window(send, front.len().min(STEP), cx) else {
                self.phase = Phase::Done;
                return true;
            };
            if cap == 0 {
                return moved;
            }
            let chunk = front.split_to(cap.min(front.len()));
            if front.is_empty() {
                d.queued.pop_front();
            }
            let last = finished && d.queued.is_empty() && d.st.trailers.is_empty();
            if send.send_data(chunk, last).is_err() || last {
                self.phase = Phase::Done;
                return true;
            }
            moved = true;
        }
        if finished {
            // Everything went: the end, with the trailers if any (a stream
            // that fails here is gone already: nothing more to do).
            if d.st.trailers.is_empty() {
                let _ = send.send_data(Bytes::new(), true);
            } else {
                let mut map = http::HeaderMap::new();
                for (n, v) in &d.st.trailers {
                    if let (Ok(n), Ok(v)) = (
                        http::header::HeaderName::from_bytes(n.as_bytes()),
                        http::header::HeaderValue::from_bytes(v),
                    ) {
                        map.append(n, v);
                    }
                }
                let _ = send.send_trailers(map);
            }
            self.phase = Phase::Done;
            return true;
        }
        moved
    }
}
