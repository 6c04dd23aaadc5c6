//! The publisher: `XADD`s the route's messages in the order the pool gives
//! them, many per round trip (a pipeline). While Redis is away they wait
//! in a queue of at most the route's `bus-queue` messages and go out, in
//! order, once it is back; a message that finds the queue full is refused
//! and its sender's session closed with 1013 (try again later): never
//! dropped without a word.
//!
//! Exactly once across a lost connection: each entry carries `o`, this
//! publisher's random name and the message's number. A batch whose answer
//! was lost may or may not be in the stream; after connecting again the
//! publisher looks at the stream's last entries for its own numbers and
//! sends only what is not there.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use redis::Value;

use super::{BusSpec, Event, Health, Tell, connect};

/// `XADD`s per round trip at most.
const BATCH: usize = 256;
/// How many of the stream's last entries are looked through for ours
/// after a lost answer (at least the batch that was lost).
const LOOK_BACK: usize = 4 * BATCH;
/// How often the publisher looks whether the reader has started.
const WAIT_FOR_READER: Duration = Duration::from_millis(20);
/// With nothing to send, Redis is asked whether it is there this often.
const IDLE_PING: Duration = Duration::from_secs(1);

/// One message from a session, for the stream.
pub(crate) struct Pub {
    pub data: Vec<u8>,
    pub binary: bool,
    /// Whose it is: the worker (the pool's index) and the session's serial
    /// there, to close it if refused.
    pub worker: usize,
    pub serial: u64,
}

/// The pool's end: hands messages to the publisher's thread.
pub(crate) struct Publish {
    tx: mpsc::Sender<Pub>,
    /// Messages given and not yet in the stream (nor refused).
    waiting: Arc<AtomicUsize>,
    /// The pool is stopping: say when nothing waits (`Event::Drained`).
    watched: Arc<AtomicBool>,
}

impl Publish {
    #[cfg(test)]
    pub(crate) fn from_sender(tx: mpsc::Sender<Pub>) -> Publish {
        Publish {
            tx,
            waiting: Default::default(),
            watched: Default::default(),
        }
    }

    /// Queues `p`; false if the thread is gone.
    pub(crate) fn send(&self, p: Pub) -> bool {
        self.waiting.fetch_add(1, Ordering::AcqRel);
        let sent = self.tx.send(p).is_ok();
        if !sent {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
        }
        sent
    }

    /// Messages not yet in the stream.
    pub(crate) fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }

    /// From now on the pool hears when nothing waits.
    pub(crate) fn watch(&self) {
        self.watched.store(true, Ordering::Release);
    }
}

pub(super) fn start(
    key: String,
    client: redis::Client,
    spec: BusSpec,
    tell: Tell,
    placed: Arc<AtomicBool>,
) -> std::io::Result<Publish> {
    let (tx, rx) = mpsc::channel();
    let waiting = Arc::new(AtomicUsize::new(0));
    let watched = Arc::new(AtomicBool::new(false));
    let (w, watching) = (waiting.clone(), watched.clone());
    std::thread::Builder::new()
        .name("ws-bus-publish".into())
        .spawn(move || {
            Publisher {
                key,
                health: Health::new("publisher", &spec.url),
                spec,
                tell,
                rx,
                origin: origin(),
                next: 0,
                queue: VecDeque::new(),
                unsure: false,
                placed,
                waiting: w,
                watched: watching,
            }
            .run(&client)
        })?;
    Ok(Publish {
        tx,
        waiting,
        watched,
    })
}

