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
//! - `connection/`: the connection room: one connection's socket,
//!   transport and engine, and its `ready()`; the `wss://` relays;
//! - `connections.rs`: the table of connections, by token;
//! - `timers.rs`, `date.rs`, `inbox.rs`: deadlines, the `Date` header, and
//!   what other threads send the loop;
//! - `hand_off.rs`: where a connection a handler handed off goes.
//!
//! Draining (`Server::drain`) answers every request whose bytes reached
//! us: connections waiting in a listener's backlog are accepted before it
//! closes (closing it would reset them), and each connection is read once
//! more before it is judged idle, since bytes may have arrived after its
//! last readiness was handled; one that has not sent its first request
//! yet is given the time any new connection has for it
//! (`Timeouts::connection_setup`), since its bytes may be a moment behind
//! its accept. Sockets queued for a slot are served as slots free up. A
//! TLS WebSocket relay is left alone: the worker's Close (1001) still has
//! to go through it; it ends when the worker closes its end, or at
//! `close`.
//!
//! Handing over (`Server::hand_over`, an upgrade's step 5) stops accepting
//! as a drain does and gives every idle plain connection to a `Mover`: one
//! waiting for its request at once, one with a request in flight once its
//! response is written (never mid-response; pipelined requests already read
//! are answered here first). Responses keep `Connection: keep-alive`, so a
//! client never sees its connection close. Idle TLS connections are closed
//! (their session cannot move). The server is empty when every connection
//! has moved or ended.
//!
//! Sockets are registered once, edge-triggered, for both directions, and
//! readiness is remembered per connection: no `epoll_ctl` per request. A
//! read shorter than the buffer clears readability (the socket was drained;
//! the next arrival raises a new edge), as tokio does, so a keep-alive
//! request costs one `read` and one `writev`, with `epoll_wait` shared by
//! every connection ready in that turn.

mod accept;
mod adopt;
mod budget;
mod connection;
mod connections;
mod date;
mod hand_off;
mod inbox;
mod lines;
mod observe;
mod options;
mod per_client;
mod returning;
mod timers;

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Poll};

use crate::event_loop::{self, WAKER};
use crate::http::reply::Mailer;
use crate::http::{BufPool, Ctx, Handler, Spare};
use crate::sys::Addr;
use accept::{Admission, LISTENER_TOKENS};
use connection::{RELAY_TOKENS, Relays};
use connections::Connections;
use date::DateCache;
use inbox::Command;

pub(crate) use connection::Wrapping;
pub(crate) use connection::answer_untaken;
pub use connections::Mover;
pub use inbox::{Inbox, Loops, Submission, Ticket};
pub use options::{AccessLine, Added, HandedOff, Options, Socket};
pub use per_client::{PerClient, Rate};

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
    /// The same without `h2` in ALPN, for listeners that serve HTTP/1.1
    /// alone.
    tls_http1: Option<Arc<rustls::ServerConfig>>,
    static_headers: Vec<u8>,
    mailer: Arc<dyn Mailer>,
    /// Engine states given up by parked connections, reused by the next
    /// that wakes (a connection waking costs no allocation).
    spare: Spare,
    /// Where the engine's events go: the access line, metrics, the log.
    observer: observe::Record,
    /// HTTP/2 response header blocks encoded before (`http::blocks::Blocks`).
    heads: crate::http::blocks::Blocks,
}

impl Shared {
    fn new(opts: Options, handler: Box<dyn Handler>, mailer: Arc<dyn Mailer>) -> Shared {
        let static_headers = opts
            .static_headers
            .iter()
            .flat_map(|(n, v)| format!("{n}: {v}\r\n").into_bytes())
            .collect();
        Shared {
            handler,
            opts,
            pool: BufPool::default(),
            scratch: Vec::new(),
            date: DateCache::default(),
            draining: false,
            tls: None,
            tls_http1: None,
            static_headers,
            mailer,
            spare: Vec::new(),
            observer: observe::Record::new(),
            heads: Default::default(),
        }
    }

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
            spare: &mut self.spare,
            observer: &mut self.observer,
            heads: &mut self.heads,
        }
    }
}

/// How many readiness events one wait takes in.
const EVENTS: usize = 1024;

