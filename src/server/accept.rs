//! Accepting: the listeners and their accept policy (batches, back-off on
//! `EMFILE`), and the queue of connected sockets waiting for a slot under
//! `max_concurrent`. Listeners hand back what they accepted; the server
//! adopts it through the same path as every other source.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use mio::Registry;
use mio::unix::SourceFd;

use super::Socket;
use super::connection::Wrapping;
use crate::sys::{self, Addr, would_block};

/// Listener tokens are this plus the listener's index, apart from the
/// connections' slab keys (which never get near it) and the waker's.
pub(super) const LISTENER_TOKENS: usize = usize::MAX / 2;

struct Listener {
    fd: OwnedFd,
    local: Addr,
    unix: bool,
    wrapping: Wrapping,
    /// Readiness not yet acted on (edge-triggered: we must remember it).
    ready: bool,
    /// Resting after accept failed for lack of fds or memory.
    backoff_until: Option<Instant>,
}

#[derive(Default)]
pub(super) struct Listeners {
    /// By index; a closed listener leaves `None`, so tokens stay valid.
    list: Vec<Option<Listener>>,
}

impl Listeners {
    /// Registers a listening socket; returns its token.
    pub(super) fn add(
        &mut self,
        epoll: BorrowedFd<'_>,
        fd: OwnedFd,
        unix: bool,
        wrapping: Wrapping,
    ) -> io::Result<(usize, Addr)> {
        let token = LISTENER_TOKENS + self.list.len();
        sys::epoll_add_exclusive(epoll, fd.as_fd(), token)?;
        let local = sys::local_addr(fd.as_fd());
        self.list.push(Some(Listener {
            fd,
            local: local.clone(),
            unix,
            wrapping,
            ready: true,
            backoff_until: None,
        }));
        Ok((token, local))
    }

    fn get(&mut self, token: usize) -> Option<&mut Listener> {
        self.list
            .get_mut(token.checked_sub(LISTENER_TOKENS)?)?
            .as_mut()
    }

    /// A new fd for every open listener, with its TLS mode, for another
    /// loop to accept from too.
    pub(super) fn share(&self) -> io::Result<Vec<Socket>> {
        self.list
            .iter()
            .flatten()
            .map(|l| Ok(Socket::listener(l.fd.try_clone()?, l.unix, l.wrapping)))
            .collect()
    }

    /// Is any listener ready with connections not yet accepted?
    pub(super) fn any_ready(&self) -> bool {
        self.list.iter().flatten().any(|l| l.ready)
    }

    /// Is any listener ready, or resting (`is_due` may wake it)?
    #[inline]
    pub(super) fn any_ready_or_resting(&self) -> bool {
        // Asked twice a turn: a plain loop (the adapters of
        // `flatten().any()` were most of what it cost, callgrind).
        for l in self.list.iter().filter_map(Option::as_ref) {
            if l.ready || l.backoff_until.is_some() {
                return true;
            }
        }
        false
    }

    /// The kernel says this listener is readable.
    pub(super) fn set_ready(&mut self, token: usize) {
        if let Some(l) = self.get(token) {
            l.ready = true;
        }
    }

    /// Accepts from one listener up to `limit` connections, into `out`,
    /// until it would block; on `EMFILE` and the like it rests for
    /// `backoff` instead of spinning on a readiness it cannot act on.
    pub(super) fn accept(
        &mut self,
        token: usize,
        limit: usize,
        now: Instant,
        backoff: Duration,
        out: &mut Vec<Socket>,
    ) {
        let Some(l) = self.get(token) else {
            return;
        };
        if !l.ready || l.backoff_until.is_some_and(|t| t > now) {
            return;
        }
        for _ in 0..limit {
            match sys::accept(l.fd.as_fd()) {
                Ok((fd, peer)) => {
                    crate::metrics::inc(crate::metrics::M::AcceptedListener);
                    out.push(Socket::accepted(fd, peer, l.unix, l.wrapping))
                }
                Err(e) if would_block(&e) => {
                    l.ready = false;
                    return;
                }
                Err(e) if sys::belongs_to_one_connection(&e) => tracing::debug!("accept: {e}"),
                Err(e) => {
                    tracing::warn!(local = %l.local, "accept: {e}; pausing this listener for {backoff:?}");
                    l.backoff_until = Some(now + backoff);
                    return;
                }
            }
        }
        // The limit is reached and the listener is still ready:
        // `next_wake` makes the next turn not wait.
    }

