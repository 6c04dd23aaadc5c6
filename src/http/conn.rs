//! One HTTP/1.1 server connection as a sans-I/O state machine: bytes are
//! put in (`read_buf`/`filled`, or `feed`), requests are parsed and handed
//! to the handler in order (`advance`), and what is owed to the peer is
//! taken out (`output`). Time comes in as an argument; deadlines go out as
//! an `Instant`. Nothing here touches a socket, so every rule is tested on
//! byte slices.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Instant;

use super::chunked::{Chunked, MAX_CHUNK_LINE};
use super::deferred::{Job, Mailer, ReadState, ReplyKey, Stepwise, Writer};
use super::encode::{self, ResponseFraming};
use super::head::{self, Framing, Head};
use super::limits::{Limits, Timeouts};
use super::output::Output;
use super::pool::BufPool;
use super::request::Request;
use super::response::{Body, Response};
use super::sink::{BodyPlan, BodySink};
use super::status::{Reject, reason_phrase};
use crate::sys::Addr;

/// What serves requests. It runs on the event loop: it must not block.
pub trait Handler {
    fn handle(&self, req: &Request<'_>, res: &mut Response<'_>);

    /// Called when the head of a request with a body has arrived, before
    /// any of the body is read (and before `100 Continue` is sent): what to
    /// do with the body. The default reads it whole.
    fn on_head(&self, req: &Request<'_>) -> BodyPlan {
        let _ = req;
        BodyPlan::Buffer
    }
}

impl<F> Handler for F
where
    F: Fn(&Request<'_>, &mut Response<'_>),
{
    fn handle(&self, req: &Request<'_>, res: &mut Response<'_>) {
        self(req, res)
    }
}

/// What the server lends a connection while it advances.
pub struct Ctx<'a> {
    pub handler: &'a dyn Handler,
    pub limits: &'a Limits,
    pub timeouts: &'a Timeouts,
    /// The current IMF-fixdate, refreshed by the server once a second.
    pub date: &'a [u8],
    pub pool: &'a mut BufPool,
    /// Scratch for response header fields, shared by every connection since
    /// handlers run one at a time.
    pub scratch: &'a mut Vec<u8>,
    /// The server is shutting down: answer what is in flight, then close.
    pub draining: bool,
    /// Header fields added to every response (`static_headers`), as
    /// `Name: value\r\n` lines.
    pub static_headers: &'a [u8],
    /// How deferred responses reach the loop, and which connection this is.
    pub replies: Option<(&'a Arc<dyn Mailer>, usize, u64)>,
}

enum Decoder {
    Length(u64),
    Chunked(Chunked),
}

enum Reading {
    /// Between requests: no byte of the next one yet.
    Idle,
    /// Part of a request head has arrived.
    Head,
    /// The head is parsed; its body is arriving, to be read whole or
    /// streamed to a sink.
    Body(Decoder, Option<Box<dyn BodySink>>),
    /// No more requests on this connection; what is queued goes out, then
    /// it closes.
    Done,
    /// A handler took the connection over; once what is queued is sent, the
    /// socket leaves HTTP with the head and the bytes read after it.
    HandedOff { head: Vec<u8> },
    /// A handler deferred its response (`Response::defer`): it is written in
    /// steps through a `Reply`; no further request is parsed until it ends.
    Deferred {
        id: u64,
        st: Box<Stepwise>,
        since: Instant,
        /// The request line, for the access log.
        line: String,
    },
}

/// What the I/O layer should do with the connection next.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Keep serving.
    Continue,
    /// A handler took the connection over: call `take_hand_off`.
    HandOff,
    /// Everything is sent: shut down our side and keep reading, discarding,
    /// until the peer closes or the linger deadline passes.
    ShutdownWrite,
    /// Close the socket now.
    Close,
}

/// Why a deadline fired, for the log line.
#[derive(Debug, PartialEq, Eq)]
pub enum Expired {
    /// Nothing was in flight: close quietly.
    Idle,
    /// A request was in progress: a 408 was queued.
    Request,
    /// The peer stopped reading our output: abort.
    Write,
    /// The linger after our close ran out.
    Linger,
}

