//! Answering: the handler is called on a complete request (a panic is a
//! 500), and its one outcome (a response, a deferral, a hand-off) is
//! queued; refusals; the steps of deferred responses.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

use super::{Conn, Ctx, Reading};
use crate::http::deferred::{Job, ReadState, ReplyKey, Stepwise, Writer};
use crate::http::encode::{self, ResponseFraming};
use crate::http::output::Output;
use crate::http::pool::BufPool;
use crate::http::request::Request;
use crate::http::response::{Body, Response};
use crate::http::sink::BodySink;
use crate::http::status::{Reject, reason_phrase};

impl Conn {
    /// Runs the handler on one complete request and queues its response.
    pub(super) fn dispatch(
        &mut self,
        now: Instant,
        ctx: &mut Ctx<'_>,
        body: std::ops::Range<usize>,
        trailers: std::ops::Range<usize>,
        consumed: usize,
        sink: Option<&mut dyn BodySink>,
    ) {
        let buf = &self.rbuf[self.start..self.start + consumed];
        let req = Request {
            buf,
            head: &self.head,
            body: &buf[body],
            trailers: &buf[trailers],
            peer: &self.peer,
            state: ReadState::Finished,
        };
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
        if matches!(outcome, Ok(())) && res.hand_off {
            tracing::info!(target: "handoff::access", "{} \"{} {} HTTP/1.{}\" handed off",
                self.peer, req.method(), req.target(), self.head.minor);
            let head = buf[..self.head.len].to_vec();
            self.start += consumed;
            self.served += 1;
            self.reading = Reading::HandedOff { head };
            return;
        }
        if matches!(outcome, Ok(())) && res.deferred && res.misuse.is_none() {
            let keep =
                self.head.keep_alive && !ctx.draining && !std::mem::take(&mut self.skip_body);
            tracing::debug!(peer = %self.peer, "response deferred");
            self.start += consumed;
            self.served += 1;
            let st = Stepwise::new(self.head.is_head, self.head.minor, keep);
            let line = format!(
                "{} {} HTTP/1.{}",
                req.method(),
                req.target(),
                self.head.minor
            );
            self.reading = Reading::Deferred {
                id: reply_id,
                st: Box::new(st),
                since: now,
                line,
            };
            return;
        }
        // Draining, requests already read are still answered: the
        // connection stays open while more bytes wait behind this one.
        let more = self.start + consumed < self.end;
        let mut keep =
            self.head.keep_alive && (!ctx.draining || more) && !std::mem::take(&mut self.skip_body);
        let (status, body, headers): (u16, Body, &[u8]) = match outcome {
            Ok(()) if res.misuse.is_none() => {
                keep &= !res.close;
                (
                    res.status,
                    std::mem::replace(&mut res.body, Body::Empty),
                    &res.headers[..],
                )
            }
            Ok(()) => {
                tracing::error!(target: "handoff::access", peer = %self.peer, method = req.method(), target = req.target(),
                    "handler misused the response: {}", res.misuse.unwrap_or(""));
                (
                    500,
                    Body::Static(b"500 Internal Server Error\n"),
                    &b"Content-Type: text/plain; charset=utf-8\r\n"[..],
                )
            }
            Err(_) => {
                tracing::error!(target: "handoff::access", peer = %self.peer, method = req.method(), target = req.target(),
                    "handler panicked; answered 500");
                keep = false;
                (
                    500,
                    Body::Static(b"500 Internal Server Error\n"),
                    &b"Content-Type: text/plain; charset=utf-8\r\n"[..],
                )
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
        tracing::info!(target: "handoff::access", "{} \"{} {} HTTP/1.{}\" {} {}",
            self.peer, req.method(), req.target(), self.head.minor, status, sent);

        self.start += consumed;
        self.served += 1;
        self.phase_at = now;
        self.reading = if keep { Reading::Idle } else { Reading::Done };
    }

    /// Answers a request the engine refuses, and stops reading requests.
    pub(super) fn reject(&mut self, rej: Reject, now: Instant, ctx: &mut Ctx<'_>) {
        self.output_starts(now);
        tracing::info!(target: "handoff::access", "{} \"-\" {} 0 ({})", self.peer, rej.status, rej.reason);
        let body = format!(
            "{} {}: {}\n",
            rej.status,
            reason_phrase(rej.status),
            rej.reason
        );
        encode(
            &mut self.out,
            ctx.pool,
            ctx.date,
            rej.status,
            b"Content-Type: text/plain; charset=utf-8\r\n",
            Body::Bytes(body.into_bytes()),
            false,
            1,
            false,
            ctx.static_headers,
        );
        self.start = 0;
        self.end = 0;
        self.reading = Reading::Done;
    }

    /// Runs a deferred response's job with its writer. A job for another
    /// request (or a connection that moved on) is dropped.
    pub fn write_deferred(&mut self, id: u64, job: Job, now: Instant, ctx: &mut Ctx<'_>) {
        let Reading::Deferred {
            id: want, st, line, ..
        } = &mut self.reading
        else {
            return;
        };
        if *want != id {
            return;
        }
        if self.out.is_empty() {
            self.write_progress = now;
        }
        let mut w = Writer {
            st,
            out: &mut self.out,
            pool: ctx.pool,
            date: ctx.date,
            static_headers: ctx.static_headers,
            min_chunk: ctx.limits.min_output_chunk,
        };
        if catch_unwind(AssertUnwindSafe(|| job(&mut w))).is_err() {
            tracing::error!(peer = %self.peer, "a deferred response's job panicked");
            return self.abandon(id, now, ctx);
        }
        if st.state == crate::http::deferred::WriteState::Finished {
            tracing::info!(target: "handoff::access", "{} \"{line}\" {} {} (deferred)", self.peer, st.status_code(), st.body_sent());
            self.out.end_response();
            self.phase_at = now;
            self.reading = if st.keep_alive {
                Reading::Idle
            } else {
                Reading::Done
            };
        }
    }

    /// Every handle to a deferred response is gone: if it was finished,
    /// nothing to do; if nothing was sent, a 500; if it had begun, the
    /// connection is cut (a truncated body must not look whole).
    pub fn abandon(&mut self, id: u64, now: Instant, ctx: &mut Ctx<'_>) {
        let Reading::Deferred { id: want, st, .. } = &self.reading else {
            return;
        };
        if *want != id {
            return;
        }
        if st.state == crate::http::deferred::WriteState::Empty {
            tracing::error!(peer = %self.peer, "a deferred response was dropped unanswered; 500");
            self.reading = Reading::Done;
            self.reject(Reject::new(500, "the response was dropped"), now, ctx);
        } else {
            tracing::error!(peer = %self.peer, "a deferred response was dropped half-written; connection cut");
            self.abort = true;
            self.reading = Reading::Done;
        }
    }
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
    out.with_mem(pool, |b| {
        encode::head(b, status, date, static_headers, headers, len, minor, f)
    });
    let sent = if is_head || f.no_body {
        0
    } else {
        len.unwrap_or(0)
    };
    if !is_head && !f.no_body {
        out.push_body(pool, body, f.chunked);
    }
    out.end_response();
    (f.keep_alive, sent)
}
