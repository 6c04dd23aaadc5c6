//! The WebSocket worker pool of an HTTP process. A thread of its own, with
//! its own mio loop: the HTTP loop gives it upgraded connections through a
//! channel and never waits for a worker.
//!
//! Each connection goes to the least-loaded live worker in a
//! `PASS_CONNECTION` (the request head, the bytes read after it, the fd).
//! Our copy of the fd is closed only after the worker's ACK; on a refusal
//! or a worker that dies, the pool answers 503 itself. A worker that dies
//! is started again after a back-off that grows while it keeps dying young,
//! so a crashing worker cannot spin.
//!
//! One owner at a time: once the fd is sent, the worker holds a copy (in its
//! socket's queue, or taken), so the pool may write on it only when the
//! worker can no longer do so. A REFUSE says so; so does a dead worker (its
//! end of the socketpair closed, the kernel frees what was queued to it).
//! A worker that does not answer within `ack_timeout` is hung: one we
//! started is killed and reaped before its connections get their 503; one
//! running on its own cannot be, so its connection is left to it (our copy
//! is closed without a word) and its control socket is dropped.

use std::collections::HashMap;
use std::io::{self, IoSlice};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use crate::event_loop::{self, WAKER};
use crate::handoff::wire::{self, Kind, Message};
use crate::server::{AccessLine, HandedOff};
use crate::sys::{self, fdpass};

mod link;
use link::Link;

#[derive(Clone, Debug)]
pub(crate) struct PoolConfig {
    /// Worker processes to start (`handoff ws-worker`).
    pub workers: usize,
    /// The routes and limits every worker it starts is given, in one
    /// `CONFIGURE` message before anything else (`WorkerConfig::to_settings`).
    pub worker: crate::ws::worker::WorkerConfig,
    /// Where its workers log, as `ws-worker` flags (`--log-file`, …): a
    /// process's own output, which it needs before any message comes.
    pub log_args: Vec<String>,
    /// Workers running on their own, reached by path.
    pub external: Vec<PathBuf>,
    /// How long a worker has to take a connection.
    pub ack_timeout: Duration,
}

enum Msg {
    HandOff(Box<HandedOff>),
    /// Ask every worker to close its connections (1001) and exit; tell
    /// this sender when all have.
    Shutdown(mpsc::Sender<()>, Box<dyn FnOnce() + Send>),
    /// The old process of an upgrade: move every session over this line
    /// to the new process's pool; tell this sender when all have gone.
    MoveTo(OwnedFd, mpsc::Sender<()>, Box<dyn FnOnce() + Send>),
    /// The new process of an upgrade: the line from the old one's pool.
    LinkToOld(OwnedFd),
    /// Pass this signal on to every worker this pool started.
    Signal(nix::sys::signal::Signal),
}

/// Hands connections to the pool's thread. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Pool {
    tx: mpsc::Sender<Msg>,
    waker: Arc<Waker>,
}

impl Pool {
    pub(crate) fn hand_off(&self, h: HandedOff) {
        match self.tx.send(Msg::HandOff(Box::new(h))) {
            Ok(()) => {
                let _ = self.waker.wake();
            }
            Err(mpsc::SendError(Msg::HandOff(h))) => {
                Held::of(*h).0.refuse("the WebSocket pool is gone")
            }
            Err(_) => {}
        }
    }

    /// Starts a graceful shutdown of the workers; the receiver hears once
    /// every worker this pool started has exited, and `then` runs (to wake
    /// the HTTP loop, so that it need not look every few milliseconds).
    pub(crate) fn shutdown(&self, then: impl FnOnce() + Send + 'static) -> mpsc::Receiver<()> {
        let (tx, rx) = mpsc::channel();
        if self.tx.send(Msg::Shutdown(tx, Box::new(then))).is_ok() {
            let _ = self.waker.wake();
        }
        rx
    }

