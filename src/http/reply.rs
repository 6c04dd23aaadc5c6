//! Deferred responses seen from the handler's side: the `Reply` a handler
//! keeps (`Response::defer`), which sends jobs to the event loop from any
//! thread and hears when its response can no longer be written (the client
//! left, or it ended); the futures that complete a reply, polled on the
//! loop; and the waker of a streamed body.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use super::deferred::{Misuse, Writer};
use super::link::Shared;

/// Which response a reply completes: the connection (its token and
/// generation in the server) and the request on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ReplyKey {
    pub token: usize,
    pub generation: u64,
    pub id: u64,
}

/// Work to run on the event loop with the response's writer.
pub(crate) type Job = Box<dyn FnOnce(&mut Writer<'_>) + Send>;

/// What reaches the loop for a response.
pub(crate) enum Letter {
    /// Run this with the response's writer.
    Job(Job),
    /// Every handle to the reply was dropped.
    Dropped,
    /// Drive the connection: a streamed body has more (`StreamWaker`).
    Wake,
}

/// How replies reach the event loop (the server's inbox, which wakes it).
pub(crate) trait Mailer: Send + Sync {
    fn send(&self, key: ReplyKey, letter: Letter);
}

struct ReplyInner {
    key: ReplyKey,
    mailer: Arc<dyn Mailer>,
    shared: Arc<Shared>,
}

impl Drop for ReplyInner {
    fn drop(&mut self) {
        self.mailer.send(self.key, Letter::Dropped);
    }
}

/// The response can no longer be written: its client left (or the
/// connection was closed at a deadline or a shutdown), or it has ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gone;

impl std::fmt::Display for Gone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the response is over (its client left, or it ended)")
    }
}

impl std::error::Error for Gone {}

/// A response the handler deferred (`Response::defer`): send it from any
/// thread, in one go or in steps, or complete it with a future
/// ([`Reply::spawn`]). Cheap to clone. When every clone is dropped
/// without the response finished, the client gets a 500 (or, if the
/// response had begun, the connection is cut: a truncated body must not
/// look whole).
#[derive(Clone)]
pub struct Reply(Arc<ReplyInner>);

impl Reply {
    pub(crate) fn new(key: ReplyKey, mailer: Arc<dyn Mailer>, shared: Arc<Shared>) -> Reply {
        Reply(Arc::new(ReplyInner {
            key,
            mailer,
            shared,
        }))
    }

