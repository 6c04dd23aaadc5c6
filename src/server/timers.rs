//! Connection deadlines in one heap. Entries are not removed one by one: a
//! stale one is recognised when it comes due (the slot's generation
//! changed, or the connection's deadline moved later), which keeps
//! rescheduling at one push and no search. Closed connections' entries
//! would stay until due, up to the longest timeout: under a flood of short
//! connections that is every connection of the last minute, so the heap
//! is swept when the stale entries outnumber the live ones (`sweep`).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

#[derive(Default)]
pub(super) struct Timers(BinaryHeap<Reverse<(Instant, usize, u64)>>);

impl Timers {
    /// Puts a connection's next deadline in the heap unless an entry at or
    /// before it is there already (`timer_at`, kept by the connection).
    #[inline]
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

    /// Entries, stale ones included.
    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    /// Keeps the entries `live` says a connection still waits on, and gives
    /// back the room the others took.
    pub(super) fn sweep(&mut self, mut live: impl FnMut(usize, u64, Instant) -> bool) {
        self.0
            .retain(|Reverse((at, token, generation))| live(*token, *generation, *at));
        let keep = (self.0.len() * 2).max(1024);
        if self.0.capacity() > 2 * keep {
            self.0.shrink_to(keep);
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_sweep_keeps_the_live_entries_in_order_and_gives_back_the_room() {
        let mut t = Timers::default();
        let now = Instant::now();
        for token in 0..100_000usize {
            let mut at = None;
            let due = now + Duration::from_millis(token as u64 % 997);
            t.schedule(Some(due), token, 1, &mut at);
        }
        let live = |token: usize| token.is_multiple_of(1000);
        t.sweep(|token, generation, _| generation == 1 && live(token));
        assert_eq!(t.len(), 100);
        assert!(t.0.capacity() <= 2048, "{}", t.0.capacity());
        let mut seen = 0;
        while let Some((token, _)) = t.pop_due(now + Duration::from_secs(1)) {
            assert!(live(token));
            seen += 1;
        }
        assert_eq!(seen, 100);
    }
}
