//! The line between the old and the new process's pools during an upgrade
//! (`docs/upgrade.md` step 6), and the order of broadcasts.
//!
//! Broadcasts: a worker does not deliver its own connections' messages; it
//! sends them to its pool, which numbers them (`SEQ`) and sends them to
//! every worker. So all workers deliver the same messages in the same
//! order, and a worker can say which was the last one a session was given.
//! During an upgrade the new process's pool numbers for both: the old pool
//! forwards its workers' messages up the line and delivers what comes
//! down. The new pool keeps the messages it numbered while the line is
//! open, and when a session arrives saying "I was given up to N", the
//! messages after N on its route go with it (`BACKLOG`): those that went to
//! the new workers before the session got there, and that its old worker
//! skipped while it was frozen. What the new pool numbers after that
//! reaches the session's new worker after the session itself (one ordered
//! line). So each member gets each message once, whichever side it is on.

use std::collections::{HashMap, VecDeque};
use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::mpsc;

use mio::unix::SourceFd;
use mio::{Interest, Token};

use super::{Held, LINK, PoolLoop};
use crate::handoff::wire::{self, Kind, Message};
use crate::server::HandedOff;
use crate::sys::fdpass;

/// Broadcasts kept for sessions still to arrive: at most this many ...
pub(super) const LOG_MESSAGES: usize = 4096;
/// ... and this many bytes. A session further behind is refused; its old
/// worker serves it on (catching up) and tries again.
pub(super) const LOG_BYTES: usize = 8 << 20;

pub(super) struct Link {
    fd: OwnedFd,
    /// This is the old process (its sessions go up the line), or the new
    /// one (it numbers broadcasts and takes sessions).
    to_new: bool,
    /// The old side: what went up and waits for an answer, by our ID.
    forwarded: HashMap<u64, Forwarded>,
    next: u64,
    /// The new side: recent broadcasts, oldest first.
    log: VecDeque<Logged>,
    log_bytes: usize,
}

enum Forwarded {
    /// A worker's session: answer the worker under its ID.
    Session { worker: usize, id: u64 },
    /// A new upgrade from our HTTP loops: our copy, for a 503, and its
    /// access line.
    Upgrade(Held),
}

struct Logged {
    seq: u64,
    path: String,
    data: Vec<u8>,
    binary: bool,
}

impl Link {
    fn new(fd: OwnedFd, to_new: bool) -> Link {
        Link {
            fd,
            to_new,
            forwarded: HashMap::new(),
            next: 0,
            log: VecDeque::new(),
            log_bytes: 0,
        }
    }

    /// Nothing waits for an answer from the other side.
    pub(super) fn settled(&self) -> bool {
        self.forwarded.is_empty()
    }

    fn send(&self, m: &Message, fds: &[std::os::fd::BorrowedFd<'_>]) -> std::io::Result<usize> {
        fdpass::send_with_fds(self.fd.as_fd(), &[IoSlice::new(&m.encode())], fds)
    }

    /// The messages on `path` after `seq`, for a `BACKLOG`; `None` if
    /// some are no longer kept.
    fn backlog(&self, path: &str, seq: u64, now: u64) -> Option<Vec<u8>> {
        if seq < now && self.log.front().is_none_or(|l| l.seq > seq + 1) {
            return None;
        }
        let mut out = Vec::new();
        for l in self.log.iter().filter(|l| l.seq > seq && l.path == path) {
            wire::push_backlog(&mut out, l.binary, &l.data);
        }
        Some(out)
    }

    fn remember(&mut self, seq: u64, m: &Message) {
        self.log_bytes += m.data.len();
        self.log.push_back(Logged {
            seq,
            path: m.name.clone().unwrap_or_default(),
            data: m.data.clone(),
            binary: m.flags & wire::flags::BINARY != 0,
        });
        while self.log.len() > LOG_MESSAGES || self.log_bytes > LOG_BYTES {
            match self.log.pop_front() {
                Some(l) => self.log_bytes -= l.data.len(),
                None => break,
            }
        }
    }
}

impl PoolLoop {
    /// The old process of an upgrade: sessions go up the line.
    pub(super) fn moving(&self) -> bool {
        self.link.as_ref().is_some_and(|l| l.to_new)
    }

    fn register_link(&mut self, fd: OwnedFd, to_new: bool) {
        if let Err(e) = sys_register(&self.poll, &fd) {
            tracing::error!("upgrade: the line between WebSocket pools: {e}");
            return;
        }
        self.link = Some(Link::new(fd, to_new));
    }

    /// The old process, once the new one is ready: every worker we
    /// started is asked for its sessions and exits once it has none; the
    /// waiter hears when all are gone and nothing waits for an answer.
    /// (Workers running on their own are not ours to move.)
    pub(super) fn move_to(
        &mut self,
        link: OwnedFd,
        done: mpsc::Sender<()>,
        then: Box<dyn FnOnce() + Send>,
    ) {
        self.register_link(link, true);
        self.on_stopped = Some(then);
        self.watch_buses();
        self.stopping = Some(done);
        // Broadcasts count from here in the new pool's numbers.
        let mut order = Message::new(Kind::PassWebsocket, 0);
        order.seq = Some(0);
        let rec = order.encode();
        for (i, w) in self.workers.iter_mut().enumerate() {
            w.restart_at = None;
            if w.child.is_some()
                && let Some(c) = &w.ctl
                && let Err(e) = fdpass::send_with_fds(c.as_fd(), &[IoSlice::new(&rec)], &[])
            {
                tracing::warn!(
                    worker = i,
                    "upgrade: cannot ask the worker for its sessions: {e}"
                );
            }
        }
        self.check_stopped();
    }

