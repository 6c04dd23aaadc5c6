//! Slots under `max_concurrent`: counted by this loop alone, or in a budget
//! shared with the other loops of `--threads` (`Server::share_limit`). The
//! loop's own count is published for other threads (`Inbox::load`), which
//! is also what an unshared budget counts.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

pub(super) struct Budget {
    /// Connections this loop serves now; written by the table only.
    load: Arc<AtomicUsize>,
    /// Slots taken by every loop sharing the budget; `None`: this loop's
    /// `load` alone counts.
    shared: Option<Arc<AtomicUsize>>,
}

impl Budget {
    pub(super) fn new(load: Arc<AtomicUsize>) -> Budget {
        Budget { load, shared: None }
    }

    /// Counts slots in a budget shared with other loops from now on.
    pub(super) fn share(&mut self, budget: Arc<AtomicUsize>) {
        budget.fetch_add(self.load.load(Ordering::Relaxed), Ordering::AcqRel);
        self.shared = Some(budget);
    }

    /// Is the budget shared with other loops?
    pub(super) fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    /// Slots taken: by every loop sharing the budget, or by this one.
    pub(super) fn in_use(&self) -> usize {
        match &self.shared {
            Some(b) => b.load(Ordering::Acquire),
            None => self.load.load(Ordering::Relaxed),
        }
    }

    /// Takes a slot if fewer than `max` are taken (atomically against the
    /// other loops sharing the budget). The table's `insert` fills it;
    /// `unreserve` gives it back if that fails.
    pub(super) fn try_reserve(&self, max: usize) -> bool {
        match &self.shared {
            Some(b) => b
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                    (v < max).then_some(v + 1)
                })
                .is_ok(),
            None => self.load.load(Ordering::Relaxed) < max,
        }
    }

    /// Gives a slot back (a connection left, or a reserved one was never
    /// filled).
    pub(super) fn unreserve(&self) {
        if let Some(b) = &self.shared {
            b.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// The table now holds `len` connections.
    pub(super) fn publish(&self, len: usize) {
        self.load.store(len, Ordering::Relaxed);
    }
}
