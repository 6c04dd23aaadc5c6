//! App processes (`--app PATH_PREFIX=unix:PATH|exec:CMD`): the HTTP process
//! lends a plain HTTP/1.1 connection whose request is under an app's prefix
//! to one of its processes, which answers on the client's socket itself and
//! gives the connection back once it is idle (`handoff::worker` is their
//! side). A thread of its own, with its own mio loop, as the WebSocket pool:
//! the HTTP loops hand connections over through a channel and never wait
//! for an app. `docs/apps.md` says who owns the fd at each step.
//!
//! One owner at a time: our copy of a lent socket is kept until the app's
//! `ACK`; on a `REFUSE`, a line that fails or an app that does not answer in
//! time, the client gets a 503 from here (502 if the app died with it).
//! A connection given back arrives as a `PASS_CONNECTION` flagged
//! `RETURNED`, is not answered, and goes to the least-loaded HTTP loop.

mod backend;
mod relay;
pub(crate) use relay::relay;

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use mio::{Events, Poll, Waker};

use crate::event_loop::{self, WAKER};
use crate::handoff::wire::{self, Kind, Message};
use crate::server::{AccessLine, HandedOff, Loops, Socket, Submission};
use crate::sys::{self, Addr, fdpass};
use backend::Backend;

/// `--app PATH_PREFIX=unix:PATH` or `--app PATH_PREFIX=exec:CMD`.
#[derive(Clone, Debug)]
pub struct AppRule {
    /// The URL path prefix, matched by whole segments.
    pub prefix: String,
    /// Where its connections go.
    pub target: AppTarget,
}

/// An app: processes that take connections on a socket of their own, or a
/// command the HTTP process starts (and starts again) itself.
#[derive(Clone, Debug)]
pub enum AppTarget {
    /// A `SOCK_SEQPACKET` socket the app listens on.
    Unix(PathBuf),
    /// A command run by `/bin/sh -c`, with its line as `HANDOFF_APP_FD`.
    Exec(String),
}

impl AppRule {
    /// `PATH_PREFIX=unix:PATH` or `PATH_PREFIX=exec:CMD`.
    pub fn parse(s: &str) -> Result<AppRule, String> {
        let usage = || format!("{s:?}: PATH_PREFIX=unix:PATH or PATH_PREFIX=exec:COMMAND");
        let (prefix, target) = s.split_once('=').ok_or_else(usage)?;
        if !prefix.starts_with('/') {
            return Err(usage());
        }
        let target = match target.split_once(':') {
            Some(("unix", p)) if p.starts_with('/') => AppTarget::Unix(PathBuf::from(p)),
            Some(("exec", c)) if !c.trim().is_empty() => AppTarget::Exec(c.to_string()),
            _ => return Err(usage()),
        };
        Ok(AppRule {
            prefix: prefix.to_string(),
            target,
        })
    }
}

/// The app settings of `serve`.
#[derive(Clone, Debug, Default)]
pub struct AppsConfig {
    /// `--app` routes.
    pub rules: Vec<AppRule>,
    /// Processes started for each `exec:` app (`--app-workers`).
    pub workers: usize,
    /// How long an app has to take a connection (`--app-ack-timeout`).
    pub ack_timeout: Duration,
    /// The uid and gid `exec:` apps run as (`serve --user`).
    pub run_as: Option<(u32, u32)>,
    /// An app may keep a connection for the client's next requests under
    /// its prefix (`--app-keep`, on by default; `wire::flags::KEEP`).
    pub keep: bool,
}

/// What the handler hands off with a connection for an app: which route.
pub(crate) struct ForApp {
    pub route: usize,
    /// The app may keep the connection for the next requests under the
    /// route's prefix: nothing of ours applies to them (`Site::app_keep`).
    pub keep: bool,
}

/// A socket lent to an app without a connection's hand-off: one end of a
/// relay's socketpair (`relay`), with the request to serve on it.
pub(crate) struct Lent {
    pub socket: OwnedFd,
    /// The request's head, as HTTP/1.1.
    pub data: Vec<u8>,
    pub peer: Addr,
    pub local: Addr,
    /// The client came over TLS, ended here.
    pub secure: bool,
    pub route: usize,
}