    /// The new process: the old pool's line.
    pub(super) fn link_to_old(&mut self, link: OwnedFd) {
        self.register_link(link, false);
    }

    /// Answers the old pool about what it sent us as `link_id`.
    pub(super) fn answer_link(&mut self, link_id: Option<u64>, mut m: Message) {
        let (Some(id), Some(l)) = (link_id, &self.link) else {
            return;
        };
        m.id = id;
        if let Err(e) = l.send(&m, &[]) {
            tracing::warn!("upgrade: answer to the old process lost: {e}");
        }
    }

    /// A broadcast from one of our workers (`origin`) or from the old
    /// process's pool (`None`).
    pub(super) fn broadcast_from(&mut self, mut m: Message, origin: Option<usize>) {
        if let Some(r) = m.name.as_deref().and_then(|p| self.bus_of(p)) {
            // Both processes read the bus: nothing goes up the line.
            return self.publish(r, m, origin);
        }
        if self.moving() {
            // The new pool numbers it and sends it back down to us.
            if let Some(l) = &self.link
                && let Err(e) = l.send(&m, &[])
            {
                tracing::warn!("upgrade: broadcast not forwarded: {e}");
            }
            return;
        }
        self.seq += 1;
        let seq = self.seq;
        m.seq = Some(seq);
        let back = m.flags & wire::flags::RETURN != 0;
        m.flags &= !wire::flags::RETURN;
        if let Some(l) = &mut self.link {
            l.remember(seq, &m);
            if let Err(e) = l.send(&m, &[]) {
                tracing::warn!("upgrade: broadcast not sent to the old process: {e}");
            }
        }
        self.relay(&m, origin.filter(|_| !back));
    }

    /// Answers a worker about a session it gave back (a worker that is
    /// gone needs no answer).
    fn tell(&mut self, worker: usize, m: &Message) {
        self.send_worker(worker, &m.encode());
    }

    /// Sends a numbered broadcast to every worker but `except`.
    pub(super) fn relay(&mut self, m: &Message, except: Option<usize>) {
        let rec = m.encode();
        for j in 0..self.workers.len() {
            if Some(j) != except {
                self.send_worker(j, &rec);
            }
        }
    }

    /// The old side: a worker gives a session back; it goes up the line,
    /// and the worker hears the new side's answer.
    pub(super) fn forward_session(&mut self, worker: usize, mut m: Message, fds: Vec<OwnedFd>) {
        let worker_id = m.id;
        let refuse = |p: &mut PoolLoop, why: &str| p.tell(worker, &Message::refuse(worker_id, why));
        let Some(l) = self.link.as_mut().filter(|l| l.to_new) else {
            return refuse(self, "no upgrade under way");
        };
        l.next += 1;
        m.id = l.next;
        let borrowed: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
        match l.send(&m, &borrowed) {
            Ok(_) => {
                l.forwarded.insert(
                    m.id,
                    Forwarded::Session {
                        worker,
                        id: worker_id,
                    },
                );
            }
            Err(e) => refuse(self, &format!("the new process's pool: {e}")),
        }
    }

    /// The old side: an upgrade our HTTP loops took after the move began
    /// goes to the new process's workers.
    pub(super) fn forward_upgrade(&mut self, h: HandedOff) {
        let (held, mut m) = Held::of(h);
        let Some(l) = self.link.as_mut() else {
            return held.refuse("shutting down");
        };
        l.next += 1;
        m.id = l.next;
        match l.send(&m, &[held.fd.as_fd()]) {
            Ok(_) => {
                l.forwarded.insert(m.id, Forwarded::Upgrade(held));
            }
            Err(_) => held.refuse("the new process's WebSocket pool is gone"),
        }
    }

    pub(super) fn read_link(&mut self) {
        let mut buf = vec![0u8; wire::MAX_MESSAGE];
        loop {
            let Some(l) = &self.link else { return };
            let rec = match fdpass::recv_with_fds(l.fd.as_fd(), &mut buf) {
                Ok(Some(r)) => r,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Ok(None) | Err(_) => return self.drop_link(),
            };
            let Ok(m) = Message::decode(&buf[..rec.len]) else {
                continue;
            };
            let whole = !rec.truncated && !rec.ctrunc;
            let to_new = l.to_new;
            match (to_new, m.kind()) {
                (true, Kind::Ack | Kind::Refuse) => self.answered(m),
                (true, Kind::Broadcast) => self.relay(&m, None),
                (false, Kind::Broadcast) => self.broadcast_from(m, None),
                (false, Kind::PassWebsocket) if whole => self.take_session(m, rec.fds),
                (false, Kind::PassConnection) if whole && rec.fds.len() == 1 => {
                    let id = m.id;
                    if let Err((why, _, _)) = self.give(m, rec.fds, None, Some(id)) {
                        self.answer_link(Some(id), Message::refuse(0, why));
                    }
                }
                (false, _) => {
                    self.answer_link(Some(m.id), Message::refuse(0, "not taken on this line"))
                }
                _ => {}
            }
        }
    }

