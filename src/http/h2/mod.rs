//! The HTTP/2 engine, sans-I/O, beside HTTP/1.1's (`conn/`): bytes in,
//! bytes out, the same typed events, the same handlers.
//!
//! Framing, HPACK, flow control and the protocol's state machines are
//! hyperium's `h2` crate (it passes h2spec, and carries the fixes for the
//! rapid-reset and CONTINUATION floods), driven without a runtime: it runs
//! over in-memory buffers (`pipe.rs`) that the server's connection fills
//! from the socket and drains to it, and it is polled here, with a waker
//! that does nothing, whenever bytes arrive or leave or a deadline passes:
//! everything that can make it progress is one of those. Each request is
//! one `Stream` (`stream.rs`).

mod guard;
mod pipe;
mod stream;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::Bytes;
use h2::server::{self, Connection, Handshake};

use super::conn::{Ctx, Expired, Next};
use super::engine_io::EngineIo;
use super::events::{Event, Severity};
use super::limits::{Limits, Timeouts};
use super::output::Output;
use super::pool::BufPool;
use super::reply::Job;
use crate::sys::Addr;
use guard::{Guard, Rates, Violation};
use pipe::{OUTPUT_LIMIT, Pipe};
use stream::{Room, Stream};

/// What an HTTP/2 client sends first (RFC 9113 §3.4).
pub(crate) const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Bytes read from the socket that `h2` has not taken yet, at most.
const INPUT_LIMIT: usize = 256 * 1024;
/// One read from the socket, at most.
const READ_SIZE: usize = 16 * 1024;

/// What a connection's first bytes say: `Some(true)` the HTTP/2 preface,
/// `Some(false)` something else, `None` too few bytes to tell.
pub(crate) fn preface(first: &[u8]) -> Option<bool> {
    let n = first.len().min(PREFACE.len());
    if first[..n] != PREFACE[..n] {
        Some(false)
    } else if n == PREFACE.len() {
        Some(true)
    } else {
        None
    }
}

enum State {
    /// Waiting for the preface and the client's SETTINGS.
    Handshaking(Handshake<Pipe, Bytes>),
    Open(Connection<Pipe, Bytes>),
    /// Ended (GOAWAY sent or received, an error, the peer's close): what
    /// is owed goes out, then the socket closes.
    Closed,
}

pub(crate) struct H2Conn {
    pipe: Pipe,
    state: State,
    streams: Vec<Stream>,
    out: Output,
    rbuf: Vec<u8>,
    peer: Addr,
    accepted: Instant,
    /// When the last stream ended (the idle deadline).
    idle_since: Instant,
    write_progress: Instant,
    /// A graceful GOAWAY was asked for (draining, handing over, idle).
    going_away: bool,
    /// Looks at every frame before `h2` does (`guard.rs`).
    guard: Guard,
    /// The guard refused a frame: the connection ends with this GOAWAY,
    /// once what came before it is handled.
    doomed: Option<Violation>,
}

impl H2Conn {
    /// A connection whose first bytes (`first`: the preface, maybe more)
    /// were read by someone else: HTTP/1.1's engine, which saw the
    /// preface, or the TLS session that agreed on `h2` by ALPN.
    pub(crate) fn new(peer: Addr, now: Instant, first: &[u8], limits: &Limits) -> H2Conn {
        let pipe = Pipe::default();
        let rates = Rates {
            control: limits.max_control_frames_per_second,
            resets: limits.max_resets_per_second,
        };
        let handshake = server::Builder::new()
            .max_concurrent_streams(limits.max_concurrent_streams)
            .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
            .max_send_buffer_size(limits.max_output_buffer)
            .handshake(pipe.clone());
        let mut h = H2Conn {
            pipe,
            state: State::Handshaking(handshake),
            streams: Vec::new(),
            out: Output::default(),
            rbuf: Vec::new(),
            peer,
            accepted: now,
            idle_since: now,
            write_progress: now,
            going_away: false,
            guard: Guard::new(rates, now),
            doomed: None,
        };
        h.take_in(first, now);
        h
    }