enum Msg {
    /// This process is going: every app gives back what it holds; this
    /// runs each time all have (to wake the HTTP loop).
    Finish(Box<dyn Fn() + Send>),
    /// Where returned connections go.
    Loops(Loops),
    /// A loop found this process's line broken.
    Failed(usize),
}

/// What the HTTP loops and the pool's thread share: the lines up now, the
/// connections lent and not yet answered, and how many each process was
/// lent. A loop lends on the line itself (no hop through the pool's
/// thread); the pool reads the answers.
struct Lending {
    /// Each process's route and, while it is up, its line; by index.
    lines: Mutex<Vec<(usize, Option<Arc<OwnedFd>>)>>,
    held: Mutex<HashMap<u64, Held>>,
    /// Lends each process was sent, counted under `held`'s lock with the
    /// send (`finish`: a "none left" is believed only if no lend came
    /// after it).
    lent: Vec<AtomicU64>,
    next_id: AtomicU64,
    turn: AtomicUsize,
    prefixes: Vec<String>,
    ack_timeout: Duration,
    /// Finishing, and no app holds a connection of ours (`Apps::finish`):
    /// set by the pool, cleared by each lend, both under `held`'s lock.
    quiet: AtomicBool,
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Lending {
    /// Lends a connection to a live process of its route; `Some(i)`: the
    /// line of process `i` failed (the pool takes it for dead).
    fn lend(&self, mut m: Message, mut held: Held, route: usize) -> Option<usize> {
        let picked = {
            let lines = locked(&self.lines);
            let live: Vec<(usize, &Arc<OwnedFd>)> = lines
                .iter()
                .enumerate()
                .filter_map(|(i, (r, l))| (*r == route).then_some((i, l.as_ref()?)))
                .collect();
            (!live.is_empty()).then(|| {
                let t = self.turn.fetch_add(1, Ordering::Relaxed);
                let (i, line) = live[t % live.len()];
                (i, line.clone())
            })
        };
        let prefix = self.prefixes.get(route).map_or("-", String::as_str);
        let Some((i, line)) = picked else {
            held.refuse(503, &format!("no app process for {prefix} is running"));
            return None;
        };
        m.id = self.next_id.fetch_add(1, Ordering::Relaxed);
        m.name = Some(prefix.to_string());
        held.backend = i;
        let bytes = m.encode();
        // Held before it is sent, so that the answer finds it; counted
        // with the send, under the same lock as the pool's "none left".
        let mut all = locked(&self.held);
        let sent = fdpass::send_with_fds_now(
            line.as_fd(),
            &[io::IoSlice::new(&bytes)],
            &[held.fd.as_fd()],
        );
        match sent {
            Ok(_) => {
                self.lent[i].fetch_add(1, Ordering::AcqRel);
                all.insert(m.id, held);
                // An app holds something of ours again.
                self.quiet.store(false, Ordering::Release);
                None
            }
            Err(e) => {
                drop(all);
                held.refuse(503, &format!("the app's line took nothing: {e}"));
                (e.kind() != io::ErrorKind::WouldBlock).then_some(i)
            }
        }
    }
}

/// Hands connections to app processes. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Apps {
    tx: mpsc::Sender<Msg>,
    waker: Arc<Waker>,
    lending: Arc<Lending>,
}

impl Apps {
    /// Lends a connection a handler handed off (on the calling loop).
    pub(crate) fn hand_off(&self, h: HandedOff) {
        let (m, held, route) = Held::of(h, Instant::now() + self.lending.ack_timeout);
        self.lend(m, held, route);
    }

    /// Lends a relay's socket (`relay`).
    pub(crate) fn lend_relay(&self, l: Lent) {
        let (m, held, route) = Held::of_lent(l, Instant::now() + self.lending.ack_timeout);
        self.lend(m, held, route);
    }

    fn lend(&self, m: Message, held: Held, route: usize) {
        if let Some(failed) = self.lending.lend(m, held, route)
            && self.tx.send(Msg::Failed(failed)).is_ok()
        {
            let _ = self.waker.wake();
        }
    }

