//! A service's life, for a program built on the library, in a few lines:
//! where its sockets come from (the process it replaces, systemd socket
//! activation, or the addresses it binds), telling systemd (`READY=1`,
//! `STATUS=`, the watchdog, `STOPPING=1`, `RELOADING=1`), and what the
//! signals do:
//!
//! - SIGTERM or SIGINT: no new connections; requests in flight are
//!   answered and streams end as their handlers end them, for up to the
//!   drain timeout; then what is left is closed. A second one exits at once.
//! - SIGHUP: runs what the program registered ([`Service::on_reload`]).
//! - SIGUSR2: a live upgrade. The binary at our path now is started with
//!   our arguments and given our listeners; once it says it serves, each
//!   keep-alive connection moves to it as soon as it is idle, and this
//!   process exits when the last response in flight is done. No connection
//!   is refused or dropped. If the new one fails to start, this one serves
//!   on. (`docs/upgrade.md` has each step.)
//!
//! ```no_run
//! use handoff::service::Service;
//! use handoff::{Options, Request, Response};
//!
//! let mut service = Service::new(Options::default(), |_: &Request<'_>, res: &mut Response<'_>| {
//!     res.body("hello\n");
//! })?;
//! // systemd's sockets when socket activated, the upgraded process's in a
//! // live upgrade, else this address.
//! for addr in service.take_sockets(&["127.0.0.1:8080"])? {
//!     println!("listening on {addr}");
//! }
//! service.run()
//! # ; Ok::<(), std::io::Error>(())
//! ```

pub mod activation;
pub(crate) mod signals;

use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR2};

use crate::handoff::upgrade::{self, Outcome, Successor};
use crate::http::Handler;
use crate::notify::Notifier;
use crate::server::{Added, Loops, Options, Server};
use crate::sys::Addr;

pub use crate::intake::listen::{Listen, ListenSpec};

/// What SIGHUP runs.
type Reload = Box<dyn FnMut(&mut Server)>;

/// An HTTP service: a [`Server`] with its sockets' sources, sd_notify and
/// signals. [`Service::run`] returns once it has drained or handed its
/// connections to the process that replaced it.
pub struct Service {
    server: Server,
    notifier: Notifier,
    drain_timeout: Duration,
    upgrade_timeout: Duration,
    reload: Option<Reload>,
    /// The line from the process we replace, told READY once we serve.
    replacing: Option<OwnedFd>,
}