/// A name no other publisher has (64 random bits, as hex).
fn origin() -> String {
    let mut b = [0u8; 8];
    // ring's system random; if it fails, the time still tells publishers
    // apart in practice.
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        b = (t.as_nanos() as u64 ^ u64::from(std::process::id())).to_be_bytes();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

struct Publisher {
    key: String,
    spec: BusSpec,
    health: Health,
    tell: Tell,
    rx: mpsc::Receiver<Pub>,
    origin: String,
    /// The next message's number.
    next: u64,
    /// Numbered, oldest first, not yet known to be in the stream.
    queue: VecDeque<(u64, Pub)>,
    /// A batch was sent and its answer lost: some of the queue's front may
    /// be in the stream already.
    unsure: bool,
    /// The reader knows where it starts: messages may go.
    placed: Arc<AtomicBool>,
    /// Shared with `Publish`.
    waiting: Arc<AtomicUsize>,
    watched: Arc<AtomicBool>,
}

impl Publisher {
    fn run(&mut self, client: &redis::Client) {
        let mut conn: Option<redis::Connection> = None;
        loop {
            if !self.placed.load(Ordering::Acquire) {
                if !self.take_for(WAIT_FOR_READER) {
                    return;
                }
                continue;
            }
            if conn.is_none() {
                match connect(client).and_then(|mut c| {
                    self.skip_published(&mut c)?;
                    Ok(c)
                }) {
                    Ok(c) => {
                        self.health.connected();
                        conn = Some(c);
                    }
                    Err(e) => {
                        self.health.lost(&e);
                        let wait = self.health.next_backoff();
                        if !self.take_for(wait) {
                            return;
                        }
                        continue;
                    }
                }
            }
            let Some(c) = conn.as_mut() else { continue };
            if self.queue.is_empty() {
                match self.rx.recv_timeout(IDLE_PING) {
                    Ok(p) => self.take(p),
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        // Idle: is Redis still there? (For the log and the
                        // gauge; a message would find out too.)
                        if let Err(e) = redis::cmd("PING").query::<()>(c) {
                            conn = None;
                            self.health.lost(&e);
                        }
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => return,
                }
            }
            while let Ok(p) = self.rx.try_recv() {
                self.take(p);
            }
            if let Err(e) = self.send_batch(c) {
                conn = None;
                self.unsure = true;
                self.health.lost(&e);
            }
        }
    }

    /// A message from the pool: numbered and queued, or refused if the
    /// queue is full (Redis away for a while).
    fn take(&mut self, p: Pub) {
        if self.queue.len() >= self.spec.queue {
            crate::metrics::inc(crate::metrics::M::BusRefused);
            (self.tell)(Event::Refused {
                worker: p.worker,
                serial: p.serial,
            });
            self.done(1);
            return;
        }
        self.next += 1;
        self.queue.push_back((self.next, p));
    }

    /// `n` messages are in the stream or refused; the pool hears when
    /// nothing waits any more, once it stops.
    fn done(&self, n: usize) {
        if self.waiting.fetch_sub(n, Ordering::AcqRel) == n && self.watched.load(Ordering::Acquire)
        {
            (self.tell)(Event::Drained);
        }
    }

    /// Takes what arrives for `wait`; false once the pool is gone.
    fn take_for(&mut self, wait: Duration) -> bool {
        let until = Instant::now() + wait;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return true;
            }
            match self.rx.recv_timeout(left) {
                Ok(p) => self.take(p),
                Err(mpsc::RecvTimeoutError::Timeout) => return true,
                Err(mpsc::RecvTimeoutError::Disconnected) => return false,
            }
        }
    }

    /// `XADD`s the queue's front in one pipeline; what Redis took leaves
    /// the queue.
    fn send_batch(&mut self, c: &mut redis::Connection) -> redis::RedisResult<()> {
        let n = self.queue.len().min(BATCH);
        let mut pipe = redis::pipe();
        for (num, p) in self.queue.iter().take(n) {
            pipe.cmd("XADD")
                .arg(&self.key)
                .arg("MAXLEN")
                .arg("~")
                .arg(self.spec.maxlen)
                .arg("*")
                .arg("o")
                .arg(format!("{}:{num}", self.origin))
                .arg("d")
                .arg(&p.data)
                .arg("b")
                .arg(if p.binary { "1" } else { "0" });
        }
        let _: Vec<Value> = pipe.query(c)?;
        self.queue.drain(..n);
        self.unsure = false;
        self.done(n);
        crate::metrics::add(crate::metrics::M::BusPublished, n as u64);
        Ok(())
    }

    /// After a lost answer: drops from the queue what the stream already
    /// has (ours, numbered up to the highest found). Entries go in in
    /// order, so everything before the highest went in too.
    fn skip_published(&mut self, c: &mut redis::Connection) -> redis::RedisResult<()> {
        if !self.unsure {
            return Ok(());
        }
        let v: Value = redis::cmd("XREVRANGE")
            .arg(&self.key)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(LOOK_BACK)
            .query(c)?;
        let ours = format!("{}:", self.origin);
        let highest = ours_in(v, &ours).max();
        if let Some(h) = highest.filter(|h| self.queue.front().is_some_and(|(n, _)| n <= h)) {
            let before = self.queue.len();
            while self.queue.front().is_some_and(|(n, _)| *n <= h) {
                self.queue.pop_front();
                self.done(1);
            }
            tracing::info!(
                stream = %self.key,
                "broadcast bus: {} message(s) whose answer was lost were in the stream already",
                before - self.queue.len()
            );
        }
        self.unsure = false;
        Ok(())
    }
}

/// The numbers of the entries whose `o` starts with `ours`.
fn ours_in(v: Value, ours: &str) -> impl Iterator<Item = u64> {
    let Value::Array(list) = v else {
        return Vec::new().into_iter();
    };
    let mut found = Vec::new();
    for e in list {
        let Value::Array(mut e) = e else { continue };
        let Some(Value::Array(fields)) = e.pop() else {
            continue;
        };
        for pair in fields.chunks(2) {
            if let [Value::BulkString(k), Value::BulkString(v)] = pair
                && k == b"o"
                && let Some(n) = std::str::from_utf8(v)
                    .ok()
                    .and_then(|v| v.strip_prefix(ours))
                    .and_then(|n| n.parse().ok())
            {
                found.push(n);
            }
        }
    }
    found.into_iter()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_its_own_numbers_among_the_last_entries() {
        let e = |o: &str| {
            Value::Array(vec![
                Value::BulkString(b"7-0".to_vec()),
                Value::Array(vec![
                    Value::BulkString(b"o".to_vec()),
                    Value::BulkString(o.as_bytes().to_vec()),
                    Value::BulkString(b"d".to_vec()),
                    Value::BulkString(b"x".to_vec()),
                ]),
            ])
        };
        let v = Value::Array(vec![e("ab:9"), e("cd:40"), e("ab:8"), e("abc:50")]);
        let mut got: Vec<u64> = ours_in(v, "ab:").collect();
        got.sort();
        assert_eq!(got, vec![8, 9]);
        assert_ne!(origin(), origin());
    }
}
