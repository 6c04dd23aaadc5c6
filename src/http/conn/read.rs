//! Reading requests: a head, then its body (whole, by length or chunked,
//! or streamed to the handler's sink). Each step says whether the
//! connection can go on at once (`Flow::Again`) or must wait.

use crate::http::events::Severity;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

use super::{Conn, Ctx, Decoder, Flow, Reading};
use crate::http::chunked::Chunked;
use crate::http::deferred::ReadState;
use crate::http::head::{self, Framing};
use crate::http::request::Request;
use crate::http::sink::BodyPlan;
use crate::http::status::Reject;

impl Conn {
    /// Between requests or inside a head: parse it if it is complete, and
    /// dispatch it (no body) or get ready for its body.
    pub(super) fn read_head(
        &mut self,
        now: Instant,
        ctx: &mut Ctx<'_>,
        via: crate::http::request::Via<'_>,
    ) -> Flow {
        if self.backpressured(ctx.limits) {
            return Flow::Wait;
        }
        if self.start == self.end {
            if self.state.eof {
                self.state.close_read();
            }
            return Flow::Wait;
        }
        if let Reading::Idle = self.state.reading {
            self.state.busy();
            // The request's first byte: later requests' head deadline runs
            // from here (the first's from the accept), and the access
            // log's request time for all.
            self.phase_at = now;
        }
        let data = &self.rbuf[self.start..self.end];
        match head::parse(data, &mut self.scanned, ctx.limits, &mut self.head) {
            Err(rej) => return self.stop_with(rej, now, ctx),
            Ok(false) => {
                if self.state.eof {
                    self.trouble(ctx, Severity::Debug, &"connection closed mid-head");
                    self.state.close_read();
                }
                return Flow::Wait;
            }
            Ok(true) => {
                self.scanned = 0;
                let framing = self.head.framing.unwrap_or(Framing::None);
                let decoder = match framing {
                    Framing::None => {
                        let n = self.head.len;
                        self.dispatch(now, ctx, via, n..n, n..n, n, None);
                        return Flow::Again;
                    }
                    Framing::Length(n) => Some(n),
                    Framing::Chunked => None,
                };
                // Ask the handler what to do with the body.
                let plan = {
                    let buf = &self.rbuf[self.start..self.start + self.head.len];
                    let req = Request::new(
                        buf,
                        &self.head,
                        &[],
                        &[],
                        (&self.peer, via),
                        ReadState::MessageReady,
                        false,
                        now,
                    );
                    catch_unwind(AssertUnwindSafe(|| ctx.handler.on_head(&req)))
                };
                let (limit, sink) = match plan {
                    Err(_) => {
                        self.trouble(
                            ctx,
                            Severity::Error,
                            &"handler panicked in on_head; answered 500",
                        );
                        return self.stop_with(Reject::new(500, "the handler failed"), now, ctx);
                    }
                    Ok(BodyPlan::Skip) => {
                        // Answer now; the body is never read, so
                        // nothing after it can be parsed: this request is
                        // the last (its response may still be deferred or
                        // a hand-off).
                        self.state.disable_keep_alive();
                        let n = self.head.len;
                        self.dispatch(now, ctx, via, n..n, n..n, n, None);
                        // A hand-off takes the body's bytes read so far
                        // along (the next owner reads the rest); else
                        // they are never parsed.
                        if !self.state.is_handing_off() {
                            self.start = self.end;
                        }
                        return Flow::Wait;
                    }
                    Ok(BodyPlan::Discard) => {
                        return self.answer_then_discard(decoder, now, ctx, via);
                    }
                    Ok(BodyPlan::Buffer) => (ctx.limits.max_body, None),
                    Ok(BodyPlan::Stream(sink)) => (ctx.limits.max_streamed_body, Some(sink)),
                };
                let decoder = match decoder {
                    Some(n) if n > limit => {
                        return self.stop_with(
                            Reject::new(413, "request body too large"),
                            now,
                            ctx,
                        );
                    }
                    Some(n) => Decoder::Length(n),
                    None => Decoder::Chunked(Chunked::new(limit)),
                };
                // Ask for the body only if the client is waiting
                // to be asked (RFC 9110 §10.1.1).
                if self.head.expect_continue && self.end - self.start == self.head.len {
                    self.output_starts(now);
                    self.out.with_mem(ctx.pool, |b| {
                        b.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n")
                    });
                }
                self.body_progress = now;
                self.body_started = now;
                // What came with the head counts.
                self.body_received = (self.end - self.start - self.head.len) as u64;
                self.state.reading = Reading::Body(decoder, sink);
            }
        }
        Flow::Again
    }

    /// `BodyPlan::Discard`: answer with an empty body now, then read the
    /// body only to drop it, if the answer keeps the connection and the
    /// body is small enough to be worth it; else as `Skip`.
    fn answer_then_discard(
        &mut self,
        length: Option<u64>,
        now: Instant,
        ctx: &mut Ctx<'_>,
        via: crate::http::request::Via<'_>,
    ) -> Flow {
        let n = self.head.len;
        let arrived = self.end - self.start - n;
        let waiting = self.head.expect_continue && arrived == 0;
        let small = length.is_none_or(|l| l <= ctx.limits.max_discarded_body);
        if waiting || !small {
            self.state.disable_keep_alive();
        }
        self.dispatch(now, ctx, via, n..n, n..n, n, None);
        let d = match length {
            Some(l) => Decoder::Length(l),
            None => Decoder::Chunked(Chunked::new(ctx.limits.max_discarded_body)),
        };
        if self.state.discard(d) {
            self.body_progress = now;
            self.body_started = now;
            self.body_received = arrived as u64;
            return Flow::Again;
        }
        // The body is never read, so nothing after it can be parsed.
        self.state.disable_keep_alive();
        self.start = self.end;
        Flow::Wait
    }

