//! The worker processes the pool keeps: starting one (a child of ours or
//! one reached by path) and giving it its configuration, and what happens
//! when one dies or hangs.

use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd};
use std::process::{Command, Stdio};
use std::time::Instant;

use mio::unix::SourceFd;
use mio::{Interest, Token};

use super::{Death, FIRST_BACKOFF, HEALTHY_AFTER, MAX_BACKOFF, PoolLoop};
use crate::handoff::wire::{Kind, Message};
use crate::sys::{self, fdpass};

impl PoolLoop {
    pub(super) fn start_worker(&mut self, i: usize) {
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
                if let Some((uid, gid)) = self.cfg.run_as {
                    use std::os::unix::process::CommandExt;
                    cmd.uid(uid).gid(gid);
                }
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

    /// Sends a record without fds to worker `i`, after what waits for it;
    /// a worker that has read nothing for 64 MiB is taken for hung.
    pub(super) fn send_worker(&mut self, i: usize, rec: &[u8]) {
        let w = &mut self.workers[i];
        let Some(ctl) = &w.ctl else { return };
        let was_waiting = !w.out.is_empty();
        match w.out.send(ctl.as_fd(), rec) {
            Ok(true) if !was_waiting => self.watch_writable(i, true),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(worker = i, "WebSocket worker's control line: {e}");
                // Full for too long: hung; any other error: gone.
                let death = match e.kind() {
                    std::io::ErrorKind::Other => Death::Hung,
                    _ => Death::Gone,
                };
                self.died(i, death);
            }
        }
    }

    /// The line to worker `i` has room again: what waits goes.
    pub(super) fn flush_worker(&mut self, i: usize) {
        let w = &mut self.workers[i];
        let (Some(ctl), false) = (&w.ctl, w.out.is_empty()) else {
            return;
        };
        match w.out.flush(ctl.as_fd()) {
            Ok(true) => {}
            Ok(false) => self.watch_writable(i, false),
            Err(e) => {
                tracing::warn!(worker = i, "WebSocket worker's control line: {e}");
                self.died(i, Death::Gone);
            }
        }
    }

    fn watch_writable(&self, i: usize, on: bool) {
        let Some(ctl) = &self.workers[i].ctl else {
            return;
        };
        if let Err(e) =
            crate::handoff::outbox::watch(self.poll.registry(), ctl.as_fd(), Token(i), on)
        {
            tracing::warn!(worker = i, "WebSocket worker's control line: {e}");
        }
    }

    /// A worker is gone (or hung): answer what it had not taken, and start
    /// another.
    pub(super) fn died(&mut self, i: usize, death: Death) {
        let now = Instant::now();
        let w = &mut self.workers[i];
        w.out = Default::default();
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
}