    /// Bytes from the client, through the guard, for `h2`.
    fn take_in(&mut self, bytes: &[u8], now: Instant) {
        if self.doomed.is_some() {
            return;
        }
        let input = &mut self.pipe.0.borrow_mut().input;
        match self.guard.inspect(bytes, now) {
            Ok(()) => input.extend_from_slice(bytes),
            Err((n, v)) => {
                input.extend_from_slice(&bytes[..n]);
                self.doomed = Some(v);
            }
        }
    }

    /// After the frames before a refused one were handled: the guard's
    /// GOAWAY, after whatever `h2` wrote, and the end.
    fn end_refused(&mut self, ctx: &mut Ctx<'_>) {
        let Some(v) = self.doomed else {
            return;
        };
        if matches!(self.state, State::Closed) && self.streams.is_empty() {
            return;
        }
        self.take_output();
        ctx.observer.event(Event::GoAway {
            peer: &self.peer,
            code: v.code,
            why: v.why,
        });
        let f = guard::goaway(self.guard.highest_stream, v.code);
        self.out.push_owned(f);
        self.state = State::Closed;
        self.streams.clear();
    }

    pub(crate) fn peer(&self) -> &Addr {
        &self.peer
    }

    /// Asks for a graceful end: GOAWAY with 2^31−1, a PING, then GOAWAY
    /// with the last stream taken (`h2`'s two steps); open streams finish.
    /// `true` if it was not asked for before.
    pub(crate) fn go_away(&mut self) -> bool {
        if self.going_away {
            return false;
        }
        self.going_away = true;
        if let State::Open(c) = &mut self.state {
            c.graceful_shutdown();
        }
        true
    }

    /// Takes what arrived, runs handlers on complete requests, and queues
    /// what the windows let go, until nothing more moves.
    pub(crate) fn advance(&mut self, now: Instant, ctx: &mut Ctx<'_>) {
        if ctx.draining {
            self.go_away();
        }
        let owed_before = self.owes();
        let mut cx = Context::from_waker(Waker::noop());
        loop {
            let mut progress = self.poll_connection(&mut cx, now, ctx);
            let mut room = self.room(ctx.limits);
            for s in &mut self.streams {
                progress |= s.drive(&mut cx, &self.peer, now, ctx, &mut room);
            }
            let before = self.streams.len();
            self.streams.retain(|s| !s.is_done());
            if self.streams.len() < before && self.streams.is_empty() {
                self.idle_since = now;
            }
            progress |= self.take_output();
            if !progress {
                break;
            }
        }
        self.end_refused(ctx);
        self.release_buffers(ctx.pool);
        // The write deadline counts from when something became owed, not
        // from the last write before it (as HTTP/1.1's does).
        if !owed_before && self.owes() {
            self.write_progress = now;
        }
    }

    /// Does the peer owe us reading: bytes queued for the socket, or a
    /// response waiting for its windows to open?
    fn owes(&self) -> bool {
        !self.out.is_empty() || self.streams.iter().any(Stream::awaits_window)
    }

    /// Between turns an HTTP/2 connection keeps only what `h2` keeps: the
    /// read buffer goes back to the pool, and emptied buffers give their
    /// memory back (an idle connection should cost little, as nginx's).
    fn release_buffers(&mut self, pool: &mut BufPool) {
        if !self.rbuf.is_empty() {
            pool.give_filled(std::mem::take(&mut self.rbuf));
        }
        let mut b = self.pipe.0.borrow_mut();
        if b.unread() == 0 && b.input.capacity() > 0 {
            b.input = Vec::new();
        }
        drop(b);
        if self.out.is_empty() {
            self.out.release(pool);
        }
    }

    /// Body bytes the connection's streams may still hold for handlers:
    /// `max_body` in all (a connection holds no more than one HTTP/1.1
    /// connection may, however many streams it opens), beyond which
    /// windows are given back only to the stream holding the most.
    fn room(&self, limits: &Limits) -> Room {
        let cap = usize::try_from(limits.max_body).unwrap_or(usize::MAX);
        let mut held = 0;
        let mut leader = None;
        let mut most = 0;
        for s in &self.streams {
            let b = s.buffered();
            held += b;
            if b > most {
                (most, leader) = (b, Some(s.id));
            }
        }
        Room {
            bytes: cap.saturating_sub(held),
            leader,
        }
    }

