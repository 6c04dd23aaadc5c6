//! Lines an HTTP process lends connections on, read by this loop itself:
//! an app process's side of `--app` (`handoff::worker`, `docs/apps.md`).
//! A `PASS_CONNECTION` is adopted at once, as `add_stream` with its bytes,
//! and answered `ACK` (or `REFUSE`); each connection goes back on its line
//! once idle (`Socket::returning`). No thread: the line is one more source
//! of this loop, as a listener is. A token space of its own: the
//! listening socket (if any) is `LINE_TOKENS`, line `k` is
//! `LINE_TOKENS + 1 + k`.

use std::io::{self, IoSlice};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use mio::unix::SourceFd;
use mio::{Interest, Token};
use slab::Slab;

use super::returning::Keep;
use super::{Mover, Server, Socket};
use crate::handoff::outbox::{self, Outbox};
use crate::handoff::wire::{self, Kind, Message};
use crate::sys::{self, Addr, fdpass};

pub(super) const LINE_TOKENS: usize = usize::MAX / 8;

#[derive(Default)]
pub(super) struct Lines {
    listener: Option<OwnedFd>,
    lines: Slab<Line>,
    /// Where a message is read into: one for every line, made once (a
    /// record may be 64 KiB, not to be zeroed for each read).
    buf: Vec<u8>,
}

struct Line {
    fd: Arc<OwnedFd>,
    /// Where this line's connections go when idle; each holds a clone, so
    /// the count says how many are here.
    back: Mover,
    /// Answers the line could not take yet (registered writable too
    /// while there are any).
    unsent: Outbox,
    /// Asked to finish (`FINISH`, its ID), and whether "none left" was
    /// said since the last connection came.
    finishing: Option<u64>,
    said: bool,
    /// Set with `finishing`: what the lender let us keep goes back now.
    keep_ends: Arc<AtomicBool>,
}

impl Lines {
    /// Nothing to read from: no line open, no listener.
    pub(super) fn is_empty(&self) -> bool {
        self.listener.is_none() && self.lines.is_empty()
    }
}

impl Server {
    /// Reads lent connections from `line` (a connected `SOCK_SEQPACKET`
    /// socket) in this loop.
    pub(crate) fn add_line(&mut self, line: OwnedFd) -> io::Result<()> {
        sys::prepare_adopted(line.as_fd())?;
        let key = self.lines.lines.vacant_key();
        // Readable only: a line asked for writable too would wake this
        // loop each time the other side read a message. Writable is asked
        // for only while an answer waits for room (`flush_line`).
        self.poll.registry().register(
            &mut SourceFd(&line.as_raw_fd()),
            Token(LINE_TOKENS + 1 + key),
            Interest::READABLE,
        )?;
        let fd = Arc::new(line);
        self.lines.lines.insert(Line {
            back: back_on(fd.clone()),
            fd,
            unsent: Outbox::default(),
            finishing: None,
            said: false,
            keep_ends: Arc::default(),
        });
        Ok(())
    }

    /// Takes every HTTP process that connects to `listener` (a listening
    /// `SOCK_SEQPACKET` socket) as a line.
    pub(crate) fn add_line_listener(&mut self, listener: OwnedFd) -> io::Result<()> {
        sys::prepare_adopted(listener.as_fd())?;
        self.poll.registry().register(
            &mut SourceFd(&listener.as_raw_fd()),
            Token(LINE_TOKENS),
            Interest::READABLE,
        )?;
        self.lines.listener = Some(listener);
        Ok(())
    }

    /// A readiness event on a line or the line listener.
    pub(super) fn line_ready(&mut self, token: usize) {
        if token == LINE_TOKENS {
            return self.accept_lines();
        }
        let key = token - LINE_TOKENS - 1;
        self.flush_line(key);
        self.read_line(key);
    }

    fn accept_lines(&mut self) {
        loop {
            let Some(l) = &self.lines.listener else {
                return;
            };
            match sys::accept(l.as_fd()) {
                Ok((fd, _)) => {
                    if let Err(e) = self.add_line(fd) {
                        tracing::error!("app line: {e}");
                    }
                }
                Err(e) if sys::would_block(&e) => return,
                Err(e) => return tracing::warn!("app line: accept: {e}"),
            }
        }
    }

    fn read_line(&mut self, key: usize) {
        let mut buf = std::mem::take(&mut self.lines.buf);
        buf.resize(wire::MAX_MESSAGE, 0);
        self.read_line_into(key, &mut buf);
        self.lines.buf = buf;
    }