/// An HTTP/1.1 server on a mio event loop.
pub struct Server {
    poll: Poll,
    /// Reused every turn (taken out while the turn walks it).
    events: Option<Events>,
    /// The connections served, by token, and their deadlines.
    conns: Connections,
    shared: Shared,
    /// Listeners, the queue under `max_concurrent`, open or not.
    admission: Admission,
    /// TLS WebSockets relayed to workers, in a token space of their own.
    relays: Relays,
    /// Lines an HTTP process lends connections on (an app process's).
    lines: lines::Lines,
    now: Instant,
    inbox: Inbox,
    hand_off: Option<hand_off::Hook>,
    /// The last turn's events included the inbox's wake-up.
    woken: bool,
}

impl Server {
    /// A server answering with `handler`; it has no socket until one is added.
    pub fn new(opts: Options, handler: impl Handler + 'static) -> io::Result<Server> {
        let poll = Poll::new()?;
        let inbox = Inbox::new(event_loop::waker(&poll)?);
        let clients = opts.per_client.clone();
        let handler: Box<dyn Handler> = if clients.limits_rate() {
            Box::new(per_client::RateLimited {
                inner: Box::new(handler),
                clients: clients.clone(),
            })
        } else {
            Box::new(handler)
        };
        let shared = Shared::new(opts, handler, Arc::new(inbox.clone()));
        Ok(Server {
            poll,
            events: Some(Events::with_capacity(EVENTS)),
            conns: Connections::new(inbox.load.clone(), clients),
            shared,
            admission: Admission::default(),
            relays: Relays::default(),
            lines: lines::Lines::default(),
            now: Instant::now(),
            inbox,
            hand_off: None,
            woken: false,
        })
    }

    /// How other threads give the loop sockets, commands, or a wake-up
    /// (made with the server: nothing can fail here).
    pub fn inbox(&self) -> Inbox {
        self.inbox.clone()
    }

    /// Where connections handed off by a handler go (closed without one).
    pub fn on_hand_off(&mut self, hook: impl FnMut(HandedOff) + 'static) {
        self.hand_off = Some(Box::new(hook));
    }

    /// TLS for connections accepted from now on (live ones keep theirs).
    /// With `Options::http2` off, `h2` is taken out of its ALPN list, so
    /// clients agree on HTTP/1.1.
    pub fn set_tls(&mut self, cfg: Arc<rustls::ServerConfig>) {
        let http1 = if cfg.alpn_protocols.iter().any(|p| p == b"h2") {
            let mut c = (*cfg).clone();
            c.alpn_protocols.retain(|p| p != b"h2");
            Arc::new(c)
        } else {
            cfg.clone()
        };
        let cfg = if self.shared.opts.http2 {
            cfg
        } else {
            http1.clone()
        };
        self.shared.tls = Some(cfg);
        self.shared.tls_http1 = Some(http1);
    }

    /// Counts connections in `budget`, shared with other servers (one per
    /// thread): `max_concurrent` then holds for all of them together. Call
    /// it before adding sockets.
    pub fn share_limit(&mut self, budget: Arc<std::sync::atomic::AtomicUsize>) {
        self.conns.budget.share(budget);
    }

    /// A copy of every listener (a new fd on the same socket, with its TLS
    /// mode), for another server to accept from too. Listeners are
    /// registered with `EPOLLEXCLUSIVE`, so one connection wakes one loop.
    pub fn listener_sockets(&self) -> io::Result<Vec<Socket>> {
        self.admission.listeners.share()
    }

    /// The options it was made with.
    pub fn options(&self) -> &Options {
        &self.shared.opts
    }

    /// Connections handed off by handlers go to the hook. Asked after every
    /// event: the common answer, none, is inlined.
    #[inline]
    fn give_handed(&mut self) {
        if self.conns.has_handed() {
            self.give_handed_now();
        }
    }

    #[inline(never)]
    fn give_handed_now(&mut self) {
        while let Some(h) = self.conns.next_handed() {
            let registry = self.poll.registry();
            hand_off::give(self.hand_off.as_mut(), &mut self.relays, registry, h);
        }
    }