pub struct Conn {
    rbuf: Vec<u8>,
    start: usize,
    end: usize,
    reading: Reading,
    head: Head,
    scanned: usize,
    out: Output,
    served: u64,
    peer: Addr,
    accepted: Instant,
    phase_at: Instant,
    body_progress: Instant,
    write_progress: Instant,
    eof: bool,
    linger_until: Option<Instant>,
    /// The handler answered without the body (`BodyPlan::Skip`).
    skip_body: bool,
    next_reply: u64,
    /// The response cannot be completed properly: close, do not linger.
    abort: bool,
}

impl Conn {
    pub fn new(peer: Addr, now: Instant) -> Self {
        Conn {
            rbuf: Vec::new(),
            start: 0,
            end: 0,
            reading: Reading::Idle,
            head: Head::default(),
            scanned: 0,
            out: Output::default(),
            served: 0,
            peer,
            accepted: now,
            phase_at: now,
            body_progress: now,
            write_progress: now,
            eof: false,
            linger_until: None,
            skip_body: false,
            next_reply: 0,
            abort: false,
        }
    }

    pub fn peer(&self) -> &Addr {
        &self.peer
    }

    pub fn served(&self) -> u64 {
        self.served
    }

    fn backpressured(&self, limits: &Limits) -> bool {
        self.out.responses() >= limits.max_pipelined || self.out.bytes() > limits.max_output_buffer
    }

    /// Should the I/O layer read now (if the socket is readable)?
    pub fn wants_read(&self, limits: &Limits) -> bool {
        if self.linger_until.is_some() {
            return !self.eof;
        }
        if self.eof {
            return false;
        }
        match self.reading {
            Reading::Body(..) => true,
            Reading::Idle | Reading::Head => !self.backpressured(limits),
            Reading::Done | Reading::HandedOff { .. } | Reading::Deferred { .. } => false,
        }
    }

    fn ensure_buf(&mut self, pool: &mut BufPool) {
        if self.rbuf.is_empty() {
            self.rbuf = pool.take();
            let cap = self.rbuf.capacity();
            self.rbuf.resize(cap, 0);
        }
    }

    /// How large the read buffer may grow in the current phase.
    fn cap_limit(&self, limits: &Limits) -> usize {
        let head = limits.max_header_bytes + 1;
        match &self.reading {
            Reading::Body(_, Some(_)) => self.head.len + limits.max_input_chunk,
            Reading::Body(Decoder::Length(n), None) => self.head.len + *n as usize,
            Reading::Body(Decoder::Chunked(_), None) => {
                self.head.len + limits.max_body as usize + MAX_CHUNK_LINE + limits.max_header_bytes
            }
            _ => head,
        }
    }

