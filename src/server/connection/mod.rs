//! The connection room: one served connection as the loop sees it. It owns
//! its socket, its transport (plain, TLS, a PROXY header first) and the
//! readiness the kernel reported (`io.rs`), and its sans-I/O engine
//! (`Engine`). One `ready()` moves bytes both ways until nothing more can
//! be done without waiting, and says what the loop should do with it.
//!
//! A `wss://` connection handed to a worker stays here as a relay
//! (`relay.rs`, one relay; `relays.rs`, the loop's table of them): its TLS
//! session cannot leave the process.

mod io;
mod relay;
mod relays;

use std::time::Instant;

use crate::http::h2::H2Conn;
use crate::http::{Conn, Ctx, Expired, Next, Parked, Spare, Timeouts};
use crate::server::per_client::Admit;
use crate::sys::Addr;
pub(crate) use io::{Broken, Io, NO_CERTIFICATE, Readiness, Transport, Wrapping};
pub(super) use relays::{RELAY_TOKENS, Relays};

/// Parked connection states kept for reuse, at most.
const MAX_SPARE: usize = 64;

/// The engine of one connection: HTTP/1.1's, busy (the full sans-I/O
/// state, boxed) or parked between requests in its smallest form; or
/// HTTP/2's.
pub(super) enum Engine {
    Busy(Box<Conn>),
    Parked(Parked),
    H2(Box<H2Conn>),
}

impl Engine {
    /// HTTP/1.1's full state, brought back (into a spare allocation) if it
    /// was parked; `None` for HTTP/2.
    #[inline]
    pub(super) fn busy(&mut self, spare: &mut Spare, now: Instant) -> Option<&mut Conn> {
        if let Engine::Parked(_) = self {
            self.unpark(spare, now);
        }
        match self {
            Engine::Busy(b) => Some(b),
            Engine::Parked(_) | Engine::H2(_) => None,
        }
    }

    /// Brings a parked state back: out of line, so that a busy one is
    /// told so inline (the call cost 23 instructions a request, callgrind).
    #[inline(never)]
    fn unpark(&mut self, spare: &mut Spare, now: Instant) {
        if let Engine::Parked(p) = self {
            let p = std::mem::replace(p, Parked::empty(now));
            let mut b = spare
                .pop()
                .unwrap_or_else(|| Box::new(Conn::new(Addr::Unknown, now)));
            b.resume(p);
            *self = Engine::Busy(b);
        }
    }

    /// Handles a deadline that may have passed (`None`: it had not).
    pub(super) fn on_timeout(&mut self, now: Instant, ctx: &mut Ctx<'_>) -> Option<Expired> {
        if let Engine::H2(h) = self {
            return h.on_timeout(now, ctx);
        }
        self.busy(ctx.spare, now)?.on_timeout(now, ctx)
    }

    /// Parks the connection if it is idle with nothing buffered; the
    /// engine's allocation goes to `spare`.
    #[inline]
    fn park(&mut self, spare: &mut Spare) {
        let Engine::Busy(b) = self else {
            return;
        };
        let Some(p) = b.parked() else {
            return;
        };
        if let Engine::Busy(b) = std::mem::replace(self, Engine::Parked(p))
            && spare.len() < MAX_SPARE
        {
            spare.push(b);
        }
    }

    pub(super) fn peer(&self) -> &Addr {
        match self {
            Engine::Busy(b) => b.peer(),
            Engine::Parked(p) => p.peer(),
            Engine::H2(h) => h.peer(),
        }
    }

    /// When the connection next needs attention if nothing happens.
    #[inline(always)]
    pub(super) fn deadline(&self, t: &Timeouts) -> Option<Instant> {
        match self {
            Engine::Busy(b) => b.deadline(t),
            Engine::Parked(p) => Some(p.deadline(t)),
            Engine::H2(h) => h.deadline(t),
        }
    }
}

/// What the loop does with a connection after `ready()`.
pub(super) enum Outcome {
    /// Wait for readiness or a deadline.
    Wait,
    /// More to do, after the others' turn.
    Yield,
    /// Close the socket; `Some` says why it broke.
    Close(Option<Broken>),
    /// A handler took the connection over: the request head and the bytes
    /// read after it go with the socket.
    HandOff(Option<crate::http::Taken>),
}