    /// Everything in every backlog, up to `room` connections (draining:
    /// the listeners are about to close, which would reset them).
    pub(super) fn take_backlogs(&mut self, room: usize, out: &mut Vec<Socket>) {
        for l in self.list.iter().flatten() {
            while out.len() < room {
                match sys::accept(l.fd.as_fd()) {
                    Ok((fd, peer)) => {
                        crate::metrics::inc(crate::metrics::M::AcceptedListener);
                        out.push(Socket::accepted(fd, peer, l.unix, l.wrapping))
                    }
                    Err(_) => break,
                }
            }
        }
    }

    /// How many listener tokens there are (closed ones included).
    pub(super) fn len(&self) -> usize {
        self.list.len()
    }

    /// Should the end of a turn accept from this listener? Yes while it is
    /// ready and not resting: edge-triggered, no new event comes for the
    /// connections a batch left in the backlog (nor for those waiting while
    /// `max_concurrent` held). A listener done resting is ready again.
    pub(super) fn is_due(&mut self, token: usize, now: Instant) -> bool {
        let Some(l) = self.get(token) else {
            return false;
        };
        if l.backoff_until.is_some_and(|b| b <= now) {
            l.backoff_until = None;
            l.ready = true;
        }
        l.ready && l.backoff_until.is_none()
    }

    /// When a listener next needs the loop: now if one is ready and the
    /// server can accept, else when the first one stops resting.
    pub(super) fn next_wake(&self, can_accept: bool, now: Instant) -> Option<Instant> {
        let mut next = None;
        for l in self.list.iter().flatten() {
            match l.backoff_until {
                Some(b) => next = Some(next.map_or(b, |n: Instant| n.min(b))),
                None if l.ready && can_accept => return Some(now),
                None => {}
            }
        }
        next
    }

    /// Stops being woken for new connections while keeping the sockets:
    /// with `EPOLLEXCLUSIVE`, a connection whose wake-up went to a loop that
    /// then closed its copy without accepting would wait, unnoticed, for
    /// the next arrival. Deregistered first, the backlog is taken after.
    pub(super) fn deregister_all(&mut self, registry: &Registry) {
        for l in self.list.iter().flatten() {
            let _ = registry.deregister(&mut SourceFd(&l.fd.as_raw_fd()));
        }
    }

    pub(super) fn close_all(&mut self, registry: &Registry) {
        for l in self.list.iter_mut().filter_map(Option::take) {
            let _ = registry.deregister(&mut SourceFd(&l.fd.as_raw_fd()));
        }
    }

    pub(super) fn addrs(&self) -> Vec<Addr> {
        self.list
            .iter()
            .flatten()
            .map(|l| l.local.clone())
            .collect()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.list.iter().all(Option::is_none)
    }
}

/// Who may come in: the listeners, the queue of sockets waiting for a slot,
/// and whether the server takes connections at all. The server asks it
/// what to adopt; it never adopts anything itself.
#[derive(Default)]
pub(super) struct Admission {
    pub(super) listeners: Listeners,
    pub(super) queued: WaitQueue,
    /// Reused for what a listener gives in one go.
    accepted: Vec<Socket>,
    pub(super) paused: bool,
    pub(super) closed: bool,
}

impl Admission {
    /// Does the server take another connection now, with `in_use` of
    /// `max` slots taken?
    pub(super) fn is_open(&self, draining: bool, in_use: usize, max: usize) -> bool {
        !self.paused && !self.closed && !draining && in_use < max
    }

