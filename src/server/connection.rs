//! One served connection as the loop sees it: its socket, transport (plain
//! or TLS), the sans-I/O engine, and the readiness the kernel reported. One
//! `ready()` moves bytes both ways until nothing more can be done without
//! waiting, and says what the loop should do with the socket.

use std::os::fd::{AsFd, OwnedFd};
use std::time::Instant;

use mio::event::Event;

use crate::conn_io::{self, Broken, Transport};
use crate::http::{Conn, Ctx, Next};

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
    HandOff(Option<(Vec<u8>, Vec<u8>)>),
}

pub(super) struct Connection {
    pub(super) fd: OwnedFd,
    pub(super) conn: Conn,
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
        loop {
            let mut progress = false;
            match conn_io::read(
                self.fd.as_fd(),
                &mut self.transport,
                &mut self.conn,
                &mut self.ready.readable,
                self.ready.peer_closed,
                ctx.pool,
                ctx.limits,
                now,
            ) {
                Ok(moved) => progress |= moved,
                Err(e) => return Outcome::Close(Some(e)),
            }
            self.conn.advance(now, ctx);
            if self.ready.writable && self.transport.wants_write(&mut self.conn) {
                match conn_io::write(
                    self.fd.as_fd(),
                    &mut self.transport,
                    &mut self.conn,
                    &mut self.ready.writable,
                    now,
                ) {
                    Ok(wrote) => progress |= wrote,
                    Err(e) => return Outcome::Close(Some(Broken::Io("write", e))),
                }
            }
            match self.conn.next(now, ctx.timeouts, ctx.draining) {
                Next::Close => return Outcome::Close(None),
                Next::HandOff => return Outcome::HandOff(self.conn.take_hand_off()),
                Next::ShutdownWrite => {
                    if let Err(e) = conn_io::shutdown(self.fd.as_fd(), &mut self.transport) {
                        return Outcome::Close(Some(Broken::Io("shutdown", e)));
                    }
                    progress = true;
                }
                Next::Continue => {}
            }
            if !progress {
                if self.conn.is_idle() {
                    self.conn.release_buffers(ctx.pool);
                }
                return Outcome::Wait;
            }
        }
    }

    /// Logs why the connection broke, at the level its kind deserves.
    pub(super) fn log_close(&self, why: &Broken) {
        match why {
            Broken::Tls(_) => tracing::info!(peer = %self.conn.peer(), "closing: {why}"),
            Broken::Io(..) => tracing::debug!(peer = %self.conn.peer(), "closing: {why}"),
        }
    }
}