    /// A drain, or an upgrade's old process: each app is asked to give
    /// back every connection of ours as it becomes idle (`FINISH`), and
    /// says when it holds none (`ACK`); `is_quiet` tells when all have.
    /// Lending goes on meanwhile (a request already read here still
    /// goes to its app); the processes we started die with us.
    pub(crate) fn finish(&self, on_quiet: impl Fn() + Send + 'static) {
        if self.tx.send(Msg::Finish(Box::new(on_quiet))).is_ok() {
            let _ = self.waker.wake();
        }
    }

    /// Finishing, no app holds a connection of ours: once this process's
    /// own connections are done, nothing of it is left anywhere.
    pub(crate) fn is_quiet(&self) -> bool {
        self.lending.quiet.load(Ordering::Acquire)
    }

    /// The HTTP loops, for the connections apps give back.
    pub(crate) fn set_loops(&self, loops: Loops) {
        if self.tx.send(Msg::Loops(loops)).is_ok() {
            let _ = self.waker.wake();
        }
    }
}

/// Starts the pool's thread and every app's processes or lines.
pub(crate) fn start(cfg: AppsConfig) -> io::Result<Apps> {
    let poll = Poll::new()?;
    let waker = Arc::new(event_loop::waker(&poll)?);
    let (tx, rx) = mpsc::channel();
    let mut backends = Vec::new();
    for (route, rule) in cfg.rules.iter().enumerate() {
        let n = match rule.target {
            AppTarget::Exec(_) => cfg.workers.max(1),
            AppTarget::Unix(_) => 1,
        };
        for _ in 0..n {
            backends.push(Backend::new(route, rule.target.clone()));
        }
    }
    let lending = Arc::new(Lending {
        lines: Mutex::new(backends.iter().map(|b| (b.route, None)).collect()),
        held: Mutex::new(HashMap::new()),
        lent: backends.iter().map(|_| AtomicU64::new(0)).collect(),
        next_id: AtomicU64::new(1),
        turn: AtomicUsize::new(0),
        prefixes: cfg.rules.iter().map(|r| r.prefix.clone()).collect(),
        ack_timeout: cfg.ack_timeout,
        quiet: AtomicBool::new(false),
    });
    let mut p = PoolLoop {
        poll,
        rx,
        backends,
        cfg,
        lending: lending.clone(),
        next_id: 0,
        loops: None,
        finishing: false,
        on_quiet: None,
    };
    // Before the loops serve (a new process of an upgrade is handed
    // connections at once): each process started, or reached, now.
    for i in 0..p.backends.len() {
        p.start(i);
    }
    std::thread::Builder::new()
        .name("app-pool".into())
        .spawn(move || p.run())?;
    Ok(Apps { tx, waker, lending })
}

/// A connection lent to an app until its answer: our copy, for a 503, and
/// the request's access line, written once with the outcome.
struct Held {
    fd: OwnedFd,
    /// A connection's access line; none for a relay's socket (the reply
    /// writes the request's).
    access: Option<AccessLine>,
    backend: usize,
    deadline: Instant,
}

impl Held {
    /// The `PASS_CONNECTION` for `h` and what we hold meanwhile.
    fn of(h: HandedOff, deadline: Instant) -> (Message, Held, usize) {
        let (route, keep) = h
            .context
            .and_then(|c| c.downcast::<ForApp>().ok())
            .map_or((0, false), |f| (f.route, f.keep));
        let mut m = Message::new(Kind::PassConnection, 0);
        if keep {
            m.flags |= wire::flags::KEEP;
        }
        m.peer = Some(h.peer.to_string());
        m.local = Some(h.local.to_string());
        if h.tls {
            m.flags |= wire::flags::SECURE;
        }
        // The head and what was read after it, served as if read from
        // the socket: the app parses the request as any server would.
        m.data = h.head;
        m.data.extend_from_slice(&h.rest);
        let held = Held {
            fd: h.socket,
            access: Some(h.access),
            backend: usize::MAX,
            deadline,
        };
        (m, held, route)
    }

