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
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::process::Child;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use mio::{Events, Poll, Waker};

use crate::event_loop::{self, WAKER};
use crate::handoff::wire::{self, Kind, Message};
use crate::server::HandedOff;
use crate::sys::{self, fdpass};

mod bus;
mod held;
mod link;
mod workers;
use held::Held;
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
    /// The uid and gid its workers run as (`serve --user`): set by
    /// `Command` as each starts (no supplementary groups, as std does when
    /// root starts a process as another user).
    pub run_as: Option<(u32, u32)>,
    /// The new process of an upgrade: sessions will move in, so what the
    /// buses read is kept for them from the start (`bus.rs`).
    pub upgrading: bool,
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
    /// From a route's bus threads.
    Bus(crate::ws::bus::Event),
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
    /// What waits for room on `ctl` (`handoff/outbox.rs`).
    out: crate::handoff::outbox::Outbox,
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

pub(crate) fn start(cfg: PoolConfig) -> io::Result<Pool> {
    let poll = Poll::new()?;
    let waker = Arc::new(event_loop::waker(&poll)?);
    let (tx, rx) = mpsc::channel();
    let buses = start_buses(&cfg, &tx, &waker)?;
    std::thread::Builder::new()
        .name("ws-pool".into())
        .spawn(move || {
            let mut p = PoolLoop {
                buses,
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
                bus_until: None,
            };
            p.run();
        })?;
    Ok(Pool { tx, waker })
}

/// Each route with a bus: its threads, started now (a bad `bus-ca` stops
/// the start), telling the pool through its channel and waker.
fn start_buses(
    cfg: &PoolConfig,
    tx: &mpsc::Sender<Msg>,
    waker: &Arc<Waker>,
) -> io::Result<Vec<Option<bus::RouteBus>>> {
    let mut buses = Vec::new();
    for (i, r) in cfg.worker.routes.iter().enumerate() {
        let Some(spec) = &r.bus else {
            buses.push(None);
            continue;
        };
        let (tx, waker) = (tx.clone(), waker.clone());
        let tell: crate::ws::bus::Tell = Arc::new(move |e| {
            let sent = tx.send(Msg::Bus(e)).is_ok();
            if sent {
                let _ = waker.wake();
            }
            sent
        });
        let publish = crate::ws::bus::start(i, &r.path, spec, tell)?;
        buses.push(Some(bus::RouteBus::new(&r.path, publish, cfg.upgrading)));
    }
    Ok(buses)
}

struct PoolLoop {
    poll: Poll,
    /// By route (`cfg.worker.routes`): its bus, if it has one.
    buses: Vec<Option<bus::RouteBus>>,
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
    /// Stopping: how long to wait for the buses' publishers (`bus.rs`).
    bus_until: Option<Instant>,
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
                out: Default::default(),
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
                .chain(self.bus_deadline())
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
                                Msg::Bus(e) => self.bus_event(e),
                            }
                        }
                    }
                    LINK => self.read_link(),
                    i => {
                        if ev.is_writable() {
                            self.flush_worker(i);
                        }
                        self.read_worker(i);
                    }
                }
            }
            self.expire(Instant::now());
        }
    }

    fn shut_down(&mut self, done: mpsc::Sender<()>, then: Box<dyn FnOnce() + Send>) {
        self.on_stopped = Some(then);
        self.watch_buses();
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
            && self.buses_published(Instant::now())
            && let Some(done) = self.stopping.take()
        {
            // The turn's lines first: once told, the process may end
            // before this turn does.
            crate::log::flush();
            let _ = done.send(());
            if let Some(then) = self.on_stopped.take() {
                then();
            }
            // Stay "stopping" for any late handoff.
            self.stopping = Some(mpsc::channel().0);
        }
    }

    /// Gives a connection to the least-loaded live worker.
    fn place(&mut self, h: HandedOff) {
        let (held, mut msg) = Held::of(h);
        if let Some(r) = msg.route.as_deref().and_then(|p| self.bus_of(p)) {
            msg.bus_id = self.bus_place(r);
        }
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
            // Not ahead of what waits for it (broadcasts): the worker must
            // have those first.
            if !self.workers[i].out.is_empty() {
                self.flush_worker(i);
                if !self.workers[i].out.is_empty() {
                    continue;
                }
            }
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

    /// `worker=PID` (of a worker we started), or which one it is.
    fn worker_name(&self, i: usize) -> String {
        match self.workers[i].child.as_ref() {
            Some(c) => format!("worker={}", c.id()),
            None => format!("worker=#{i}"),
        }
    }

    fn expire(&mut self, now: Instant) {
        if self.bus_until.is_some_and(|t| t <= now) {
            self.check_stopped();
        }
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
