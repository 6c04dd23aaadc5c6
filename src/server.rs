//! The event loop: lua-http's `http.server` in Rust.
//!
//! Every socket enters through [`Server::add_socket`] (a listener or a
//! connected socket) or [`Server::add_stream`] (a connection with bytes
//! already read from it); the accept loop calls `add_socket` too. All I/O
//! is here; what the bytes mean is the sans-I/O engine's business
//! ([`crate::http::Conn`]).
//!
//! Sockets are registered once, edge-triggered, for both directions, and
//! readiness is remembered per connection: no `epoll_ctl` per request. A
//! read shorter than the buffer clears readability (the socket was drained;
//! the next arrival raises a new edge), as tokio does, so a keep-alive
//! request costs one `read` and one `writev`, with `epoll_wait` shared by
//! every connection ready in that turn.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use crate::conn_io::{self, Transport};
use crate::http::deferred::{Job, Mailer, ReplyKey};
use crate::http::{BufPool, Conn, Ctx, Expired, Handler, Limits, Next, Timeouts};
use crate::relay::Relay;
use crate::sys::{self, Addr, SockKind};
use crate::tls::TlsMode;

/// Server options. Every limit and deadline is on by default.
#[derive(Clone, Debug)]
pub struct Options {
    /// Most connections served at once. At the limit the server stops
    /// accepting (connections wait in the kernel's backlog, they are not
    /// accepted and closed), and connected sockets given to `add_socket`
    /// wait in a queue.
    pub max_concurrent: usize,
    /// Most connected sockets given to `add_socket`/`add_stream` that may
    /// wait for a slot; past it they are refused with an error.
    pub max_queued: usize,
    pub limits: Limits,
    pub timeouts: Timeouts,
    /// How long a listener rests after accept failed for lack of fds or
    /// memory, instead of spinning on a readiness it cannot act on.
    pub accept_backoff: Duration,
    /// Connections accepted from one listener per turn, so a flood of new
    /// connections cannot starve the ones being served.
    pub accept_batch: usize,
    /// Header fields added to every response (Moonbridge's `static_headers`).
    pub static_headers: Vec<(String, String)>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_concurrent: 4096,
            max_queued: 1024,
            limits: Limits::default(),
            timeouts: Timeouts::default(),
            accept_backoff: Duration::from_millis(100),
            accept_batch: 64,
            static_headers: Vec::new(),
        }
    }
}

/// A socket handed to the server, with what is already known about it.
pub struct Socket {
    fd: OwnedFd,
    kind: Option<SockKind>,
    peer: Option<Addr>,
    tls: TlsMode,
}

impl Socket {
    /// A socket to classify by asking the kernel.
    pub fn new(fd: OwnedFd) -> Self {
        Socket {
            fd,
            kind: None,
            peer: None,
            tls: TlsMode::Off,
        }
    }

    /// Serve with TLS: `On` for a listener taking only TLS or a connection
    /// that is TLS from its first byte, `Auto` to sniff (see `TlsMode`).
    pub fn tls(mut self, mode: TlsMode) -> Self {
        self.tls = mode;
        self
    }
    /// A socket whose peer is known better than `getpeername` would say
    /// (the client behind a proxy).
    pub fn with_peer(fd: OwnedFd, peer: Addr) -> Self {
        Socket {
            fd,
            kind: None,
            peer: Some(peer),
            tls: TlsMode::Off,
        }
    }
    fn accepted(fd: OwnedFd, peer: Addr, unix: bool, tls: TlsMode) -> Self {
        Socket {
            fd,
            kind: Some(SockKind::Stream { unix }),
            peer: Some(peer),
            tls,
        }
    }
}

impl From<OwnedFd> for Socket {
    fn from(fd: OwnedFd) -> Self {
        Socket::new(fd)
    }
}
macro_rules! socket_from {
    ($($t:ty),*) => {$(
        impl From<$t> for Socket {
            fn from(s: $t) -> Self {
                Socket::new(OwnedFd::from(s))
            }
        }
    )*};
}
socket_from!(
    std::net::TcpListener,
    std::net::TcpStream,
    std::os::unix::net::UnixListener,
    std::os::unix::net::UnixStream
);

