//! Blocking work away from the event loop. A handler runs on the loop, so
//! it must not block; for work that does (a database call, a slow file
//! system, a computation), defer the response and run the work here: its
//! result wakes the loop through the response's `Reply`.
//!
//! ```
//! use std::io::{Read, Write};
//! use std::sync::Arc;
//! use handoff::blocking::ThreadPool;
//! use handoff::{Options, Request, Response, Server};
//!
//! let pool = Arc::new(ThreadPool::new(2, 64)?);
//! let p = pool.clone();
//! let mut server = Server::new(Options::default(), move |req: &Request<'_>, res: &mut Response<'_>| {
//!     let n: u64 = req.path().trim_start_matches('/').parse().unwrap_or(10);
//!     let reply = res.defer();
//!     let queued = p.execute(move || {
//!         // Blocking is fine here: this is a pool thread.
//!         let sum: u64 = (1..=n).sum();
//!         reply.send(move |w| {
//!             w.status(200).unwrap();
//!             w.write(format!("sum to {n} is {sum}").as_bytes()).unwrap();
//!             w.finish().unwrap();
//!         });
//!     });
//!     if queued.is_err() {
//!         // The pool is full; the deferred reply, dropped unanswered,
//!         // becomes a 500 (a real handler might answer 503 instead).
//!     }
//! })?;
//! let (ours, mut client) = std::os::unix::net::UnixStream::pair()?;
//! server.add_socket(ours)?;
//! client.write_all(b"GET /100 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
//! server.run()?;
//! let mut answer = String::new();
//! client.read_to_string(&mut answer)?;
//! assert!(answer.ends_with("sum to 100 is 5050\r\n0\r\n\r\n"));
//! # Ok::<(), std::io::Error>(())
//! ```

use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};

type Task = Box<dyn FnOnce() + Send>;

/// A fixed set of threads taking tasks from a bounded queue.
pub struct ThreadPool {
    tx: Option<SyncSender<Task>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// The queue is full (or the pool is shutting down).
#[derive(Debug)]
pub struct Busy;

impl ThreadPool {
    /// `threads` workers and room for `queue` tasks waiting.
    pub fn new(threads: usize, queue: usize) -> std::io::Result<ThreadPool> {
        let (tx, rx) = sync_channel::<Task>(queue);
        let rx = Arc::new(Mutex::new(rx));
        let threads = (0..threads.max(1))
            .map(|i| {
                let rx = rx.clone();
                std::thread::Builder::new()
                    .name(format!("blocking-{i}"))
                    .spawn(move || {
                        loop {
                            let task = match rx.lock() {
                                Ok(r) => r.recv(),
                                Err(_) => return,
                            };
                            match task {
                                // A panicking task drops its reply, which
                                // answers its client; the thread goes on.
                                Ok(t) => {
                                    let _ =
                                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(t));
                                }
                                Err(_) => return,
                            }
                        }
                    })
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(ThreadPool {
            tx: Some(tx),
            threads,
        })
    }

    /// Queues `task`; `Err(Busy)` if the queue is full.
    pub fn execute(&self, task: impl FnOnce() + Send + 'static) -> Result<(), Busy> {
        match self.tx.as_ref().map(|tx| tx.try_send(Box::new(task))) {
            Some(Ok(())) => Ok(()),
            Some(Err(TrySendError::Full(_))) | Some(Err(TrySendError::Disconnected(_))) | None => {
                Err(Busy)
            }
        }
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        drop(self.tx.take());
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