pub(super) struct Connection {
    /// The socket, its transport and readiness.
    pub(super) io: Io,
    pub(super) engine: Engine,
    /// Tells this connection from an earlier one in the same slot, for
    /// timers and deferred replies that outlive it.
    pub(super) generation: u64,
    /// The earliest entry this connection has in the timer heap.
    pub(super) timer_at: Option<Instant>,
}

impl Connection {
    /// Between requests, with nothing buffered, and not parked yet: how
    /// many requests it has served.
    #[inline]
    pub(super) fn idle_awake(&self) -> Option<u64> {
        match &self.engine {
            Engine::Busy(c) if c.is_idle() => Some(c.served()),
            _ => None,
        }
    }

    /// Gives its buffers back to `pool` if it is idle (they are most of
    /// what it holds; its engine stays, to be parked or to serve again).
    pub(super) fn release(&mut self, pool: &mut crate::http::BufPool) {
        if let Engine::Busy(conn) = &mut self.engine
            && conn.is_idle()
        {
            conn.release_buffers(pool);
        }
    }

    /// Parks the connection if it is idle: its buffers go back to `pool`,
    /// its engine's state to `spare`, and it keeps a few bytes.
    pub(super) fn rest(&mut self, pool: &mut crate::http::BufPool, spare: &mut Spare) {
        self.release(pool);
        // Parks only an idle engine with its buffers given back.
        self.engine.park(spare);
    }

    /// Reads, parses, answers and writes until nothing more can be done
    /// without waiting.
    pub(super) fn ready(
        &mut self,
        now: Instant,
        ctx: &mut Ctx<'_>,
        clients: &crate::server::PerClient,
    ) -> Outcome {
        // A parked connection owes nothing: only input (or its end) wakes it.
        if matches!(self.engine, Engine::Parked(_)) && !self.io.ready.readable {
            return Outcome::Wait;
        }
        let Some(conn) = self.engine.busy(ctx.spare, now) else {
            return self.ready_h2(now, ctx);
        };
        loop {
            let mut progress = false;
            let awaited_proxy = clients.limits_conns() && !self.io.past_proxy();
            match self.io.read(conn, ctx.pool, ctx.limits, now) {
                Ok(moved) => progress |= moved,
                Err(e) => return Outcome::Close(Some(e)),
            }
            if awaited_proxy && self.io.past_proxy() && !admit_proxied(conn, clients) {
                return Outcome::Close(None);
            }
            if conn.is_fresh() && self.io.http2 {
                match self.io.offers_h2(conn.unparsed()) {
                    Some(true) => return self.start_h2(now, ctx),
                    // Part of the preface: wait for the rest before the
                    // HTTP/1.1 parser takes it for a request.
                    None if !progress => return Outcome::Wait,
                    None => continue,
                    Some(false) => {}
                }
            }
            conn.advance(now, ctx, self.io.via());
            if self.io.wants_write(conn) {
                match self.io.write(conn, now) {
                    Ok(w) if w.yielded => return Outcome::Yield,
                    Ok(w) => progress |= w.moved,
                    Err(e) => return Outcome::Close(Some(Broken::Io("write", e))),
                }
            }
            match conn.next(now, ctx.timeouts, ctx.draining) {
                Next::Close => return Outcome::Close(None),
                Next::HandOff => return Outcome::HandOff(conn.take_hand_off()),
                Next::ShutdownWrite => {
                    if let Err(e) = self.io.shutdown() {
                        return Outcome::Close(Some(Broken::Io("shutdown", e)));
                    }
                    progress = true;
                }
                Next::Continue => {}
            }
            // Plain, idle, nothing more to read: another pass would only
            // find that out (about 80 instructions a request, callgrind).
            // Over TLS the session may hold plaintext; draining, an idle
            // connection closes on the next pass.
            if progress
                && !self.io.ready.readable
                && matches!(self.io.transport, Transport::Plain(_))
                && !ctx.draining
                && conn.is_idle()
            {
                return Outcome::Wait;
            }
            if !progress {
                // An idle one is parked by the table, a turn later
                // (`Connections::rest_idle`) or now (`rest`).
                return Outcome::Wait;
            }
        }
    }