    /// Lets `h2` read frames, write what is queued, and give new streams.
    fn poll_connection(&mut self, cx: &mut Context<'_>, now: Instant, ctx: &mut Ctx<'_>) -> bool {
        let mut progress = false;
        if let State::Handshaking(hs) = &mut self.state {
            match Pin::new(hs).poll(cx) {
                Poll::Ready(Ok(mut c)) => {
                    if self.going_away {
                        c.graceful_shutdown();
                    }
                    self.state = State::Open(c);
                    self.idle_since = now;
                    progress = true;
                }
                Poll::Ready(Err(e)) => {
                    self.trouble(ctx, Severity::Debug, &format_args!("HTTP/2 preface: {e}"));
                    self.state = State::Closed;
                    return true;
                }
                Poll::Pending => return false,
            }
        }
        let State::Open(c) = &mut self.state else {
            return progress;
        };
        loop {
            match c.poll_accept(cx) {
                Poll::Ready(Some(Ok((req, respond)))) => {
                    let s = Stream::open(req, respond, &self.peer, now, ctx);
                    self.streams.push(s);
                    progress = true;
                }
                Poll::Ready(Some(Err(e))) => {
                    // A connection error: h2 has queued its GOAWAY.
                    let severity = if e.is_io() {
                        Severity::Debug
                    } else {
                        Severity::Info
                    };
                    let peer = &self.peer;
                    let what = format_args!("HTTP/2: {e}");
                    ctx.observer.event(Event::Trouble {
                        peer,
                        severity,
                        what: &what,
                    });
                    self.state = State::Closed;
                    return true;
                }
                Poll::Ready(None) => {
                    self.state = State::Closed;
                    return true;
                }
                Poll::Pending => return progress,
            }
        }
    }

    /// Moves what `h2` wrote into the output queue, while it is under its
    /// bound (past it, `h2` waits: back-pressure from the socket).
    fn take_output(&mut self) -> bool {
        if self.out.bytes() >= OUTPUT_LIMIT {
            return false;
        }
        let mut b = self.pipe.0.borrow_mut();
        if b.output.is_empty() {
            return false;
        }
        let bytes = std::mem::take(&mut b.output);
        drop(b);
        self.out.push_owned(bytes);
        true
    }

    fn trouble(&self, ctx: &mut Ctx<'_>, severity: Severity, what: &dyn std::fmt::Display) {
        ctx.observer.event(Event::Trouble {
            peer: &self.peer,
            severity,
            what,
        });
    }

    /// Runs a deferred response's job on the stream it was meant for, if
    /// it is still there (`None`: every `Reply` was dropped).
    pub(crate) fn reply(&mut self, id: u64, job: Option<Job>, now: Instant, ctx: &mut Ctx<'_>) {
        if let Some(s) = self.streams.iter_mut().find(|s| s.id == id) {
            s.deferred_job(job, &self.peer, now, ctx);
        }
    }

    /// What to do with the socket after this turn.
    pub(crate) fn next(&mut self) -> Next {
        let owed = !self.out.is_empty() || !self.pipe.0.borrow().output.is_empty();
        if matches!(self.state, State::Closed) && !owed {
            Next::Close
        } else {
            Next::Continue
        }
    }

