//! What every mio loop in the process does the same way: the server's
//! (`server/`), the WebSocket pool's thread (`ws/pool/`) and the worker's
//! (`ws/worker/`). Each owns its `Poll` and its tokens; this is only the
//! skeleton around them: the waker's token, one wait per turn in which an
//! interrupted `epoll_wait` (a signal) is a turn with no events, and the
//! turn's log lines gathered into one write.

use std::io;
use std::time::Duration;

use mio::{Events, Poll, Token, Waker};

/// The token of a loop's waker; slab keys never get near it.
pub(crate) const WAKER: usize = usize::MAX;

/// A waker for `poll`, on `WAKER`: other threads wake the loop with it.
pub(crate) fn waker(poll: &Poll) -> io::Result<Waker> {
    Waker::new(poll.registry(), Token(WAKER))
}

/// One turn of a loop, from its wait to the end of its handling: log lines
/// written meanwhile are batched, and written together when it drops.
#[must_use = "the turn's log lines are written when it drops"]
pub(crate) struct Turn(());

impl Drop for Turn {
    fn drop(&mut self) {
        crate::log::flush();
        crate::log::batch(false);
    }
}

/// Waits up to `timeout` for events and begins a turn. A signal
/// (`EINTR`) ends the wait with no events, which is no error: the loop
/// looks at its flags and deadlines and waits again. Any other error is
/// the loop's to decide on.
pub(crate) fn wait(
    poll: &mut Poll,
    events: &mut Events,
    timeout: Option<Duration>,
) -> io::Result<Turn> {
    crate::log::batch(true);
    let turn = Turn(());
    match poll.poll(events, timeout) {
        Ok(()) => Ok(turn),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => {
            events.clear();
            Ok(turn)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn a_wake_from_another_thread_ends_the_wait_with_the_wakers_token() {
        let mut poll = Poll::new().unwrap();
        let w = std::sync::Arc::new(waker(&poll).unwrap());
        let w2 = w.clone();
        let t = std::thread::spawn(move || w2.wake().unwrap());
        let mut events = Events::with_capacity(4);
        let start = Instant::now();
        let turn = wait(&mut poll, &mut events, Some(Duration::from_secs(10))).unwrap();
        drop(turn);
        t.join().unwrap();
        assert!(start.elapsed() < Duration::from_secs(5));
        assert!(events.iter().any(|e| e.token() == Token(WAKER)));
    }
}
