//! The event loop: lua-http's `http.server` in Rust.
//!
//! Every socket enters through [`Server::add_socket`] (a listener or a
//! connected socket) or [`Server::add_stream`] (a connection with bytes
//! already read from it); the accept loop calls the same path. All I/O is
//! in this folder; what the bytes mean is the sans-I/O engine's business
//! ([`crate::http::Conn`]).
//!
//! - `options.rs`: what the server is told (options, sockets);
//! - `accept.rs`: listeners, the accept policy, the queue under
//!   `max_concurrent`;
//! - `connection.rs`: one connection's `ready()`;
//! - `timers.rs`, `date.rs`, `inbox.rs`: deadlines, the `Date` header, and
//!   what other threads send the loop;
//! - `relays.rs`: TLS WebSockets relayed to workers.
//!
//! Sockets are registered once, edge-triggered, for both directions, and
//! readiness is remembered per connection: no `epoll_ctl` per request. A
//! read shorter than the buffer clears readability (the socket was drained;
//! the next arrival raises a new edge), as tokio does, so a keep-alive
//! request costs one `read` and one `writev`, with `epoll_wait` shared by
//! every connection ready in that turn.

mod accept;
mod adopt;
mod connection;
mod date;
mod inbox;
mod options;
mod relays;
mod timers;

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Poll, Token, Waker};
use slab::Slab;

use crate::conn_io::Transport;
use crate::http::deferred::Mailer;
use crate::http::{BufPool, Ctx, Expired, Handler};
use crate::sys::{self, Addr};
use accept::{LISTENER_TOKENS, Listeners, WaitQueue};
use connection::{Connection, Outcome};
use date::DateCache;
use relays::{RELAY_TOKENS, Relays};
use timers::Timers;

pub use inbox::{Inbox, Submission, Ticket};
pub use options::{Added, HandedOff, Options, Socket};

/// The token of the inbox's waker; slab keys never get near it.
const WAKER: usize = usize::MAX;

/// What every connection borrows while it advances; kept apart from the
/// connection table so both can be borrowed at once.
struct Shared {
    handler: Box<dyn Handler>,
    opts: Options,
    pool: BufPool,
    scratch: Vec<u8>,
    date: DateCache,
    draining: bool,
    tls: Option<Arc<rustls::ServerConfig>>,
    static_headers: Vec<u8>,
    mailer: Arc<dyn Mailer>,
}

impl Shared {
    /// The context for one connection: deferred responses know where to
    /// reply (the mailer is borrowed, not cloned, per turn).
    fn ctx(&mut self, conn: Option<(usize, u64)>) -> Ctx<'_> {
        Ctx {
            handler: &*self.handler,
            limits: &self.opts.limits,
            timeouts: &self.opts.timeouts,
            date: self.date.text(),
            pool: &mut self.pool,
            scratch: &mut self.scratch,
            draining: self.draining,
            static_headers: &self.static_headers,
            replies: conn.map(|(token, generation)| (&self.mailer, token, generation)),
        }
    }
}

/// An HTTP/1.1 server on a mio event loop.
pub struct Server {
    poll: Poll,
    events: Option<Events>,
    /// The connections served, by token.
    entries: Slab<Box<Connection>>,
    shared: Shared,
    timers: Timers,
    queued: WaitQueue,
    /// Connections served (slab entries of kind `Conn`): counted, not
    /// derived, because every accept checks it against `max_concurrent`.
    live: usize,
    /// Listeners, in a token space of their own.
    listeners: Listeners,
    /// TLS WebSockets relayed to workers, in a token space of their own.
    relays: Relays,
    /// Reused for what a listener accepted in one go.
    accepted: Vec<Socket>,
    /// A slot was freed this turn: `admit_waiting` accepts again.
    freed: bool,
    next_gen: u64,
    paused: bool,
    closed: bool,
    now: Instant,
    inbox: Inbox,
    hand_off: Option<Box<dyn FnMut(HandedOff)>>,
}

impl Server {
    pub fn new(opts: Options, handler: impl Handler + 'static) -> io::Result<Server> {
        let poll = Poll::new()?;
        let inbox = Inbox::new(Waker::new(poll.registry(), Token(WAKER))?);
        let static_headers = opts
            .static_headers
            .iter()
            .flat_map(|(n, v)| format!("{n}: {v}\r\n").into_bytes())
            .collect();
        Ok(Server {
            poll,
            events: Some(Events::with_capacity(1024)),
            entries: Slab::new(),
            shared: Shared {
                handler: Box::new(handler),
                opts,
                pool: BufPool::default(),
                scratch: Vec::new(),
                date: DateCache::default(),
                draining: false,
                tls: None,
                static_headers,
                mailer: Arc::new(inbox.clone()),
            },
            timers: Timers::default(),
            queued: WaitQueue::new(),
            live: 0,
            listeners: Listeners::default(),
            relays: Relays::default(),
            accepted: Vec::new(),
            freed: false,
            next_gen: 0,
            paused: false,
            closed: false,
            now: Instant::now(),
            inbox,
            hand_off: None,
        })
    }