    /// The client speaks HTTP/2: what HTTP/1.1's engine read goes to a
    /// new HTTP/2 engine, which takes over. Out of line: once a
    /// connection, and kept out of HTTP/1.1's request path.
    #[cold]
    #[inline(never)]
    fn start_h2(&mut self, now: Instant, ctx: &mut Ctx<'_>) -> Outcome {
        let Engine::Busy(conn) = &mut self.engine else {
            return Outcome::Close(None);
        };
        let first = conn.take_unparsed();
        let h2 = H2Conn::new(conn.peer().clone(), now, &first, ctx.limits);
        conn.release_buffers(ctx.pool);
        crate::metrics::inc(crate::metrics::M::H2Connections);
        self.engine = Engine::H2(Box::new(h2));
        self.ready_h2(now, ctx)
    }

    /// `ready()` for an HTTP/2 connection: the same moves, its engine.
    #[inline(never)]
    fn ready_h2(&mut self, now: Instant, ctx: &mut Ctx<'_>) -> Outcome {
        let Engine::H2(h2) = &mut self.engine else {
            return Outcome::Close(None);
        };
        loop {
            let mut progress = false;
            match self.io.read(&mut **h2, ctx.pool, ctx.limits, now) {
                Ok(moved) => progress |= moved,
                Err(e) => return Outcome::Close(Some(e)),
            }
            h2.advance(now, ctx, self.io.via());
            if self.io.wants_write(&mut **h2) {
                // HTTP/2 frames its files in memory: no share to yield.
                match self.io.write(&mut **h2, now) {
                    Ok(w) => progress |= w.moved,
                    Err(e) => return Outcome::Close(Some(Broken::Io("write", e))),
                }
            }
            if let Next::Close = h2.next() {
                return Outcome::Close(None);
            }
            if !progress {
                return Outcome::Wait;
            }
        }
    }

    /// Logs why the connection broke, at the level its kind deserves.
    pub(super) fn log_close(&self, why: &Broken) {
        match why {
            Broken::Tls(_) => {
                crate::metrics::inc(crate::metrics::M::TlsFailures);
                tracing::info!(peer = %self.engine.peer(), "closing: {why}")
            }
            // The front should have sent one: worth a warning.
            Broken::Proxy(_) => tracing::warn!(peer = %self.engine.peer(), "closing: {why}"),
            Broken::Io(..) | Broken::PerClient => {
                tracing::debug!(peer = %self.engine.peer(), "closing: {why}")
            }
        }
    }
}

/// A connection whose PROXY header has just named its client: counted, or
/// refused (false) before any request of it is parsed. Out of line: once
/// a connection, on PROXY listeners with `--max-conns-per-ip` alone.
#[cold]
#[inline(never)]
fn admit_proxied(conn: &mut Conn, clients: &crate::server::PerClient) -> bool {
    if clients.open(conn.peer()) != Admit::Refused {
        return true;
    }
    crate::metrics::inc(crate::metrics::M::RefusedPerClient);
    tracing::debug!(peer = %conn.peer(), "closing: {}", Broken::PerClient);
    // Not counted: nothing to take back when it is removed.
    conn.set_peer(Addr::Unknown);
    false
}

/// Answers a handed-off connection that nobody took (no worker or app
/// process, or one that refused it) with `status` and why, then ends our
/// writing. A fresh socket's buffer takes the whole answer; if it does
/// not, the client sees a closed connection, which is also an answer.
pub(crate) fn answer_untaken(fd: std::os::fd::BorrowedFd<'_>, status: u16, why: &str) {
    let resp = crate::http::encode::canned(status, why, "Retry-After: 1\r\n");
    let _ = crate::sys::write(fd, &resp);
    let _ = crate::sys::shutdown_write(fd);
}

#[cfg(test)]
mod tests {
    /// An idle connection is this struct in its own allocation (and a
    /// parked engine): 8 bytes more took it to malloc's next size class,
    /// +15 B of RSS per idle connection in `scripts/bench.sh`. A field to
    /// add finds room elsewhere (`Transport::Plain` keeps the segment
    /// size in the enum's spare room) or says here why it is worth it.
    #[test]
    fn a_connection_stays_within_its_allocation_size_class() {
        let size = std::mem::size_of::<super::Connection>();
        assert!(size <= 152, "Connection is {size} bytes");
    }
}