    /// The old process of an upgrade, once the new one is ready: every
    /// WebSocket session moves over `link` to the new process's pool
    /// (`docs/upgrade.md` step 6); the receiver hears once all have and
    /// the workers are gone, and `then` runs.
    pub(crate) fn move_to(
        &self,
        link: OwnedFd,
        then: impl FnOnce() + Send + 'static,
    ) -> mpsc::Receiver<()> {
        let (tx, rx) = mpsc::channel();
        if self.tx.send(Msg::MoveTo(link, tx, Box::new(then))).is_ok() {
            let _ = self.waker.wake();
        }
        rx
    }

    /// Passes `sig` on to the workers this pool started (not to those on
    /// their own sockets, another unit's): SIGUSR1 reaches them through
    /// the HTTP process, so `systemctl kill --kill-who=main` is enough and
    /// the programs of exec routes, which SIGUSR1 would kill, get none.
    pub(crate) fn signal_workers(&self, sig: nix::sys::signal::Signal) {
        if self.tx.send(Msg::Signal(sig)).is_ok() {
            let _ = self.waker.wake();
        }
    }

    /// The new process of an upgrade: sessions (and broadcasts) come from
    /// the old process's pool on `link`.
    pub(crate) fn link_to_old(&self, link: OwnedFd) {
        if self.tx.send(Msg::LinkToOld(link)).is_ok() {
            let _ = self.waker.wake();
        }
    }
}

const LINK: usize = usize::MAX - 1;
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A worker that lived this long is healthy: its next death starts the
/// back-off over.
const HEALTHY_AFTER: Duration = Duration::from_secs(10);

struct Worker {
    ctl: Option<OwnedFd>,
    child: Option<Child>,
    external: Option<PathBuf>,
    load: usize,
    inflight: usize,
    started: Instant,
    backoff: Duration,
    restart_at: Option<Instant>,
}

/// Why a worker is dropped.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Death {
    /// Its control socket closed or failed: it can touch nothing more.
    Gone,
    /// It did not answer in time: it may still be running.
    Hung,
}

/// An upgrade the pool holds until a worker answers: our copy of the
/// socket, for a 503, and the request's access line, written once with
/// the outcome (the worker writes none).
pub(super) struct Held {
    pub(super) fd: OwnedFd,
    pub(super) access: AccessLine,
    /// The route's path, for the line's note.
    pub(super) route: String,
}

impl Held {
    fn of(h: HandedOff) -> (Held, Message) {
        let (msg, fd, access) = pass_connection(h, 0);
        let route = msg.route.clone().unwrap_or_else(|| "-".into());
        (Held { fd, access, route }, msg)
    }

    /// No worker took it: a 503, and the line says so.
    pub(super) fn refuse(self, why: &str) {
        answer_503(self.fd, why);
        self.access.write(Some(503), why);
    }

    /// A worker took it (and wrote the 101): our copy closes.
    pub(super) fn taken(self, by: &str) {
        self.access
            .write(Some(101), &format!("websocket {} {by}", self.route));
    }
}

/// A connection or session given to a worker, until its answer.
struct Pending {
    /// An upgrade we hold, to answer 503 on if the worker refuses it; none
    /// for a session, or for what came over the link (answered there).
    held: Option<Held>,
    worker: usize,
    deadline: Instant,
    /// It came from the old process's pool under this ID: the answer goes
    /// back there.
    link_id: Option<u64>,
}

/// Writes a 503 on a connection the pool could not place, and closes it.
fn answer_503(fd: OwnedFd, why: &str) {
    tracing::warn!(peer = %sys::peer_addr(fd.as_fd()), "WebSocket upgrade answered 503: {why}");
    let resp = crate::http::encode::canned(503, why, "Retry-After: 1\r\n");
    // A fresh socket's buffer takes this whole; if it does not, the client
    // sees a closed connection, which is also an answer.
    let _ = sys::write(fd.as_fd(), &resp);
    let _ = sys::shutdown_write(fd.as_fd());
}

pub(crate) fn start(cfg: PoolConfig) -> io::Result<Pool> {
    let poll = Poll::new()?;
    let waker = Arc::new(event_loop::waker(&poll)?);
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("ws-pool".into())
        .spawn(move || {
            let mut p = PoolLoop {
                poll,
                rx,
                cfg,
                workers: Vec::new(),
                pending: HashMap::new(),
                next_id: 0,
                stopping: None,
                on_stopped: None,
                link: None,
                seq: 0,
            };
            p.run();
        })?;
    Ok(Pool { tx, waker })
}