    /// When the connection next needs attention if nothing happens.
    pub(crate) fn deadline(&self, t: &Timeouts) -> Option<Instant> {
        let write = self.owes().then(|| self.write_progress + t.write_progress);
        let read = match &self.state {
            _ if !self.guard.set_up => Some(self.accepted + t.connection_setup),
            State::Handshaking(_) => Some(self.accepted + t.connection_setup),
            State::Open(_) if self.streams.is_empty() => Some(self.idle_since + t.intra_stream),
            State::Open(_) => self
                .streams
                .iter()
                .filter_map(|s| {
                    if s.is_receiving() {
                        Some(s.progress + t.body_progress)
                    } else {
                        s.deferred_until(t.response)
                    }
                })
                .min(),
            State::Closed => None,
        };
        match (write, read) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Handles a deadline that may have passed (`None`: it had not).
    pub(crate) fn on_timeout(&mut self, now: Instant, ctx: &mut Ctx<'_>) -> Option<Expired> {
        let t = ctx.timeouts;
        if self.owes() && self.write_progress + t.write_progress <= now {
            // Nothing left for the write deadline: the socket took nothing,
            // or the peer opened no window.
            self.out.clear();
            return Some(Expired::Write);
        }
        let set_up = self.guard.set_up && !matches!(self.state, State::Handshaking(_));
        match &self.state {
            State::Handshaking(_) | State::Open(_)
                if !set_up && self.accepted + t.connection_setup <= now =>
            {
                self.trouble(ctx, Severity::Debug, &"HTTP/2 preface not received in time");
                self.state = State::Closed;
                Some(Expired::Idle)
            }
            State::Open(_)
                if self.streams.is_empty() && self.idle_since + t.intra_stream <= now =>
            {
                self.go_away();
                Some(Expired::Idle)
            }
            State::Open(_)
                if self
                    .streams
                    .iter()
                    .any(|s| s.deferred_until(t.response).is_some_and(|d| d <= now)) =>
            {
                let peer = self.peer.clone();
                for s in &mut self.streams {
                    if s.deferred_until(t.response).is_some_and(|d| d <= now) {
                        s.deferred_late(&peer, ctx);
                    }
                }
                Some(Expired::Request)
            }
            State::Open(_)
                if self
                    .streams
                    .iter()
                    .any(|s| s.is_receiving() && s.progress + t.body_progress <= now) =>
            {
                // A stalled body: the connection goes (its other streams
                // finish first), the stalled stream with it.
                self.trouble(ctx, Severity::Debug, &"an HTTP/2 request body stalled");
                self.go_away();
                self.state = State::Closed;
                Some(Expired::Request)
            }
            _ => None,
        }
    }
}

impl EngineIo for H2Conn {
    fn wants_read(&self, _limits: &Limits) -> bool {
        let b = self.pipe.0.borrow();
        !b.eof
            && self.doomed.is_none()
            && !matches!(self.state, State::Closed)
            && b.unread() < INPUT_LIMIT
    }
    fn read_buf(&mut self, pool: &mut BufPool, limits: &Limits) -> Option<&mut [u8]> {
        if !self.wants_read(limits) {
            return None;
        }
        // Borrowed from the loop's pool for the turn (`advance` gives it
        // back): an idle connection holds no read buffer.
        if self.rbuf.is_empty() {
            self.rbuf = pool.take_filled();
        }
        let n = self.rbuf.len().min(READ_SIZE);
        Some(&mut self.rbuf[..n])
    }
    fn filled(&mut self, n: usize, now: Instant) {
        let bytes = std::mem::take(&mut self.rbuf);
        self.take_in(&bytes[..n], now);
        self.rbuf = bytes;
    }
    fn feed(&mut self, bytes: &[u8], _pool: &mut BufPool, now: Instant) {
        self.take_in(bytes, now);
    }
    fn unparsed(&self) -> &[u8] {
        &[]
    }
    fn take_unparsed(&mut self) -> Vec<u8> {
        Vec::new()
    }
    fn on_eof(&mut self) {
        self.pipe.0.borrow_mut().eof = true;
    }
    fn set_peer(&mut self, peer: Addr) {
        self.peer = peer;
    }
    fn output(&mut self) -> &mut Output {
        &mut self.out
    }
    fn wrote(&mut self, now: Instant) {
        self.write_progress = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_the_preface_from_http1_and_waits_for_enough_bytes() {
        assert_eq!(preface(PREFACE), Some(true));
        assert_eq!(preface(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0"), Some(true));
        assert_eq!(preface(b"PRI * HTTP/2"), None);
        assert_eq!(preface(b"GET / HTTP/1.1\r\n"), Some(false));
        assert_eq!(preface(b"PRI * HTTP/1.1\r\n"), Some(false));
    }
}
