//! The inbox: how other threads reach the loop. Sockets submitted by the
//! control socket's threads, deferred responses' jobs, and plain wake-ups
//! (signals) all arrive here and wake `epoll_wait` through one `Waker`.

use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use mio::Waker;

use super::options::{Added, Socket};
use crate::http::reply::{Letter, Mailer, ReplyKey};

/// A socket submitted from another thread, with where to send the outcome.
pub struct Submission {
    /// The socket to serve.
    pub socket: Socket,
    /// Bytes already read from it.
    pub pre_read: Vec<u8>,
    /// Where the outcome is sent, if anyone waits for it.
    pub reply: Option<mpsc::Sender<io::Result<Added>>>,
}

/// Names a submission in the inbox until the loop takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticket(u64);

/// What came for a response: a deferred response's job, word that its
/// reply was dropped, or a wake-up for its streamed body.
pub(super) type Mail = (ReplyKey, Letter);

/// What other threads sent since the loop last looked. The inbox only
/// carries messages; what they mean is the loop's (`Server::deliver`).
pub(super) struct Delivery {
    pub(super) commands: Vec<Command>,
    /// Sockets to adopt, each sender told the outcome.
    pub(super) sockets: Vec<Submission>,
    pub(super) mail: Vec<Mail>,
}

/// What another thread may ask of the loop as a whole (the thread running
/// the lifecycle, for the other loops of `--threads`).
pub(super) enum Command {
    Drain,
    Close,
    Tls(Arc<rustls::ServerConfig>),
    HandOver(super::Mover),
}

/// A handle other threads use to give the server sockets (the control
/// socket's thread) or just to wake its loop (signals). Cheap to clone.
#[derive(Clone)]
pub struct Inbox {
    queue: Arc<Mutex<Vec<(Ticket, Submission)>>>,
    /// The loop has ended (`close_if_idle`): nothing more is queued.
    /// Read and written under `queue`'s lock.
    ended: Arc<std::sync::atomic::AtomicBool>,
    tickets: Arc<AtomicU64>,
    replies: Arc<Mutex<Vec<Mail>>>,
    commands: Arc<Mutex<Vec<Command>>>,
    /// Connections the loop serves now (kept by its connection table).
    pub(super) load: Arc<AtomicUsize>,
    waker: Arc<Waker>,
}

fn take<T>(m: &Mutex<Vec<T>>) -> Vec<T> {
    std::mem::take(&mut *m.lock().unwrap_or_else(|e| e.into_inner()))
}

impl Inbox {
    pub(super) fn new(waker: Waker) -> Inbox {
        Inbox {
            queue: Arc::default(),
            ended: Arc::default(),
            tickets: Arc::default(),
            replies: Arc::default(),
            commands: Arc::default(),
            load: Arc::default(),
            waker: Arc::new(waker),
        }
    }

    /// Queues a socket for `add_stream`; the loop adopts it on its next
    /// turn and sends the outcome to `reply`. The ticket can take the
    /// submission back while it is still queued (`cancel`).
    pub fn submit(&self, s: Submission) -> io::Result<Ticket> {
        let t = Ticket(self.tickets.fetch_add(1, Ordering::Relaxed));
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((t, s));
        self.waker.wake()?;
        Ok(t)
    }

    /// `submit`, unless the loop has ended (`close_if_idle`): then the
    /// submission comes back, for another loop.
    pub(crate) fn try_submit(&self, s: Submission) -> Result<Ticket, Box<Submission>> {
        let t = Ticket(self.tickets.fetch_add(1, Ordering::Relaxed));
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if self.ended.load(Ordering::Relaxed) {
            return Err(Box::new(s));
        }
        q.push((t, s));
        drop(q);
        let _ = self.waker.wake();
        Ok(t)
    }

    /// A loop about to end: ends its inbox if nothing is queued in it
    /// (`try_submit` refuses from then on), and says whether it did. With
    /// something queued, the loop takes it first.
    pub(crate) fn close_if_idle(&self) -> bool {
        let q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if q.is_empty() {
            self.ended.store(true, Ordering::Relaxed);
        }
        q.is_empty()
    }

    /// Takes a submission back if the loop has not taken it yet: `true`
    /// means the socket was dropped here and the loop will never see it;
    /// `false`, that the loop has it and will send its outcome. The loop
    /// takes the whole queue under the same lock, so there is no third case.
    pub fn cancel(&self, t: Ticket) -> bool {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        match q.iter().position(|(k, _)| *k == t) {
            Some(i) => {
                q.swap_remove(i);
                true
            }
            None => false,
        }
    }

    /// Connections the loop is serving now.
    pub fn load(&self) -> usize {
        self.load.load(Ordering::Relaxed)
    }

    /// Asks the loop to `drain` on its next turn.
    pub fn drain(&self) -> io::Result<()> {
        self.command(Command::Drain)
    }

    /// Asks the loop to `close` on its next turn.
    pub fn close(&self) -> io::Result<()> {
        self.command(Command::Close)
    }

    /// Asks the loop to `hand_over` its connections to `mover`.
    pub fn hand_over(&self, mover: super::Mover) -> io::Result<()> {
        self.command(Command::HandOver(mover))
    }

    /// Gives the loop a new TLS configuration (`set_tls`).
    pub fn set_tls(&self, cfg: Arc<rustls::ServerConfig>) -> io::Result<()> {
        self.command(Command::Tls(cfg))
    }

    fn command(&self, c: Command) -> io::Result<()> {
        self.commands
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(c);
        self.waker.wake()
    }

    /// Makes the loop's current `step` return.
    pub fn wake(&self) -> io::Result<()> {
        self.waker.wake()
    }

    /// Everything sent since the last call, for the loop to act on in the
    /// order `Delivery` gives: commands, sockets, deferred responses' jobs.
    pub(super) fn take(&self) -> Delivery {
        Delivery {
            commands: take(&self.commands),
            sockets: take(&self.queue).into_iter().map(|(_, s)| s).collect(),
            mail: take(&self.replies),
        }
    }
}

/// Deferred responses reach the loop through the inbox too.
impl Mailer for Inbox {
    fn send(&self, key: ReplyKey, letter: Letter) {
        self.replies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((key, letter));
        let _ = self.waker.wake();
    }
}

/// The inboxes of several loops serving together (`--threads`): a
/// connection goes to the least-loaded loop, a listener to every loop.
#[derive(Clone)]
pub struct Loops(Vec<Inbox>);

impl Loops {
    /// Loops to spread sockets over; the first is the one a listener is
    /// adopted by first (its answer is the one reported).
    pub fn new(inboxes: Vec<Inbox>) -> Loops {
        assert!(!inboxes.is_empty(), "Loops needs at least one inbox");
        Loops(inboxes)
    }

    /// The loop serving the fewest connections now.
    pub fn least_loaded(&self) -> &Inbox {
        self.0.iter().min_by_key(|i| i.load()).unwrap_or(&self.0[0])
    }

    /// Every loop, the first first.
    pub fn all(&self) -> &[Inbox] {
        &self.0
    }
}
