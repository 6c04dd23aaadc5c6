//! One CGI request's thread: it starts the script, feeds its stdin, reads
//! its head and body from stdout and its stderr into the log, keeps the
//! deadline, and reaps it. Its own `mio::Poll` waits on the pipes, the
//! child's pidfd and a waker the event loop's side (`pipe`) pulls. At most
//! `--cgi-max` of these run; the event loop never waits on a child.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::unix::pipe::{Receiver, Sender};
use mio::{Interest, Poll, Token};
use nix::sys::signal::Signal;

use super::head::{self, Head};
use super::pipe::{OUT_CAP, Outbox, Shared};
use crate::http::Answer;

const STDOUT: Token = Token(0);
const STDERR: Token = Token(1);
const STDIN: Token = Token(2);
const EXIT: Token = Token(3);
const WAKE: Token = Token(4);

/// After the deadline, how long a killed script's pipes may take to close
/// (a process that left its group may hold them) before they are dropped.
pub(super) const GRACE: Duration = Duration::from_secs(2);

/// A stderr line logged at most this long.
const MAX_LOG_LINE: usize = 4096;

/// A place under `--cgi-max`, given back when the request's thread ends
/// (after its child is reaped).
pub(super) struct Slot(Arc<AtomicUsize>);

impl Slot {
    pub(super) fn take(running: &Arc<AtomicUsize>, max: usize) -> Option<Slot> {
        if running.fetch_add(1, Ordering::AcqRel) >= max {
            running.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Slot(running.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What a request's thread is given.
pub(super) struct Job {
    pub script: PathBuf,
    /// The script's directory: its working directory (RFC 3875 §7.2).
    pub dir: PathBuf,
    /// `SCRIPT_NAME`, for the log.
    pub name: String,
    pub env: Vec<(String, String)>,
    /// A body read whole before (`Some`), or one that comes through the
    /// shared inbox (`streamed`), or none (stdin is `/dev/null`).
    pub body: Option<Vec<u8>>,
    pub streamed: bool,
    pub deadline: Instant,
    /// The request again, for a local redirect.
    pub redo: Redo,
    /// Held for as long as the thread runs.
    pub _slot: Slot,
}

/// What a local redirect (RFC 3875 §6.2.2) asks the server again: the
/// request's fields for another target, as a GET (a HEAD stays a HEAD),
/// as Apache does; its body was the script's.
pub(super) struct Redo {
    pub head_only: bool,
    pub minor: u8,
    /// The request's fields as `Name: value` lines, without those of its
    /// body and its connection.
    pub fields: Vec<u8>,
}

impl Redo {
    fn head(&self, target: &str) -> Vec<u8> {
        let method = if self.head_only { "HEAD" } else { "GET" };
        let mut h = format!("{method} {target} HTTP/1.{}\r\n", self.minor).into_bytes();
        h.extend_from_slice(&self.fields);
        h.extend_from_slice(b"\r\n");
        h
    }
}

/// Runs on the loop: the response the server gives `head`, or a 502 if it
/// would come later or from elsewhere (another script, an app).
fn follow(w: &mut crate::http::Writer<'_>, head: &[u8], script: &str, target: &str) {
    let Err(why) = w.reprocess(head) else {
        return;
    };
    tracing::warn!(
        script,
        location = target,
        "CGI local redirect not followed: {why}; 502"
    );
    if w.write_state() == crate::http::WriteState::Empty {
        let _ = w
            .status(502)
            .and_then(|()| w.header("Content-Type", "text/plain; charset=utf-8"))
            .and_then(|()| {
                w.write(b"502 Bad Gateway: the script's local redirect was not followed\n")
            })
            .and_then(|()| w.finish());
    }
}

/// Starts a request's thread; the event loop keeps the returned side.
pub(super) fn start(job: Job) -> io::Result<Arc<Shared>> {
    let poll = Poll::new()?;
    let shared = Shared::new(mio::Waker::new(poll.registry(), WAKE)?);
    let theirs = shared.clone();
    std::thread::Builder::new()
        .name("cgi".into())
        .spawn(move || Run::new(job, theirs, poll).run())?;
    Ok(shared)
}

struct Run {
    job: Job,
    shared: Arc<Shared>,
    poll: Poll,
    child: Option<Child>,
    pidfd: Option<OwnedFd>,
    stdin: Option<Sender>,
    stdout: Option<Receiver>,
    stderr: Option<Receiver>,
    /// Body chunks for stdin, the first written up to `written`.
    pending: VecDeque<Vec<u8>>,
    written: usize,
    body_ended: bool,
    body_dropped: bool,
    /// The head as read so far, then the parsed head until it is sent.
    head: Vec<u8>,
    parsed: Option<Head>,
    reply: Option<(crate::http::Reply, crate::http::StreamWaker)>,
    answered: bool,
    error: Option<(u16, String)>,
    timed_out: bool,
    abandoned: bool,
    /// A local redirect was followed: stdout is read to its end and
    /// dropped (the script may still be working).
    discard: bool,
    err_line: Vec<u8>,
}

impl Run {
    fn new(job: Job, shared: Arc<Shared>, poll: Poll) -> Run {
        let (pending, body_ended) = match (&job.body, job.streamed) {
            (Some(b), _) => (VecDeque::from([b.clone()]), true),
            (None, streamed) => (VecDeque::new(), !streamed),
        };
        Run {
            job,
            shared,
            poll,
            child: None,
            pidfd: None,
            stdin: None,
            stdout: None,
            stderr: None,
            pending,
            written: 0,
            body_ended,
            body_dropped: false,
            head: Vec::new(),
            parsed: None,
            reply: None,
            answered: false,
            error: None,
            timed_out: false,
            abandoned: false,
            discard: false,
            err_line: Vec::new(),
        }
    }

    fn run(mut self) {
        if let Err(e) = self.spawn() {
            self.fail(502, format!("could not be started: {e}"));
        }
        let mut events = mio::Events::with_capacity(8);
        loop {
            self.turn();
            if self.done() {
                return;
            }
            let now = Instant::now();
            let until = self.job.deadline
                + if self.timed_out {
                    GRACE
                } else {
                    Duration::ZERO
                };
            if now >= until {
                if self.timed_out {
                    return self.give_up();
                }
                self.time_out();
                continue;
            }
            // Without a pidfd (a kernel before 5.3) the exit is looked for
            // every 100 ms.
            let wait = (until - now).min(if self.pidfd.is_none() && self.child.is_some() {
                Duration::from_millis(100)
            } else {
                Duration::MAX
            });
            if let Err(e) = self.poll.poll(&mut events, Some(wait))
                && e.kind() != io::ErrorKind::Interrupted
            {
                tracing::error!(script = %self.job.name, "CGI: waiting failed: {e}");
                return self.give_up();
            }
        }
    }

    fn spawn(&mut self) -> io::Result<()> {
        let stdin = if self.body_ended && self.pending.is_empty() {
            Stdio::null()
        } else {
            Stdio::piped()
        };
        let mut cmd = Command::new(&self.job.script);
        crate::sys::process::kill_with_starting_thread(&mut cmd);
        let mut child = cmd
            .env_clear()
            .envs(self.job.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&self.job.dir)
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()?;
        let reg = self.poll.registry();
        if let Some(p) = child.stdin.take() {
            let mut p = Sender::from(p);
            p.set_nonblocking(true)?;
            reg.register(&mut p, STDIN, Interest::WRITABLE)?;
            self.stdin = Some(p);
        }
        if let Some(p) = child.stdout.take() {
            let mut p = Receiver::from(p);
            p.set_nonblocking(true)?;
            reg.register(&mut p, STDOUT, Interest::READABLE)?;
            self.stdout = Some(p);
        }
        if let Some(p) = child.stderr.take() {
            let mut p = Receiver::from(p);
            p.set_nonblocking(true)?;
            reg.register(&mut p, STDERR, Interest::READABLE)?;
            self.stderr = Some(p);
        }
        if let Ok(fd) = crate::sys::process::pidfd_open(child.id()) {
            reg.register(&mut SourceFd(&fd.as_raw_fd()), EXIT, Interest::READABLE)?;
            self.pidfd = Some(fd);
        }
        self.child = Some(child);
        Ok(())
    }

    /// Moves whatever can move; safe to call on any wake-up.
    fn turn(&mut self) {
        self.take_shared();
        self.feed_stdin();
        self.read_stdout();
        self.read_stderr();
        self.check_exit();
        self.respond();
    }

    fn take_shared(&mut self) {
        let mut s = self.shared.lock();
        self.pending.extend(s.body.drain(..));
        self.body_ended |= s.body_ended;
        self.body_dropped |= s.body_dropped;
        if self.reply.is_none() {
            self.reply = s.reply.take();
        }
        let cut = s.reader_gone && !s.out_ended;
        drop(s);
        if self.body_dropped && !self.answered {
            self.abandon("the request went before its body ended");
        }
        if cut && self.answered {
            self.abandon("the response's reader went (the client left, or a HEAD request)");
        }
    }

    fn feed_stdin(&mut self) {
        let Some(stdin) = &mut self.stdin else {
            self.pending.clear();
            return;
        };
        while let Some(chunk) = self.pending.front() {
            match stdin.write(&chunk[self.written..]) {
                Ok(n) => {
                    self.written += n;
                    if self.written == chunk.len() {
                        self.pending.pop_front();
                        self.written = 0;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // EPIPE: the script does not read the rest; not an error.
                Err(_) => {
                    self.pending.clear();
                    self.stdin = None;
                    return;
                }
            }
        }
        if self.body_ended {
            // The end of the body: the script reads EOF.
            self.stdin = None;
        }
    }

    fn read_stdout(&mut self) {
        let mut buf = [0u8; 16 * 1024];
        while let Some(out) = &mut self.stdout {
            let head_done = self.parsed.is_some() || self.answered;
            if head_done {
                let mut s = self.shared.lock();
                if s.out.len() >= OUT_CAP {
                    s.stalled = true;
                    return;
                }
            }
            let n = match out.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.stdout = None;
                    return self.fail(502, format!("its stdout failed: {e}"));
                }
            };
            if n == 0 {
                self.stdout = None;
                if !head_done {
                    return self.fail(502, "ended without a complete head".into());
                }
                self.shared.lock().out_ended = true;
                self.wake_stream();
                return;
            }
            if head_done {
                if !self.discard {
                    self.shared.lock().out.extend(&buf[..n]);
                    self.wake_stream();
                }
                continue;
            }
            self.head.extend_from_slice(&buf[..n]);
            match head::find_end(&self.head) {
                Some(end) => match head::parse(&self.head[..end]) {
                    Ok(h) => {
                        self.parsed = Some(h);
                        let rest = self.head.split_off(end);
                        self.shared.lock().out.extend(&rest);
                        self.head = Vec::new();
                    }
                    Err(why) => return self.fail(502, format!("printed no valid head: {why}")),
                },
                None if self.head.len() > head::MAX_HEAD => {
                    return self.fail(502, "printed a head over 16 KiB".into());
                }
                None => {}
            }
        }
    }

    fn read_stderr(&mut self) {
        let mut buf = [0u8; 4096];
        while let Some(err) = &mut self.stderr {
            let n = match err.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => 0,
            };
            if n == 0 {
                self.stderr = None;
                self.log_line();
                return;
            }
            for &b in &buf[..n] {
                if b == b'\n' {
                    self.log_line();
                } else if self.err_line.len() < MAX_LOG_LINE {
                    self.err_line.push(b);
                }
            }
        }
    }

    fn log_line(&mut self) {
        if !self.err_line.is_empty() {
            let line = String::from_utf8_lossy(&self.err_line);
            tracing::warn!(script = %self.job.name, "CGI stderr: {line}");
            self.err_line.clear();
        }
    }

    /// Reaps the child once it has exited, after killing what is left of
    /// its group (the zombie holds the group id until then).
    fn check_exit(&mut self) {
        let Some(child) = &mut self.child else {
            return;
        };
        let exited = match &self.pidfd {
            Some(fd) => crate::sys::process::pidfd_ended(fd.as_fd()),
            None => matches!(child.try_wait(), Ok(Some(_))),
        };
        if !exited {
            return;
        }
        crate::sys::signal_group(child, Signal::SIGKILL);
        let status = child.wait();
        self.child = None;
        if let Some(fd) = self.pidfd.take() {
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&fd.as_raw_fd()));
        }
        match status {
            Ok(s) if s.success() || self.abandoned || self.timed_out => {}
            Ok(s) => tracing::info!(script = %self.job.name, "CGI script {s}"),
            Err(e) => tracing::warn!(script = %self.job.name, "CGI script: wait failed: {e}"),
        }
    }

    /// Sends the answer once the reply is here: the error, or the head
    /// with the body streamed after it.
    fn respond(&mut self) {
        if self.answered {
            return;
        }
        let Some((reply, _)) = &self.reply else {
            return;
        };
        let sent = if let Some((status, why)) = &self.error {
            let body = format!("{status} {why}\n");
            self.answered = true;
            reply.answer(
                Answer::new(*status)
                    .header("Content-Type", "text/plain; charset=utf-8")
                    .body(body),
            )
        } else if let Some(target) = self.parsed.as_ref().and_then(|h| h.local_redirect.clone()) {
            self.parsed = None;
            self.answered = true;
            self.discard = true;
            self.shared.lock().out.clear();
            let head = self.job.redo.head(&target);
            let script = self.job.name.clone();
            reply.send(move |w| follow(w, &head, &script, &target))
        } else if let Some(h) = self.parsed.take() {
            self.answered = true;
            let out = Outbox(self.shared.clone());
            reply.send(move |w| {
                let head = (|| {
                    w.status(h.status)?;
                    for (n, v) in &h.fields {
                        w.header(n, v)?;
                    }
                    w.finish_headers()
                })();
                if head.is_err() || w.stream(Box::new(out)).is_err() {
                    // A status without a body (204, 304), or a field the
                    // engine refused: what was written ends here.
                    let _ = w.finish();
                }
            })
        } else {
            return;
        };
        if sent.is_err() {
            self.abandon("the client left before the answer");
        }
        self.wake_stream();
    }

    fn wake_stream(&self) {
        if let Some((_, waker)) = &self.reply
            && self.answered
        {
            waker.wake();
        }
    }

    /// The script failed: its group is killed, and the client gets
    /// `status` if nothing was sent yet, else a cut connection.
    fn fail(&mut self, status: u16, why: String) {
        let name = &self.job.name;
        if status == 504 {
            tracing::warn!(script = %name, "CGI script {why}");
        } else {
            tracing::error!(script = %name, "CGI script {why}");
        }
        self.stop_child();
        let mut s = self.shared.lock();
        if self.answered {
            if !s.out_ended {
                s.out_failed = true;
            }
        } else if self.error.is_none() {
            s.refuse = Some((
                status,
                if status == 504 {
                    "the script took too long"
                } else {
                    "the script failed"
                },
            ));
            self.error = Some((
                status,
                if status == 504 {
                    "Gateway Timeout: the script took too long".into()
                } else {
                    "Bad Gateway: the script failed".into()
                },
            ));
        }
        drop(s);
        self.wake_stream();
    }

    /// No one will read what the script prints: it is stopped.
    fn abandon(&mut self, why: &str) {
        if self.abandoned {
            return;
        }
        self.abandoned = true;
        tracing::debug!(script = %self.job.name, "CGI script stopped: {why}");
        self.stop_child();
    }

    fn stop_child(&mut self) {
        if let Some(c) = &self.child {
            crate::sys::signal_group(c, Signal::SIGKILL);
        }
        self.stdout = None;
        self.stdin = None;
        self.pending.clear();
    }

    fn time_out(&mut self) {
        self.timed_out = true;
        let ended = self.shared.lock().out_ended;
        if self.answered && ended {
            // Everything was read; only the process lingered.
            self.stop_child();
        } else {
            self.fail(504, "ran past --cgi-timeout; killed".into());
        }
    }

    /// Past the deadline and its grace: whatever still holds the pipes is
    /// let go, and the (killed) child reaped.
    fn give_up(mut self) {
        self.stop_child();
        self.stderr = None;
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
        self.respond();
    }

    fn done(&self) -> bool {
        self.child.is_none()
            && self.stdout.is_none()
            && self.stderr.is_none()
            && (self.answered || self.body_dropped)
    }
}
