//! One HTTP/1.1 server connection as a sans-I/O state machine: bytes are
//! put in (`read_buf`/`filled`, or `feed`), requests are parsed and handed
//! to the handler in order (`advance`), and what is owed to the peer is
//! taken out (`output`). Time comes in as an argument; deadlines go out as
//! an `Instant`. Nothing here touches a socket, so every rule is tested on
//! byte slices.

mod dispatch;
pub(crate) use dispatch::run_job;
mod read;
mod state;

use std::sync::Arc;
use std::time::Instant;

use super::chunked::MAX_CHUNK_LINE;
use super::head::Head;
use super::limits::{Limits, Timeouts};
use super::output::Output;
use super::pool::BufPool;
use super::reply::Mailer;
use super::request::Request;
use super::response::Response;
use super::sink::BodyPlan;
use super::status::Reject;
use crate::http::events::{Event, Observer, Severity};
use crate::sys::Addr;
pub(crate) use state::Next;
use state::{Decoder, Reading, State, Writing};

/// What serves requests. It runs on the event loop: it must not block.
pub trait Handler {
    /// Answers one complete request (runs on the event loop; must not block).
    fn handle(&self, req: &Request<'_>, res: &mut Response<'_>);

    /// Called when the head of a request with a body has arrived, before
    /// any of the body is read (and before `100 Continue` is sent): what to
    /// do with the body. The default reads it whole.
    fn on_head(&self, req: &Request<'_>) -> BodyPlan {
        let _ = req;
        BodyPlan::Buffer
    }

    /// Renders a request the engine answers itself (a malformed request's
    /// 400, a slow one's 408, a body or head too large, 413 and 431, the
    /// 500 of a handler that panicked or dropped its reply): `None`, the
    /// default, answers in plain text. The status and what becomes of the
    /// connection stay the engine's.
    fn refusal(&self, refusal: &super::Refusal<'_>) -> Option<super::Rendered> {
        let _ = refusal;
        None
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
pub(crate) struct Ctx<'a> {
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
    /// Engine states of parked connections, for the next one that wakes.
    pub spare: &'a mut Spare,
    /// Hears what happens (the engine's one way out: `http::events`).
    pub observer: &'a mut dyn Observer,
    /// HTTP/2 response header blocks encoded before, shared by the
    /// loop's connections.
    pub heads: &'a mut crate::http::blocks::Blocks,
}

/// What a connection a handler handed off carries away from the engine.
pub(crate) struct Taken {
    pub head: Vec<u8>,
    pub rest: Vec<u8>,
    pub context: Option<crate::http::response::HandOffContext>,
    /// What the request's access line repeats.
    pub seen: crate::http::events::Kept,
}

/// Whether `advance` can go on at once or must wait for bytes, room or
/// an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
    Again,
    Wait,
}

/// Engine states given up by parked connections. Boxed on purpose: a box
/// goes to `Engine::Busy` as it is, so waking a connection reuses its
/// allocation instead of making one.
#[allow(clippy::vec_box)]
pub(crate) type Spare = Vec<Box<Conn>>;

/// An idle keep-alive connection in its smallest form (about 100 bytes
/// instead of the engine's 440 and its queues): ten thousand idle
/// connections cost a megabyte. `Conn::resume` brings it back when bytes
/// arrive or its deadline passes.
pub(crate) struct Parked {
    peer: Addr,
    served: u64,
    accepted: Instant,
    phase_at: Instant,
    next_reply: u64,
}

impl Parked {
    /// A stand-in while a parked state is moved out.
    pub(crate) fn empty(now: Instant) -> Parked {
        Parked {
            peer: Addr::Unknown,
            served: 0,
            accepted: now,
            phase_at: now,
            next_reply: 0,
        }
    }

    pub(crate) fn peer(&self) -> &Addr {
        &self.peer
    }

    /// The idle deadline, as `Conn::deadline` would say for it.
    pub(crate) fn deadline(&self, t: &Timeouts) -> Instant {
        idle_deadline(self.served, self.accepted, self.phase_at, t)
    }
}

/// Between requests: the first must start within `connection_setup` of
/// the accept, a later one within `intra_stream` of the last answer.
fn idle_deadline(served: u64, accepted: Instant, phase_at: Instant, t: &Timeouts) -> Instant {
    if served == 0 {
        accepted + t.connection_setup
    } else {
        phase_at + t.intra_stream
    }
}

/// Why a deadline fired, for the log line.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Expired {
    /// Nothing was in flight: close quietly.
    Idle,
    /// A request was in progress: a 408 was queued.
    Request,
    /// The peer stopped reading our output: abort.
    Write,
    /// The linger after our close ran out.
    Linger,
}