    /// The old side: the new pool's answer about something we sent up.
    fn answered(&mut self, m: Message) {
        let Some(f) = self.link.as_mut().and_then(|l| l.forwarded.remove(&m.id)) else {
            return;
        };
        match f {
            Forwarded::Session { worker, id } => {
                let mut a = m;
                a.id = id;
                self.tell(worker, &a);
            }
            Forwarded::Upgrade(held) if m.kind() == Kind::Refuse => {
                held.refuse(m.reason.as_deref().unwrap_or("refused by the new process"))
            }
            Forwarded::Upgrade(held) => held.taken("worker=new-process"),
        }
        self.check_stopped();
    }

    /// The new side: a session from the old process, with the broadcasts
    /// it is owed, to the least-loaded worker.
    fn take_session(&mut self, mut m: Message, fds: Vec<OwnedFd>) {
        let id = m.id;
        let path = m.name.clone().unwrap_or_default();
        if let Some(r) = self.bus_of(&path) {
            if let Err(why) = self.bus_owed(r, &mut m) {
                return self.answer_link(Some(id), Message::refuse(0, why));
            }
            if let Err((why, _, _)) = self.give(m, fds, None, Some(id)) {
                self.answer_link(Some(id), Message::refuse(0, why));
            }
            return;
        }
        let owed = self
            .link
            .as_ref()
            .and_then(|l| l.backlog(&path, m.seq.unwrap_or(0), self.seq));
        let Some(backlog) = owed else {
            return self.answer_link(
                Some(id),
                Message::refuse(0, "it is behind by more broadcasts than are kept"),
            );
        };
        if !backlog.is_empty() {
            tracing::debug!(
                bytes = backlog.len(),
                "a moved session is owed broadcasts it missed on the way"
            );
        }
        m.backlog = backlog;
        m.seq = Some(self.seq);
        if let Err((why, _, _)) = self.give(m, fds, None, Some(id)) {
            self.answer_link(Some(id), Message::refuse(0, why));
        }
    }

    /// The line closed: the old process is gone (its part done, or dead).
    fn drop_link(&mut self) {
        let Some(l) = self.link.take() else { return };
        self.forget_bus_logs();
        let _ = self
            .poll
            .registry()
            .deregister(&mut SourceFd(&l.fd.as_raw_fd()));
        for (_, f) in l.forwarded {
            match f {
                Forwarded::Session { worker, id } => self.tell(
                    worker,
                    &Message::refuse(id, "the new process's pool is gone"),
                ),
                Forwarded::Upgrade(held) => held.refuse("the new process's pool is gone"),
            }
        }
        if l.to_new {
            tracing::warn!("upgrade: the new process's WebSocket pool went away");
        } else {
            tracing::info!("upgrade: the old process's WebSocket pool is done");
        }
        self.check_stopped();
    }
}

fn sys_register(poll: &mio::Poll, fd: &OwnedFd) -> std::io::Result<()> {
    crate::sys::prepare_adopted(fd.as_fd())?;
    poll.registry().register(
        &mut SourceFd(&fd.as_raw_fd()),
        Token(LINK),
        Interest::READABLE,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line() -> Link {
        let (a, _b) = fdpass::seqpacket_pair().unwrap();
        Link::new(a, false)
    }

    fn said(path: &str, text: &str) -> Message {
        let mut m = Message::new(Kind::Broadcast, 0);
        m.name = Some(path.into());
        m.data = text.as_bytes().to_vec();
        m
    }

    #[test]
    fn a_moving_session_is_owed_the_messages_on_its_route_after_its_last() {
        let mut l = line();
        l.remember(1, &said("/chat", "one"));
        l.remember(2, &said("/other", "elsewhere"));
        l.remember(3, &said("/chat", "three"));
        let owed = wire::read_backlog(&l.backlog("/chat", 1, 3).unwrap()).unwrap();
        assert_eq!(owed, vec![(false, b"three".to_vec())]);
        assert_eq!(l.backlog("/chat", 3, 3), Some(Vec::new()));
        // Given nothing yet: everything kept from the first message on.
        assert_eq!(
            wire::read_backlog(&l.backlog("/chat", 0, 3).unwrap())
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn a_session_behind_what_is_kept_is_refused_rather_than_short_changed() {
        let mut l = line();
        for seq in 1..=(LOG_MESSAGES as u64 + 10) {
            l.remember(seq, &said("/chat", "x"));
        }
        assert_eq!(l.log.len(), LOG_MESSAGES);
        assert_eq!(l.backlog("/chat", 5, LOG_MESSAGES as u64 + 10), None);
        assert!(l.backlog("/chat", 10, LOG_MESSAGES as u64 + 10).is_some());
    }
}