    /// The `PASS_CONNECTION` for a relay's socket.
    fn of_lent(l: Lent, deadline: Instant) -> (Message, Held, usize) {
        let mut m = Message::new(Kind::PassConnection, 0);
        m.peer = Some(l.peer.to_string());
        m.local = Some(l.local.to_string());
        if l.secure {
            m.flags |= wire::flags::SECURE;
        }
        m.data = l.data;
        let held = Held {
            fd: l.socket,
            access: None,
            backend: usize::MAX,
            deadline,
        };
        (m, held, l.route)
    }

    /// The app took it.
    fn taken(self, note: &str) {
        if let Some(a) = self.access {
            a.write(None, note);
        }
    }

    /// The app did not take it: the client hears from us.
    fn refuse(self, status: u16, why: &str) {
        tracing::warn!(peer = %sys::peer_addr(self.fd.as_fd()), "app request answered {status}: {why}");
        crate::server::answer_untaken(self.fd.as_fd(), status, why);
        if let Some(a) = self.access {
            a.write(Some(status), why);
        }
    }
}

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// An app process that lived this long is healthy: its next death starts
/// the back-off over.
const HEALTHY_AFTER: Duration = Duration::from_secs(10);

/// How often the pool looks for lent connections past their deadline
/// (lends do not wake it).
const EXPIRY_CHECK: Duration = Duration::from_millis(250);

struct PoolLoop {
    poll: Poll,
    rx: mpsc::Receiver<Msg>,
    cfg: AppsConfig,
    backends: Vec<Backend>,
    lending: Arc<Lending>,
    /// IDs of our own messages (`FINISH`), counting down from the top so
    /// as never to meet a lend's.
    next_id: u64,
    loops: Option<Loops>,
    /// Finishing (`Apps::finish`): no restarts; `Lending::quiet` is kept
    /// true while no app holds anything of ours, and `on_quiet` runs when
    /// it becomes so.
    finishing: bool,
    on_quiet: Option<Box<dyn Fn() + Send>>,
}

impl PoolLoop {
    fn run(&mut self) {
        let mut events = Events::with_capacity(64);
        loop {
            let now = Instant::now();
            let lent = !locked(&self.lending.held).is_empty();
            let next = self
                .backends
                .iter()
                .filter_map(|b| b.restart_at)
                .chain(lent.then_some(now + EXPIRY_CHECK))
                .min();
            let timeout = next.map(|n| n.saturating_duration_since(now));
            if let Err(e) = event_loop::wait(&mut self.poll, &mut events, timeout) {
                return tracing::error!("app pool: {e}");
            }
            for ev in events.iter() {
                match ev.token().0 {
                    WAKER => {
                        while let Ok(m) = self.rx.try_recv() {
                            match m {
                                Msg::Failed(i) => self.died(i, "its line failed"),
                                Msg::Loops(l) => self.loops = Some(l),
                                Msg::Finish(on_quiet) => self.finish(on_quiet),
                            }
                        }
                    }
                    i => self.read(i - 1),
                }
            }
            let now = Instant::now();
            self.expire(now);
            if !self.finishing {
                self.restart_due(now);
            }
            self.publish_quiet();
        }
    }

    /// Asks every app to finish with us (`FINISH`).
    fn finish(&mut self, on_quiet: Box<dyn Fn() + Send>) {
        self.finishing = true;
        self.on_quiet = Some(on_quiet);
        for i in 0..self.backends.len() {
            self.backends[i].restart_at = None;
            self.next_id += 1;
            let id = u64::MAX - self.next_id;
            let Some(line) = &self.backends[i].line else {
                continue;
            };
            let m = Message::new(Kind::Finish, id).encode();
            match fdpass::send_with_fds_now(line.as_fd(), &[io::IoSlice::new(&m)], &[]) {
                Ok(_) => self.backends[i].finish_id = Some(id),
                Err(e) => self.died(i, &format!("its line failed: {e}")),
            }
        }
        self.publish_quiet();
    }

