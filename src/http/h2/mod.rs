//! The HTTP/2 engine, sans-I/O, beside HTTP/1.1's (`conn/`): bytes in,
//! bytes out, the same typed events, the same handlers.
//!
//! Frames, flow control and the protocol's state machines are ours
//! (`session.rs`, over `frame.rs`), HPACK decoding a maintained crate's
//! (`hpack.rs`): so an idle connection keeps only its HPACK table and a
//! few counters, a request costs what our own code costs (the `h2` crate,
//! used before, cost about half of an h2c request's instructions), and
//! the state could be parked and moved. Each request is one `Stream`
//! (`stream/`), whose head goes through HTTP/1.1's one parser.

mod fields;
pub(crate) mod frame;
mod hpack;
mod session;
mod stream;

use std::time::Instant;

use super::conn::{Ctx, Expired, Next};
use super::engine_io::EngineIo;
use super::events::{Event, Severity};
use super::limits::{Limits, Timeouts};
use super::output::Output;
use super::pool::BufPool;
use super::reply::Job;
use crate::sys::Addr;
use session::{Config, Opened, Rates, Session};
use stream::{Room, Stream};

/// What an HTTP/2 client sends first (RFC 9113 §3.4).
pub(crate) const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Bytes read from the socket and not yet whole frames, at most (a
/// frame is at most 16 KiB and its head).
const INPUT_LIMIT: usize = 64 * 1024;
/// One read from the socket, at most.
const READ_SIZE: usize = 16 * 1024;

/// The session's settings from the server's limits.
fn config(limits: &Limits) -> Config {
    Config {
        max_streams: limits.max_concurrent_streams,
        max_header_list: limits.max_header_bytes,
        rates: Rates {
            control: limits.max_control_frames_per_second,
            resets: limits.max_resets_per_second,
        },
    }
}

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

pub(crate) struct H2Conn {
    sess: Session,
    streams: Vec<Stream>,
    out: Output,
    rbuf: Vec<u8>,
    peer: Addr,
    accepted: Instant,
    /// When the last stream ended (the idle deadline).
    idle_since: Instant,
    write_progress: Instant,
    /// Requests whose head came, waiting for `advance` to run them.
    opened: Vec<Opened>,
    /// The connection error was told to the observer.
    told: bool,
}

impl H2Conn {
    /// A connection whose first bytes (`first`: the preface, maybe more)
    /// were read by someone else: HTTP/1.1's engine, which saw the
    /// preface, or the TLS session that agreed on `h2` by ALPN.
    pub(crate) fn new(peer: Addr, now: Instant, first: &[u8], limits: &Limits) -> H2Conn {
        let mut h = H2Conn::with(Session::new(config(limits), now), peer, now);
        h.take_in(first, now);
        h
    }

    /// A connection another process parked (`park`) and passed here with
    /// its socket, going on where it was; `pre_read`: what that process
    /// read after (nothing, as it parks only between frames).
    pub(crate) fn resume(
        peer: Addr,
        now: Instant,
        state: &[u8],
        pre_read: &[u8],
        limits: &Limits,
    ) -> Result<H2Conn, &'static str> {
        let sess = Session::resume(config(limits), state, now)?;
        let mut h = H2Conn::with(sess, peer, now);
        h.take_in(pre_read, now);
        Ok(h)
    }

    /// What a new process needs to go on with this connection, if it is
    /// between requests with nothing owed either way; `None` otherwise
    /// (it is asked again after its next turn).
    pub(crate) fn park(&self) -> Option<Vec<u8>> {
        let idle = self.streams.is_empty() && self.opened.is_empty() && self.out.is_empty();
        (idle && self.sess.movable()).then(|| self.sess.park())
    }

    /// A GOAWAY went or came, or the connection failed: it is ending and
    /// will not be between requests for a move.
    pub(crate) fn is_ending(&self) -> bool {
        self.sess.going_away() || self.sess.is_over()
    }

    fn with(sess: Session, peer: Addr, now: Instant) -> H2Conn {
        H2Conn {
            sess,
            streams: Vec::new(),
            out: Output::default(),
            rbuf: Vec::new(),
            peer,
            accepted: now,
            idle_since: now,
            write_progress: now,
            opened: Vec::new(),
            told: false,
        }
    }

    fn take_in(&mut self, bytes: &[u8], now: Instant) {
        self.sess.take_in(bytes, now, &mut self.opened);
    }

    pub(crate) fn peer(&self) -> &Addr {
        &self.peer
    }

    /// Asks for a graceful end: GOAWAY with 2^31−1, a PING, then GOAWAY
    /// with the last stream taken; open streams finish. `true` if it was
    /// not asked for before.
    pub(crate) fn go_away(&mut self) -> bool {
        self.sess.go_away()
    }

    /// Runs handlers on requests that came, and sends what the windows
    /// let go, until nothing more moves.
    pub(crate) fn advance(
        &mut self,
        now: Instant,
        ctx: &mut Ctx<'_>,
        via: crate::http::request::Via<'_>,
    ) {
        if ctx.draining {
            self.go_away();
        }
        let owed_before = self.owes();
        loop {
            let mut progress = false;
            for o in std::mem::take(&mut self.opened) {
                let s = Stream::open(o, &mut self.sess, (&self.peer, via), now, ctx);
                self.streams.push(s);
                progress = true;
            }
            let queued = self.out.bytes() + self.sess.out.len();
            // Back-pressure from the socket.
            let bound = ctx.limits.max_output_buffer;
            self.sess.set_budget(bound.saturating_sub(queued));
            let mut room = self.room(ctx.limits);
            for s in &mut self.streams {
                progress |= s.drive(&mut self.sess, (&self.peer, via), now, ctx, &mut room);
            }
            let before = self.streams.len();
            self.streams.retain(|s| !s.is_done());
            if self.streams.len() < before && self.streams.is_empty() {
                self.idle_since = now;
            }
            if !progress {
                break;
            }
        }
        self.tell_failure(ctx);
        self.take_output();
        self.release_buffers(ctx.pool);
        // The write deadline counts from when something became owed, not
        // from the last write before it (as HTTP/1.1's does).
        if !owed_before && self.owes() {
            self.write_progress = now;
        }
    }

    /// A connection error ended it: the observer hears of it once.
    fn tell_failure(&mut self, ctx: &mut Ctx<'_>) {
        if self.told {
            return;
        }
        if let Some(v) = self.sess.failed {
            self.told = true;
            self.streams.clear();
            ctx.observer.event(Event::GoAway {
                peer: &self.peer,
                code: v.code,
                why: v.why,
            });
        }
    }

    /// Does the peer owe us reading: bytes queued for the socket, or a
    /// response waiting for its windows to open?
    fn owes(&self) -> bool {
        !self.out.is_empty()
            || !self.sess.out.is_empty()
            || self.streams.iter().any(Stream::awaits_window)
    }

    /// Between turns a connection keeps only its state: the read buffer
    /// goes back to the pool, and emptied buffers give their memory back
    /// (an idle connection should cost little, as nginx's does).
    fn release_buffers(&mut self, pool: &mut BufPool) {
        if !self.rbuf.is_empty() {
            pool.give_filled(std::mem::take(&mut self.rbuf));
        }
        self.sess.shrink();
        if self.streams.is_empty() {
            self.streams = Vec::new();
            self.opened = Vec::new();
        }
        if self.out.is_empty() {
            self.out.release(pool);
            self.out.shrink();
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

    /// Moves the frames the session wrote into the output queue.
    fn take_output(&mut self) {
        if !self.sess.out.is_empty() {
            let frames = std::mem::take(&mut self.sess.out);
            self.out.push_owned(frames);
        }
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
    pub(crate) fn reply(
        &mut self,
        id: u64,
        job: Option<Job>,
        (now, via): (Instant, crate::http::request::Via<'_>),
        ctx: &mut Ctx<'_>,
    ) {
        if let Some(s) = self.streams.iter_mut().find(|s| s.id == id) {
            s.deferred_job(job, &mut self.sess, (&self.peer, via), now, ctx);
        }
        self.streams.retain(|s| !s.is_done());
        self.take_output();
    }

    /// What to do with the socket after this turn.
    pub(crate) fn next(&mut self) -> Next {
        let owed = !self.out.is_empty() || !self.sess.out.is_empty();
        if self.sess.is_over() && !owed {
            Next::Close
        } else {
            Next::Continue
        }
    }

    /// When the connection next needs attention if nothing happens.
    pub(crate) fn deadline(&self, t: &Timeouts) -> Option<Instant> {
        let write = self.owes().then(|| self.write_progress + t.write_progress);
        let read = if self.sess.is_over() {
            None
        } else if !self.sess.set_up() {
            Some(self.accepted + t.connection_setup)
        } else if self.streams.is_empty() {
            Some(self.idle_since + t.intra_stream)
        } else {
            self.streams
                .iter()
                .filter_map(|s| {
                    if s.is_receiving() {
                        Some(s.progress + t.body_progress)
                    } else {
                        s.deferred_until(t.response)
                    }
                })
                .min()
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
            self.sess.out.clear();
            return Some(Expired::Write);
        }
        if self.sess.is_over() {
            return None;
        }
        if !self.sess.set_up() {
            if self.accepted + t.connection_setup <= now {
                self.trouble(ctx, Severity::Debug, &"HTTP/2 preface not received in time");
                self.sess.end_now();
                self.streams.clear();
                return Some(Expired::Idle);
            }
            return None;
        }
        if self.streams.is_empty() {
            if self.idle_since + t.intra_stream <= now {
                self.sess.end_now();
                return Some(Expired::Idle);
            }
            return None;
        }
        if self
            .streams
            .iter()
            .any(|s| s.deferred_until(t.response).is_some_and(|d| d <= now))
        {
            let peer = self.peer.clone();
            for s in &mut self.streams {
                if s.deferred_until(t.response).is_some_and(|d| d <= now) {
                    s.deferred_late(&mut self.sess, &peer, ctx);
                }
            }
            self.streams.retain(|s| !s.is_done());
            self.take_output();
            return Some(Expired::Request);
        }
        if self
            .streams
            .iter()
            .any(|s| s.is_receiving() && s.progress + t.body_progress <= now)
        {
            // A stalled body: the connection goes, the stalled stream and
            // the others with it.
            self.trouble(ctx, Severity::Debug, &"an HTTP/2 request body stalled");
            self.sess.end_now();
            self.streams.clear();
            self.take_output();
            return Some(Expired::Request);
        }
        None
    }
}

impl EngineIo for H2Conn {
    fn wants_read(&self, _limits: &Limits) -> bool {
        self.sess.wants_input() && self.sess.unread() < INPUT_LIMIT
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
        self.sess.on_eof();
    }
    fn set_peer(&mut self, peer: Addr) {
        self.peer = peer;
    }
    fn output(&mut self) -> &mut Output {
        // Frames written since the last turn go first.
        self.take_output();
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
