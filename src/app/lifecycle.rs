//! What `serve` does between turns of the loop: signals (drain, a second
//! signal, certificate reloads), the shutdown deadline, the WebSocket
//! workers' goodbyes, inetd's idle exit, the end of a single `Accept=yes`
//! connection, and sd_notify. One type with `next_wake()` (when the loop
//! must come back) and `after_step()` (what to do now), instead of a loop
//! that polls.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Instant;

use super::threads::Others;
use super::{ServeConfig, reload_certificates, status};
use crate::handoff::upgrade::{Outcome, Ready, Successor};
use crate::intake::control::UpgradeRequest;
use crate::notify::Notifier;
use crate::server::{Inbox, Server};
use crate::ws::pool::Pool;

/// Signals reach the loop through a thread that wakes it.
pub(super) fn signals(waker: Inbox) -> std::io::Result<mpsc::Receiver<i32>> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
    // SIGUSR1 is also a flag of the log's (crate::log), which reopens the
    // file; here it is passed on to the WebSocket workers.
    crate::service::signals::forward(waker, &[SIGTERM, SIGINT, SIGHUP, SIGUSR2, SIGUSR1])
}

/// Whether the process goes on.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Go {
    On,
    Exit,
}

pub(super) struct Lifecycle<'a> {
    pub(super) cfg: &'a ServeConfig,
    pub(super) notifier: Notifier,
    pub(super) signals: mpsc::Receiver<i32>,
    pub(super) ws_pool: Option<Pool>,
    /// The app processes' pool (`--app`).
    pub(super) apps: Option<crate::apps::Apps>,
    pub(super) inbox: Inbox,
    /// The other event loops (`--threads`).
    pub(super) others: Others,
    /// Only a connection was given (inetd `nowait`, `Accept=yes`): the
    /// process ends with it.
    pub(super) single_connection: bool,
    /// Draining: everything left is closed then.
    pub(super) deadline: Option<Instant>,
    /// Draining: hears when the WebSocket workers have said goodbye.
    pub(super) workers_done: Option<mpsc::Receiver<()>>,
    pub(super) idle_since: Instant,
    /// Replacing the binary: requests, the one under way, its outcome.
    pub(super) upgrades: Upgrades,
}

/// What replacing the binary needs between turns: what SIGUSR2 or `handoff
/// upgrade` starts, the upgrade under way and how it ends, and who waits to
/// hear how.
pub(super) struct Upgrades {
    /// What starts the new process and hands it the listeners.
    pub(super) successor: Successor,
    /// The outcome of the upgrade under way.
    pub(super) upgrading: Option<mpsc::Receiver<Outcome>>,
    /// Set to end the upgrade under way (its new process killed and
    /// collected) when this process is asked to stop meanwhile.
    pub(super) cancel: Arc<AtomicBool>,
    /// A stop signal came while an upgrade was under way: drain once its
    /// outcome is known (a new process that was ready first is handed the
    /// connections instead, as in any upgrade).
    pub(super) stop_after: bool,
    /// `handoff upgrade` requests from the control socket, and those
    /// waiting for the outcome of the upgrade under way.
    pub(super) requests: mpsc::Receiver<UpgradeRequest>,
    pub(super) waiting: Vec<UpgradeRequest>,
    /// `handoff upgrade` answers being written (`ControlConfig::answering`).
    pub(super) answering: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// The control sockets served: passed on in an upgrade, and no longer
    /// accepted from once the new process is ready.
    pub(super) controls: Vec<crate::intake::control::Control>,
}

impl Upgrades {
    /// Answers every `handoff upgrade` waiting for this outcome.
    fn tell_waiting(&mut self, outcome: Result<u32, String>) {
        for tx in self.waiting.drain(..) {
            let _ = tx.send(outcome.clone());
        }
    }
}

