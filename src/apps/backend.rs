//! One app process as the pool sees it: its line, and the child behind it
//! when it is one of ours (`exec:`); starting it (or reaching it, `unix:`),
//! and what happens when it dies or hangs.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Interest, Token};

use super::{AppTarget, FIRST_BACKOFF, HEALTHY_AFTER, MAX_BACKOFF, PoolLoop, locked};
use crate::sys::{self, fdpass};

pub(super) struct Backend {
    pub(super) route: usize,
    target: AppTarget,
    pub(super) line: Option<Arc<OwnedFd>>,
    child: Option<Child>,
    started: Instant,
    backoff: Duration,
    pub(super) restart_at: Option<Instant>,
    /// The `FINISH` it was sent, whose `ACK`s say it holds nothing.
    pub(super) finish_id: Option<u64>,
    /// Finishing: the count of lends it had been sent when it last said
    /// it held nothing (`Lending::lent`); quiet while that still holds.
    pub(super) quiet_at: Option<u64>,
}

impl Backend {
    pub(super) fn new(route: usize, target: AppTarget) -> Backend {
        Backend {
            route,
            target,
            line: None,
            child: None,
            started: Instant::now(),
            backoff: FIRST_BACKOFF,
            restart_at: None,
            finish_id: None,
            quiet_at: None,
        }
    }

    pub(super) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn name(&self) -> String {
        match &self.target {
            AppTarget::Unix(p) => format!("unix:{}", p.display()),
            AppTarget::Exec(c) => format!("exec:{c}"),
        }
    }
}

impl PoolLoop {
    /// Starts process `i` (or connects to it) and watches its line.
    pub(super) fn start(&mut self, i: usize) {
        let run_as = self.cfg.run_as;
        let b = &mut self.backends[i];
        b.restart_at = None;
        b.started = Instant::now();
        let line = match &b.target {
            AppTarget::Unix(path) => fdpass::seqpacket_connect(path),
            AppTarget::Exec(command) => (|| {
                let (ours, theirs) = fdpass::seqpacket_pair()?;
                let mut cmd = Command::new("/bin/sh");
                // `exec`: the app is our child itself, not the shell's, so
                // that a kill reaches it and its death closes the line.
                cmd.args(["-c", &format!("exec {command}")])
                    .env(crate::handoff::worker::LINE_FD_VAR, "3")
                    .stdin(Stdio::null());
                if let Some((uid, gid)) = run_as {
                    use std::os::unix::process::CommandExt;
                    cmd.uid(uid).gid(gid);
                }
                b.child = Some(sys::process::spawn_worker(&mut cmd, theirs)?);
                Ok(ours)
            })(),
        };
        let registered = line.and_then(|l| {
            sys::prepare_adopted(l.as_fd())?;
            self.poll.registry().register(
                &mut SourceFd(&l.as_raw_fd()),
                Token(i + 1),
                Interest::READABLE,
            )?;
            Ok(l)
        });
        let b = &mut self.backends[i];
        match registered {
            Ok(l) => {
                tracing::info!(app = %b.name(), pid = b.pid(), "app process ready");
                let l = Arc::new(l);
                locked(&self.lending.lines)[i].1 = Some(l.clone());
                b.line = Some(l);
            }
            Err(e) => {
                tracing::warn!(app = %b.name(), "app process not reached: {e}; trying again in {:?}", b.backoff);
                self.stop(i);
                self.schedule(i);
            }
        }
    }

    /// Starts again the processes whose back-off has passed.
    pub(super) fn restart_due(&mut self, now: Instant) {
        for i in 0..self.backends.len() {
            if self.backends[i].restart_at.is_some_and(|t| t <= now) {
                self.start(i);
            }
        }
    }

    /// Process `i` is gone or hung. One of ours is killed and reaped
    /// before the connections it held are answered (502: it may have
    /// begun to answer them, and can no longer); one on its own socket
    /// cannot be stopped, so what it holds is left to it (our copies close
    /// without a word). Then it is started (or reached) again.
    pub(super) fn died(&mut self, i: usize, why: &str) {
        if self.backends[i].line.is_none() {
            return;
        }
        let ours = self.backends[i].child.is_some();
        tracing::warn!(app = %self.backends[i].name(), pid = self.backends[i].pid(), "app process lost: {why}");
        self.stop(i);
        let mine: Vec<super::Held> = {
            let mut held = locked(&self.lending.held);
            let ids: Vec<u64> = held
                .iter()
                .filter(|(_, h)| h.backend == i)
                .map(|(id, _)| *id)
                .collect();
            ids.iter().filter_map(|id| held.remove(id)).collect()
        };
        for h in mine {
            if ours {
                h.refuse(502, "the app process was lost before it took the request");
            } else {
                h.taken("the app did not answer; left to it");
            }
        }
        if !self.finishing {
            self.schedule(i);
        }
    }

    /// Closes the line; kills and reaps the child.
    pub(super) fn stop(&mut self, i: usize) {
        locked(&self.lending.lines)[i].1 = None;
        let b = &mut self.backends[i];
        if let Some(l) = b.line.take() {
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&l.as_raw_fd()));
        }
        if let Some(mut c) = b.child.take() {
            sys::signal_child(&c, nix::sys::signal::Signal::SIGKILL);
            let _ = c.wait();
        }
    }

    /// When to try again: soon after a long life, later after each short one.
    fn schedule(&mut self, i: usize) {
        let b = &mut self.backends[i];
        if b.started.elapsed() >= HEALTHY_AFTER {
            b.backoff = FIRST_BACKOFF;
        }
        b.restart_at = Some(Instant::now() + b.backoff);
        b.backoff = (b.backoff * 2).min(MAX_BACKOFF);
    }
}