/// How long draining may take unless set ([`Service::drain_timeout`]).
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a new process may take to say it serves unless set.
pub const UPGRADE_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the sockets came from ([`Service::take_sockets`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The process this one replaces (a live upgrade).
    Upgrade,
    /// systemd socket activation.
    Systemd,
    /// The addresses given, bound by this process.
    Bound,
}

impl Service {
    /// A service answering with `handler`.
    pub fn new(opts: Options, handler: impl Handler + 'static) -> io::Result<Service> {
        Ok(Service {
            server: Server::new(opts, handler)?,
            notifier: Notifier::from_env(),
            drain_timeout: DRAIN_TIMEOUT,
            upgrade_timeout: UPGRADE_TIMEOUT,
            reload: None,
            replacing: None,
        })
    }

    /// Takes the sockets to serve from the first source that has any: the
    /// process this one replaces (a live upgrade), then systemd (named
    /// sockets framed by their names, `Accept=yes` connections), else it
    /// binds `fallback`, each in `--listen`'s syntax (`127.0.0.1:8080`,
    /// `[::1]:8443,tls=on`, `/run/app.sock`). Returns the listeners'
    /// addresses. Call it once, before starting threads (it takes the
    /// `LISTEN_*` variables out of the environment).
    pub fn take_sockets(&mut self, fallback: &[&str]) -> io::Result<Vec<Addr>> {
        self.take_sockets_from(fallback).map(|(addrs, _)| addrs)
    }

    /// [`Service::take_sockets`], saying where they came from.
    pub fn take_sockets_from(&mut self, fallback: &[&str]) -> io::Result<(Vec<Addr>, Source)> {
        let mut addrs = Vec::new();
        let mut add = |server: &mut Server, socket| -> io::Result<()> {
            if let Added::Listener(a) = server.add_socket(socket)? {
                addrs.push(a);
            }
            Ok(())
        };
        if let Some(chan) = upgrade::take_channel()? {
            let passed = upgrade::receive_listeners(&chan)?;
            for socket in passed.listeners {
                add(&mut self.server, socket)?;
            }
            self.replacing = Some(chan);
            return Ok((addrs, Source::Upgrade));
        }
        let activated = activation::systemd()?;
        if !activated.is_empty() {
            for a in activated {
                if a.is_control() {
                    continue; // served by `activation::control`, not here
                }
                add(&mut self.server, a.into_socket())?;
            }
            return Ok((addrs, Source::Systemd));
        }
        for spec in fallback {
            let listen =
                Listen::parse(spec).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            add(&mut self.server, listen.bind()?)?;
        }
        Ok((addrs, Source::Bound))
    }

    /// How long a drain may take before what is left is closed (30 s).
    pub fn drain_timeout(&mut self, d: Duration) -> &mut Self {
        self.drain_timeout = d;
        self
    }

    /// How long the new process of an upgrade may take to serve (30 s).
    pub fn upgrade_timeout(&mut self, d: Duration) -> &mut Self {
        self.upgrade_timeout = d;
        self
    }

    /// What SIGHUP does (for example, `Server::set_tls` with certificates
    /// read again). systemd hears `RELOADING=1` before and `READY=1` after.
    pub fn on_reload(&mut self, f: impl FnMut(&mut Server) + 'static) -> &mut Self {
        self.reload = Some(Box::new(f));
        self
    }

    /// The server, to add sockets or set TLS before [`Service::run`].
    pub fn server(&mut self) -> &mut Server {
        &mut self.server
    }

    /// Tells systemd it is ready (and, in an upgrade, the process it
    /// replaces), then serves until a signal ends it (drained, handed
    /// over, or closed at the drain timeout) or nothing is left to serve
    /// (the one connection of an `Accept=yes` service has ended).
    pub fn run(self) -> io::Result<()> {
        let Service {
            mut server,
            notifier,
            drain_timeout,
            upgrade_timeout,
            reload,
            replacing,
        } = self;
        if server.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no socket to serve",
            ));
        }
        let inbox = server.inbox();
        let signals = signals::forward(inbox.clone(), &[SIGTERM, SIGINT, SIGHUP, SIGUSR2])?;
        let mut life = Life {
            notifier,
            signals,
            drain_timeout,
            upgrade_timeout,
            reload,
            successor: Successor::of_this_process()?,
            upgrading: None,
            cancel: Arc::default(),
            deadline: None,
        };
        life.notifier.ready(counts(&server), replacing.is_some());
        if let Some(chan) = replacing {
            upgrade::say_ready(chan, Loops::new(vec![inbox]))?;
            tracing::info!("upgrade: serving; the old process hands its connections over");
        }
        loop {
            let now = Instant::now();
            server.turn(life.next_wake().map(|w| w.saturating_duration_since(now)))?;
            if life.after_step(&mut server, Instant::now()) {
                return Ok(());
            }
        }
    }
}

fn counts(server: &Server) -> (usize, usize) {
    (server.connections_in_budget(), server.queued())
}

/// What `run` keeps between turns.
struct Life {
    notifier: Notifier,
    signals: mpsc::Receiver<i32>,
    drain_timeout: Duration,
    upgrade_timeout: Duration,
    reload: Option<Reload>,
    successor: Successor,
    upgrading: Option<mpsc::Receiver<Outcome>>,
    /// Set to end the upgrade under way (its process killed) on a stop.
    cancel: Arc<AtomicBool>,
    /// Draining or handing over: everything left is closed then.
    deadline: Option<Instant>,
}