pub(crate) struct Conn {
    rbuf: Vec<u8>,
    start: usize,
    end: usize,
    state: State,
    head: Head,
    scanned: usize,
    out: Output,
    served: u64,
    peer: Addr,
    accepted: Instant,
    phase_at: Instant,
    body_progress: Instant,
    /// When the current body started, and how many bytes have come since
    /// (for `Timeouts::body_min_rate`).
    body_started: Instant,
    body_received: u64,
    write_progress: Instant,
    next_reply: u64,
}

impl Conn {
    /// The client is not the socket's peer: a PROXY header named it.
    pub(crate) fn set_peer(&mut self, peer: Addr) {
        self.peer = peer;
    }

    pub(crate) fn new(peer: Addr, now: Instant) -> Self {
        Conn {
            rbuf: Vec::new(),
            start: 0,
            end: 0,
            state: State::new(),
            head: Head::default(),
            scanned: 0,
            out: Output::default(),
            served: 0,
            peer,
            accepted: now,
            phase_at: now,
            body_progress: now,
            body_started: now,
            body_received: 0,
            write_progress: now,
            next_reply: 0,
        }
    }

    pub(crate) fn peer(&self) -> &Addr {
        &self.peer
    }

    /// What an idle connection must keep, if it is idle: between requests,
    /// nothing buffered (its buffers already back in the pool), nothing
    /// being written, input not ended. The rest is rebuilt by `resume`.
    pub(crate) fn parked(&self) -> Option<Parked> {
        let idle = self.is_idle()
            && self.rbuf.is_empty()
            && !self.state.eof
            && self.state.keep_alive == state::KeepAlive::Idle;
        idle.then(|| Parked {
            peer: self.peer.clone(),
            served: self.served,
            accepted: self.accepted,
            phase_at: self.phase_at,
            next_reply: self.next_reply,
        })
    }

    /// Turns this state back into the parked connection's, ready for its
    /// next request. `self` is a fresh state or one given up by a parked
    /// connection (idle, its buffers and queues released), so only what
    /// belongs to a connection is set, and the state is reset.
    pub(crate) fn resume(&mut self, p: Parked) {
        debug_assert!(self.rbuf.is_empty() && self.out.is_empty());
        self.start = 0;
        self.end = 0;
        self.scanned = 0;
        self.state = State::new();
        self.served = p.served;
        self.peer = p.peer;
        self.accepted = p.accepted;
        self.phase_at = p.phase_at;
        self.body_progress = p.phase_at;
        self.write_progress = p.phase_at;
        // Replies of earlier deferred responses must never match a later
        // one's id.
        self.next_reply = p.next_reply;
    }

    fn backpressured(&self, limits: &Limits) -> bool {
        self.out.responses() >= limits.max_pipelined || self.out.bytes() > limits.max_output_buffer
    }

    /// Should the I/O layer read now (if the socket is readable)?
    pub(crate) fn wants_read(&self, limits: &Limits) -> bool {
        if self.state.linger_until().is_some() {
            return !self.state.eof;
        }
        if self.state.eof {
            return false;
        }
        match self.state.reading {
            Reading::Body(..) | Reading::Discard(_) => true,
            Reading::Idle | Reading::Head => {
                self.state.dispatching() && !self.backpressured(limits)
            }
            Reading::KeepAlive | Reading::Closed => false,
        }
    }

    fn ensure_buf(&mut self, pool: &mut BufPool) {
        if self.rbuf.is_empty() {
            self.rbuf = pool.take_filled();
        }
    }

    /// How large the read buffer may grow in the current phase.
    fn cap_limit(&self, limits: &Limits) -> usize {
        let head = limits.max_header_bytes + 1;
        match &self.state.reading {
            Reading::Body(_, Some(_)) => self.head.len + limits.max_input_chunk,
            Reading::Body(Decoder::Length(n), None) => self.head.len + *n as usize,
            Reading::Body(Decoder::Chunked(_), None) => {
                self.head.len + limits.max_body as usize + MAX_CHUNK_LINE + limits.max_header_bytes
            }
            // Dropped as it is decoded: one framing line or the trailers.
            Reading::Discard(Decoder::Chunked(_)) => head + MAX_CHUNK_LINE,
            _ => head,
        }
    }