    /// The handle through which other threads submit sockets or wake the
    /// loop.
    pub fn inbox(&mut self) -> io::Result<Inbox> {
        Ok(self.inbox.clone())
    }

    /// Sockets submitted by other threads, and deferred responses' jobs.
    fn take_mail(&mut self) {
        for (_, m) in self.inbox.take_submissions() {
            // A sender told "shutting down" still owns its socket and can
            // give it to a process that is not.
            let r = if self.shared.draining {
                Err(io::Error::other("shutting down"))
            } else {
                self.adopt(m.socket, &m.pre_read)
            };
            if let Some(reply) = m.reply {
                let _ = reply.send(r);
            }
        }
        for (key, job) in self.inbox.take_mail() {
            let now = self.now;
            let Some(c) = self.entries.get_mut(key.token) else {
                continue;
            };
            if c.generation != key.generation {
                continue; // that connection is gone and its slot reused
            }
            let mut ctx = self.shared.ctx(None);
            match job {
                Some(job) => c.conn.write_deferred(key.id, job, now, &mut ctx),
                None => c.conn.abandon(key.id, now, &mut ctx),
            }
            self.drive(key.token);
        }
    }

    /// Where connections handed off by a handler go. Without a hook, a
    /// handed-off connection is closed.
    pub fn on_hand_off(&mut self, hook: impl FnMut(HandedOff) + 'static) {
        self.hand_off = Some(Box::new(hook));
    }

    /// The TLS configuration for connections accepted from now on (live
    /// ones keep theirs): certificate reloads swap it.
    pub fn set_tls(&mut self, cfg: Arc<rustls::ServerConfig>) {
        self.shared.tls = Some(cfg);
    }

    pub fn options(&self) -> &Options {
        &self.shared.opts
    }

    /// Lets one connection do what it can, then acts on the outcome.
    fn drive(&mut self, token: usize) {
        let Some(c) = self.entries.get_mut(token) else {
            return;
        };
        let mut ctx = self.shared.ctx(Some((token, c.generation)));
        match c.ready(self.now, &mut ctx) {
            Outcome::Wait => {
                let deadline = c.conn.deadline(ctx.timeouts);
                self.timers
                    .schedule(deadline, token, c.generation, &mut c.timer_at);
            }
            Outcome::Close(why) => {
                if let Some(why) = why {
                    c.log_close(&why);
                }
                self.close_conn(token);
            }
            Outcome::HandOff(taken) => self.hand_off_conn(token, taken),
        }
    }

    /// Takes a connection out of the loop: deregistered (the same socket
    /// may be open elsewhere, as inetd's fds 0, 1 and 2 are, and epoll
    /// forgets an fd only when every copy is closed), buffers returned.
    fn remove_conn(&mut self, token: usize) -> Option<Connection> {
        let c = self.entries.try_remove(token)?;
        let _ = self
            .poll
            .registry()
            .deregister(&mut SourceFd(&c.fd.as_raw_fd()));
        let mut c = *c;
        c.conn.release_buffers(&mut self.shared.pool);
        self.live -= 1;
        self.freed = true;
        Some(c)
    }

    fn close_conn(&mut self, token: usize) {
        drop(self.remove_conn(token));
    }

    fn hand_off_conn(&mut self, token: usize, taken: Option<(Vec<u8>, Vec<u8>)>) {
        let Some(c) = self.remove_conn(token) else {
            return;
        };
        let peer = c.conn.peer().clone();
        let (Some((head, rest)), Some(hook)) = (taken, self.hand_off.as_mut()) else {
            return tracing::error!(%peer, "a handler handed off a connection but no hand-off hook is set; closed");
        };
        match c.transport {
            // A TLS session cannot go with the fd: keep it here and give
            // the worker a socketpair carrying the plaintext.
            Transport::Tls(tls) => match sys::fdpass::stream_pair() {
                Ok((ours, theirs)) => {
                    hook(HandedOff {
                        socket: theirs,
                        head,
                        rest,
                        peer,
                    });
                    self.relays.start(self.poll.registry(), c.fd, tls, ours);
                }
                Err(e) => tracing::error!(%peer, "no socketpair for a TLS hand-off: {e}; closed"),
            },
            _ => hook(HandedOff {
                socket: c.fd,
                head,
                rest,
                peer,
            }),
        }
    }

    fn fire_timers(&mut self) {
        let now = self.now;
        while let Some((token, generation)) = self.timers.pop_due(now) {
            let Some(c) = self.entries.get_mut(token) else {
                continue;
            };
            if c.generation != generation {
                continue;
            }
            c.timer_at = None;
            let mut ctx = self.shared.ctx(None);
            match c.conn.on_timeout(now, &mut ctx) {
                Some(Expired::Write | Expired::Linger) => {
                    tracing::debug!(peer = %c.conn.peer(), "deadline passed; closing");
                    self.close_conn(token);
                }
                Some(Expired::Idle | Expired::Request) => self.drive(token),
                None => {
                    let deadline = c.conn.deadline(ctx.timeouts);
                    self.timers
                        .schedule(deadline, token, generation, &mut c.timer_at);
                }
            }
        }
    }