impl Lifecycle<'_> {
    /// SIGUSR2: start the new binary and hand it the listeners, unless an
    /// upgrade is under way or this process is draining.
    fn start_upgrade(&mut self, server: &Server) {
        if self.upgrades.upgrading.is_some() || self.deadline.is_some() {
            tracing::warn!("upgrade asked for while an upgrade or a drain is under way; ignored");
            return;
        }
        let controls = self
            .upgrades
            .controls
            .iter()
            .filter_map(|c| c.listener.try_clone().ok())
            .collect();
        self.upgrades.cancel.store(false, Ordering::Release);
        self.notifier.reloading("upgrade: starting the new binary");
        match self.upgrades.successor.start(
            server,
            self.cfg.upgrade_timeout,
            self.inbox.clone(),
            self.ws_pool.is_some(),
            controls,
            self.upgrades.cancel.clone(),
        ) {
            Ok(rx) => {
                tracing::info!("upgrade: the new process is starting");
                self.upgrades.upgrading = Some(rx);
            }
            Err(e) => {
                tracing::warn!("upgrade failed, serving on: {e}");
                self.notifier
                    .reloaded(status(server), &format!("upgrade failed, serving on: {e}"));
                self.upgrades.tell_waiting(Err(e.to_string()));
            }
        }
    }

    /// Exiting at once: the upgrade under way ends first (its thread kills
    /// and collects the new process within `CANCEL_CHECK`).
    fn end_upgrade_now(&mut self) {
        if let Some(rx) = self.upgrades.upgrading.take() {
            self.upgrades.cancel.store(true, Ordering::Release);
            if let Ok(Ok(ready)) = rx.recv_timeout(std::time::Duration::from_secs(2)) {
                // Ready first: it serves; its listeners are its own.
                tracing::warn!(
                    pid = ready.pid,
                    "the new process was ready as we exit; it serves on"
                );
            }
        }
    }

    /// Stops accepting, answers what is in flight, says goodbye to the
    /// WebSocket workers, and sets the deadline.
    fn drain(&mut self, server: &mut Server, now: Instant) {
        self.notifier.stopping();
        server.drain();
        self.others.drain();
        self.say_goodbye_to_workers();
        self.finish_apps();
        self.deadline = Some(now + self.cfg.shutdown_timeout);
    }

    /// Every app gives back what it holds of ours.
    fn finish_apps(&mut self) {
        if let Some(a) = &self.apps {
            let inbox = self.inbox.clone();
            a.finish(move || {
                let _ = inbox.wake();
            });
        }
    }

    /// The WebSocket workers close their connections (1001) and exit.
    fn say_goodbye_to_workers(&mut self) {
        let inbox = self.inbox.clone();
        self.workers_done = self.ws_pool.as_ref().map(|p| {
            p.shutdown(move || {
                let _ = inbox.wake();
            })
        });
    }

    /// When the loop must come back even if nothing happens.
    #[inline(always)]
    pub(super) fn next_wake(&self) -> Option<Instant> {
        let earliest = |a: Option<Instant>, b: Instant| Some(a.map_or(b, |a| a.min(b)));
        let mut next = self.notifier.next_due();
        if let Some(d) = self.deadline {
            next = earliest(next, d);
        }
        if let Some(d) = self.cfg.idle_exit {
            next = earliest(next, self.idle_since + d);
        }
        next
    }

    /// After a turn of the loop: act on signals and deadlines. Always
    /// inlined, its usual case being the one test (a call cost 16
    /// instructions a turn, callgrind).
    #[inline(always)]
    pub(super) fn after_step(&mut self, server: &mut Server, now: Instant) -> Go {
        // The usual turn has nothing for it: not woken (no signal, no
        // upgrade asked), no upgrade or drain under way, no connection of
        // its own to outlive, no idle exit, no service manager to tell
        // (a watchdog is one's). Asked in one place, before the frame the
        // rest needs (about 40 instructions a turn, callgrind).
        if !server.woken()
            && self.upgrades.upgrading.is_none()
            && self.deadline.is_none()
            && !self.single_connection
            && self.cfg.idle_exit.is_none()
            && !self.notifier.enabled()
        {
            return Go::On;
        }
        self.after_any_step(server, now)
    }

    /// `after_step` when the turn may have something for it.
    #[inline(never)]
    fn after_any_step(&mut self, server: &mut Server, now: Instant) -> Go {
        // Signals and upgrade requests are sent, then the loop is woken
        // (`service::signals::forward`, `intake::control`): only a woken
        // turn can have them (two channel reads a turn saved).
        if server.woken()
            && let Some(go) = self.signalled_or_asked(server, now)
        {
            return go;
        }
        self.after_step_rest(server, now)
    }

    /// Signals and upgrade requests.
    fn signalled_or_asked(&mut self, server: &mut Server, now: Instant) -> Option<Go> {
        while let Ok(sig) = self.signals.try_recv() {
            if sig == signal_hook::consts::SIGHUP {
                self.notifier.reloading("certificates");
                let outcome = reload_certificates(self.cfg, server, &self.others);
                self.notifier.reloaded(status(server), &outcome);
                continue;
            }
            if sig == signal_hook::consts::SIGUSR2 {
                self.start_upgrade(server);
                continue;
            }
            if sig == signal_hook::consts::SIGUSR1 {
                // The log's flag was set in the same handler: writing this
                // line opens the file again, so it is the new file's first
                // (logrotate's postrotate can wait for it).
                tracing::info!("SIGUSR1: the log file is opened again");
                if let Some(pool) = &self.ws_pool {
                    pool.signal_workers(nix::sys::signal::Signal::SIGUSR1);
                }
                continue;
            }
            if self.deadline.is_some() || self.upgrades.stop_after {
                tracing::warn!(sig, "second signal: exiting now");
                self.end_upgrade_now();
                server.close();
                self.others.close();
                self.notifier.stopping();
                return Some(Go::Exit);
            }
            if self.upgrades.upgrading.is_some() {
                // Leaving now would leave the new process running, with
                // nobody to kill it at its deadline or to reap it.
                tracing::info!(sig, "stopping: ending the upgrade under way first");
                self.upgrades.cancel.store(true, Ordering::Release);
                self.upgrades.stop_after = true;
                continue;
            }
            tracing::info!(
                sig,
                connections = server.connections_in_budget(),
                "draining: no new connections; answering those in flight"
            );
            self.drain(server, now);
        }
        while let Ok(tx) = self.upgrades.requests.try_recv() {
            if self.deadline.is_some() {
                let _ = tx.send(Err("this process is stopping".into()));
                continue;
            }
            self.upgrades.waiting.push(tx);
            if self.upgrades.upgrading.is_none() {
                self.start_upgrade(server);
            }
        }
        None
    }

    fn after_step_rest(&mut self, server: &mut Server, now: Instant) -> Go {
        if let Some(rx) = &self.upgrades.upgrading {
            match rx.try_recv() {
                Ok(Ok(Ready {
                    pid,
                    mover,
                    pool_line,
                })) => {
                    self.upgrades.upgrading = None;
                    self.upgrades.stop_after = false;
                    self.upgrades.tell_waiting(Ok(pid));
                    tracing::info!(
                        pid,
                        connections = server.connections_in_budget(),
                        "upgrade: the new process is ready; handing connections over"
                    );
                    // No STOPPING=1: the service goes on, in the new
                    // process, which has sent MAINPID= and READY=1.
                    server.hand_over(mover.clone());
                    self.others.hand_over(&mover);
                    // New peers of the control socket are the new process's.
                    for c in self.upgrades.controls.drain(..) {
                        c.stop();
                    }
                    match (pool_line, &self.ws_pool) {
                        (Some(line), Some(pool)) => {
                            let inbox = self.inbox.clone();
                            self.workers_done = Some(pool.move_to(line, move || {
                                let _ = inbox.wake();
                            }));
                        }
                        _ => self.say_goodbye_to_workers(),
                    }
                    self.finish_apps();
                    self.deadline = Some(now + self.cfg.shutdown_timeout);
                }
                Ok(Err(why)) if self.upgrades.stop_after => {
                    self.upgrades.upgrading = None;
                    self.upgrades.stop_after = false;
                    self.upgrades.tell_waiting(Err(why.clone()));
                    tracing::info!(
                        connections = server.connections_in_budget(),
                        "upgrade ended ({why}); draining: no new connections; answering those in flight"
                    );
                    self.drain(server, now);
                }
                Ok(Err(why)) => {
                    self.upgrades.upgrading = None;
                    tracing::warn!("upgrade failed, serving on: {why}");
                    self.notifier.reloaded(
                        status(server),
                        &format!("upgrade failed, serving on: {why}"),
                    );
                    self.upgrades.tell_waiting(Err(why));
                }
                Err(_) => {}
            }
        }
        if let Some(d) = self.deadline {
            let workers_gone = self
                .workers_done
                .as_ref()
                .is_none_or(|rx| !matches!(rx.try_recv(), Err(mpsc::TryRecvError::Empty)));
            if workers_gone {
                self.workers_done = None;
            }
            // Read before our inbox: the pool queues a connection given
            // back before it says quiet, so once quiet is seen, whatever
            // came back is in an inbox already. Ours is closed only if
            // empty (a loop that ended refuses more); a connection queued
            // there is taken next turn. (Quiet seen at two turns in a row
            // was not enough: a lend and its return between them went
            // unseen, and the connection was closed with its request.)
            let apps_gone = self.apps.as_ref().is_none_or(|a| a.is_quiet());
            let answered = self
                .upgrades
                .answering
                .load(std::sync::atomic::Ordering::Acquire)
                == 0;
            if server.is_empty()
                && workers_gone
                && apps_gone
                && self.others.done()
                && answered
                && self.inbox.close_if_idle()
            {
                tracing::info!("drained; exiting");
                return Go::Exit;
            }
            if now >= d {
                tracing::warn!(
                    connections = server.connections_in_budget(),
                    "shutdown timeout: closing what is left"
                );
                server.close();
                self.others.close();
                return Go::Exit;
            }
        }
        if self.single_connection && server.is_empty() {
            // An Accept=yes or inetd nowait connection has ended.
            return Go::Exit;
        }
        // Idle time matters only to `--idle-exit`: not looked at otherwise.
        if let Some(d) = self.cfg.idle_exit {
            if server.connections_in_budget() > 0 || server.queued() > 0 {
                self.idle_since = now;
            } else if now >= self.idle_since + d {
                tracing::info!("idle; exiting so that inetd takes the port back");
                return Go::Exit;
            }
        }
        self.notifier.tick(now);
        if self.notifier.enabled() {
            self.notifier.status(now, status(server));
        }
        Go::On
    }
}
