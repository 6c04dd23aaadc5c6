//! Connection deadlines in one heap. Entries are never removed: a stale one
//! is recognised when it comes due (the slot's generation changed, or the
//! connection's deadline moved later), which keeps rescheduling at one push
//! and no search.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

#[derive(Default)]
pub(super) struct Timers(BinaryHeap<Reverse<(Instant, usize, u64)>>);

impl Timers {
    /// Puts a connection's next deadline in the heap unless an entry at or
    /// before it is there already (`timer_at`, kept by the connection).
    pub(super) fn schedule(
        &mut self,
        deadline: Option<Instant>,
        token: usize,
        generation: u64,
        timer_at: &mut Option<Instant>,
    ) {
        if let Some(d) = deadline
            && timer_at.is_none_or(|t| t > d)
        {
            self.0.push(Reverse((d, token, generation)));
            *timer_at = Some(d);
        }
    }

    /// The next entry due at `now`: its token and generation.
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<(usize, u64)> {
        let &Reverse((at, token, generation)) = self.0.peek()?;
        if at > now {
            return None;
        }
        self.0.pop();
        Some((token, generation))
    }

    /// When the earliest entry comes due.
    pub(super) fn next(&self) -> Option<Instant> {
        self.0.peek().map(|Reverse((at, _, _))| *at)
    }
}

/// The earlier of two optional instants (or durations); `None` is "never".
pub(super) fn earliest<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