/// What `add_socket` did with a socket.
#[derive(Debug, PartialEq, Eq)]
pub enum Added {
    /// A listener, now accepted from; its local address.
    Listener(Addr),
    /// A connection, now served.
    Connection,
    /// A connection waiting for a slot under `max_concurrent`.
    Queued,
}

/// A connection a handler took away from HTTP (`Response::hand_off`).
pub struct HandedOff {
    pub socket: OwnedFd,
    /// The request head that was handed off.
    pub head: Vec<u8>,
    /// Bytes read after the head (a WebSocket client's first frames).
    pub rest: Vec<u8>,
    pub peer: Addr,
}

/// A socket submitted from another thread, with where to send the outcome.
pub struct Submission {
    pub socket: Socket,
    pub pre_read: Vec<u8>,
    pub reply: Option<mpsc::Sender<io::Result<Added>>>,
}

/// A handle other threads use to give the server sockets (the control
/// socket's thread) or just to wake its loop (signals). Cheap to clone.
#[derive(Clone)]
pub struct Inbox {
    queue: Arc<Mutex<Vec<(Ticket, Submission)>>>,
    tickets: Arc<std::sync::atomic::AtomicU64>,
    replies: Arc<Mutex<Vec<Mail>>>,
    waker: Arc<Waker>,
}

/// A deferred response's job (`None`: the reply was dropped).
type Mail = (ReplyKey, Option<Job>);

/// Deferred responses reach the loop through the inbox too.
impl Mailer for Inbox {
    fn send(&self, key: ReplyKey, job: Option<Job>) {
        self.replies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((key, job));
        let _ = self.waker.wake();
    }
}

impl Inbox {
    /// Queues a socket for `add_stream`; the loop adopts it on its next
    /// turn and sends the outcome to `reply`. The ticket can take the
    /// submission back while it is still queued (`cancel`).
    pub fn submit(&self, s: Submission) -> io::Result<Ticket> {
        let t = Ticket(
            self.tickets
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        );
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((t, s));
        self.waker.wake()?;
        Ok(t)
    }

    /// Takes a submission back if the loop has not taken it yet: `true`
    /// means the socket was dropped here and the loop will never see it;
    /// `false`, that the loop has it and will send its outcome. The loop
    /// takes the whole queue under the same lock, so there is no third case.
    pub fn cancel(&self, t: Ticket) -> bool {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        match q.iter().position(|(k, _)| *k == t) {
            Some(i) => {
                q.swap_remove(i);
                true
            }
            None => false,
        }
    }

    /// Makes the loop's current `step` return.
    pub fn wake(&self) -> io::Result<()> {
        self.waker.wake()
    }
}

/// Names a submission in the inbox until the loop takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticket(u64);

/// The token of the inbox's waker; slab keys never get near it.
const WAKER: usize = usize::MAX;

struct Listener {
    fd: OwnedFd,
    local: Addr,
    unix: bool,
    tls: TlsMode,
    /// Readiness not yet acted on (edge-triggered: we must remember it).
    ready: bool,
    backoff_until: Option<Instant>,
}

struct Slot {
    fd: OwnedFd,
    conn: Conn,
    transport: Transport,
    readable: bool,
    writable: bool,
    /// The peer's FIN was reported (`EPOLLRDHUP`): its end of input must
    /// be read even after a short read.
    peer_closed: bool,
    generation: u64,
    /// The earliest entry this connection has in the timer heap.
    timer_at: Option<Instant>,
}

enum Entry {
    Listener(Listener),
    Conn(Box<Slot>),
    /// A handed-off TLS connection relayed to a worker; the token of its
    /// socketpair end.
    Relay(Box<Relay>, usize),
    /// The socketpair end of the relay at this token.
    RelayPair(usize),
}

struct Queued {
    fd: OwnedFd,
    peer: Addr,
    pre_read: Vec<u8>,
    tls: TlsMode,
}

/// The IMF-fixdate for `Date`, formatted once a second, not per response.
struct DateCache {
    secs: u64,
    text: Vec<u8>,
}