    /// Acts on what other threads sent: commands, then sockets to adopt
    /// (each sender told the outcome), then deferred responses' jobs.
    fn deliver(&mut self) {
        let delivery = self.inbox.take();
        for c in delivery.commands {
            match c {
                Command::Drain => self.drain(),
                Command::Close => self.close(),
                Command::Tls(cfg) => self.set_tls(cfg),
                Command::HandOver(m) => self.hand_over(m),
            }
        }
        for m in delivery.sockets {
            // A sender told "shutting down" still owns its socket and can
            // give it to a process that is not.
            let r = if self.shared.draining {
                Err(io::Error::other("shutting down"))
            } else {
                self.adopt(m.socket, &m.pre_read, true)
            };
            if let Some(reply) = m.reply {
                let _ = reply.send(r);
            }
        }
        for (key, letter) in delivery.mail {
            let registry = self.poll.registry();
            self.conns
                .reply(key, letter, self.now, &mut self.shared, registry);
            self.give_handed();
        }
    }

    /// How long the loop may wait before it must be stepped again: the next
    /// deadline, zero if a listener or a connection sending a large body
    /// has work left, `None` for no limit. In whole milliseconds, rounded
    /// up: a foreign loop that truncates to milliseconds (`poll(2)`'s
    /// unit) would otherwise wait 0 ms and spin until the deadline passes.
    pub fn timeout(&self) -> Option<Duration> {
        self.next_wait(Instant::now()).map(|left| {
            let ms = u64::from(left.subsec_nanos()).div_ceil(1_000_000);
            Duration::from_secs(left.as_secs()) + Duration::from_millis(ms)
        })
    }

    /// The clock as the loop read it after its last wait (once a turn).
    pub fn now(&self) -> Instant {
        self.now
    }

    /// `timeout` as it is, for our own wait (mio rounds it up itself),
    /// reckoned from `now`.
    fn next_wait(&self, now: Instant) -> Option<Duration> {
        if self.conns.has_again() {
            return Some(Duration::ZERO);
        }
        let budget =
            self.conns.budget.is_shared() && !self.admission.paused && !self.shared.draining;
        let wake = self.admission.next_wake(self.can_accept(), budget, now);
        let next = timers::earliest(self.conns.next_deadline(), wake);
        if self.conns.has_resting() {
            // Back within `IDLE_REST` in any case: the time to a deadline
            // is worked out only when it comes sooner (a `Duration` from
            // two instants cost 55 instructions a turn, callgrind).
            let rest = now + connections::IDLE_REST;
            match next {
                Some(n) if n < rest => Some(n.saturating_duration_since(now)),
                _ => Some(connections::IDLE_REST),
            }
        } else {
            next.map(|n| n.saturating_duration_since(now))
        }
    }

    /// Whether the last turn was woken through the inbox (`Inbox::wake`):
    /// whoever sends the loop something on a channel of its own and then
    /// wakes it need look at that channel only after such a turn.
    pub(crate) fn woken(&self) -> bool {
        self.woken
    }

    /// Waits up to `timeout` (or the next deadline) for events, and handles
    /// them: accepts, reads, answers, writes, and fires expired deadlines.
    pub fn step(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        // Read afresh: a program on the library may call `step` long after
        // the last turn, and a wait from that turn's clock would oversleep
        // the deadlines it passed meanwhile.
        self.turn_from(Instant::now(), timeout)
    }

    /// `step`, for the crate's own loops, which step again as soon as a
    /// turn is done: the wait is reckoned from the last turn's clock, not
    /// a fresh read (50 instructions a small request, callgrind). A
    /// deadline fires late by that turn's own work at most.
    pub(crate) fn turn(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.turn_from(self.now, timeout)
    }

