//! Accepting: listeners, the accept policy (batches, back-off on
//! `EMFILE`), and the queue of connected sockets waiting for a slot under
//! `max_concurrent`. Accepted sockets take the same `adopt` path as every
//! other source.

use std::collections::VecDeque;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Instant;

use super::{Entry, Server, Socket};
use crate::sys::{self, Addr, would_block};
use crate::tls::TlsMode;

pub(super) struct Listener {
    pub(super) fd: OwnedFd,
    pub(super) local: Addr,
    pub(super) unix: bool,
    pub(super) tls: TlsMode,
    /// Readiness not yet acted on (edge-triggered: we must remember it).
    pub(super) ready: bool,
    /// Resting after accept failed for lack of fds or memory.
    pub(super) backoff_until: Option<Instant>,
}

/// A connected socket waiting for a slot.
pub(super) struct Queued {
    pub(super) fd: OwnedFd,
    pub(super) peer: Addr,
    pub(super) pre_read: Vec<u8>,
    pub(super) tls: TlsMode,
}

pub(super) type WaitQueue = VecDeque<Queued>;

impl Server {
    /// May the server take another connection now?
    fn can_accept(&self) -> bool {
        !self.paused
            && !self.closed
            && !self.shared.draining
            && self.live < self.shared.opts.max_concurrent
    }

    /// Accepts from a ready listener until it would block, the batch is
    /// used up, or the server is at `max_concurrent` or paused.
    pub(super) fn accept_from(&mut self, token: usize) {
        for _ in 0..self.shared.opts.accept_batch {
            let can = self.can_accept();
            let backoff = self.shared.opts.accept_backoff;
            let now = self.now;
            let Some(Entry::Listener(l)) = self.entries.get_mut(token) else {
                return;
            };
            if !l.ready || !can || l.backoff_until.is_some_and(|t| t > now) {
                return;
            }
            match sys::accept(l.fd.as_fd()) {
                Ok((fd, peer)) => {
                    let sock = Socket::accepted(fd, peer, l.unix, l.tls);
                    if let Err(e) = self.adopt(sock, &[]) {
                        tracing::warn!("dropping accepted connection: {e}");
                    }
                }
                Err(e) if would_block(&e) => l.ready = false,
                Err(e) if sys::belongs_to_one_connection(&e) => tracing::debug!("accept: {e}"),
                Err(e) => {
                    tracing::warn!(local = %l.local, "accept: {e}; pausing this listener for {backoff:?}");
                    l.backoff_until = Some(now + backoff);
                    return;
                }
            }
        }
        // The batch is used up and the listener is still ready:
        // `timeout()` makes the next turn not wait.
    }

    /// Accepts everything waiting in the listeners' backlogs (at most what
    /// `max_concurrent` and `max_queued` allow): draining, they are about
    /// to close, which would reset those connections.
    pub(super) fn take_backlogs(&mut self) {
        let opts = &self.shared.opts;
        let room =
            (opts.max_concurrent + opts.max_queued).saturating_sub(self.live + self.queued.len());
        let mut taken = 0;
        for t in self.listener_tokens() {
            while taken < room {
                let Some(Entry::Listener(l)) = self.entries.get(t) else {
                    break;
                };
                let Ok((fd, peer)) = sys::accept(l.fd.as_fd()) else {
                    break;
                };
                taken += 1;
                let sock = Socket::accepted(fd, peer, l.unix, l.tls);
                if let Err(e) = self.adopt(sock, &[]) {
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

    /// Once a turn, at its end: serve queued sockets while there are free
    /// slots, then accept from listeners done resting, and, if slots were
    /// freed this turn, from those still ready (which stopped at the
    /// limit). Accepting never re-enters from inside closing.
    pub(super) fn admit_waiting(&mut self) {
        let freed = std::mem::take(&mut self.freed);
        while self.live < self.shared.opts.max_concurrent && !self.closed {
            let Some(q) = self.queued.pop_front() else {
                break;
            };
            if let Err(e) = self.serve(q.fd, q.peer, &q.pre_read, q.tls) {
                tracing::warn!("queued connection dropped: {e}");
            }
        }
        let now = self.now;
        for i in 0..self.listeners.len() {
            let t = self.listeners[i];
            if let Some(Entry::Listener(l)) = self.entries.get_mut(t) {
                let rested = l.backoff_until.is_some_and(|b| b <= now);
                if rested {
                    l.backoff_until = None;
                    l.ready = true;
                }
                if l.ready && (rested || freed) {
                    self.accept_from(t);
                }
            }
        }
    }

    /// The listeners' tokens (a copy: accepting borrows the server).
    pub(super) fn listener_tokens(&self) -> Vec<usize> {
        self.listeners.clone()
    }
}