    /// Finishing: is every app quiet (it said it holds nothing of ours,
    /// and nothing was lent to it since)?
    fn publish_quiet(&mut self) {
        if !self.finishing {
            return;
        }
        // Judged and stored under the lock a lend takes to clear it.
        let held = locked(&self.lending.held);
        let quiet = self.backends.iter().enumerate().all(|(i, b)| {
            b.line.is_none()
                || (b.quiet_at == Some(self.lending.lent[i].load(Ordering::Acquire))
                    && !held.values().any(|h| h.backend == i))
        });
        let was = self.lending.quiet.swap(quiet, Ordering::AcqRel);
        drop(held);
        if quiet && !was {
            tracing::info!("every app process has given back what it held");
            if let Some(f) = &self.on_quiet {
                f();
            }
        }
    }

    /// Reads what a process's line says: answers to what we lent, and
    /// connections given back.
    fn read(&mut self, i: usize) {
        let mut buf = vec![0u8; wire::MAX_MESSAGE];
        loop {
            let Some(line) = self.backends.get(i).and_then(|b| b.line.as_ref()) else {
                return;
            };
            let rec = match fdpass::recv_with_fds(line.as_fd(), &mut buf) {
                Ok(Some(r)) => r,
                Ok(None) => return self.died(i, "its line closed"),
                Err(e) if sys::would_block(&e) => return,
                Err(e) => return self.died(i, &format!("its line failed: {e}")),
            };
            let Ok(m) = Message::decode(&buf[..rec.len]) else {
                tracing::warn!("app line: a malformed message, dropped");
                continue;
            };
            match m.kind() {
                Kind::Ack if self.backends[i].finish_id == Some(m.id) => {
                    // It held nothing of ours as it said so. A lend that
                    // crossed this answer is unanswered still, or counted
                    // after it (under the same lock): then it says so
                    // again once that connection is back.
                    let held = locked(&self.lending.held);
                    self.backends[i].quiet_at = (!held.values().any(|h| h.backend == i))
                        .then(|| self.lending.lent[i].load(Ordering::Acquire));
                }
                Kind::Ack => {
                    let h = locked(&self.lending.held).remove(&m.id);
                    if let Some(h) = h {
                        let pid = self.backends[i].pid();
                        h.taken(&format!("lent to app pid {}", pid.unwrap_or(0)));
                    }
                }
                Kind::Refuse => {
                    let h = locked(&self.lending.held).remove(&m.id);
                    if let Some(h) = h {
                        let why = m.reason.unwrap_or_else(|| "refused".into());
                        h.refuse(503, &format!("the app refused it: {why}"));
                    }
                }
                Kind::PassConnection if m.flags & wire::flags::RETURNED != 0 => {
                    self.take_back(m, rec.fds)
                }
                k => tracing::warn!("app line: {k:?} is not expected here; dropped"),
            }
        }
    }

    /// A connection an app gave back: served by the least-loaded loop.
    fn take_back(&mut self, m: Message, mut fds: Vec<OwnedFd>) {
        if fds.len() != 1 {
            return tracing::warn!(
                "app line: a connection given back with {} fds; closed",
                fds.len()
            );
        }
        let fd = fds.remove(0);
        let Some(loops) = &self.loops else {
            return tracing::warn!(
                "app line: a connection given back before the loops run; closed"
            );
        };
        let Some(socket) = Socket::from_line(fd, m.peer.as_deref()) else {
            return tracing::warn!("app line: given back something not a connection; closed");
        };
        let s = Submission {
            socket,
            pre_read: m.data,
            reply: None,
        };
        // Finishing, the other loops end as soon as they are empty; the
        // first one waits for the apps (`is_quiet`), so it takes them. A
        // loop that has ended hands the socket back for another.
        let first = match self.finishing {
            true => &loops.all()[0],
            false => loops.least_loaded(),
        };
        let mut s = s;
        for inbox in std::iter::once(first).chain(loops.all()) {
            match inbox.try_submit(s) {
                Ok(_) => return,
                Err(back) => s = *back,
            }
        }
        tracing::warn!("app line: a connection given back, and every loop has ended; closed");
    }

    /// Lent connections past their deadline: the app is hung. One we
    /// started is killed first, so that it can touch none of them; then
    /// they get their 503.
    fn expire(&mut self, now: Instant) {
        let late: Vec<usize> = locked(&self.lending.held)
            .values()
            .filter(|h| h.deadline <= now)
            .map(|h| h.backend)
            .collect();
        for i in late {
            self.died(i, "it did not answer in time");
        }
    }
}
