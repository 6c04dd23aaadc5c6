//! sd_notify: READY once every source is registered, STATUS with the
//! connection counts, WATCHDOG from the event loop itself (so a stuck loop
//! stops the pings and systemd restarts us), RELOADING while an upgrade or
//! a certificate reload runs, STOPPING on shutdown. Without
//! `NOTIFY_SOCKET` every call does nothing.

use std::time::{Duration, Instant};

use sd_notify::NotifyState;

/// Tells the service manager (`NOTIFY_SOCKET`) how the service is.
pub struct Notifier {
    enabled: bool,
    watchdog: Option<Duration>,
    next_ping: Option<Instant>,
    /// Connections and queued sockets last reported.
    last_status: (usize, usize),
    /// Whether the last report said a broadcast bus had no Redis.
    last_bus_down: bool,
    next_status: Instant,
    /// A changed STATUS held back by the rate limit.
    pending: bool,
}

/// STATUS is sent when it changed, at most this often.
const STATUS_EVERY: Duration = Duration::from_secs(1);

fn status_line((connections, queued): (usize, usize)) -> String {
    let bus = match crate::metrics::BUS_DOWN.load(std::sync::atomic::Ordering::Relaxed) {
        0 => "",
        _ => "; broadcast bus: no Redis (retrying)",
    };
    format!("{connections} connections, {queued} queued{bus}")
}

impl Notifier {
    /// From `NOTIFY_SOCKET` and `WATCHDOG_USEC`.
    pub fn from_env() -> Notifier {
        let enabled = std::env::var_os("NOTIFY_SOCKET").is_some();
        let watchdog = if enabled {
            sd_notify::watchdog_enabled()
        } else {
            None
        };
        Notifier {
            enabled,
            watchdog,
            next_ping: None,
            last_status: (0, 0),
            last_bus_down: false,
            next_status: Instant::now(),
            pending: false,
        }
    }

    /// Is there a service manager to tell (`NOTIFY_SOCKET`)?
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    fn send(&self, states: &[NotifyState<'_>]) {
        if self.enabled
            && let Err(e) = sd_notify::notify(states)
        {
            tracing::warn!("sd_notify: {e}");
        }
    }

    /// Gives systemd's fd store a copy of each socket (`FDSTORE=1`), named
    /// by its role (`FDNAME=`), so that a restart gets them back through
    /// `LISTEN_FDS` and no connection attempt is refused meanwhile (they
    /// wait in the backlog). systemd keeps one copy of a socket however
    /// often it is given, and only with `FileDescriptorStoreMax=` set.
    pub fn store(&self, named: &[(&str, std::os::fd::BorrowedFd<'_>)]) {
        for (name, fd) in named {
            let states = [NotifyState::FdStore, NotifyState::FdName(name)];
            if let Err(e) = sd_notify::notify_with_fds(&states, &[*fd]) {
                tracing::warn!("sd_notify FDSTORE: {e}");
            }
        }
    }

    /// READY=1 with the first STATUS. `replacing`: this process replaced
    /// another (`docs/upgrade.md`), so MAINPID= comes in the same message
    /// and systemd follows it (the unit needs `NotifyAccess=all`).
    pub fn ready(&mut self, counts: (usize, usize), replacing: bool) {
        self.send_ready(counts, &status_line(counts), replacing);
        self.ping(Instant::now());
    }

    /// READY=1 with `status` (for `counts`), and MAINPID= if `replacing`.
    fn send_ready(&mut self, counts: (usize, usize), status: &str, replacing: bool) {
        let (ready, status) = (NotifyState::Ready, NotifyState::Status(status));
        if replacing {
            self.send(&[NotifyState::MainPid(std::process::id()), ready, status]);
        } else {
            self.send(&[ready, status]);
        }
        self.last_status = counts;
    }

    /// Sends STATUS (connections, queued) if it changed and a second has
    /// passed since the last. Called every loop turn: the line is formatted
    /// only when it is sent.
    // Called every turn: public now, so it no longer gets the inlining a
    // crate-private function with one caller got (callgrind: 19
    // instructions a turn for the call).
    #[inline]
    pub fn status(&mut self, now: Instant, counts: (usize, usize)) {
        if !self.enabled {
            self.pending = false;
            return;
        }
        let bus_down = crate::metrics::BUS_DOWN.load(std::sync::atomic::Ordering::Relaxed) > 0;
        if counts == self.last_status && bus_down == self.last_bus_down {
            self.pending = false;
        } else if now >= self.next_status {
            self.send(&[NotifyState::Status(&status_line(counts))]);
            self.last_status = counts;
            self.last_bus_down = bus_down;
            self.next_status = now + STATUS_EVERY;
            self.pending = false;
        } else {
            self.pending = true;
        }
    }

    fn ping(&mut self, now: Instant) {
        if let Some(w) = self.watchdog {
            self.send(&[NotifyState::Watchdog]);
            // Twice per interval, as sd_watchdog_enabled(3) advises.
            self.next_ping = Some(now + w / 2);
        }
    }

    /// Pings the watchdog if due. Call it from the loop, every turn.
    #[inline]
    pub fn tick(&mut self, now: Instant) {
        if self.next_ping.is_some_and(|t| now >= t) {
            self.ping(now);
        }
    }

    /// When the loop must wake up next for the watchdog or a STATUS update.
    #[inline]
    pub fn next_due(&self) -> Option<Instant> {
        let status = (self.enabled && self.pending).then_some(self.next_status);
        match (self.next_ping, status) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// RELOADING=1, with the MONOTONIC_USEC= that systemd 253's
    /// `Type=notify-reload` requires beside it, and what is being reloaded
    /// as STATUS: systemd shows the unit "reloading" until READY=1, which
    /// comes from the new process after an upgrade, or from this one
    /// ([`Notifier::reloaded`]) after a certificate reload or a failed
    /// upgrade.
    pub fn reloading(&mut self, what: &str) {
        if !self.enabled {
            return;
        }
        let status = format!("reloading: {what}");
        match NotifyState::monotonic_usec_now() {
            Ok(now) => self.send(&[NotifyState::Reloading, now, NotifyState::Status(&status)]),
            Err(e) => tracing::warn!("sd_notify: no monotonic time for RELOADING: {e}"),
        }
    }

    /// READY=1 after [`Notifier::reloading`], the outcome in STATUS.
    pub fn reloaded(&mut self, counts: (usize, usize), outcome: &str) {
        let status = format!("{}; {outcome}", status_line(counts));
        self.send_ready(counts, &status, false);
    }

    /// STOPPING=1; the watchdog is no longer pinged.
    pub fn stopping(&mut self) {
        self.send(&[NotifyState::Stopping]);
        self.watchdog = None;
        self.next_ping = None;
    }
}