    /// How long the loop may wait before it must be stepped again: the next
    /// deadline, zero if a listener has work left, `None` for no limit.
    pub fn timeout(&self) -> Option<Duration> {
        let now = Instant::now();
        let can_accept =
            !self.paused && !self.shared.draining && self.live < self.shared.opts.max_concurrent;
        let next = match (
            self.timers.next(),
            self.listeners.next_wake(can_accept, now),
        ) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        next.map(|n| n.saturating_duration_since(now))
    }

    /// Waits up to `timeout` (or the next deadline) for events, and handles
    /// them: accepts, reads, answers, writes, and fires expired deadlines.
    pub fn step(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        let wait = match (timeout, self.timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let mut events = self
            .events
            .take()
            .unwrap_or_else(|| Events::with_capacity(1024));
        crate::log::batch(true);
        let r = match self.poll.poll(&mut events, wait) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
            r => r,
        };
        self.now = Instant::now();
        self.shared.date.refresh();
        for ev in events.iter() {
            let token = ev.token().0;
            match self.entries.get_mut(token) {
                _ if token == WAKER => self.take_mail(),
                _ if token >= LISTENER_TOKENS => {
                    self.listeners.set_ready(token);
                    self.accept_from(token);
                }
                _ if token >= RELAY_TOKENS => {
                    self.relays.ready(self.poll.registry(), token, ev);
                }
                Some(c) => {
                    c.ready.update(ev);
                    self.drive(token);
                }
                None => {}
            }
        }
        self.events = Some(events);
        self.fire_timers();
        self.admit_waiting();
        crate::log::flush();
        crate::log::batch(false);
        r
    }

    /// Steps until the server is empty: no listener, no connection, nothing
    /// queued (after `close`, after a drain, or when an adopted single
    /// connection ends).
    pub fn run(&mut self) -> io::Result<()> {
        while !self.is_empty() {
            self.step(None)?;
        }
        Ok(())
    }

    /// True when there is nothing left to serve.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
            && self.queued.is_empty()
            && self.listeners.is_empty()
            && self.relays.len() == 0
    }

    /// TLS WebSocket connections being relayed to workers.
    pub fn relays(&self) -> usize {
        self.relays.len()
    }

    /// Stops accepting; live connections go on.
    pub fn pause(&mut self) {
        self.paused = true;
    }

    /// Accepts again after `pause`.
    pub fn resume(&mut self) {
        self.paused = false;
        self.freed = true;
        self.admit_waiting();
    }

    /// Stops accepting for good (listeners are closed) and lets every
    /// connection finish what it is answering; idle ones close at once.
    ///
    /// Every request whose bytes reached us is answered: connections
    /// waiting in a listener's backlog are accepted before it closes
    /// (closing it would reset them), and each connection is read once more
    /// before it is judged idle, since bytes may have arrived after its last
    /// readiness was handled. Sockets queued for a slot are served as slots
    /// free up. A TLS WebSocket relay is left alone: the worker's Close
    /// (1001) still has to go through it; it ends when the worker closes
    /// its end, or at `close`.
    pub fn drain(&mut self) {
        self.shared.draining = true;
        self.take_backlogs();
        self.close_listeners();
        let tokens: Vec<usize> = self.entries.iter().map(|(t, _)| t).collect();
        for t in tokens {
            if let Some(c) = self.entries.get_mut(t) {
                c.ready.readable = true;
                self.drive(t);
            }
        }
    }

    /// True once `drain` was called.
    pub fn is_draining(&self) -> bool {
        self.shared.draining
    }

    fn close_listeners(&mut self) {
        self.listeners.close_all(self.poll.registry());
    }

    /// Closes every listener and connection now. A closed server cannot be
    /// reused.
    pub fn close(&mut self) {
        self.closed = true;
        self.close_listeners();
        self.queued.clear();
        let tokens: Vec<usize> = self.entries.iter().map(|(t, _)| t).collect();
        for t in tokens {
            self.close_conn(t);
        }
        self.relays.close_all(self.poll.registry());
    }

    /// Local addresses of the listeners.
    pub fn local_addrs(&self) -> Vec<Addr> {
        self.listeners.addrs()
    }

    /// Connections being served (not counting queued ones).
    pub fn connections(&self) -> usize {
        self.live
    }

    /// Connected sockets waiting for a slot.
    pub fn queued(&self) -> usize {
        self.queued.len()
    }
}

/// The poll fd, for an outside main loop: wait for it to be readable, then
/// call `step(Some(Duration::ZERO))`; never wait longer than `timeout()`.
impl AsRawFd for Server {
    fn as_raw_fd(&self) -> RawFd {
        self.poll.as_raw_fd()
    }
}