    /// What a ready listener gives now: up to a batch, within the room left
    /// under `max_concurrent`. Give the vector back with `recycle`.
    pub(super) fn batch(
        &mut self,
        token: usize,
        in_use: usize,
        opts: &super::Options,
        now: Instant,
    ) -> Vec<Socket> {
        let limit = opts
            .accept_batch
            .min(opts.max_concurrent.saturating_sub(in_use));
        let mut got = std::mem::take(&mut self.accepted);
        self.listeners
            .accept(token, limit, now, opts.accept_backoff, &mut got);
        got
    }

    pub(super) fn recycle(&mut self, got: Vec<Socket>) {
        self.accepted = got;
    }

    /// Closes the listeners for good and returns what waited in their
    /// backlogs, up to what `max_concurrent` and `max_queued` leave room
    /// for (closing would reset those connections). Not woken any more
    /// first, then emptied: a connection arriving from now on wakes another
    /// loop or process still accepting from the same socket.
    pub(super) fn stop(
        &mut self,
        registry: &Registry,
        in_use: usize,
        opts: &super::Options,
    ) -> Vec<Socket> {
        self.listeners.deregister_all(registry);
        let room =
            (opts.max_concurrent + opts.max_queued).saturating_sub(in_use + self.queued.len());
        let mut got = Vec::new();
        self.listeners.take_backlogs(room, &mut got);
        if !got.is_empty() {
            tracing::info!(taken = got.len(), "took the backlog's connections");
        }
        self.listeners.close_all(registry);
        got
    }

    /// Closes everything for good: listeners and the queue.
    pub(super) fn close(&mut self, registry: &Registry) {
        self.closed = true;
        self.listeners.close_all(registry);
        self.queued.clear();
    }

    /// When the loop must look again: now if a listener is ready and the
    /// server is open; when the first resting listener is done; and, with
    /// a budget shared with other loops (`waits_on_budget`), soon while
    /// something waits for a slot that another loop may free without an
    /// event here.
    pub(super) fn next_wake(
        &self,
        open: bool,
        waits_on_budget: bool,
        now: Instant,
    ) -> Option<Instant> {
        // The usual turn: every listener waits for its next event.
        if self.queued.is_empty() && !self.listeners.any_ready_or_resting() {
            return None;
        }
        let wake = self.listeners.next_wake(open, now);
        let waiting = !self.queued.is_empty() || self.listeners.any_ready();
        if waits_on_budget && waiting && !open {
            return Some(wake.map_or(now + BUDGET_RECHECK, |w| w.min(now + BUDGET_RECHECK)));
        }
        wake
    }

    /// Nothing to accept from and nothing waiting.
    pub(super) fn is_empty(&self) -> bool {
        self.queued.is_empty() && self.listeners.is_empty()
    }
}

/// How often a loop waiting for a slot in a budget shared with other loops
/// looks again (only while something waits).
const BUDGET_RECHECK: Duration = Duration::from_millis(10);

/// A connected socket waiting for a slot.
pub(super) struct Queued {
    pub(super) fd: OwnedFd,
    pub(super) peer: Addr,
    pub(super) pre_read: Vec<u8>,
    pub(super) wrapping: Wrapping,
    pub(super) resume_h2: Option<Box<[u8]>>,
    pub(super) back: Option<super::returning::Back>,
}

/// Connected sockets waiting for a slot under `max_concurrent`.
#[derive(Default)]
pub(super) struct WaitQueue(VecDeque<Queued>);

impl WaitQueue {
    /// Queues a socket, or refuses it when `max` are waiting already.
    pub(super) fn offer(&mut self, q: Queued, max: usize) -> io::Result<()> {
        if self.0.len() >= max {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "at max_concurrent and the queue of waiting sockets is full",
            ));
        }
        self.0.push_back(q);
        Ok(())
    }

    pub(super) fn pop(&mut self) -> Option<Queued> {
        self.0.pop_front()
    }

    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(super) fn clear(&mut self) {
        self.0.clear()
    }
}