    /// Room to read into, or `None` when the connection should not read.
    pub fn read_buf(&mut self, pool: &mut BufPool, limits: &Limits) -> Option<&mut [u8]> {
        if !self.wants_read(limits) {
            return None;
        }
        self.ensure_buf(pool);
        if self.linger_until.is_some() {
            self.start = 0;
            self.end = 0;
            return Some(&mut self.rbuf[..]);
        }
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        if self.end == self.rbuf.len() {
            if self.start > 0 {
                self.rbuf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            let want = self.cap_limit(limits).max(self.end + 1);
            if self.end == self.rbuf.len() {
                let new = (self.rbuf.len() * 2)
                    .clamp(super::pool::BUF_SIZE, want.max(self.rbuf.len() + 1));
                self.rbuf.resize(new, 0);
            }
        }
        Some(&mut self.rbuf[self.end..])
    }

    /// Records that `n` bytes were read into the slice from `read_buf`.
    pub fn filled(&mut self, n: usize, now: Instant) {
        if self.linger_until.is_some() {
            return;
        }
        self.end += n;
        if let Reading::Body(..) = self.reading {
            self.body_progress = now;
        }
    }

    /// Appends bytes that were read elsewhere (pre-read bytes of a handed
    /// over stream; tests). Limits still apply when they are parsed.
    pub fn feed(&mut self, bytes: &[u8], pool: &mut BufPool, now: Instant) {
        if bytes.is_empty() || self.linger_until.is_some() {
            return;
        }
        self.ensure_buf(pool);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        if self.rbuf.len() - self.end < bytes.len() {
            self.rbuf.resize(self.end + bytes.len(), 0);
        }
        self.rbuf[self.end..self.end + bytes.len()].copy_from_slice(bytes);
        self.filled(bytes.len(), now);
    }

    /// Bytes read but not yet parsed (a sniffing transport looks at them).
    pub fn unparsed(&self) -> &[u8] {
        &self.rbuf[self.start..self.end]
    }

    /// Takes the bytes read but not yet parsed (they were a TLS ClientHello,
    /// for the TLS session rather than the parser).
    pub fn take_unparsed(&mut self) -> Vec<u8> {
        let v = self.unparsed().to_vec();
        self.start = self.end;
        v
    }

    /// The peer shut down its side (read returned 0).
    pub fn on_eof(&mut self) {
        self.eof = true;
    }

    /// Parses and answers every complete request in the buffer, in order,
    /// until it needs more bytes or the output queue is full.
    pub fn advance(&mut self, now: Instant, ctx: &mut Ctx<'_>) {
        loop {
            match &mut self.reading {
                Reading::Done | Reading::HandedOff { .. } | Reading::Deferred { .. } => return,
                Reading::Idle | Reading::Head => {
                    if self.backpressured(ctx.limits) {
                        return;
                    }
                    if self.start == self.end {
                        if self.eof {
                            self.reading = Reading::Done;
                        }
                        return;
                    }
                    if let Reading::Idle = self.reading {
                        self.reading = Reading::Head;
                        if self.served > 0 {
                            self.phase_at = now;
                        }
                    }
                    let data = &self.rbuf[self.start..self.end];
                    match head::parse(data, &mut self.scanned, ctx.limits, &mut self.head) {
                        Err(rej) => return self.reject(rej, now, ctx),
                        Ok(false) => {
                            if self.eof {
                                tracing::debug!(peer = %self.peer, "connection closed mid-head");
                                self.reading = Reading::Done;
                            }
                            return;
                        }
                        Ok(true) => {
                            self.scanned = 0;
                            let framing = self.head.framing.unwrap_or(Framing::None);
                            let decoder = match framing {
                                Framing::None => {
                                    let n = self.head.len;
                                    self.dispatch(now, ctx, n..n, n..n, n, None);
                                    continue;
                                }
                                Framing::Length(n) => Some(n),
                                Framing::Chunked => None,
                            };
                            // Ask the handler what to do with the body.
                            let plan = {
                                let buf = &self.rbuf[self.start..self.start + self.head.len];
                                let req = Request {
                                    buf,
                                    head: &self.head,
                                    body: &[],
                                    trailers: &[],
                                    peer: &self.peer,
                                    state: ReadState::MessageReady,
                                };
                                catch_unwind(AssertUnwindSafe(|| ctx.handler.on_head(&req)))
                            };
                            let (limit, sink) = match plan {
                                Err(_) => {
                                    tracing::error!(peer = %self.peer, "handler panicked in on_head; answered 500");
                                    return self.reject(
                                        Reject::new(500, "the handler failed"),
                                        now,
                                        ctx,
                                    );
                                }
                                Ok(BodyPlan::Skip) => {
                                    // Answer now; the body is never read, so
                                    // nothing after it can be parsed: close.
                                    self.skip_body = true;
                                    let n = self.head.len;
                                    self.dispatch(now, ctx, n..n, n..n, n, None);
                                    self.start = self.end;
                                    self.reading = Reading::Done;
                                    return;
                                }
                                Ok(BodyPlan::Buffer) => (ctx.limits.max_body, None),
                                Ok(BodyPlan::Stream(sink)) => {
                                    (ctx.limits.max_streamed_body, Some(sink))
                                }
                            };
                            let decoder = match decoder {
                                Some(n) if n > limit => {
                                    return self.reject(
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
                            self.reading = Reading::Body(decoder, sink);
                        }
                    }
                }
                Reading::Body(Decoder::Length(n), None) => {
                    let n = *n as usize;
                    let h = self.head.len;
                    if self.end - self.start >= h + n {
                        self.dispatch(now, ctx, h..h + n, h + n..h + n, h + n, None);
                        continue;
                    }
                    if self.eof {
                        return self.body_cut_short(now, ctx);
                    }
                    return;
                }
                Reading::Body(Decoder::Chunked(c), None) => {
                    let h = self.head.len;
                    let region = &mut self.rbuf[self.start + h..self.end];
                    match c.decode(region, ctx.limits) {
                        Err(rej) => return self.reject(rej, now, ctx),
                        Ok(step) => {
                            self.end -= step.removed;
                            if step.done {
                                let b = c.body_len();
                                let t = c.trailer_len();
                                self.dispatch(
                                    now,
                                    ctx,
                                    h..h + b,
                                    h + b..h + b + t,
                                    h + b + t,
                                    None,
                                );
                                continue;
                            }
                            if self.eof {
                                return self.body_cut_short(now, ctx);
                            }
                            return;
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
                                Err(rej) => return self.reject(rej, now, ctx),
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
                        let pieces =
                            self.rbuf[h..h + chunk].chunks(ctx.limits.max_input_chunk.max(1));
                        if let Err(e) = pieces.into_iter().try_for_each(|p| sink.data(p)) {
                            tracing::info!(peer = %self.peer, status = e.status, "body refused by the handler: {}", e.reason);
                            return self.reject(
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
                            std::mem::replace(&mut self.reading, Reading::Head)
                        else {
                            return;
                        };
                        let n = self.head.len;
                        self.dispatch(
                            now,
                            ctx,
                            n..n,
                            n..n + trailers,
                            n + trailers,
                            Some(&mut *sink),
                        );
                        continue;
                    }
                    if self.eof {
                        return self.body_cut_short(now, ctx);
                    }
                    return;
                }
            }
        }
    }

    /// The peer ended its input inside a request body: the request cannot
    /// be served, and a client that only half-closed is still reading.
    fn body_cut_short(&mut self, now: Instant, ctx: &mut Ctx<'_>) {
        tracing::debug!(peer = %self.peer, "input ended mid-body");
        self.reject(Reject::new(400, "request body cut short"), now, ctx);
    }

    /// Runs the handler on one complete request and queues its response.
    fn dispatch(
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
    fn reject(&mut self, rej: Reject, now: Instant, ctx: &mut Ctx<'_>) {
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

    // ---- output ----

    /// The queue of bytes owed to the peer.
    pub fn output(&mut self) -> &mut Output {
        &mut self.out
    }

    /// Records write progress (for the write deadline).
    pub fn wrote(&mut self, now: Instant) {
        self.write_progress = now;
    }

    /// The write deadline counts from when output became pending, not from
    /// the last write of an earlier response.
    fn output_starts(&mut self, now: Instant) {
        if self.out.is_empty() {
            self.write_progress = now;
        }
    }

    /// Is the connection between requests with nothing buffered, so its
    /// buffers can go back to the pool?
    pub fn is_idle(&self) -> bool {
        matches!(self.reading, Reading::Idle) && self.start == self.end && self.out.is_empty()
    }

    pub fn release_buffers(&mut self, pool: &mut BufPool) {
        if self.start == self.end && !self.rbuf.is_empty() {
            self.start = 0;
            self.end = 0;
            pool.give(std::mem::take(&mut self.rbuf));
        }
        self.out.release(pool);
    }

    /// What to do with the socket after this turn. `draining`: the server
    /// is shutting down, so a connection that has become idle closes rather
    /// than waiting for another request.
    pub fn next(&mut self, now: Instant, timeouts: &Timeouts, draining: bool) -> Next {
        if self.linger_until.is_some() {
            return if self.eof {
                Next::Close
            } else {
                Next::Continue
            };
        }
        if self.abort {
            return Next::Close;
        }
        if draining && self.drain() {
            return Next::Close;
        }
        if let Reading::HandedOff { .. } = self.reading
            && self.out.is_empty()
        {
            return Next::HandOff;
        }
        if let Reading::Done = self.reading
            && self.out.is_empty()
        {
            // Shut our side down even when the peer has ended its input: a
            // TLS peer gets its close_notify. With `eof` the linger ends at
            // once (above).
            self.linger_until = Some(now + timeouts.linger);
            self.start = 0;
            self.end = 0;
            return Next::ShutdownWrite;
        }
        Next::Continue
    }

    /// After `Next::HandOff`: the request head, and the bytes read after it
    /// (a WebSocket client may send its first frame with the upgrade).
    pub fn take_hand_off(&mut self) -> Option<(Vec<u8>, Vec<u8>)> {
        match std::mem::replace(&mut self.reading, Reading::Done) {
            Reading::HandedOff { head } => {
                let rest = self.rbuf[self.start..self.end].to_vec();
                self.start = 0;
                self.end = 0;
                Some((head, rest))
            }
            other => {
                self.reading = other;
                None
            }
        }
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
        if st.state == super::deferred::WriteState::Finished {
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
        if st.state == super::deferred::WriteState::Empty {
            tracing::error!(peer = %self.peer, "a deferred response was dropped unanswered; 500");
            self.reading = Reading::Done;
            self.reject(Reject::new(500, "the response was dropped"), now, ctx);
        } else {
            tracing::error!(peer = %self.peer, "a deferred response was dropped half-written; connection cut");
            self.abort = true;
            self.reading = Reading::Done;
        }
    }

    /// Stops taking new requests. Returns true if the connection is idle and
    /// can be closed at once; one with a request in flight answers it (with
    /// `Connection: close`, as the server is draining) and then closes.
    pub fn drain(&mut self) -> bool {
        matches!(self.reading, Reading::Idle) && self.start == self.end && self.out.is_empty()
    }

    fn write_deadline(&self, t: &Timeouts) -> Option<Instant> {
        (!self.out.is_empty()).then(|| self.write_progress + t.write_progress)
    }

    fn read_deadline(&self, t: &Timeouts) -> Option<Instant> {
        match self.reading {
            Reading::Idle if self.out.is_empty() => Some(if self.served == 0 {
                self.accepted + t.connection_setup
            } else {
                self.phase_at + t.intra_stream
            }),
            Reading::Idle => None,
            Reading::Head => Some(if self.served == 0 {
                self.accepted + t.connection_setup
            } else {
                self.phase_at + t.connection_setup
            }),
            Reading::Body(..) => Some(self.body_progress + t.body_progress),
            Reading::Done | Reading::HandedOff { .. } => None,
            Reading::Deferred { since, .. } => Some(since + t.response),
        }
    }

    /// When this connection next needs attention if nothing happens.
    pub fn deadline(&self, t: &Timeouts) -> Option<Instant> {
        if let Some(l) = self.linger_until {
            return Some(l);
        }
        match (self.write_deadline(t), self.read_deadline(t)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Handles a deadline that may have passed. `None`: it had not (the
    /// timer was stale).
    pub fn on_timeout(&mut self, now: Instant, ctx: &mut Ctx<'_>) -> Option<Expired> {
        if let Some(l) = self.linger_until {
            return (l <= now).then_some(Expired::Linger);
        }
        if self.write_deadline(ctx.timeouts).is_some_and(|d| d <= now) {
            self.out.clear();
            return Some(Expired::Write);
        }
        if self.read_deadline(ctx.timeouts).is_some_and(|d| d <= now) {
            return Some(match &self.reading {
                Reading::Idle => {
                    self.reading = Reading::Done;
                    Expired::Idle
                }
                Reading::Deferred { st, .. } => {
                    tracing::warn!(peer = %self.peer, "a deferred response was not finished in time");
                    if st.state == super::deferred::WriteState::Empty {
                        self.reading = Reading::Done;
                        self.reject(
                            Reject::new(504, "the response was not ready in time"),
                            now,
                            ctx,
                        );
                    } else {
                        self.abort = true;
                        self.reading = Reading::Done;
                    }
                    Expired::Request
                }
                _ => {
                    self.reject(Reject::new(408, "request not received in time"), now, ctx);
                    Expired::Request
                }
            });
        }
        None
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
