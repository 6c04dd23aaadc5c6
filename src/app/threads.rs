//! `--threads N`: N event loops in one process, each a `Server` of its own
//! on its own thread (lua-http's model: the library's `Server` stays one
//! loop, usable alone; the binary owns the threads).
//!
//! - Listeners are shared: every loop accepts from a copy of each listening
//!   fd, registered with `EPOLLEXCLUSIVE`, so the kernel wakes one loop per
//!   connection. This works for every source alike (our binds, systemd's
//!   fds, inetd `wait`, listeners passed through the control socket).
//! - Connected sockets given from outside (the control socket) go to the
//!   least-loaded loop (`Loops`).
//! - `max_concurrent` holds for the process: the loops take slots from one
//!   atomic budget.
//! - The first loop runs the lifecycle (signals, sd_notify, the drain
//!   deadline) on the main thread and passes drain, close and certificate
//!   reloads to the others through their inboxes; a loop whose drain is
//!   done ends its thread and wakes the first.
//! - WebSocket hand-offs go to the one worker pool from every loop.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use crate::server::{Inbox, Mover, Server, Submission};

/// Builds one loop's server, configured like the first (handler, TLS,
/// hand-off hook, shared budget).
pub(super) type MakeServer = Arc<dyn Fn() -> io::Result<Server> + Send + Sync>;

/// The loops other than the first.
pub(super) struct Others {
    pub(super) inboxes: Vec<Inbox>,
    /// Loops still running.
    running: Arc<AtomicUsize>,
}

impl Others {
    /// Starts `n` loops; each wakes `first` when it ends.
    pub(super) fn spawn(n: usize, make: MakeServer, first: Inbox) -> io::Result<Others> {
        let running = Arc::new(AtomicUsize::new(0));
        let mut inboxes = Vec::new();
        for i in 1..=n {
            let (tx, rx) = mpsc::channel();
            let (make, first, running) = (make.clone(), first.clone(), running.clone());
            running.fetch_add(1, Ordering::AcqRel);
            std::thread::Builder::new()
                .name(format!("loop-{i}"))
                .spawn(move || {
                    if let Err(e) = run(&make, &tx) {
                        tracing::error!(thread = i, "event loop failed: {e}");
                    }
                    running.fetch_sub(1, Ordering::AcqRel);
                    let _ = first.wake();
                })?;
            let inbox = rx
                .recv()
                .map_err(|_| io::Error::other(format!("event loop {i} did not start")))??;
            inboxes.push(inbox);
        }
        Ok(Others { inboxes, running })
    }

    /// Gives every loop its copies of the first loop's listeners.
    pub(super) fn share_listeners(&self, first: &Server) -> io::Result<()> {
        for inbox in &self.inboxes {
            for socket in first.listener_sockets()? {
                inbox.submit(Submission {
                    socket,
                    pre_read: Vec::new(),
                    reply: None,
                })?;
            }
        }
        Ok(())
    }

    /// True once every other loop has ended.
    pub(super) fn done(&self) -> bool {
        self.running.load(Ordering::Acquire) == 0
    }

    pub(super) fn drain(&self) {
        self.each(Inbox::drain);
    }

    pub(super) fn close(&self) {
        self.each(Inbox::close);
    }

    pub(super) fn hand_over(&self, mover: &Mover) {
        self.each(|i| i.hand_over(mover.clone()));
    }

    pub(super) fn set_tls(&self, cfg: &Arc<rustls::ServerConfig>) {
        self.each(|i| i.set_tls(cfg.clone()));
    }

    fn each(&self, f: impl Fn(&Inbox) -> io::Result<()>) {
        for i in &self.inboxes {
            if let Err(e) = f(i) {
                tracing::warn!("an event loop did not get its command: {e}");
            }
        }
    }
}

/// One loop: its server is made on its thread (a handler need not be
/// `Send`), its inbox sent back, and it steps until it is drained and
/// empty, or closed.
fn run(make: &MakeServer, tx: &mpsc::Sender<io::Result<Inbox>>) -> io::Result<()> {
    let mut server = match make() {
        Ok(s) => s,
        Err(e) => {
            let _ = tx.send(Err(io::Error::new(e.kind(), e.to_string())));
            return Err(e);
        }
    };
    let _ = tx.send(Ok(server.inbox()));
    loop {
        server.turn(None)?;
        let ending = server.is_draining() || server.is_closed() || server.is_handing_over();
        // A socket queued for it meanwhile (an app's connection given
        // back) is taken first; once ended, other loops get them.
        if ending && server.is_empty() && server.inbox().close_if_idle() {
            return Ok(());
        }
    }
}