impl Life {
    fn next_wake(&self) -> Option<Instant> {
        [self.notifier.next_due(), self.deadline]
            .into_iter()
            .flatten()
            .min()
    }

    /// Acts on signals, the upgrade's outcome and the deadline; true when
    /// the process is done.
    fn after_step(&mut self, server: &mut Server, now: Instant) -> bool {
        while let Ok(sig) = self.signals.try_recv() {
            match sig {
                SIGHUP => {
                    self.notifier.reloading("reload");
                    if let Some(f) = &mut self.reload {
                        f(server);
                    }
                    self.notifier.reloaded(counts(server), "reloaded");
                }
                SIGUSR2 => self.start_upgrade(server),
                _ if self.deadline.is_some() => {
                    tracing::warn!(sig, "second signal: exiting now");
                    self.end_upgrade();
                    server.close();
                    return true;
                }
                _ => {
                    tracing::info!(
                        sig,
                        connections = server.connections_in_budget(),
                        "draining: no new connections; answering those in flight"
                    );
                    self.end_upgrade();
                    self.notifier.stopping();
                    server.drain();
                    self.deadline = Some(now + self.drain_timeout);
                }
            }
        }
        if let Some(Ok(outcome)) = self.upgrading.as_ref().map(|rx| rx.try_recv()) {
            self.upgrading = None;
            match outcome {
                Ok(ready) => {
                    tracing::info!(
                        pid = ready.pid,
                        connections = server.connections_in_budget(),
                        "upgrade: the new process is ready; handing connections over"
                    );
                    server.hand_over(ready.mover);
                    self.deadline = Some(now + self.drain_timeout);
                }
                Err(why) => {
                    tracing::warn!("upgrade failed, serving on: {why}");
                    let outcome = format!("upgrade failed, serving on: {why}");
                    self.notifier.reloaded(counts(server), &outcome);
                }
            }
        }
        if server.is_empty() {
            // Drained, handed over, or the one connection it was given
            // (`Accept=yes`, inetd `nowait`) has ended.
            tracing::info!("nothing left to serve; exiting");
            return true;
        }
        if let Some(d) = self.deadline
            && now >= d
        {
            tracing::warn!(
                connections = server.connections_in_budget(),
                "drain timeout: closing what is left"
            );
            server.close();
            return true;
        }
        self.notifier.tick(now);
        self.notifier.status(now, counts(server));
        false
    }

    fn start_upgrade(&mut self, server: &Server) {
        if self.upgrading.is_some() || self.deadline.is_some() {
            tracing::warn!("upgrade asked for while an upgrade or a drain is under way; ignored");
            return;
        }
        self.cancel = Arc::default();
        self.notifier.reloading("upgrade: starting the new binary");
        match self.successor.start(
            server,
            self.upgrade_timeout,
            server.inbox(),
            false,
            Vec::new(),
            self.cancel.clone(),
        ) {
            Ok(rx) => {
                tracing::info!("upgrade: the new process is starting");
                self.upgrading = Some(rx);
            }
            Err(e) => {
                tracing::warn!("upgrade failed, serving on: {e}");
                let outcome = format!("upgrade failed, serving on: {e}");
                self.notifier.reloaded(counts(server), &outcome);
            }
        }
    }

    /// A stop during an upgrade: its new process is ended (unless it was
    /// ready first, when it serves on with its own copies of the listeners).
    fn end_upgrade(&mut self) {
        if let Some(rx) = self.upgrading.take() {
            self.cancel
                .store(true, std::sync::atomic::Ordering::Release);
            if let Ok(Ok(ready)) = rx.recv_timeout(Duration::from_secs(2)) {
                tracing::warn!(
                    pid = ready.pid,
                    "the new process was ready first; it serves on"
                );
            }
        }
    }
}
