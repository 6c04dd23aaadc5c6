//! `handoff ws-worker`: a mio loop that adopts WebSocket connections handed
//! over by HTTP processes (the handoff wire format on a `SOCK_SEQPACKET`
//! socket), writes the 101 itself, and runs the protocol with tungstenite
//! on the non-blocking socket, starting from the bytes the HTTP process had
//! already read (`WebSocket::from_partially_read`).

use std::io::{self, IoSlice};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use tungstenite::protocol::frame::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{Role, WebSocketConfig};
use tungstenite::{Message, WebSocket};

mod config;
mod ctl;
mod deflate;
mod frame;
mod moving;
mod session;
mod stream;

use session::{WsConn, queue, would_block};
use stream::FdStream;

pub use config::WorkerConfig;

use super::exec::{Exec, Output, Reaping};
use super::route::{Mode, Route};
use crate::handoff::wire::{self, Kind};
use crate::sys::{self, fdpass};

/// tungstenite's limits for a session, from the worker's.
fn tungstenite_config(cfg: &WorkerConfig) -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(cfg.max_message))
        .max_frame_size(Some(cfg.max_frame))
}

enum Entry {
    /// A line to an HTTP process's pool, and what waits for room on it.
    Ctl(OwnedFd, crate::handoff::outbox::Outbox),
    CtlListener(OwnedFd),
    Ws(Box<WsConn>),
    /// A child's stdout or stdin, standing for the connection it serves.
    ExecPipe(usize),
}

pub(crate) struct Worker {
    poll: Poll,
    /// SIGTERM arrived: connections are being closed with 1001.
    term: std::sync::Arc<std::sync::atomic::AtomicBool>,
    stopping_until: Option<Instant>,
    entries: Slab<Entry>,
    cfg: WorkerConfig,
    live: usize,
    reaping: Vec<Reaping>,
    ws_config: WebSocketConfig,
    /// The last broadcast the pool gave us (its place in the pool's order).
    seq: u64,
    /// Handing every session back to the pool on this control socket (the
    /// old process of an upgrade).
    moving: Option<usize>,
    next_move: u64,
    /// The next session's serial (`WsConn::serial`).
    next_serial: u64,
}

impl Worker {
    pub(crate) fn new(cfg: WorkerConfig) -> io::Result<Worker> {
        let ws_config = tungstenite_config(&cfg);
        let term = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        signal_hook::flag::register(signal_hook::consts::SIGTERM, term.clone())?;
        Ok(Worker {
            poll: Poll::new()?,
            term,
            stopping_until: None,
            entries: Slab::new(),
            cfg,
            live: 0,
            reaping: Vec::new(),
            ws_config,
            seq: 0,
            moving: None,
            next_move: 0,
            next_serial: 1,
        })
    }

    /// Serves with these routes and limits from now on (a pool's
    /// `CONFIGURE`); sessions already open keep the limits they began with.
    /// Who may connect to a listening control socket stays as it was.
    pub(crate) fn configure(&mut self, cfg: WorkerConfig) {
        let allowed_uids = std::mem::take(&mut self.cfg.allowed_uids);
        self.ws_config = tungstenite_config(&cfg);
        self.cfg = WorkerConfig {
            allowed_uids,
            ..cfg
        };
        tracing::debug!(routes = self.cfg.routes.len(), "configured by the pool");
    }

    /// A socket to an HTTP process (one end of a socketpair).
    pub(crate) fn add_ctl(&mut self, fd: OwnedFd) -> io::Result<()> {
        self.register(fd, |fd| Entry::Ctl(fd, Default::default()))
    }

    /// A listening `SOCK_SEQPACKET` socket HTTP processes connect to
    /// (`--ws-worker-socket`).
    pub(crate) fn add_ctl_listener(&mut self, fd: OwnedFd) -> io::Result<()> {
        self.register(fd, Entry::CtlListener)
    }

    fn register(&mut self, fd: OwnedFd, entry: fn(OwnedFd) -> Entry) -> io::Result<()> {
        sys::prepare_adopted(fd.as_fd())?;
        let e = self.entries.vacant_entry();
        self.poll.registry().register(
            &mut SourceFd(&fd.as_raw_fd()),
            Token(e.key()),
            Interest::READABLE,
        )?;
        e.insert(entry(fd));
        Ok(())
    }

    fn has_ctl(&self) -> bool {
        self.entries
            .iter()
            .any(|(_, e)| matches!(e, Entry::Ctl(..) | Entry::CtlListener(_)))
    }