struct PoolLoop {
    poll: Poll,
    rx: mpsc::Receiver<Msg>,
    /// Shutting down: workers are not restarted; tell this when all are gone.
    stopping: Option<mpsc::Sender<()>>,
    /// Runs once every worker is gone.
    on_stopped: Option<Box<dyn FnOnce() + Send>>,
    cfg: PoolConfig,
    workers: Vec<Worker>,
    pending: HashMap<u64, Pending>,
    next_id: u64,
    /// The line to the other process's pool during an upgrade.
    link: Option<Link>,
    /// The last broadcast put in order (`link.rs`).
    seq: u64,
}

impl PoolLoop {
    fn run(&mut self) {
        let now = Instant::now();
        for i in 0..self.cfg.workers + self.cfg.external.len() {
            let external = i
                .checked_sub(self.cfg.workers)
                .map(|j| self.cfg.external[j].clone());
            self.workers.push(Worker {
                ctl: None,
                child: None,
                external,
                load: 0,
                inflight: 0,
                started: now,
                backoff: FIRST_BACKOFF,
                restart_at: None,
            });
            self.start_worker(i);
        }
        let mut events = Events::with_capacity(64);
        loop {
            let now = Instant::now();
            let next = self
                .pending
                .values()
                .map(|p| p.deadline)
                .chain(self.workers.iter().filter_map(|w| w.restart_at))
                .min();
            let timeout = next.map(|n| n.saturating_duration_since(now));
            let _turn = match event_loop::wait(&mut self.poll, &mut events, timeout) {
                Ok(t) => t,
                Err(e) => return tracing::error!("WebSocket pool: {e}"),
            };
            for ev in events.iter() {
                match ev.token().0 {
                    WAKER => {
                        while let Ok(m) = self.rx.try_recv() {
                            match m {
                                Msg::HandOff(h) if self.moving() => self.forward_upgrade(*h),
                                Msg::HandOff(h) if self.stopping.is_some() => {
                                    Held::of(*h).0.refuse("shutting down")
                                }
                                Msg::HandOff(h) => self.place(*h),
                                Msg::Shutdown(done, then) => self.shut_down(done, then),
                                Msg::MoveTo(link, done, then) => self.move_to(link, done, then),
                                Msg::LinkToOld(link) => self.link_to_old(link),
                                Msg::Signal(sig) => self.signal_started(sig),
                            }
                        }
                    }
                    LINK => self.read_link(),
                    i => self.read_worker(i),
                }
            }
            self.expire(Instant::now());
        }
    }

    fn shut_down(&mut self, done: mpsc::Sender<()>, then: Box<dyn FnOnce() + Send>) {
        self.on_stopped = Some(then);
        for w in &mut self.workers {
            w.restart_at = None;
        }
        self.signal_started(nix::sys::signal::Signal::SIGTERM);
        self.stopping = Some(done);
        self.check_stopped();
    }

    /// Sends `sig` to every worker this pool started and has not reaped.
    fn signal_started(&self, sig: nix::sys::signal::Signal) {
        for c in self.workers.iter().filter_map(|w| w.child.as_ref()) {
            sys::signal_child(c, sig);
        }
    }

    /// Once shutting down, tells the waiter when no started worker is left.
    fn check_stopped(&mut self) {
        if self.stopping.is_none() {
            return;
        }
        for w in &mut self.workers {
            if let Some(c) = &mut w.child
                && let Ok(Some(_)) = c.try_wait()
            {
                w.child = None;
            }
        }
        if self.workers.iter().all(|w| w.child.is_none())
            && self.link.as_ref().is_none_or(|l| l.settled())
            && let Some(done) = self.stopping.take()
        {
            let _ = done.send(());
            if let Some(then) = self.on_stopped.take() {
                then();
            }
            // Stay "stopping" for any late handoff.
            self.stopping = Some(mpsc::channel().0);
        }
    }