    fn turn_from(&mut self, now: Instant, timeout: Option<Duration>) -> io::Result<()> {
        let wait = timers::earliest(timeout, self.next_wait(now));
        // Taken for the turn (its handlers borrow the server): building an
        // empty `Events` to leave in its place cost 28 instructions a turn.
        let mut events = self
            .events
            .take()
            .unwrap_or_else(|| Events::with_capacity(EVENTS));
        let turn = event_loop::wait(&mut self.poll, &mut events, wait);
        self.now = Instant::now();
        let access = self.shared.observer.look();
        self.shared.date.refresh(self.now, access);
        self.woken = false;
        for ev in events.iter() {
            match ev.token().0 {
                WAKER => {
                    self.woken = true;
                    self.deliver();
                }
                t if t >= LISTENER_TOKENS => {
                    self.admission.listeners.set_ready(t);
                    self.accept_from(t);
                }
                t if t >= RELAY_TOKENS => self.relays.ready(self.poll.registry(), t, ev),
                t if t >= lines::LINE_TOKENS => {
                    self.line_ready(t);
                    self.give_handed();
                }
                t => {
                    let registry = self.poll.registry();
                    self.conns
                        .ready(t, ev, self.now, &mut self.shared, registry);
                    self.give_handed();
                }
            }
        }
        self.events = Some(events);
        let registry = self.poll.registry();
        self.conns.run_again(self.now, &mut self.shared, registry);
        self.conns.fire_timers(self.now, &mut self.shared, registry);
        self.conns.rest_idle(&mut self.shared);
        self.give_handed();
        self.admit();
        if !self.lines.is_empty() {
            self.lines_finishing();
        }
        turn.map(drop)
    }

    /// Steps until the server is empty: no listener, no connection, nothing
    /// queued (after `close`, after a drain, or when an adopted single
    /// connection ends).
    pub fn run(&mut self) -> io::Result<()> {
        while !self.is_empty() {
            self.turn(None)?;
        }
        Ok(())
    }

    /// True when there is nothing left to serve.
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
            && self.admission.is_empty()
            && self.relays.len() == 0
            && self.lines.is_empty()
    }

    /// TLS WebSocket connections being relayed to workers.
    pub fn relays(&self) -> usize {
        self.relays.len()
    }

    /// Stops accepting; live connections go on.
    pub fn pause(&mut self) {
        self.admission.paused = true;
    }

    /// Accepts again after `pause`.
    pub fn resume(&mut self) {
        self.admission.paused = false;
        self.admit();
    }

    /// Stops accepting for good (listeners are closed) and lets every
    /// connection finish what it is answering; idle keep-alive ones close
    /// at once, one yet to send its first request waits for it.
    /// What is answered and what is not: the module's "Draining".
    pub fn drain(&mut self) {
        self.shared.draining = true;
        self.stop_accepting();
        self.conns
            .reread_all(self.now, &mut self.shared, self.poll.registry());
        self.give_handed();
    }

    /// Stops accepting and gives every plain connection to `mover` as soon
    /// as it is idle; the module's "Handing over" says when and what.
    pub fn hand_over(&mut self, mover: Mover) {
        // Sockets queued for a slot stay: served, then moved when idle.
        self.stop_accepting();
        if self.relays.len() > 0 {
            // Their TLS sessions cannot move (docs/upgrade.md step 7); the
            // WebSocket sessions behind them do, to the new workers.
            tracing::info!(
                relays = self.relays.len(),
                "upgrade: wss connections keep their TLS relay in this process until they end"
            );
        }
        self.conns
            .hand_over(mover, &mut self.shared, self.poll.registry());
    }

    /// True once `hand_over` was called.
    pub fn is_handing_over(&self) -> bool {
        self.conns.is_handing_over()
    }

    /// True once `close` was called.
    pub fn is_closed(&self) -> bool {
        self.admission.closed
    }

    /// True once `drain` was called.
    pub fn is_draining(&self) -> bool {
        self.shared.draining
    }

    /// Closes every listener and connection now. A closed server cannot be
    /// reused.
    pub fn close(&mut self) {
        self.admission.close(self.poll.registry());
        self.conns.close_all(self.poll.registry(), &mut self.shared);
        self.relays.close_all(self.poll.registry());
    }

    /// Local addresses of the listeners.
    pub fn local_addrs(&self) -> Vec<Addr> {
        self.admission.listeners.addrs()
    }

    /// Connections being served (not counting queued ones).
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Connections served by every server sharing this one's budget
    /// (`share_limit`), or by this one.
    pub fn connections_in_budget(&self) -> usize {
        self.conns.budget.in_use()
    }

    /// Connected sockets waiting for a slot.
    pub fn queued(&self) -> usize {
        self.admission.queued.len()
    }
}

/// The poll fd, for an outside main loop: wait for it to be readable, then
/// call `step(Some(Duration::ZERO))`; never wait longer than `timeout()`.
impl AsRawFd for Server {
    fn as_raw_fd(&self) -> RawFd {
        self.poll.as_raw_fd()
    }
}
