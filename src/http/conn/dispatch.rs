//! Answering: the handler is called on a complete request (a panic is a
//! 500), and its one outcome (a response, a deferral, a hand-off) is
//! queued; refusals; the steps of deferred responses.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

use super::state::{Deferred, KeepAlive};
use super::{Conn, Ctx};
use crate::http::again::Lent;
use crate::http::deferred::{ReadState, Stepwise, WriteState, Writer};
use crate::http::encode::{self, ResponseFraming};
use crate::http::events::{Event, Kept, Seen, Severity, Wants};
use crate::http::output::Output;
use crate::http::pool::BufPool;
use crate::http::refusal;
use crate::http::reply::{Job, ReplyKey};
use crate::http::request::{Request, Via};
use crate::http::response::{Body, Response};
use crate::http::sink::BodySink;
use crate::http::status::Reject;

/// `METHOD TARGET HTTP/1.x`, formatted only if the access line is logged.
pub(super) struct Line<'a>(pub(super) &'a Request<'a>, pub(super) u8);

impl std::fmt::Display for Line<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} HTTP/1.{}",
            self.0.method(),
            self.0.target(),
            self.1
        )
    }
}

/// What an access line written later needs of the request (a deferred
/// response, a hand-off): copied out of line, off the common path.
#[cold]
#[inline(never)]
fn kept(seen: Option<Seen<'_>>, began: std::time::Instant) -> Kept {
    seen.map_or_else(Kept::default, |s| Kept::of(s, began))
}

impl Conn {
    /// Runs the handler on one complete request and queues its response.
    // Each is one call's fact (the clock, the context, the transport, where
    // body and trailers lie): a struct to bundle them would be built per
    // request for this one call.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn dispatch(
        &mut self,
        now: Instant,
        ctx: &mut Ctx<'_>,
        via: crate::http::request::Via<'_>,
        body: std::ops::Range<usize>,
        trailers: std::ops::Range<usize>,
        consumed: usize,
        sink: Option<&mut dyn BodySink>,
    ) {
        let buf = &self.rbuf[self.start..self.start + consumed];
        let req = Request::new(
            buf,
            &self.head,
            &buf[body],
            &buf[trailers],
            (&self.peer, via),
            ReadState::Finished,
            false,
            now,
        );
        let mut res = Response::new(ctx.scratch);
        self.next_reply += 1;
        let reply_id = self.next_reply;
        res.reply = ctx.replies.map(|(m, token, generation)| {
            (
                m,
                ReplyKey {
                    token,
                    generation,
                    id: reply_id,
                },
            )
        });
        let outcome = catch_unwind(AssertUnwindSafe(|| match sink {
            Some(s) => s.finish(&req, &mut res),
            None => ctx.handler.handle(&req, &mut res),
        }));
        let line = Line(&req, self.head.minor);
        let wants = ctx.observer.wants();
        let seen = Seen::of(&req, &line, wants);
        // Only an access line reads it.
        let took = (wants != Wants::Nothing).then(|| now.saturating_duration_since(self.phase_at));
        let last = self.state.keep_alive == KeepAlive::Disabled;
        if matches!(outcome, Ok(())) && res.hand_off {
            let kept = kept(seen, self.phase_at);
            let head = buf[..self.head.len].to_vec();
            let context = res.hand_off_context.take();
            return self.handed_off(ctx, head, context, kept, consumed);
        }
        if matches!(outcome, Ok(())) && res.deferred.is_some() && res.misuse.is_none() {
            let keep = self.head.keep_alive && !ctx.draining && !last;
            let deferral = res.deferred.take();
            self.trouble(ctx, Severity::Debug, &"response deferred");
            let seen = kept(seen, self.phase_at);
            self.start += consumed;
            self.served += 1;
            self.state.deferred(Deferred {
                id: reply_id,
                st: Stepwise::new(self.head.is_head, self.head.minor, keep).linked(deferral),
                since: now,
                seen,
            });
            return;
        }
        // Draining, requests already read are still answered: the
        // connection stays open while more bytes wait behind this one.
        let more = self.start + consumed < self.end;
        let mut keep = self.head.keep_alive && (!ctx.draining || more) && !last;
        let failed: &[u8] = b"500 Internal Server Error\n";
        let text: &[u8] = b"Content-Type: text/plain; charset=utf-8\r\n";
        let (status, body, headers, note): (u16, Body, &[u8], _) = match outcome {
            Ok(()) if res.misuse.is_none() => {
                keep &= !res.close;
                let body = std::mem::replace(&mut res.body, Body::Empty);
                (res.status, body, &res.headers[..], "")
            }
            Ok(()) => {
                let why = res.misuse.unwrap_or("");
                let what = format_args!("handler misused the response: {why}");
                self.trouble(ctx, Severity::Error, &what);
                (
                    500,
                    Body::Static(failed),
                    text,
                    "handler misused the response",
                )
            }
            Err(_) => {
                self.trouble(ctx, Severity::Error, &"handler panicked; answered 500");
                keep = false;
                (500, Body::Static(failed), text, "handler panicked")
            }
        };
        // The write deadline runs from now (disjoint fields: `req` still
        // borrows the read buffer).
        if self.out.is_empty() {
            self.write_progress = now;
        }
        let (keep, sent) = encode(
            &mut self.out,
            ctx.pool,
            ctx.date,
            status,
            headers,
            body,
            self.head.is_head,
            self.head.minor,
            keep,
            ctx.static_headers,
        );
        ctx.observer.event(Event::Answered {
            peer: &self.peer,
            request: seen,
            status,
            sent,
            took,
            note,
            http2: false,
        });
        self.start += consumed;
        self.served += 1;
        self.phase_at = now;
        self.state.answered(keep);
    }

    /// A handler took the connection away from HTTP. Out of line and
    /// cold: rare, and kept out of the common answer's code.
    #[cold]
    #[inline(never)]
    fn handed_off(
        &mut self,
        ctx: &mut Ctx<'_>,
        head: Vec<u8>,
        context: Option<crate::http::response::HandOffContext>,
        kept: Kept,
        consumed: usize,
    ) {
        ctx.observer.event(Event::HandedOff { peer: &self.peer });
        self.start += consumed;
        self.served += 1;
        self.state.hand_off(head, context, kept);
    }

    /// Answers a request the engine refuses, and stops reading requests.
    pub(super) fn reject(&mut self, rej: Reject, now: Instant, ctx: &mut Ctx<'_>) {
        self.output_starts(now);
        ctx.observer.event(Event::Refused {
            peer: &self.peer,
            status: rej.status,
            reason: &rej.reason,
        });
        let (lines, body) = refusal::render(ctx.handler, &rej, || refusal::plain_h1(&rej));
        encode(
            &mut self.out,
            ctx.pool,
            ctx.date,
            rej.status,
            &lines,
            body,
            false,
            1,
            false,
            ctx.static_headers,
        );
        self.start = 0;
        self.end = 0;
        self.state.refuse();
    }

    /// Runs a deferred response's job with its writer. A job for another
    /// request (or a connection that moved on) is dropped.
    pub(crate) fn write_deferred(
        &mut self,
        id: u64,
        job: Job,
        (now, via): (Instant, Via<'_>),
        ctx: &mut Ctx<'_>,
    ) {
        let Some(d) = self.state.deferred_mut(id) else {
            return;
        };
        if self.out.is_empty() {
            self.write_progress = now;
        }
        if !run_job(job, &mut d.st, &mut self.out, (&self.peer, via, now), ctx) {
            return self.abandon(id, now, ctx);
        }
        if d.st.state == WriteState::Finished {
            let (status, sent) = (d.st.status_code(), d.st.body_sent());
            ctx.observer.event(Event::Answered {
                peer: &self.peer,
                request: d.seen.seen(),
                status,
                sent,
                took: d.seen.took(now),
                note: "deferred",
                http2: false,
            });
            let keep = d.st.keep_alive;
            self.out.end_response();
            self.phase_at = now;
            self.state.deferred_finished(keep);
        }
    }

    /// Every handle to a deferred response is gone: if it was finished,
    /// nothing to do; if nothing was sent, a 500; if it had begun, the
    /// connection is cut (a truncated body must not look whole).
    pub(crate) fn abandon(&mut self, id: u64, now: Instant, ctx: &mut Ctx<'_>) {
        if self.state.deferred_mut(id).is_none() {
            return;
        }
        if self.state.deferred_unsent() {
            self.trouble(
                ctx,
                Severity::Error,
                &"a deferred response was dropped unanswered; 500",
            );
            self.reject(Reject::new(500, "the response was dropped"), now, ctx);
        } else {
            self.trouble(
                ctx,
                Severity::Error,
                &"a deferred response was dropped half-written; connection cut",
            );
            self.state.abort();
        }
    }
}

