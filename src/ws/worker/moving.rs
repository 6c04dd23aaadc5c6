//! Sessions moving between processes (an upgrade, `docs/upgrade.md` step
//! 6). In the old process, the pool asks each of its workers to hand
//! every session back; a worker does so for each one as soon as it is
//! between messages with nothing queued for the client, in a
//! `PASS_WEBSOCKET`: the socket, the bytes read and not parsed, the last
//! broadcast it was given, and for `exec:` the child's pipes, a pidfd and
//! the bytes in flight either way. Until the answer the session is frozen
//! (not read, not written; broadcasts for it kept aside): on `ACK` this
//! worker lets go of it without a word to the client, on `REFUSE` it
//! serves it again, owed broadcasts first, and tries later. In the new
//! process, a worker takes such a session and resumes it with no new
//! handshake.

use super::*;
use crate::ws::exec::ExecParts;

/// A session waiting for the answer to its move.
pub(super) struct Frozen {
    id: u64,
    /// Broadcasts that arrived meanwhile: sent to the client if the move
    /// is refused (the new side sends them if it is taken: they are in the
    /// backlog its pool adds).
    pub(super) skipped: Vec<(Vec<u8>, bool, Option<wire::BusId>)>,
}

/// How long after a refused move to try again.
const RETRY_AFTER: Duration = Duration::from_millis(500);

impl Worker {
    /// The pool on `ctl` asks for every session: from now on each goes
    /// back as soon as it can; broadcasts count from `seq`.
    pub(super) fn start_moving(&mut self, ctl: usize, seq: u64) {
        tracing::info!(
            sessions = self.live,
            "upgrade: handing WebSocket sessions to the new process"
        );
        self.moving = Some(ctl);
        self.seq = seq;
        self.move_what_can_move();
    }

    pub(super) fn move_what_can_move(&mut self) {
        let now = Instant::now();
        let ready: Vec<usize> = self
            .entries
            .iter()
            .filter_map(|(t, e)| match e {
                Entry::Ws(c) if c.frozen.is_none() && c.retry_at.is_none_or(|r| now >= r) => {
                    Some(t)
                }
                _ => None,
            })
            .collect();
        for t in ready {
            self.try_move(t);
        }
    }

    /// Freezes one session and sends it to the pool, if it is between
    /// messages with its output flushed and not closing.
    fn try_move(&mut self, token: usize) {
        let Some(ctl) = self.moving else { return };
        if !self.ctl_clear(ctl) {
            self.flush_ctl(ctl);
            if !self.ctl_clear(ctl) {
                return; // once what waits has gone
            }
        }
        let Some(Entry::Ctl(ctl_fd, _)) = self.entries.get(ctl) else {
            return;
        };
        let Ok(ctl_fd) = ctl_fd.try_clone() else {
            return;
        };
        let id = self.next_move + 1;
        let Some(Entry::Ws(c)) = self.entries.get_mut(token) else {
            return;
        };
        if c.ws.get_ref().deflates() {
            // Its frames on the wire are not those tungstenite holds.
            tracing::info!("a permessage-deflate WebSocket session stays with its worker");
            c.retry_at = Some(Instant::now() + RETRY_AFTER * 10);
            return;
        }
        let flushed = matches!(c.ws.flush(), Ok(()));
        if !flushed || !c.ws.can_read() || !c.ws.can_write() || !c.ws.get_ref().between_messages() {
            return;
        }
        let pidfd = match c.exec.as_ref().map(|x| x.exec.proc.pidfd()).transpose() {
            Ok(p) => p,
            Err(err) => {
                tracing::warn!("cannot move an exec: session (pidfd: {err}); it stays");
                c.retry_at = Some(Instant::now() + RETRY_AFTER * 10);
                return;
            }
        };
        let mut m = wire::Message::new(Kind::PassWebsocket, id);
        m.peer = Some(c.peer.clone());
        m.name = Some(self.cfg.routes[c.route].path.clone());
        m.data = c.ws.get_ref().pending().to_vec();
        m.seq = Some(self.seq);
        m.bus_id = c.bus_last;
        let mut fds: Vec<BorrowedFd<'_>> = vec![c.ws.get_ref().fd()];
        if let (Some(x), Some(pidfd)) = (&c.exec, &pidfd) {
            let e = &x.exec;
            m.pid = Some(e.proc.id());
            m.input = e.queued_input().to_vec();
            m.output = e.partial_output().to_vec();
            if e.is_binary() {
                m.flags |= wire::flags::EXEC_BINARY;
            }
            if let Some(s) = &e.stdin {
                m.flags |= wire::flags::STDIN;
                fds.push(s.as_fd());
            }
            if let Some(s) = &e.stdout {
                m.flags |= wire::flags::STDOUT;
                fds.push(s.as_fd());
            }
            m.flags |= wire::flags::PIDFD;
            fds.push(pidfd.as_fd());
        }
        let rec = m.encode();
        let sent = if rec.len() > wire::MAX_MESSAGE {
            Err(io::Error::other("too much in flight to fit one message"))
        } else {
            fdpass::send_with_fds(ctl_fd.as_fd(), &[IoSlice::new(&rec)], &fds)
        };
        drop(fds);
        match sent {
            Ok(_) => {
                self.next_move = id;
                c.frozen = Some(Frozen {
                    id,
                    skipped: Vec::new(),
                });
                self.set_registered(token, false);
            }
            Err(e) => {
                tracing::debug!("moving a WebSocket: {e}; trying again");
                c.retry_at = Some(Instant::now() + RETRY_AFTER);
            }
        }
    }