    fn start_worker(&mut self, i: usize) {
        let now = Instant::now();
        let w = &mut self.workers[i];
        w.restart_at = None;
        w.started = now;
        let ctl = match &w.external {
            Some(path) => fdpass::seqpacket_connect(path),
            None => (|| {
                let (ours, theirs) = fdpass::seqpacket_pair()?;
                // Not `current_exe()`: after a package upgrade replaced the
                // binary, that path names the new file (or a "(deleted)"
                // one); /proc/self/exe is the binary this process runs, the
                // one that speaks its wire format.
                let mut cmd = Command::new("/proc/self/exe");
                // Shown by ps as this binary, not as /proc/self/exe.
                std::os::unix::process::CommandExt::arg0(&mut cmd, sys::process::own_argv0());
                cmd.args(["ws-worker", "--ctl-fd", "3"])
                    .args(&self.cfg.log_args)
                    .stdin(Stdio::null());
                w.child = Some(sys::process::spawn_worker(&mut cmd, theirs)?);
                Ok(ours)
            })(),
        };
        match ctl.and_then(|c| {
            sys::prepare_adopted(c.as_fd())?;
            self.poll.registry().register(
                &mut SourceFd(&c.as_raw_fd()),
                Token(i),
                Interest::READABLE,
            )?;
            Ok(c)
        }) {
            Ok(c) => {
                tracing::info!(
                    worker = i,
                    pid = w.child.as_ref().map(|c| c.id()),
                    "WebSocket worker ready"
                );
                w.ctl = Some(c);
                w.load = 0;
                if w.external.is_none() {
                    self.configure(i);
                }
            }
            Err(e) => {
                tracing::error!(
                    worker = i,
                    "cannot start WebSocket worker: {e}; retrying in {:?}",
                    w.backoff
                );
                // Started but not reachable: it goes, reaped, before
                // another is started in its place.
                if let Some(mut c) = w.child.take() {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                w.restart_at = Some(now + w.backoff);
                w.backoff = (w.backoff * 2).min(MAX_BACKOFF);
            }
        }
    }

    /// Gives a worker it started its routes and limits: the first message
    /// on a socket nothing has written to yet, so the worker reads it
    /// before any hand-off. A worker that cannot be told is taken for
    /// gone (reaped and started again, as when its socket closes).
    fn configure(&mut self, i: usize) {
        let mut m = Message::new(Kind::Configure, 0);
        m.data = self.cfg.worker.to_settings().into_bytes();
        let Some(ctl) = &self.workers[i].ctl else {
            return;
        };
        if let Err(e) = fdpass::send_with_fds(ctl.as_fd(), &[IoSlice::new(&m.encode())], &[]) {
            tracing::warn!(worker = i, "cannot configure WebSocket worker: {e}");
            self.died(i, Death::Gone);
        }
    }

    /// Gives a connection to the least-loaded live worker.
    fn place(&mut self, h: HandedOff) {
        let (held, msg) = Held::of(h);
        if let Err((why, _, Some(held))) = self.give(msg, Vec::new(), Some(held), None) {
            crate::metrics::inc(crate::metrics::M::WsRefusedBusy);
            held.refuse(why);
        }
    }

    /// Sends `msg` (its ID set here) with `fds` (or a `held` upgrade's
    /// socket) to the least-loaded live worker, to wait for its answer: the
    /// pending entry keeps `held` (our copy, for a 503, and its access
    /// line; the fds are closed once sent) and `link_id` (whom to answer).
    /// On failure, why, the fds and `held`.
    // The failure gives back what it was given, on a path taken only when
    // no worker can take a connection: its size costs nothing that matters.
    #[allow(clippy::type_complexity, clippy::result_large_err)]
    fn give(
        &mut self,
        mut msg: Message,
        fds: Vec<OwnedFd>,
        held: Option<Held>,
        link_id: Option<u64>,
    ) -> Result<(), (&'static str, Vec<OwnedFd>, Option<Held>)> {
        let mut order: Vec<usize> = (0..self.workers.len())
            .filter(|&i| self.workers[i].ctl.is_some())
            .collect();
        order.sort_by_key(|&i| self.workers[i].load + self.workers[i].inflight);
        self.next_id += 1;
        let id = self.next_id;
        msg.id = id;
        let rec = msg.encode();
        if rec.len() > wire::MAX_MESSAGE {
            return Err(("too many bytes arrived with the upgrade", fds, held));
        }
        let mut held = held;
        for i in order {
            let Some(ctl) = &self.workers[i].ctl else {
                continue;
            };
            let mut borrowed: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
            if let Some(h) = &held {
                borrowed.insert(0, h.fd.as_fd());
            }
            match fdpass::send_with_fds(ctl.as_fd(), &[IoSlice::new(&rec)], &borrowed) {
                Ok(_) => {
                    self.workers[i].inflight += 1;
                    let deadline = Instant::now() + self.cfg.ack_timeout;
                    self.pending.insert(
                        id,
                        Pending {
                            held: held.take(),
                            worker: i,
                            deadline,
                            link_id,
                        },
                    );
                    return Ok(());
                }
                // Its queue is full: try the next one.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => {
                    tracing::warn!(worker = i, "WebSocket worker unreachable: {e}");
                    self.died(i, Death::Gone);
                }
            }
        }
        Err(("no WebSocket worker is available", fds, held))
    }