impl DateCache {
    fn refresh(&mut self) {
        let now = SystemTime::now();
        let secs = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        if secs != self.secs || self.text.is_empty() {
            self.secs = secs;
            self.text = httpdate::fmt_http_date(now).into_bytes();
        }
    }
}

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
    fn ctx(&mut self) -> Ctx<'_> {
        self.ctx_with(None)
    }

    /// The context for one connection: deferred responses know where to
    /// reply (the mailer is borrowed, not cloned, per turn).
    fn ctx_for(&mut self, token: usize, generation: u64) -> Ctx<'_> {
        self.ctx_with(Some((token, generation)))
    }

    fn ctx_with(&mut self, conn: Option<(usize, u64)>) -> Ctx<'_> {
        Ctx {
            handler: &*self.handler,
            limits: &self.opts.limits,
            timeouts: &self.opts.timeouts,
            date: &self.date.text,
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
    entries: Slab<Entry>,
    shared: Shared,
    timers: Timers,
    queued: VecDeque<Queued>,
    live: usize,
    listeners: usize,
    next_gen: u64,
    paused: bool,
    closed: bool,
    now: Instant,
    inbox: Option<Inbox>,
    hand_off: Option<Box<dyn FnMut(HandedOff)>>,
    relays: usize,
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

impl Server {
    pub fn new(opts: Options, handler: impl Handler + 'static) -> io::Result<Server> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), Token(WAKER))?);
        let inbox = Inbox {
            queue: Arc::new(Mutex::new(Vec::new())),
            tickets: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            replies: Arc::new(Mutex::new(Vec::new())),
            waker,
        };
        let static_headers = opts
            .static_headers
            .iter()
            .fold(Vec::new(), |mut b, (n, v)| {
                b.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
                b
            });
        Ok(Server {
            poll,
            events: Some(Events::with_capacity(1024)),
            entries: Slab::new(),
            shared: Shared {
                handler: Box::new(handler),
                opts,
                pool: BufPool::default(),
                scratch: Vec::new(),
                date: DateCache {
                    secs: 0,
                    text: Vec::new(),
                },
                draining: false,
                tls: None,
                static_headers,
                mailer: Arc::new(inbox.clone()),
            },
            timers: BinaryHeap::new(),
            queued: VecDeque::new(),
            live: 0,
            listeners: 0,
            next_gen: 0,
            paused: false,
            closed: false,
            now: Instant::now(),
            inbox: Some(inbox),
            hand_off: None,
            relays: 0,
        })
    }

    /// The handle through which other threads submit sockets or wake the
    /// loop.
    pub fn inbox(&mut self) -> io::Result<Inbox> {
        self.inbox
            .clone()
            .ok_or_else(|| io::Error::other("no inbox"))
    }

    fn take_mail(&mut self) {
        let Some(inbox) = self.inbox.clone() else {
            return;
        };
        let mail = std::mem::take(&mut *inbox.queue.lock().unwrap_or_else(|e| e.into_inner()));
        for (_, m) in mail {
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
        let replies = std::mem::take(&mut *inbox.replies.lock().unwrap_or_else(|e| e.into_inner()));
        for (key, job) in replies {
            let now = self.now;
            let Server {
                entries, shared, ..
            } = self;
            let Some(Entry::Conn(slot)) = entries.get_mut(key.token) else {
                continue;
            };
            if slot.generation != key.generation {
                continue; // that connection is gone and its slot reused
            }
            let mut ctx = shared.ctx();
            match job {
                Some(job) => slot.conn.write_deferred(key.id, job, now, &mut ctx),
                None => slot.conn.abandon(key.id, now, &mut ctx),
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

    /// Adds a listening socket (accepted from from now on) or a connected
    /// one (served as one connection). What it is is asked of the kernel;
    /// anything but a stream socket is refused. Adopted fds are made
    /// non-blocking and close-on-exec.
    pub fn add_socket(&mut self, sock: impl Into<Socket>) -> io::Result<Added> {
        self.adopt(sock.into(), &[])
    }

    /// Adds a connected socket from which `pre_read` was already read: those
    /// bytes are served as if they had come from the socket.
    pub fn add_stream(&mut self, sock: impl Into<Socket>, pre_read: &[u8]) -> io::Result<Added> {
        let sock = sock.into();
        if let Some(SockKind::Listener { .. }) = sock.kind {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "add_stream takes a connected socket",
            ));
        }
        let r = self.adopt(sock, pre_read)?;
        if let Added::Listener(_) = r {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "add_stream takes a connected socket",
            ));
        }
        Ok(r)
    }

    fn adopt(&mut self, sock: Socket, pre_read: &[u8]) -> io::Result<Added> {
        if self.closed {
            return Err(io::Error::other("server is closed"));
        }
        let Socket {
            fd,
            kind,
            peer,
            tls,
        } = sock;
        if tls != TlsMode::Off && self.shared.tls.is_none() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "TLS asked for but no certificate is configured",
            ));
        }
        let kind = match kind {
            Some(k) => k,
            None => {
                let k = sys::classify(fd.as_fd())?;
                sys::prepare_adopted(fd.as_fd())?;
                if let SockKind::Stream { unix: false } | SockKind::Listener { unix: false } = k {
                    // Listeners pass it on to what they accept.
                    sys::set_nodelay(fd.as_fd())?;
                }
                k
            }
        };
        match kind {
            SockKind::Listener { unix } => {
                if !pre_read.is_empty() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "a listener has no pre-read bytes",
                    ));
                }
                let local = sys::local_addr(fd.as_fd());
                let entry = self.entries.vacant_entry();
                let token = entry.key();
                self.poll.registry().register(
                    &mut SourceFd(&fd.as_raw_fd()),
                    Token(token),
                    Interest::READABLE,
                )?;
                entry.insert(Entry::Listener(Listener {
                    fd,
                    local: local.clone(),
                    unix,
                    tls,
                    ready: true,
                    backoff_until: None,
                }));
                self.listeners += 1;
                tracing::debug!(%local, "listener added");
                self.accept_from(token);
                Ok(Added::Listener(local))
            }
            SockKind::Stream { .. } => {
                let peer = peer.unwrap_or_else(|| sys::peer_addr(fd.as_fd()));
                if self.live >= self.shared.opts.max_concurrent {
                    if self.queued.len() >= self.shared.opts.max_queued {
                        return Err(io::Error::new(
                            io::ErrorKind::WouldBlock,
                            "at max_concurrent and the queue of waiting sockets is full",
                        ));
                    }
                    self.queued.push_back(Queued {
                        fd,
                        peer,
                        pre_read: pre_read.to_vec(),
                        tls,
                    });
                    return Ok(Added::Queued);
                }
                self.serve(fd, peer, pre_read, tls)?;
                Ok(Added::Connection)
            }
        }
    }

    fn serve(&mut self, fd: OwnedFd, peer: Addr, pre_read: &[u8], tls: TlsMode) -> io::Result<()> {
        let transport = match (tls, &self.shared.tls) {
            (TlsMode::Off, _) => Transport::Plain,
            (_, None) => {
                return Err(io::Error::other(
                    "TLS asked for but no certificate is configured",
                ));
            }
            (TlsMode::Auto, Some(c)) => Transport::Sniff(c.clone()),
            (TlsMode::On, Some(c)) => Transport::tls(c.clone())?,
        };
        let entry = self.entries.vacant_entry();
        let token = entry.key();
        self.poll.registry().register(
            &mut SourceFd(&fd.as_raw_fd()),
            Token(token),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let mut conn = Conn::new(peer, self.now);
        conn.feed(pre_read, &mut self.shared.pool, self.now);
        self.next_gen += 1;
        entry.insert(Entry::Conn(Box::new(Slot {
            fd,
            conn,
            transport,
            // Draining, a connection from the backlog is read at once: its
            // request is what it is being accepted for, and without bytes
            // it would be judged idle and closed.
            readable: self.shared.draining,
            writable: true,
            peer_closed: false,
            generation: self.next_gen,
            timer_at: None,
        })));
        self.live += 1;
        self.drive(token);
        Ok(())
    }

    /// Accepts from a ready listener until it would block, the batch is
    /// used up, or the server is at `max_concurrent` or paused.
    fn accept_from(&mut self, token: usize) {
        let mut budget = self.shared.opts.accept_batch;
        loop {
            let Some(Entry::Listener(l)) = self.entries.get_mut(token) else {
                return;
            };
            if !l.ready
                || self.paused
                || self.closed
                || self.shared.draining
                || self.live >= self.shared.opts.max_concurrent
            {
                return;
            }
            if l.backoff_until.is_some_and(|t| t > self.now) {
                return;
            }
            if budget == 0 {
                return; // still ready: `poll_timeout` makes the next turn not wait
            }
            budget -= 1;
            match sys::accept(l.fd.as_fd()) {
                Ok((fd, peer)) => {
                    let (unix, tls) = (l.unix, l.tls);
                    if let Err(e) = self.add_socket(Socket::accepted(fd, peer, unix, tls)) {
                        tracing::warn!("dropping accepted connection: {e}");
                    }
                }
                Err(e) if would_block(&e) => l.ready = false,
                Err(e) if sys::is_resource_exhaustion(&e) => {
                    tracing::warn!(local = %l.local, "accept: {e}; pausing this listener for {:?}", self.shared.opts.accept_backoff);
                    l.backoff_until = Some(self.now + self.shared.opts.accept_backoff);
                    return;
                }
                Err(e) => match e.raw_os_error() {
                    // The connection died in the backlog, or a transient
                    // network error: the next one may be fine.
                    Some(
                        libc::ECONNABORTED
                        | libc::EINTR
                        | libc::EPROTO
                        | libc::EPERM
                        | libc::ENETDOWN
                        | libc::ENOPROTOOPT
                        | libc::EHOSTDOWN
                        | libc::ENONET
                        | libc::EHOSTUNREACH
                        | libc::EOPNOTSUPP
                        | libc::ENETUNREACH,
                    ) => tracing::debug!("accept: {e}"),
                    _ => {
                        tracing::warn!(local = %l.local, "accept: {e}; pausing this listener");
                        l.backoff_until = Some(self.now + self.shared.opts.accept_backoff);
                        return;
                    }
                },
            }
        }
    }

    /// Reads, parses, answers and writes on one connection until nothing
    /// more can be done without waiting.
    fn drive(&mut self, token: usize) {
        let now = self.now;
        let Server {
            entries,
            shared,
            timers,
            ..
        } = self;
        let Some(Entry::Conn(slot)) = entries.get_mut(token) else {
            return;
        };
        let mut ctx = shared.ctx_for(token, slot.generation);
        let close = loop {
            let mut progress = false;
            match conn_io::read(
                slot.fd.as_fd(),
                &mut slot.transport,
                &mut slot.conn,
                &mut slot.readable,
                slot.peer_closed,
                ctx.pool,
                ctx.limits,
                now,
            ) {
                Ok(moved) => progress |= moved,
                Err(e) => break Some(e),
            }
            slot.conn.advance(now, &mut ctx);
            if slot.writable && slot.transport.wants_write(&mut slot.conn) {
                match conn_io::write(
                    slot.fd.as_fd(),
                    &mut slot.transport,
                    &mut slot.conn,
                    &mut slot.writable,
                    now,
                ) {
                    Ok(wrote) => progress |= wrote,
                    Err(e) => break Some(format!("write: {e}")),
                }
            }
            match slot.conn.next(now, ctx.timeouts, ctx.draining) {
                Next::Close => break None,
                Next::HandOff => {
                    let taken = slot.conn.take_hand_off();
                    let peer = slot.conn.peer().clone();
                    return self.hand_off_conn(token, taken, peer);
                }
                Next::ShutdownWrite => {
                    if let Err(e) = conn_io::shutdown(slot.fd.as_fd(), &mut slot.transport) {
                        break Some(format!("shutdown: {e}"));
                    }
                    progress = true;
                }
                Next::Continue => {}
            }
            if !progress {
                if slot.conn.is_idle() {
                    slot.conn.release_buffers(ctx.pool);
                }
                schedule(timers, slot, token, ctx.timeouts);
                return;
            }
        };
        if let Some(why) = close {
            if why.starts_with("TLS") {
                tracing::info!(peer = %slot.conn.peer(), "closing: {why}");
            } else {
                tracing::debug!(peer = %slot.conn.peer(), "closing: {why}");
            }
        }
        self.close_conn(token);
    }

    fn hand_off_conn(&mut self, token: usize, taken: Option<(Vec<u8>, Vec<u8>)>, peer: Addr) {
        let Some(Entry::Conn(slot)) = self.entries.try_remove(token) else {
            return;
        };
        let _ = self
            .poll
            .registry()
            .deregister(&mut SourceFd(&slot.fd.as_raw_fd()));
        let Slot {
            fd,
            mut conn,
            transport,
            ..
        } = *slot;
        conn.release_buffers(&mut self.shared.pool);
        self.live -= 1;
        match (taken, self.hand_off.as_mut()) {
            (Some((head, rest)), Some(hook)) => match transport {
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
                        self.start_relay(fd, tls, ours);
                    }
                    Err(e) => {
                        tracing::error!(%peer, "no socketpair for a TLS hand-off: {e}; closed")
                    }
                },
                _ => hook(HandedOff {
                    socket: fd,
                    head,
                    rest,
                    peer,
                }),
            },
            _ => {
                tracing::error!(%peer, "a handler handed off a connection but no hand-off hook is set; closed")
            }
        }
        self.admit_waiting();
    }

    fn start_relay(&mut self, client: OwnedFd, tls: Box<rustls::ServerConnection>, pair: OwnedFd) {
        let k1 = self.entries.vacant_entry().key();
        let both = Interest::READABLE | Interest::WRITABLE;
        if let Err(e) =
            self.poll
                .registry()
                .register(&mut SourceFd(&client.as_raw_fd()), Token(k1), both)
        {
            tracing::error!("relay: {e}");
            return;
        }
        let pair_raw = pair.as_raw_fd();
        self.entries.insert(Entry::Relay(
            Box::new(Relay::new(client, tls, pair)),
            usize::MAX,
        ));
        let k2 = self.entries.vacant_entry().key();
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut SourceFd(&pair_raw), Token(k2), both)
        {
            tracing::error!("relay: {e}");
            return self.close_relay(k1);
        }
        self.entries.insert(Entry::RelayPair(k1));
        if let Some(Entry::Relay(_, t)) = self.entries.get_mut(k1) {
            *t = k2;
        }
        self.relays += 1;
        self.drive_relay(k1);
    }

    fn drive_relay(&mut self, k1: usize) {
        let Some(Entry::Relay(r, _)) = self.entries.get_mut(k1) else {
            return;
        };
        match r.drive() {
            Ok(true) => {}
            Ok(false) => self.close_relay(k1),
            Err(e) => {
                tracing::info!("relay closed: {e}");
                self.close_relay(k1);
            }
        }
    }

    fn close_relay(&mut self, k1: usize) {
        if let Some(Entry::Relay(r, k2)) = self.entries.try_remove(k1) {
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&r.client.as_raw_fd()));
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&r.pair.as_raw_fd()));
            if k2 != usize::MAX {
                self.entries.try_remove(k2);
                self.relays -= 1;
            }
        }
    }

    /// TLS WebSocket connections being relayed to workers.
    pub fn relays(&self) -> usize {
        self.relays
    }

    fn close_conn(&mut self, token: usize) {
        if let Some(Entry::Conn(slot)) = self.entries.try_remove(token) {
            // Deregister explicitly: the same socket may be open elsewhere
            // (inetd gives it as fds 0, 1 and 2), and epoll forgets an fd
            // only when every copy is closed.
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&slot.fd.as_raw_fd()));
            let mut slot = slot;
            slot.conn.release_buffers(&mut self.shared.pool);
            drop(slot);
            self.live -= 1;
            self.admit_waiting();
        }
    }

    /// A slot is free: serve a queued socket, or accept again.
    fn admit_waiting(&mut self) {
        while self.live < self.shared.opts.max_concurrent && !self.closed {
            let Some(q) = self.queued.pop_front() else {
                break;
            };
            if let Err(e) = self.serve(q.fd, q.peer, &q.pre_read, q.tls) {
                tracing::warn!("queued connection dropped: {e}");
            }
        }
        if self.live < self.shared.opts.max_concurrent {
            let ready: Vec<usize> = self
                .entries
                .iter()
                .filter_map(|(t, e)| matches!(e, Entry::Listener(l) if l.ready).then_some(t))
                .collect();
            for t in ready {
                self.accept_from(t);
            }
        }
    }

    fn fire_timers(&mut self) {
        let now = self.now;
        while let Some(&Reverse((at, token, generation))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Server {
                entries,
                shared,
                timers,
                ..
            } = self;
            let Some(Entry::Conn(slot)) = entries.get_mut(token) else {
                continue;
            };
            if slot.generation != generation {
                continue;
            }
            slot.timer_at = None;
            let mut ctx = shared.ctx();
            match slot.conn.on_timeout(now, &mut ctx) {
                Some(Expired::Write) | Some(Expired::Linger) => {
                    tracing::debug!(peer = %slot.conn.peer(), "deadline passed; closing");
                    self.close_conn(token);
                }
                Some(Expired::Idle) | Some(Expired::Request) => self.drive(token),
                None => schedule(timers, slot, token, ctx.timeouts),
            }
        }
        // Listeners resting after EMFILE.
        let rested: Vec<usize> = self
            .entries
            .iter_mut()
            .filter_map(|(t, e)| match e {
                Entry::Listener(l) if l.backoff_until.is_some_and(|b| b <= now) => {
                    l.backoff_until = None;
                    l.ready = true;
                    Some(t)
                }
                _ => None,
            })
            .collect();
        for t in rested {
            self.accept_from(t);
        }
    }

    /// How long the loop may wait before it must be stepped again: the next
    /// deadline, zero if a listener has work left, `None` for no limit.
    pub fn timeout(&self) -> Option<Duration> {
        let now = Instant::now();
        let mut next: Option<Instant> = self.timers.peek().map(|Reverse((at, _, _))| *at);
        let can_accept =
            !self.paused && !self.shared.draining && self.live < self.shared.opts.max_concurrent;
        for (_, e) in self.entries.iter() {
            if let Entry::Listener(l) = e {
                match l.backoff_until {
                    Some(b) => next = Some(next.map_or(b, |n| n.min(b))),
                    None if l.ready && can_accept => return Some(Duration::ZERO),
                    None => {}
                }
            }
        }
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
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
            Err(e) => Err(e),
        };
        self.now = Instant::now();
        self.shared.date.refresh();
        for ev in events.iter() {
            let token = ev.token().0;
            if token == WAKER {
                self.take_mail();
                continue;
            }
            match self.entries.get_mut(token) {
                Some(Entry::Listener(l)) => {
                    l.ready = true;
                    self.accept_from(token);
                }
                Some(Entry::Relay(r, _)) => {
                    r.client_readable |= ev.is_readable() || ev.is_read_closed() || ev.is_error();
                    r.client_writable |= ev.is_writable() || ev.is_write_closed() || ev.is_error();
                    self.drive_relay(token);
                }
                Some(Entry::RelayPair(k1)) => {
                    let k1 = *k1;
                    if let Some(Entry::Relay(r, _)) = self.entries.get_mut(k1) {
                        r.pair_readable |= ev.is_readable() || ev.is_read_closed() || ev.is_error();
                        r.pair_writable |=
                            ev.is_writable() || ev.is_write_closed() || ev.is_error();
                    }
                    self.drive_relay(k1);
                }
                Some(Entry::Conn(slot)) => {
                    slot.peer_closed |= ev.is_read_closed();
                    slot.readable |= ev.is_readable() || ev.is_read_closed() || ev.is_error();
                    slot.writable |= ev.is_writable() || ev.is_write_closed() || ev.is_error();
                    self.drive(token);
                }
                None => {}
            }
        }
        self.events = Some(events);
        self.fire_timers();
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
        self.entries.is_empty() && self.queued.is_empty()
    }

    /// Stops accepting; live connections go on.
    pub fn pause(&mut self) {
        self.paused = true;
    }

    /// Accepts again after `pause`.
    pub fn resume(&mut self) {
        self.paused = false;
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
    /// free up.
    pub fn drain(&mut self) {
        self.shared.draining = true;
        self.take_backlogs();
        self.close_listeners();
        let tokens: Vec<usize> = self.entries.iter().map(|(t, _)| t).collect();
        // A TLS WebSocket relay is left alone: the worker's Close (1001)
        // still has to go through it. It ends when the worker closes its
        // end, or at `close`.
        for t in tokens {
            if let Some(Entry::Conn(slot)) = self.entries.get_mut(t) {
                slot.readable = true;
                self.drive(t);
            }
        }
    }

    /// True once `drain` was called.
    pub fn is_draining(&self) -> bool {
        self.shared.draining
    }

    /// Accepts everything waiting in the listeners' backlogs (at most what
    /// `max_concurrent` and `max_queued` allow).
    fn take_backlogs(&mut self) {
        let opts = &self.shared.opts;
        let room =
            (opts.max_concurrent + opts.max_queued).saturating_sub(self.live + self.queued.len());
        let listeners: Vec<(usize, bool, TlsMode)> = self
            .entries
            .iter()
            .filter_map(|(t, e)| match e {
                Entry::Listener(l) => Some((t, l.unix, l.tls)),
                _ => None,
            })
            .collect();
        let mut taken = 0;
        for (t, unix, tls) in listeners {
            while taken < room {
                let Some(Entry::Listener(l)) = self.entries.get(t) else {
                    break;
                };
                let Ok((fd, peer)) = sys::accept(l.fd.as_fd()) else {
                    break;
                };
                taken += 1;
                if let Err(e) = self.adopt(Socket::accepted(fd, peer, unix, tls), &[]) {
                    tracing::warn!("dropping a connection from the backlog: {e}");
                }
            }
        }
        if taken > 0 {
            tracing::info!(
                taken,
                "draining: took the connections waiting in the backlog"
            );
        }
    }

    fn close_listeners(&mut self) {
        let tokens: Vec<usize> = self
            .entries
            .iter()
            .filter_map(|(t, e)| matches!(e, Entry::Listener(_)).then_some(t))
            .collect();
        for t in tokens {
            if let Some(Entry::Listener(l)) = self.entries.try_remove(t) {
                let _ = self
                    .poll
                    .registry()
                    .deregister(&mut SourceFd(&l.fd.as_raw_fd()));
                self.listeners -= 1;
            }
        }
    }

    /// Closes every listener and connection now. A closed server cannot be
    /// reused.
    pub fn close(&mut self) {
        self.closed = true;
        self.close_listeners();
        self.queued.clear();
        let tokens: Vec<usize> = self.entries.iter().map(|(t, _)| t).collect();
        for t in tokens {
            match self.entries.get(t) {
                Some(Entry::Conn(_)) => self.close_conn(t),
                Some(Entry::Relay(..)) => self.close_relay(t),
                _ => {}
            }
        }
    }

    /// Local addresses of the listeners.
    pub fn local_addrs(&self) -> Vec<Addr> {
        self.entries
            .iter()
            .filter_map(|(_, e)| match e {
                Entry::Listener(l) => Some(l.local.clone()),
                _ => None,
            })
            .collect()
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

type Timers = BinaryHeap<Reverse<(Instant, usize, u64)>>;

/// Puts the connection's next deadline in the heap unless an entry at or
/// before it is there already. Entries are never removed: a stale one is
/// recognised when it fires (its generation, or a later deadline).
fn schedule(timers: &mut Timers, slot: &mut Slot, token: usize, timeouts: &Timeouts) {
    if let Some(d) = slot.conn.deadline(timeouts)
        && slot.timer_at.is_none_or(|t| t > d)
    {
        timers.push(Reverse((d, token, slot.generation)));
        slot.timer_at = Some(d);
    }
}