    /// Room to read into, or `None` when the connection should not read.
    /// Inlined into `EngineIo::read_buf`, the I/O layer's one way in.
    #[inline(always)]
    pub(crate) fn read_buf(&mut self, pool: &mut BufPool, limits: &Limits) -> Option<&mut [u8]> {
        if !self.wants_read(limits) {
            return None;
        }
        self.ensure_buf(pool);
        if self.state.linger_until().is_some() {
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
    pub(crate) fn filled(&mut self, n: usize, now: Instant) {
        if self.state.linger_until().is_some() {
            return;
        }
        self.end += n;
        if let Reading::Body(..) | Reading::Discard(_) = self.state.reading {
            self.body_progress = now;
            self.body_received += n as u64;
        }
    }

    /// Appends bytes that were read elsewhere (pre-read bytes of a handed
    /// over stream; tests). Limits still apply when they are parsed.
    pub(crate) fn feed(&mut self, bytes: &[u8], pool: &mut BufPool, now: Instant) {
        if bytes.is_empty() || self.state.linger_until().is_some() {
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
    pub(crate) fn unparsed(&self) -> &[u8] {
        &self.rbuf[self.start..self.end]
    }

    /// Takes the bytes read but not yet parsed (they were a TLS ClientHello,
    /// for the TLS session rather than the parser).
    pub(crate) fn take_unparsed(&mut self) -> Vec<u8> {
        let v = self.unparsed().to_vec();
        self.start = self.end;
        v
    }

    /// Nothing answered yet and no request under way past its head: the
    /// bytes so far may still turn out to be another protocol's (HTTP/2's
    /// preface).
    pub(crate) fn is_fresh(&self) -> bool {
        self.served == 0 && matches!(self.state.reading, Reading::Idle | Reading::Head)
    }

    /// The peer shut down its side (read returned 0).
    pub(crate) fn on_eof(&mut self) {
        self.state.eof = true;
    }

    /// Parses and answers every complete request in the buffer, in order,
    /// until it needs more bytes or the output queue is full.
    pub(crate) fn advance(
        &mut self,
        now: Instant,
        ctx: &mut Ctx<'_>,
        via: crate::http::request::Via<'_>,
    ) {
        loop {
            let flow = match &self.state.reading {
                _ if !self.state.dispatching() => Flow::Wait,
                Reading::Idle | Reading::Head => self.read_head(now, ctx, via),
                Reading::Body(..) => self.read_body(now, ctx, via),
                Reading::Discard(_) => self.read_discard(now, ctx),
                Reading::KeepAlive | Reading::Closed => Flow::Wait,
            };
            if flow == Flow::Wait {
                return;
            }
        }
    }

    /// The peer ended its input inside a request body: the request cannot
    /// be served, and a client that only half-closed is still reading.
    fn body_cut_short(&mut self, now: Instant, ctx: &mut Ctx<'_>) -> Flow {
        self.trouble(ctx, Severity::Debug, &"input ended mid-body");
        self.stop_with(Reject::new(400, "request body cut short"), now, ctx)
    }

    /// Refuses the request (`reject`); nothing more is read.
    /// Tells the observer of something that is no answer.
    fn trouble(&self, ctx: &mut Ctx<'_>, severity: Severity, what: &dyn std::fmt::Display) {
        ctx.observer.event(Event::Trouble {
            peer: &self.peer,
            severity,
            what,
        });
    }

    fn stop_with(&mut self, rej: Reject, now: Instant, ctx: &mut Ctx<'_>) -> Flow {
        self.reject(rej, now, ctx);
        Flow::Wait
    }

    // ---- output ----

    /// The queue of bytes owed to the peer.
    pub(crate) fn output(&mut self) -> &mut Output {
        &mut self.out
    }

    /// Records write progress (for the write deadline).
    pub(crate) fn wrote(&mut self, now: Instant) {
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
    pub(crate) fn is_idle(&self) -> bool {
        self.state.is_between_requests() && self.start == self.end && self.out.is_empty()
    }

    /// Requests served on this connection so far.
    #[inline]
    pub(crate) fn served(&self) -> u64 {
        self.served
    }

    /// Holds a read or an output buffer.
    #[cfg(test)]
    pub(crate) fn holds_buffers(&self) -> bool {
        !self.rbuf.is_empty() || self.out.holds_buffer()
    }

    pub(crate) fn release_buffers(&mut self, pool: &mut BufPool) {
        if self.start == self.end && !self.rbuf.is_empty() {
            self.start = 0;
            self.end = 0;
            pool.give_filled(std::mem::take(&mut self.rbuf));
        }
        self.out.release(pool);
    }

    /// What to do with the socket after this turn. `draining`: the server
    /// is shutting down, so a connection that has become idle closes rather
    /// than waiting for another request.
    pub(crate) fn next(&mut self, now: Instant, timeouts: &Timeouts, draining: bool) -> Next {
        // Draining, an idle keep-alive connection closes at once; one with
        // a request in flight answers it (with `Connection: close`) and
        // then closes. A fresh one has not sent its first request: it was
        // opened for it, and its bytes may be a moment behind the accept,
        // so closing it would lose that request (once in a run of the test
        // command, a client of a systemd restart read nothing). It waits
        // for the request as any new connection does, up to
        // `connection_setup`, as nginx does on a graceful stop.
        let idle_and_draining = draining && self.is_idle() && !self.is_fresh();
        let next = self.state.next(
            self.out.is_empty(),
            idle_and_draining,
            now + timeouts.linger,
        );
        if next == Next::ShutdownWrite {
            // From here on reads are discarded.
            self.start = 0;
            self.end = 0;
        }
        next
    }

    /// After `Next::HandOff`: the request head, the bytes read after it (a
    /// WebSocket client may send its first frame with the upgrade), and
    /// what the handler told the receiver.
    pub(crate) fn take_hand_off(&mut self) -> Option<Taken> {
        let h = self.state.take_hand_off()?;
        let state::HandingOff {
            head,
            context,
            seen,
        } = *h;
        let rest = self.rbuf[self.start..self.end].to_vec();
        self.start = 0;
        self.end = 0;
        Some(Taken {
            head,
            rest,
            context,
            seen,
        })
    }

    fn write_deadline(&self, t: &Timeouts) -> Option<Instant> {
        (!self.out.is_empty()).then(|| self.write_progress + t.write_progress)
    }

    fn read_deadline(&self, t: &Timeouts) -> Option<Instant> {
        if let Writing::Deferred(d) = &self.state.writing {
            return Some(d.since + d.st.limit(t.response));
        }
        match self.state.reading {
            Reading::Idle if self.out.is_empty() => {
                Some(idle_deadline(self.served, self.accepted, self.phase_at, t))
            }
            Reading::Idle => None,
            Reading::Head => Some(if self.served == 0 {
                self.accepted + t.connection_setup
            } else {
                self.phase_at + t.connection_setup
            }),
            Reading::Body(..) => {
                let gap = self.body_progress + t.body_progress;
                if t.body_min_rate == 0 {
                    return Some(gap);
                }
                let earned =
                    std::time::Duration::from_secs(self.body_received / u64::from(t.body_min_rate));
                Some(gap.min(self.body_started + t.body_progress + earned))
            }
            // Already answered: the body must come as a lingering close's
            // bytes would (no gap over `linger`), and in all within
            // `body_progress`.
            Reading::Discard(_) => {
                Some((self.body_progress + t.linger).min(self.body_started + t.body_progress))
            }
            Reading::KeepAlive | Reading::Closed => None,
        }
    }

    /// When this connection next needs attention if nothing happens.
    pub(crate) fn deadline(&self, t: &Timeouts) -> Option<Instant> {
        // The common case first, what the rest gives for it: between
        // requests, nothing owed (no linger, nothing to write, nothing
        // deferred).
        if self.state.is_between_requests() && self.out.is_empty() {
            return Some(idle_deadline(self.served, self.accepted, self.phase_at, t));
        }
        if let Some(l) = self.state.linger_until() {
            return Some(l);
        }
        match (self.write_deadline(t), self.read_deadline(t)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Handles a deadline that may have passed. `None`: it had not (the
    /// timer was stale).
    pub(crate) fn on_timeout(&mut self, now: Instant, ctx: &mut Ctx<'_>) -> Option<Expired> {
        if let Some(l) = self.state.linger_until() {
            return (l <= now).then_some(Expired::Linger);
        }
        if self.write_deadline(ctx.timeouts).is_some_and(|d| d <= now) {
            self.out.clear();
            return Some(Expired::Write);
        }
        if self.read_deadline(ctx.timeouts).is_some_and(|d| d <= now) {
            if let Writing::Deferred(_) = self.state.writing {
                self.trouble(
                    ctx,
                    Severity::Warn,
                    &"a deferred response was not finished in time",
                );
                if self.state.deferred_unsent() {
                    let rej = Reject::new(504, "the response was not ready in time");
                    self.reject(rej, now, ctx);
                } else {
                    self.state.abort();
                }
                return Some(Expired::Request);
            }
            if let Reading::Idle = self.state.reading {
                self.state.close_read();
                return Some(Expired::Idle);
            }
            if let Reading::Discard(_) = self.state.reading {
                // The request has its answer; only the connection ends.
                self.trouble(
                    ctx,
                    Severity::Debug,
                    &"a discarded body was too slow; closing",
                );
                self.state.close_read();
                self.start = self.end;
                return Some(Expired::Idle);
            }
            self.reject(Reject::new(408, "request not received in time"), now, ctx);
            return Some(Expired::Request);
        }
        None
    }
}