    fn read_worker(&mut self, i: usize) {
        let mut buf = vec![0u8; wire::MAX_MESSAGE];
        loop {
            let Some(ctl) = self.workers.get(i).and_then(|w| w.ctl.as_ref()) else {
                return;
            };
            let rec = match fdpass::recv_with_fds(ctl.as_fd(), &mut buf) {
                Ok(Some(r)) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Ok(None) | Err(_) => return self.died(i, Death::Gone),
            };
            // Only a session moving out comes with fds; others are closed here.
            let fds = rec.fds;
            let Ok(msg) = Message::decode(&buf[..rec.len]) else {
                continue;
            };
            match msg.kind() {
                Kind::Ack => {
                    if let Some(p) = self.pending.remove(&msg.id) {
                        crate::metrics::inc(crate::metrics::M::WsHandedOff);
                        self.workers[p.worker].inflight -= 1;
                        if let Some(h) = p.held {
                            h.taken(&self.worker_name(p.worker));
                        }
                        self.workers[p.worker].load += 1; // until its LOAD says otherwise
                        self.answer_link(p.link_id, Message::ack(0));
                    }
                }
                // Its CONFIGURE refused: it serves no route, and every
                // hand-off to it is refused with why.
                Kind::Refuse if msg.id == 0 => tracing::error!(
                    worker = i,
                    "WebSocket worker refused its configuration: {}",
                    msg.reason.as_deref().unwrap_or("")
                ),
                Kind::Refuse => {
                    if let Some(p) = self.pending.remove(&msg.id) {
                        crate::metrics::inc(crate::metrics::M::WsRefusedFailed);
                        self.workers[p.worker].inflight -= 1;
                        let why = msg.reason.as_deref().unwrap_or("refused by the worker");
                        if let Some(h) = p.held {
                            h.refuse(why);
                        }
                        self.answer_link(p.link_id, Message::refuse(0, why));
                    }
                }
                Kind::Load => self.workers[i].load = msg.id as usize,
                Kind::Broadcast => self.broadcast_from(msg, Some(i)),
                Kind::PassWebsocket if !rec.truncated && !rec.ctrunc => {
                    self.forward_session(i, msg, fds)
                }
                _ => {}
            }
        }
    }