/// Runs a deferred response's job with a writer over `st` and `out`, on
/// either engine. `false`: the job panicked (said as trouble); the caller
/// abandons the response.
pub(crate) fn run_job(
    job: Job,
    st: &mut Stepwise,
    out: &mut Output,
    (peer, via, now): (&crate::sys::Addr, Via<'_>, Instant),
    ctx: &mut Ctx<'_>,
) -> bool {
    let handler = ctx.handler;
    let handle = |req: &Request<'_>, res: &mut Response<'_>| handler.handle(req, res);
    let mut lent = Lent {
        handle: &handle,
        peer,
        via,
        now,
        limits: ctx.limits,
        scratch: ctx.scratch,
    };
    let mut w = Writer {
        st,
        out,
        pool: ctx.pool,
        date: ctx.date,
        static_headers: ctx.static_headers,
        min_chunk: ctx.limits.min_output_chunk,
        again: Some(&mut lent),
    };
    if catch_unwind(AssertUnwindSafe(|| job(&mut w))).is_err() {
        let what = "a deferred response's job panicked";
        ctx.observer.event(Event::Trouble {
            peer,
            severity: Severity::Error,
            what: &what,
        });
        return false;
    }
    true
}

/// Writes a response head into `out` and queues its body. Returns whether
/// the connection stays open and how many body bytes will be sent.
#[allow(clippy::too_many_arguments)]
fn encode(
    out: &mut Output,
    pool: &mut BufPool,
    date: &[u8],
    status: u16,
    headers: &[u8],
    body: Body,
    is_head: bool,
    minor: u8,
    keep_alive: bool,
    static_headers: &[u8],
) -> (bool, u64) {
    let len = body.len();
    let f = ResponseFraming::decide(status, len, is_head, minor, keep_alive);
    let head =
        |b: &mut Vec<u8>| encode::head(b, status, date, static_headers, headers, len, minor, f);
    let sent = if is_head || f.no_body {
        out.with_mem(pool, head);
        0
    } else {
        out.push_response(pool, head, body, f.chunked);
        len.unwrap_or(0)
    };
    out.end_response();
    (f.keep_alive, sent)
}