    /// After an early answer: drop what arrived of the body; once it has
    /// ended the next request may begin. A framing error or more than
    /// `max_discarded_body` ends the connection quietly (the request has
    /// its answer already).
    pub(super) fn read_discard(&mut self, now: Instant, ctx: &mut Ctx<'_>) -> Flow {
        let Reading::Discard(d) = &mut self.state.reading else {
            return Flow::Wait;
        };
        let done = match d {
            Decoder::Length(left) => {
                let take = (*left).min((self.end - self.start) as u64);
                *left -= take;
                self.start += take as usize;
                *left == 0
            }
            Decoder::Chunked(c) => match c.decode(&mut self.rbuf[self.start..self.end], ctx.limits)
            {
                Err(rej) => {
                    let what = format_args!("discarded body: {}; closing", rej.reason);
                    self.trouble(ctx, Severity::Debug, &what);
                    self.state.close_read();
                    self.start = self.end;
                    return Flow::Wait;
                }
                Ok(step) => {
                    // The region is [decoded][raw], or when done
                    // [decoded][trailers][what follows].
                    self.end -= step.removed;
                    self.start += c.body_len();
                    c.take_decoded();
                    if step.done {
                        self.start += c.trailer_len();
                    }
                    step.done
                }
            },
        };
        if done {
            self.state.discarded();
            self.phase_at = now;
            return Flow::Again;
        }
        if self.state.eof {
            self.state.close_read();
        }
        Flow::Wait
    }

    /// Inside a body: take what arrived, and dispatch once it is whole.
    pub(super) fn read_body(
        &mut self,
        now: Instant,
        ctx: &mut Ctx<'_>,
        via: crate::http::request::Via<'_>,
    ) -> Flow {
        match &mut self.state.reading {
            Reading::Body(Decoder::Length(n), None) => {
                let n = *n as usize;
                let h = self.head.len;
                if self.end - self.start >= h + n {
                    self.dispatch(now, ctx, via, h..h + n, h + n..h + n, h + n, None);
                    return Flow::Again;
                }
                if self.state.eof {
                    return self.body_cut_short(now, ctx);
                }
                Flow::Wait
            }
            Reading::Body(Decoder::Chunked(c), None) => {
                let h = self.head.len;
                let region = &mut self.rbuf[self.start + h..self.end];
                match c.decode(region, ctx.limits) {
                    Err(rej) => self.stop_with(rej, now, ctx),
                    Ok(step) => {
                        self.end -= step.removed;
                        if step.done {
                            let b = c.body_len();
                            let t = c.trailer_len();
                            self.dispatch(
                                now,
                                ctx,
                                via,
                                h..h + b,
                                h + b..h + b + t,
                                h + b + t,
                                None,
                            );
                            return Flow::Again;
                        }
                        if self.state.eof {
                            return self.body_cut_short(now, ctx);
                        }
                        Flow::Wait
                    }
                }
            }
            Reading::Body(decoder, Some(sink)) => {
                // Streaming: hand what arrived to the sink and drop it
                // from the buffer, which keeps only the head.
                let h = self.start + self.head.len;
                let (chunk, trailers, done) = match decoder {
                    Decoder::Length(left) => {
                        let take = (*left).min((self.end - h) as u64) as usize;
                        *left -= take as u64;
                        (take, 0, *left == 0)
                    }
                    Decoder::Chunked(c) => {
                        match c.decode(&mut self.rbuf[h..self.end], ctx.limits) {
                            Err(rej) => return self.stop_with(rej, now, ctx),
                            Ok(step) => {
                                self.end -= step.removed;
                                let b = c.body_len();
                                c.take_decoded();
                                (b, if step.done { c.trailer_len() } else { 0 }, step.done)
                            }
                        }
                    }
                };
                if chunk > 0 {
                    let pieces = self.rbuf[h..h + chunk].chunks(ctx.limits.max_input_chunk.max(1));
                    if let Err(e) = pieces.into_iter().try_for_each(|p| sink.data(p)) {
                        let (severity, what) = e.logged();
                        self.trouble(ctx, severity, &what);
                        return self.stop_with(
                            Reject {
                                status: e.status,
                                reason: e.reason,
                            },
                            now,
                            ctx,
                        );
                    }
                    self.rbuf.copy_within(h + chunk..self.end, h);
                    self.end -= chunk;
                    self.body_progress = now;
                }
                if done {
                    let Reading::Body(_, Some(mut sink)) =
                        std::mem::replace(&mut self.state.reading, Reading::Head)
                    else {
                        return Flow::Wait;
                    };
                    let n = self.head.len;
                    self.dispatch(
                        now,
                        ctx,
                        via,
                        n..n,
                        n..n + trailers,
                        n + trailers,
                        Some(&mut *sink),
                    );
                    return Flow::Again;
                }
                if self.state.eof {
                    return self.body_cut_short(now, ctx);
                }
                Flow::Wait
            }
            _ => Flow::Wait,
        }
    }
}