    /// A worker is gone (or hung): answer what it had not taken, and start
    /// another.
    fn died(&mut self, i: usize, death: Death) {
        let now = Instant::now();
        let w = &mut self.workers[i];
        if let Some(c) = w.ctl.take() {
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&c.as_raw_fd()));
        }
        let stopping = self.stopping.is_some();
        let status = w.child.take().map(|mut c| {
            // Shutting down, a worker closes its socket as it exits: wait
            // for it rather than cutting its goodbyes short. A hung one is
            // killed even then.
            if !stopping || death == Death::Hung {
                let _ = c.kill();
            }
            c.wait().map(|s| s.to_string()).unwrap_or_default()
        });
        // After `wait` a worker we started cannot touch its connections any
        // more; a hung worker of its own may still take what is queued to it.
        let ours_alone = death == Death::Gone || status.is_some();
        let lost: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.worker == i)
            .map(|(id, _)| *id)
            .collect();
        for id in lost {
            if let Some(p) = self.pending.remove(&id) {
                if ours_alone {
                    crate::metrics::inc(crate::metrics::M::WsRefusedFailed);
                    if let Some(h) = p.held {
                        h.refuse("the WebSocket worker died");
                    }
                    self.answer_link(p.link_id, Message::refuse(0, "the WebSocket worker died"));
                } else {
                    tracing::warn!(
                        worker = i,
                        "left a connection to a WebSocket worker that does not answer"
                    );
                    // It may still take it: the other side must not serve it too.
                    self.answer_link(p.link_id, Message::ack(0));
                }
            }
        }
        let w = &mut self.workers[i];
        if stopping {
            tracing::info!(
                worker = i,
                status = status.as_deref().unwrap_or("-"),
                "WebSocket worker exited"
            );
            w.inflight = 0;
            w.load = 0;
            self.check_stopped();
            return;
        }
        if now.duration_since(w.started) >= HEALTHY_AFTER {
            w.backoff = FIRST_BACKOFF;
        }
        w.restart_at = Some(now + w.backoff);
        crate::metrics::inc(crate::metrics::M::WorkerRestarts);
        tracing::error!(
            worker = i,
            status = status.as_deref().unwrap_or("-"),
            "WebSocket worker died; restarting in {:?}",
            w.backoff
        );
        w.backoff = (w.backoff * 2).min(MAX_BACKOFF);
        w.inflight = 0;
        w.load = 0;
    }

    /// `worker=PID` (of a worker we started), or which one it is.
    fn worker_name(&self, i: usize) -> String {
        match self.workers[i].child.as_ref() {
            Some(c) => format!("worker={}", c.id()),
            None => format!("worker=#{i}"),
        }
    }

    fn expire(&mut self, now: Instant) {
        let mut hung: Vec<usize> = self
            .pending
            .values()
            .filter(|p| p.deadline <= now)
            .map(|p| p.worker)
            .collect();
        hung.sort_unstable();
        hung.dedup();
        for i in hung {
            tracing::error!(
                worker = i,
                "WebSocket worker did not answer within {:?}; treating it as hung",
                self.cfg.ack_timeout
            );
            self.died(i, Death::Hung);
        }
        let due: Vec<usize> = (0..self.workers.len())
            .filter(|&i| self.workers[i].restart_at.is_some_and(|t| t <= now))
            .collect();
        for i in due {
            self.start_worker(i);
        }
    }
}

/// The `PASS_CONNECTION` that gives a worker an upgrade (`docs/handoff-protocol.md`):
/// the peer, the address it reached, whether it came over TLS, the head
/// and what was read after it, and what the HTTP process matched and
/// computed (`ROUTE`, `ACCEPT`, `ENV`), so the worker parses nothing
/// again. Returns the message and the socket to send with it.
pub(super) fn pass_connection(h: HandedOff, id: u64) -> (Message, OwnedFd, AccessLine) {
    let mut msg = Message::new(Kind::PassConnection, id);
    msg.peer = Some(h.peer.to_string());
    msg.local = Some(h.local.to_string());
    if h.tls {
        msg.flags |= wire::flags::SECURE;
    }
    if let Some(a) = h
        .context
        .and_then(|c| c.downcast::<crate::ws::handshake::Accepted>().ok())
    {
        msg.env = wire::encode_env(&a.env);
        msg.route = Some(a.route);
        msg.accept = Some(a.accept);
    }
    // Sent still: a worker older than ROUTE and ACCEPT parses it.
    msg.head = h.head;
    msg.data = h.rest;
    (msg, h.socket, h.access)
}
