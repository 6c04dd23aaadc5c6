//! Signals reach an event loop through a thread that forwards each one on
//! a channel and wakes the loop: the loop acts on them between turns, never
//! in a handler.

use std::sync::mpsc;

use crate::server::Inbox;

/// Forwards `which` to the returned channel, waking the loop behind
/// `waker` for each.
pub(crate) fn forward(waker: Inbox, which: &[i32]) -> std::io::Result<mpsc::Receiver<i32>> {
    let (tx, rx) = mpsc::channel();
    let mut signals = signal_hook::iterator::Signals::new(which)?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if tx.send(sig).is_err() {
                    break;
                }
                let _ = waker.wake();
            }
        })?;
    Ok(rx)
}
