//! What a deferred response's `Reply` and the engine share: whether the
//! response can still be written, its own deadline, and who waits to hear
//! it is over. Apart from `reply.rs` so that the engine's step-wise writer
//! (`deferred.rs`) holds it without depending on the handler's side.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Waker;

/// What a reply and the engine share: whether the response can still be
/// written, and who waits to hear that it cannot. The engine holds a
/// `Link` in the response's state; dropping it (the response ended, or
/// the connection is gone) tells every `Reply`.
#[derive(Default)]
pub(crate) struct Shared {
    pub(crate) over: AtomicBool,
    pub(crate) waiting: Mutex<Vec<Waker>>,
}

/// The engine's end of `Shared` (see there).
pub(crate) struct Link(pub(crate) Arc<Shared>);

impl Drop for Link {
    fn drop(&mut self) {
        self.0.over.store(true, Ordering::Release);
        let waiting =
            std::mem::take(&mut *self.0.waiting.lock().unwrap_or_else(|e| e.into_inner()));
        waiting.into_iter().for_each(Waker::wake);
    }
}

/// A deferred response, for the engine to keep while it is written.
pub(crate) struct Deferral {
    /// Held for its `Drop`: when the response ends or its connection
    /// goes, every `Reply` hears it.
    #[allow(dead_code)]
    pub(crate) link: Link,
    /// Its own deadline (`Response::defer_within`).
    pub(crate) within: Option<std::time::Duration>,
}
