//! One served connection as the loop sees it: its socket, transport (plain
//! or TLS), the sans-I/O engine, and the readiness the kernel reported. One
//! `ready()` moves bytes both ways until nothing more can be done without
//! waiting, and says what the loop should do with the socket.

use std::os::fd::{AsFd, OwnedFd};
use std::time::Instant;

use mio::event::Event;

use crate::conn_io::{self, Broken, Transport};
use crate::http::{Conn, Ctx, Next, Parked, Spare, Timeouts};
use crate::sys::Addr;

/// Parked connection states kept for reuse, at most.
const MAX_SPARE: usize = 64;

/// The engine of one connection: busy (the full sans-I/O state, boxed), or
/// parked between requests in its smallest form.
pub(super) enum Engine {
    Busy(Box<Conn>),
    Parked(Parked),
}

impl Engine {
    /// The full state, brought back (into a spare allocation) if it was
    /// parked.
    pub(super) fn busy(&mut self, spare: &mut Spare, now: Instant) -> &mut Conn {
        if let Engine::Parked(p) = self {
            let p = std::mem::replace(p, Parked::empty(now));
            let mut b = spare
                .pop()
                .unwrap_or_else(|| Box::new(Conn::new(Addr::Unknown, now)));
            b.resume(p);
            *self = Engine::Busy(b);
        }
        match self {
            Engine::Busy(b) => b,
            Engine::Parked(_) => unreachable!("a parked engine was made busy above"),
        }
    }

    /// Parks the connection if it is idle with nothing buffered; the
    /// engine's allocation goes to `spare`.
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
        }
    }

    /// When the connection next needs attention if nothing happens.
    pub(super) fn deadline(&self, t: &Timeouts) -> Option<Instant> {
        match self {
            Engine::Busy(b) => b.deadline(t),
            Engine::Parked(p) => Some(p.deadline(t)),
        }
    }
}

/// Readiness reported by edge-triggered events, remembered until acted on.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Readiness {
    pub(super) readable: bool,
    pub(super) writable: bool,
    /// The peer's FIN was reported (`EPOLLRDHUP`): its end of input must be
    /// read even after a short read.
    pub(super) peer_closed: bool,
}

impl Readiness {
    /// Adds what an event reports. Errors and hang-ups count as ready both
    /// ways: the next read or write says what happened.
    pub(super) fn update(&mut self, ev: &Event) {
        self.peer_closed |= ev.is_read_closed();
        self.readable |= ev.is_readable() || ev.is_read_closed() || ev.is_error();
        self.writable |= ev.is_writable() || ev.is_write_closed() || ev.is_error();
    }
}

/// What the loop does with a connection after `ready()`.
pub(super) enum Outcome {
    /// Wait for readiness or a deadline.
    Wait,
    /// Close the socket; `Some` says why it broke.
    Close(Option<Broken>),
    /// A handler took the connection over: the request head and the bytes
    /// read after it go with the socket.
    HandOff(Option<crate::http::Taken>),
}

pub(super) struct Connection {
    pub(super) fd: OwnedFd,
    pub(super) engine: Engine,
    pub(super) transport: Transport,
    pub(super) ready: Readiness,
    /// Tells this connection from an earlier one in the same slot, for
    /// timers and deferred replies that outlive it.
    pub(super) generation: u64,
    /// The earliest entry this connection has in the timer heap.
    pub(super) timer_at: Option<Instant>,
}

impl Connection {
    /// Reads, parses, answers and writes until nothing more can be done
    /// without waiting.
    pub(super) fn ready(&mut self, now: Instant, ctx: &mut Ctx<'_>) -> Outcome {
        // A parked connection owes nothing: only input (or its end) wakes it.
        if matches!(self.engine, Engine::Parked(_)) && !self.ready.readable {
            return Outcome::Wait;
        }
        let conn = self.engine.busy(ctx.spare, now);
        loop {
            let mut progress = false;
            match conn_io::read(
                self.fd.as_fd(),
                &mut self.transport,
                conn,
                &mut self.ready.readable,
                self.ready.peer_closed,
                ctx.pool,
                ctx.limits,
                now,
            ) {
                Ok(moved) => progress |= moved,
                Err(e) => return Outcome::Close(Some(e)),
            }
            conn.advance(now, ctx);
            if self.ready.writable && self.transport.wants_write(conn) {
                match conn_io::write(
                    self.fd.as_fd(),
                    &mut self.transport,
                    conn,
                    &mut self.ready.writable,
                    now,
                ) {
                    Ok(wrote) => progress |= wrote,
                    Err(e) => return Outcome::Close(Some(Broken::Io("write", e))),
                }
            }
            match conn.next(now, ctx.timeouts, ctx.draining) {
                Next::Close => return Outcome::Close(None),
                Next::HandOff => return Outcome::HandOff(conn.take_hand_off()),
                Next::ShutdownWrite => {
                    if let Err(e) = conn_io::shutdown(self.fd.as_fd(), &mut self.transport) {
                        return Outcome::Close(Some(Broken::Io("shutdown", e)));
                    }
                    progress = true;
                }
                Next::Continue => {}
            }
            if !progress {
                if conn.is_idle() {
                    conn.release_buffers(ctx.pool);
                    self.engine.park(ctx.spare);
                }
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
            Broken::Io(..) => tracing::debug!(peer = %self.engine.peer(), "closing: {why}"),
        }
    }
}