    fn frozen_token(&self, id: u64) -> Option<usize> {
        self.entries.iter().find_map(|(t, e)| match e {
            Entry::Ws(c) if c.frozen.as_ref().is_some_and(|f| f.id == id) => Some(t),
            _ => None,
        })
    }

    /// The new process has the session: let go of it without a word.
    pub(super) fn moved(&mut self, id: u64) {
        let Some(token) = self.frozen_token(id) else {
            return;
        };
        let Some(Entry::Ws(c)) = self.entries.try_remove(token) else {
            return;
        };
        if let Some(x) = c.exec {
            for t in [x.out_token, x.in_token].into_iter().flatten() {
                self.entries.try_remove(t);
            }
            // Pipes deregistered with the session (`set_registered`); the
            // child runs on, its pipes now served elsewhere.
        }
        self.live -= 1;
        self.report_load();
    }

    /// The move was refused: serve the session again, owed broadcasts
    /// first, and try again later.
    pub(super) fn not_moved(&mut self, id: u64, why: &str) {
        let Some(token) = self.frozen_token(id) else {
            return;
        };
        tracing::info!("a WebSocket session could not move ({why}); serving it here for now");
        let Some(Entry::Ws(c)) = self.entries.get_mut(token) else {
            return;
        };
        let skipped = c.frozen.take().map(|f| f.skipped).unwrap_or_default();
        c.retry_at = Some(Instant::now() + RETRY_AFTER);
        let mut failed = false;
        for (data, binary, bus) in skipped {
            if bus.is_some() {
                if c.bus_last >= bus {
                    continue;
                }
                c.bus_last = bus;
            }
            let m = if binary {
                Message::binary(data)
            } else {
                Message::text(String::from_utf8_lossy(&data).into_owned())
            };
            match queue(&mut c.ws, m) {
                Ok(b) => c.blocked |= b,
                Err(_) => failed = true,
            }
        }
        self.set_registered(token, true);
        if failed {
            self.close(token);
        } else {
            self.drive(token);
        }
    }

    /// Stops (or starts again) watching a session's socket and pipes.
    fn set_registered(&mut self, token: usize, on: bool) {
        let Some(Entry::Ws(c)) = self.entries.get(token) else {
            return;
        };
        let mut fds = vec![(
            c.ws.get_ref().fd().as_raw_fd(),
            token,
            Interest::READABLE | Interest::WRITABLE,
        )];
        if let Some(x) = &c.exec {
            if let (Some(s), Some(t)) = (&x.exec.stdout, x.out_token) {
                fds.push((s.as_raw_fd(), t, Interest::READABLE));
            }
            if let (Some(s), Some(t)) = (&x.exec.stdin, x.in_token) {
                fds.push((s.as_raw_fd(), t, Interest::WRITABLE));
            }
        }
        let registry = self.poll.registry();
        for (fd, t, interest) in fds {
            let r = if on {
                registry.register(&mut SourceFd(&fd), Token(t), interest)
            } else {
                registry.deregister(&mut SourceFd(&fd))
            };
            if let Err(e) = r {
                tracing::warn!("WebSocket session (re)registration: {e}");
            }
        }
    }

    /// Takes a session moved here from another process's worker.
    pub(super) fn adopt_moved(
        &mut self,
        mut fds: Vec<OwnedFd>,
        msg: &wire::Message,
    ) -> Result<(), String> {
        self.has_room()?;
        let route = self.route_of(msg.name.as_deref().unwrap_or(""))?;
        let wanted = 1 + [wire::flags::STDIN, wire::flags::STDOUT, wire::flags::PIDFD]
            .iter()
            .filter(|&&f| msg.flags & f != 0)
            .count();
        if fds.len() != wanted {
            return Err(format!("expected {wanted} fds, got {}", fds.len()));
        }
        let backlog = wire::read_backlog(&msg.backlog)?;
        let mut rest = fds.split_off(1);
        let socket = fds.remove(0);
        sys::prepare_adopted(socket.as_fd()).map_err(|e| e.to_string())?;
        let mut take = |flag: u32| (msg.flags & flag != 0).then(|| rest.remove(0));
        let stdin = take(wire::flags::STDIN);
        let stdout = take(wire::flags::STDOUT);
        let pidfd = take(wire::flags::PIDFD);
        let exec = match (pidfd, msg.pid) {
            (Some(pidfd), Some(pid)) => Some(
                crate::ws::exec::Exec::from_parts(ExecParts {
                    stdin,
                    stdout,
                    pid,
                    pidfd,
                    binary: msg.flags & wire::flags::EXEC_BINARY != 0,
                    input: msg.input.clone(),
                    output: msg.output.clone(),
                })
                .map_err(|e| e.to_string())?,
            ),
            _ => None,
        };
        let peer = msg
            .peer
            .clone()
            .unwrap_or_else(|| sys::peer_addr(socket.as_fd()).to_string());
        let token = self.insert_session(
            FdStream::new(socket, msg.data.clone()),
            route,
            peer.clone(),
            exec,
            &backlog,
            msg.bus_id,
        )?;
        tracing::debug!(%peer, route = %self.cfg.routes[route], "WebSocket session moved in");
        self.drive(token);
        Ok(())
    }
}