    fn read_line_into(&mut self, key: usize, buf: &mut [u8]) {
        loop {
            let Some(line) = self.lines.lines.get(key) else {
                return;
            };
            let fd = line.fd.clone();
            let rec = match fdpass::recv_with_fds(fd.as_fd(), buf) {
                Ok(Some(r)) => r,
                Err(e) if sys::would_block(&e) => return,
                // Closed, or failed: the HTTP process is gone. Its
                // connections here stay and are served here.
                _ => return self.drop_line(key),
            };
            let msg = Message::decode(&buf[..rec.len]);
            if let Ok(m) = &msg
                && m.kind() == Kind::Finish
            {
                if let Some(l) = self.lines.lines.get_mut(key) {
                    (l.finishing, l.said) = (Some(m.id), false);
                    l.keep_ends.store(true, Ordering::Relaxed);
                }
                self.conns
                    .return_kept(&mut self.shared, self.poll.registry());
                continue;
            }
            let answer = match self.take_lent(msg, rec, key) {
                Ok(id) => {
                    if let Some(l) = self.lines.lines.get_mut(key) {
                        l.said = false;
                    }
                    Message::new(Kind::Ack, id)
                }
                Err((id, why)) => {
                    tracing::warn!("app line: refused a connection: {why}");
                    let mut m = Message::new(Kind::Refuse, id);
                    m.reason = Some(why);
                    m
                }
            };
            self.answer_line(key, answer.encode());
        }
    }

    /// Adopts one lent connection: its ID, or why not.
    fn take_lent(
        &mut self,
        msg: Result<Message, (u64, String)>,
        rec: fdpass::Received,
        key: usize,
    ) -> Result<u64, (u64, String)> {
        let msg = msg.map_err(|(id, why)| (id, format!("malformed: {why}")))?;
        let id = msg.id;
        if rec.truncated || rec.ctrunc || rec.other_cmsg {
            return Err((id, "a truncated message".into()));
        }
        if msg.kind() != Kind::PassConnection {
            return Err((id, format!("{:?} is not taken on an app line", msg.kind())));
        }
        let mut fds = rec.fds;
        if fds.len() != 1 {
            return Err((id, format!("{} fds, not one", fds.len())));
        }
        let fd = fds.remove(0);
        let Some(socket) = Socket::from_line(fd, msg.peer.as_deref()) else {
            return Err((id, "not a connected stream socket".into()));
        };
        let (back, keep_ends) = match self.lines.lines.get(key) {
            Some(l) => (l.back.clone(), l.keep_ends.clone()),
            None => return Err((id, "the line is gone".into())),
        };
        let mut socket = socket.returning(back);
        if msg.flags & wire::flags::KEEP != 0
            && let Some(prefix) = &msg.name
        {
            socket = socket.keeping(Arc::new(Keep::new(prefix, keep_ends)));
        }
        let mut pre_read = msg.head;
        pre_read.extend_from_slice(&msg.data);
        self.adopt(socket, &pre_read, true)
            .map(|_| id)
            .map_err(|e| (id, e.to_string()))
    }

    /// Sends an answer, or keeps it until the line takes it.
    fn answer_line(&mut self, key: usize, bytes: Vec<u8>) {
        let Some(l) = self.lines.lines.get_mut(key) else {
            return;
        };
        let was_waiting = !l.unsent.is_empty();
        match l.unsent.send(l.fd.as_fd(), &bytes) {
            Ok(waiting) if waiting != was_waiting => self.watch_line(key, waiting),
            Ok(_) => {}
            Err(_) => self.drop_line(key),
        }
    }

    fn flush_line(&mut self, key: usize) {
        let Some(l) = self.lines.lines.get_mut(key) else {
            return;
        };
        if l.unsent.is_empty() {
            return;
        }
        match l.unsent.flush(l.fd.as_fd()) {
            Ok(true) => {}
            Ok(false) => self.watch_line(key, false),
            Err(_) => self.drop_line(key),
        }
    }

    fn watch_line(&self, key: usize, waiting: bool) {
        if let Some(l) = self.lines.lines.get(key) {
            let token = Token(LINE_TOKENS + 1 + key);
            let _ = outbox::watch(self.poll.registry(), l.fd.as_fd(), token, waiting);
        }
    }

    fn drop_line(&mut self, key: usize) {
        if let Some(l) = self.lines.lines.try_remove(key) {
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&l.fd.as_raw_fd()));
        }
    }

    /// After a turn: a finishing line whose connections are all gone
    /// (given back or closed) says so, once each time it gets there.
    pub(super) fn lines_finishing(&mut self) {
        let done: Vec<(usize, u64)> = self
            .lines
            .lines
            .iter_mut()
            .filter_map(|(k, l)| {
                let id = l.finishing?;
                let none_here = Arc::strong_count(&l.back) == 1;
                let say = none_here && !l.said;
                l.said = none_here;
                say.then_some((k, id))
            })
            .collect();
        for (key, id) in done {
            self.answer_line(key, Message::new(Kind::Ack, id).encode());
        }
    }
}

/// Where a line's connections go when idle, or with a request that is not
/// ours (`read`: what was read of it): back on the line, one message each,
/// not answered (`RETURNED`). Sent without waiting: a line too full to
/// take it now leaves an idle connection here.
fn back_on(line: Arc<OwnedFd>) -> Mover {
    let next = AtomicU64::new(1);
    Arc::new(move |fd: BorrowedFd<'_>, peer: &Addr, read: &[u8]| {
        let mut m = Message::new(Kind::PassConnection, next.fetch_add(1, Ordering::Relaxed));
        m.flags = wire::flags::RETURNED;
        m.data = read.to_vec();
        if let Addr::Inet(a) = peer {
            m.peer = Some(a.to_string());
        }
        fdpass::send_with_fds_now(line.as_fd(), &[IoSlice::new(&m.encode())], &[fd]).map(drop)
    })
}
