//! What a CGI request's thread and the event loop share: the request body
//! on its way to the script's stdin, and the response body on its way from
//! its stdout, each side waking the other. One mutex per request; neither
//! side holds it across a system call.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::http::{BodySink, BodyStream, Reply, Request, Response, SinkError, StreamWaker};

/// Response bytes held for the client at most; past it the thread stops
/// reading stdout (a slow client slows the script; memory stays bounded).
pub(super) const OUT_CAP: usize = 64 * 1024;

#[derive(Default)]
pub(super) struct State {
    /// Request body chunks not yet taken by the thread.
    pub body: VecDeque<Vec<u8>>,
    /// The whole body has arrived.
    pub body_ended: bool,
    /// The request went before its body ended (the client left, or the
    /// engine refused the body): no reply will come.
    pub body_dropped: bool,
    /// The deferred reply and the waker of its streamed body.
    pub reply: Option<(Reply, StreamWaker)>,
    /// The script failed before the body ended: the body is refused so.
    pub refuse: Option<(u16, &'static str)>,
    /// Response body bytes for the client.
    pub out: VecDeque<u8>,
    /// Stdout ended: `out` is the rest of the body.
    pub out_ended: bool,
    /// The script was stopped mid-body: the client's connection is cut.
    pub out_failed: bool,
    /// The response body is gone (sent whole, the client left, a HEAD).
    pub reader_gone: bool,
    /// The thread stopped reading stdout because `out` was full.
    pub stalled: bool,
}

pub(super) struct Shared {
    state: Mutex<State>,
    /// Wakes the request's thread.
    wake: mio::Waker,
}

impl Shared {
    pub(super) fn new(wake: mio::Waker) -> Arc<Shared> {
        Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake,
        })
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding it leaves plain data behind: go on with it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn wake(&self) {
        // Fails only if the thread's epoll is gone, that is the thread ended.
        let _ = self.wake.wake();
    }

    /// Gives the thread the reply once the handler has it.
    pub(super) fn answer_later(&self, res: &mut Response<'_>, within: std::time::Duration) {
        let reply = res.defer_within(within);
        let waker = res.stream_waker();
        let mut s = self.lock();
        s.reply = Some((reply, waker));
        s.body_ended = true;
        drop(s);
        self.wake();
    }
}

/// The request body's sink (`BodyPlan::Stream`): chunks queue for the
/// thread, which writes them to stdin as the pipe takes them. At most the
/// declared length arrives (the engine checks it against `--max-body`
/// before this sink exists).
pub(super) struct Inbox {
    pub shared: Arc<Shared>,
    pub within: std::time::Duration,
    pub finished: bool,
}

impl BodySink for Inbox {
    fn data(&mut self, chunk: &[u8]) -> Result<(), SinkError> {
        let mut s = self.shared.lock();
        if let Some((status, why)) = s.refuse {
            return Err(SinkError::new(status, why));
        }
        s.body.push_back(chunk.to_vec());
        drop(s);
        self.shared.wake();
        Ok(())
    }

    fn finish(&mut self, _req: &Request<'_>, res: &mut Response<'_>) {
        self.finished = true;
        self.shared.answer_later(res, self.within);
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        if !self.finished {
            self.shared.lock().body_dropped = true;
            self.shared.wake();
        }
    }
}

/// The response body as the connection pulls it (`Writer::stream`).
pub(super) struct Outbox(pub Arc<Shared>);

impl BodyStream for Outbox {
    fn read_into(&mut self, buf: &mut Vec<u8>, max: usize) -> io::Result<bool> {
        let mut s = self.0.lock();
        let n = s.out.len().min(max);
        let (a, b) = s.out.as_slices();
        let from_a = n.min(a.len());
        buf.extend_from_slice(&a[..from_a]);
        buf.extend_from_slice(&b[..n - from_a]);
        s.out.drain(..n);
        let room = s.stalled && s.out.len() < OUT_CAP / 2;
        if room {
            s.stalled = false;
        }
        let (empty, ended, failed) = (s.out.is_empty(), s.out_ended, s.out_failed);
        drop(s);
        if room {
            self.0.wake();
        }
        if empty && failed {
            return Err(io::Error::other("the CGI script was stopped mid-body"));
        }
        Ok(!(empty && ended))
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        self.0.lock().reader_gone = true;
        self.0.wake();
    }
}