    /// Runs until every HTTP process is gone.
    pub(crate) fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(512);
        let mut next_tick = Instant::now() + Duration::from_secs(1);
        loop {
            let now = Instant::now();
            if self.term.load(std::sync::atomic::Ordering::Relaxed) && self.stopping_until.is_none()
            {
                self.going_away(now);
            }
            match self.stopping_until {
                Some(until) if self.live == 0 || now >= until => break,
                None if !self.has_ctl() && self.live == 0 => break,
                // Every session has moved: this worker's part is done.
                None if self.moving.is_some() && self.live == 0 => break,
                // The pool went away before all could move.
                None if self.moving.is_some() && !self.has_ctl() => self.going_away(now),
                _ => {}
            }
            // Often enough for the configured ping interval and idle deadline,
            // and for the signal schedule of exiting exec children.
            let mut tick_every = Duration::from_secs(1)
                .min(self.cfg.ping_interval / 2)
                .min(self.cfg.idle_timeout / 4);
            if !self.reaping.is_empty() {
                tick_every = tick_every.min(Duration::from_millis(100));
            }
            next_tick = next_tick.min(now + tick_every);
            let timeout = Some(next_tick.saturating_duration_since(now));
            let _turn = crate::event_loop::wait(&mut self.poll, &mut events, timeout)?;
            let tokens: Vec<usize> = events.iter().map(|e| e.token().0).collect();
            for t in tokens {
                self.on_event(t);
            }
            let now = Instant::now();
            if now >= next_tick {
                self.tick(now);
                next_tick = now + tick_every;
            }
            if self.moving.is_some() {
                self.move_what_can_move();
            }
        }
        Ok(())
    }

    fn on_event(&mut self, token: usize) {
        match self.entries.get(token) {
            Some(Entry::Ctl(..)) => {
                self.flush_ctl(token);
                self.read_ctl(token);
            }
            Some(Entry::CtlListener(l)) => {
                let mut accepted = Vec::new();
                while let Ok((fd, _)) = sys::accept(l.as_fd()) {
                    accepted.push(fd);
                }
                for fd in accepted {
                    if self.peer_allowed(&fd)
                        && let Err(e) = self.add_ctl(fd)
                    {
                        tracing::warn!("worker control peer: {e}");
                    }
                }
            }
            Some(Entry::Ws(_)) => self.drive(token),
            Some(Entry::ExecPipe(conn)) => {
                let conn = *conn;
                self.drive(conn)
            }
            None => {}
        }
    }

    /// SIGTERM: every connection gets a Close frame with 1001 (going away)
    /// and a moment to answer it; new handoffs are refused; the worker
    /// exits when all are closed or after two seconds.
    fn going_away(&mut self, now: Instant) {
        tracing::info!(
            connections = self.live,
            "SIGTERM: closing WebSocket connections with 1001"
        );
        self.stopping_until = Some(now + Duration::from_secs(2));
        let tokens: Vec<usize> = self
            .entries
            .iter()
            .filter_map(|(t, e)| match e {
                // A frozen session is the new process's if the move is
                // taken: not a word on it.
                Entry::Ws(c) if c.frozen.is_none() => Some(t),
                _ => None,
            })
            .collect();
        for t in tokens {
            if let Some(Entry::Ws(c)) = self.entries.get_mut(t) {
                let frame = CloseFrame {
                    code: CloseCode::Away,
                    reason: "server shutting down".into(),
                };
                let r = c.ws.close(Some(frame)).and_then(|()| c.ws.flush());
                if let Err(e) = r
                    && !would_block(&e)
                {
                    self.close(t);
                }
            }
        }
    }

    /// Once a second (ten times while children are being ended): pings,
    /// idle deadlines, and the signal schedule of exec children.
    fn tick(&mut self, now: Instant) {
        let mut idle = Vec::new();
        for (t, e) in self.entries.iter_mut() {
            if let Entry::Ws(c) = e
                && c.frozen.is_none()
            {
                if now >= c.last_seen + self.cfg.idle_timeout {
                    idle.push(t);
                    continue;
                }
                if now >= c.next_ping {
                    c.next_ping = now + self.cfg.ping_interval;
                    let r = queue(&mut c.ws, Message::Ping(Vec::new().into()))
                        .and_then(|_| c.ws.flush());
                    if let Err(e) = r
                        && !would_block(&e)
                    {
                        idle.push(t);
                    }
                }
            }
        }
        for t in idle {
            tracing::debug!("WebSocket idle past its deadline; closed");
            self.close(t);
        }
        self.reaping.retain_mut(|r| {
            let gone = r.tick(now);
            if gone {
                tracing::debug!(pid = r.pid(), "exec child ended");
            }
            !gone
        });
    }
}