    /// Runs `f` on the event loop with the response's writer; `Err(Gone)`
    /// (and `f` is dropped) once the response can no longer be written, so
    /// a producer stops when its client leaves.
    pub fn send(&self, f: impl FnOnce(&mut Writer<'_>) + Send + 'static) -> Result<(), Gone> {
        if self.is_gone() {
            return Err(Gone);
        }
        self.0.mailer.send(self.0.key, Letter::Job(Box::new(f)));
        Ok(())
    }

    /// Sends a whole response.
    pub fn answer(&self, a: Answer) -> Result<(), Gone> {
        self.send(move |w| a.write(w))
    }

    /// Has the response become impossible to write (see [`Gone`])?
    pub fn is_gone(&self) -> bool {
        self.0.shared.over.load(Ordering::Acquire)
    }

    /// A future that is ready once the response can no longer be written:
    /// await it beside the work (a `select`) to stop when the client leaves.
    pub fn gone(&self) -> GoneFuture {
        GoneFuture(self.0.shared.clone())
    }

    /// Completes the response with `fut`, polled on the event loop (a job
    /// per wake-up: its waker posts to the loop's inbox). For futures that
    /// need no runtime of their own (channels, other replies, `gone`);
    /// work that needs tokio's goes to `Reply::spawn_on` (feature `tokio`). The future is
    /// dropped, unfinished, when the client leaves.
    pub fn spawn(self, fut: impl Future<Output = Answer> + Send + 'static) {
        let task = Arc::new(Task {
            fut: Mutex::new(Some(Box::pin(fut))),
            reply: self,
            queued: AtomicBool::new(false),
        });
        task.wake();
    }

    /// Completes the response with `fut` on a tokio runtime the program
    /// already has; the task ends early when the client leaves.
    #[cfg(feature = "tokio")]
    pub fn spawn_on(
        self,
        rt: &tokio::runtime::Handle,
        fut: impl Future<Output = Answer> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        rt.spawn(async move {
            let gone = self.gone();
            tokio::pin!(fut);
            tokio::pin!(gone);
            let answer = std::future::poll_fn(|cx| match fut.as_mut().poll(cx) {
                Poll::Ready(a) => Poll::Ready(Some(a)),
                Poll::Pending => gone.as_mut().poll(cx).map(|()| None),
            })
            .await;
            if let Some(a) = answer {
                let _ = self.answer(a);
            }
        })
    }
}

/// Ready once the reply's response can no longer be written ([`Reply::gone`]).
pub struct GoneFuture(Arc<Shared>);

impl Future for GoneFuture {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0.over.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        let mut waiting = self.0.waiting.lock().unwrap_or_else(|e| e.into_inner());
        // Checked again under the lock: `Link::drop` takes it after setting.
        if self.0.over.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        if !waiting.iter().any(|w| w.will_wake(cx.waker())) {
            waiting.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// A whole response for a deferred reply: status (200 unless set), header
/// fields and body.
#[derive(Clone, Debug)]
pub struct Answer {
    status: u16,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

impl Answer {
    /// A response with this status and no body yet.
    pub fn new(status: u16) -> Answer {
        Answer {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds a header field.
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Answer {
        self.headers
            .push((name.to_string(), value.as_ref().to_vec()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Answer {
        self.body = body.into();
        self
    }

    /// Puts it in a response being answered now (a middleware's refusal).
    pub fn apply(self, res: &mut super::Response<'_>) {
        res.status(self.status);
        for (n, v) in &self.headers {
            res.header(n, v);
        }
        res.body(self.body);
    }

    fn write(self, w: &mut Writer<'_>) {
        let r = (|| -> Result<(), Misuse> {
            w.status(self.status)?;
            for (n, v) in &self.headers {
                w.header(n, v)?;
            }
            w.header("Content-Length", self.body.len().to_string())?;
            w.write(&self.body)?;
            w.finish()
        })();
        // Misuse (a framing header among the fields) leaves the response
        // unfinished: once the reply is dropped the client gets a 500 and
        // the log says a deferred response was dropped unanswered.
        let _ = r;
    }
}

/// A future completing a reply, polled on the event loop.
struct Task {
    fut: Mutex<Option<Pin<Box<dyn Future<Output = Answer> + Send>>>>,
    reply: Reply,
    /// A poll is in the mail: wake-ups meanwhile need no other.
    queued: AtomicBool,
}

impl Wake for Task {
    fn wake(self: Arc<Self>) {
        if self.queued.swap(true, Ordering::AcqRel) {
            return;
        }
        let task = self.clone();
        // Gone: the job is not sent, the task and its future are dropped
        // with the last waker.
        let _ = self.reply.send(move |w| task.poll(w));
    }
}

impl Task {
    fn poll(self: Arc<Self>, w: &mut Writer<'_>) {
        self.queued.store(false, Ordering::Release);
        let waker = Waker::from(self.clone());
        let mut slot = self.fut.lock().unwrap_or_else(|e| e.into_inner());
        let Some(fut) = slot.as_mut() else {
            return;
        };
        if let Poll::Ready(answer) = fut.as_mut().poll(&mut Context::from_waker(&waker)) {
            *slot = None;
            answer.write(w);
        }
    }
}

/// Wakes a streamed body's connection (`Response::stream_waker`): a
/// `BodyStream` that had nothing to give is asked again once woken, so a
/// stream can be paced by a timer or fed by another thread. Cheap to
/// clone; waking a connection that is gone does nothing.
#[derive(Clone)]
pub struct StreamWaker {
    key: ReplyKey,
    mailer: Arc<dyn Mailer>,
}

impl StreamWaker {
    pub(crate) fn new(key: ReplyKey, mailer: Arc<dyn Mailer>) -> StreamWaker {
        StreamWaker { key, mailer }
    }

    /// Asks the loop to pull the stream again.
    pub fn wake(&self) {
        self.mailer.send(self.key, Letter::Wake);
    }

    /// The same, as a `std::task::Waker` (for a stream fed by a future).
    pub fn waker(&self) -> Waker {
        Waker::from(Arc::new(self.clone()))
    }
}

impl Wake for StreamWaker {
    fn wake(self: Arc<Self>) {
        StreamWaker::wake(&self);
    }
}
