//! One WebSocket session: tungstenite on the non-blocking socket, with
//! back-pressure both ways, messages delivered to a route (echo,
//! broadcast, an exec child's pipes), and the close.

use super::*;

pub(super) struct WsConn {
    pub(super) ws: WebSocket<FdStream>,
    pub(super) route: usize,
    /// Output is queued in tungstenite that the socket has not taken: stop
    /// reading (from the client and from an exec child) until it has.
    pub(super) blocked: bool,
    pub(super) last_seen: Instant,
    pub(super) next_ping: Instant,
    pub(super) exec: Option<ExecSlot>,
    pub(super) peer: String,
    /// Being moved to another process (`moving.rs`): not driven, and
    /// broadcasts are kept aside until the answer.
    pub(super) frozen: Option<super::moving::Frozen>,
    /// A move was refused or could not be sent: not before this.
    pub(super) retry_at: Option<Instant>,
    /// This worker's number for the session, named in its broadcasts (a
    /// bus that refuses one says whose it was).
    pub(super) serial: u64,
    /// On a route with a bus: the last entry it was given (it is given only
    /// later ones).
    pub(super) bus_last: Option<wire::BusId>,
}

pub(super) struct ExecSlot {
    pub(super) exec: Exec,
    pub(super) out_token: Option<usize>,
    pub(super) in_token: Option<usize>,
}

pub(super) fn would_block(e: &tungstenite::Error) -> bool {
    matches!(e, tungstenite::Error::Io(io) if io.kind() == io::ErrorKind::WouldBlock)
}

/// Queues a message. `WouldBlock` from tungstenite's `write` means it was
/// queued but the socket is full: back-pressure, not an error. Returns
/// whether the connection is now blocked.
pub(super) fn queue(ws: &mut WebSocket<FdStream>, m: Message) -> Result<bool, tungstenite::Error> {
    match ws.write(m) {
        Ok(()) => Ok(false),
        Err(e) if would_block(&e) => Ok(true),
        Err(e) => Err(e),
    }
}

impl Worker {
    pub(super) fn attach_exec(&mut self, token: usize, exec: Exec) {
        let out_fd = exec.stdout.as_ref().map(|s| s.as_raw_fd());
        let in_fd = exec.stdin.as_ref().map(|s| s.as_raw_fd());
        let mut slot = ExecSlot {
            exec,
            out_token: None,
            in_token: None,
        };
        slot.out_token = out_fd.and_then(|fd| self.register_pipe(fd, Interest::READABLE, token));
        slot.in_token = in_fd.and_then(|fd| self.register_pipe(fd, Interest::WRITABLE, token));
        if let Some(Entry::Ws(c)) = self.entries.get_mut(token) {
            c.exec = Some(slot);
        }
    }

    /// Registers an exec child's pipe as standing for the connection at
    /// `conn`; its token, or `None` if it could not be registered.
    pub(super) fn register_pipe(
        &mut self,
        fd: std::os::fd::RawFd,
        interest: Interest,
        conn: usize,
    ) -> Option<usize> {
        let e = self.entries.vacant_entry();
        let key = e.key();
        self.poll
            .registry()
            .register(&mut SourceFd(&fd), Token(key), interest)
            .ok()?;
        e.insert(Entry::ExecPipe(conn));
        Some(key)
    }

    /// Moves everything that can move on one connection.
    pub(super) fn drive(&mut self, token: usize) {
        let now = Instant::now();
        let max_line = self.cfg.max_message;
        let mut broadcasts: Vec<(Vec<u8>, bool)> = Vec::new();
        let Some(Entry::Ws(c)) = self.entries.get_mut(token) else {
            return;
        };
        if c.frozen.is_some() {
            return;
        }
        let mode = self.cfg.routes[c.route].mode.clone();
        let outcome = (|| -> Result<(), tungstenite::Error> {
            loop {
                let mut moved = false;
                match c.ws.flush() {
                    Ok(()) => c.blocked = false,
                    Err(e) if would_block(&e) => c.blocked = true,
                    Err(e) => return Err(e),
                }
                if let Some(x) = c.exec.as_mut() {
                    x.exec.write_input();
                    if !c.blocked && x.exec.stdout.is_some() {
                        let mut out = Vec::new();
                        let open = x.exec.read_output(&mut out, max_line);
                        moved |= !out.is_empty();
                        for o in out {
                            let m = match o {
                                Output::Text(t) => Message::text(t),
                                Output::Binary(b) => Message::binary(b),
                            };
                            c.blocked |= queue(&mut c.ws, m)?;
                        }
                        if !open {
                            // The command is done: so is the conversation.
                            c.ws.close(None)?;
                            moved = true;
                        }
                    }
                }
                let input_full = c.exec.as_ref().is_some_and(|x| x.exec.input_full());
                if !c.blocked && !input_full {
                    match c.ws.read() {
                        Ok(msg) => {
                            c.last_seen = now;
                            moved = true;
                            match (msg, &mode) {
                                (m @ (Message::Text(_) | Message::Binary(_)), Mode::Echo) => {
                                    c.blocked |= queue(&mut c.ws, m)?
                                }
                                (Message::Text(t), Mode::Broadcast) => {
                                    broadcasts.push((t.as_bytes().to_vec(), false))
                                }
                                (Message::Binary(b), Mode::Broadcast) => {
                                    broadcasts.push((b.to_vec(), true))
                                }
                                (Message::Text(t), Mode::Exec { .. }) => {
                                    if let Some(x) = c.exec.as_mut() {
                                        x.exec.queue_input(t.as_bytes())
                                    }
                                }
                                (Message::Binary(b), Mode::Exec { .. }) => {
                                    if let Some(x) = c.exec.as_mut() {
                                        x.exec.queue_input(&b)
                                    }
                                }
                                _ => {} // ping, pong, close: tungstenite answers
                            }
                        }
                        Err(e) if would_block(&e) => {}
                        Err(e) => return Err(e),
                    }
                }
                if !moved {
                    return Ok(());
                }
            }
        })();
        let peer = c.peer.clone();
        let route = c.route;
        let serial = c.serial;
        for (data, binary) in broadcasts {
            let path = self.cfg.routes[route].path.clone();
            self.broadcast(path, data, binary, serial);
        }
        if let Err(e) = outcome {
            // Say why before dropping the connection (RFC 6455 §7.4.1).
            let code = match &e {
                tungstenite::Error::Capacity(_) => Some(CloseCode::Size),
                tungstenite::Error::Utf8(_) => Some(CloseCode::Invalid),
                tungstenite::Error::Protocol(_) => Some(CloseCode::Protocol),
                _ => None,
            };
            match e {
                tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {}
                e => tracing::debug!(%peer, "WebSocket closed: {e}"),
            }
            if let (Some(code), Some(Entry::Ws(c))) = (code, self.entries.get_mut(token)) {
                let _ = c.ws.close(Some(CloseFrame {
                    code,
                    reason: "".into(),
                }));
                let _ = c.ws.flush();
            }
            self.close(token);
        }
    }

    /// A message from one of our connections for every connection on its
    /// route. It goes to the pool, which puts it in order with the other
    /// workers' and sends it back to every worker, this one included (one
    /// control socket asks for it back: `RETURN`); so every worker delivers
    /// the same messages in the same order, which is what lets a session
    /// move between processes without a message lost or doubled. With no
    /// pool, it is delivered here.
    fn broadcast(&mut self, path: String, data: Vec<u8>, binary: bool, serial: u64) {
        let ctls = self.ctl_tokens();
        if ctls.is_empty() {
            return self.deliver(&path, &data, binary, None);
        }
        let mut m = wire::Message::new(Kind::Broadcast, serial);
        m.name = Some(path);
        m.data = data;
        let kind = if binary { wire::flags::BINARY } else { 0 };
        for (i, t) in ctls.into_iter().enumerate() {
            m.flags = kind | if i == 0 { wire::flags::RETURN } else { 0 };
            self.send_ctl(t, &m);
        }
    }

    /// Sends a message to every connection on `path` in this worker; one
    /// from a bus (`bus`, its stream ID) only to those not given it yet.
    pub(super) fn deliver(
        &mut self,
        path: &str,
        data: &[u8],
        binary: bool,
        bus: Option<wire::BusId>,
    ) {
        let Some(route) = self.cfg.routes.iter().position(|r| r.path == path) else {
            return;
        };
        let targets: Vec<usize> = self
            .entries
            .iter()
            .filter_map(|(t, e)| match e {
                Entry::Ws(c) if c.route == route && (bus.is_none() || c.bus_last < bus) => Some(t),
                _ => None,
            })
            .collect();
        for t in targets {
            let Some(Entry::Ws(c)) = self.entries.get_mut(t) else {
                continue;
            };
            if let Some(f) = c.frozen.as_mut() {
                f.skipped.push((data.to_vec(), binary, bus));
                continue;
            }
            if bus.is_some() {
                c.bus_last = bus;
            }
            let m = if binary {
                Message::binary(data.to_vec())
            } else {
                Message::text(String::from_utf8_lossy(data).into_owned())
            };
            let r = queue(&mut c.ws, m).and_then(|_| c.ws.flush());
            match r {
                Ok(()) => {}
                Err(e) if would_block(&e) => c.blocked = true,
                Err(_) => self.close(t),
            }
        }
    }

    /// The bus did not take a message this session sent (Redis away past
    /// the route's queue): the session is closed with 1013, try again
    /// later, rather than its message dropped without a word.
    pub(super) fn refused_by_bus(&mut self, serial: u64) {
        let Some(token) = self.entries.iter().find_map(|(t, e)| match e {
            Entry::Ws(c) if c.serial == serial => Some(t),
            _ => None,
        }) else {
            return;
        };
        if let Some(Entry::Ws(c)) = self.entries.get_mut(token) {
            tracing::warn!(peer = %c.peer, "a broadcast was refused by the bus (Redis away, queue full): closing its sender with 1013");
            let _ = c.ws.close(Some(CloseFrame {
                code: CloseCode::Again,
                reason: "the broadcast bus is unavailable".into(),
            }));
            let _ = c.ws.flush();
        }
        self.close(token);
    }

    pub(super) fn close(&mut self, token: usize) {
        let Some(Entry::Ws(c)) = self.entries.try_remove(token) else {
            return;
        };
        let mut c = c;
        let _ = self
            .poll
            .registry()
            .deregister(&mut SourceFd(&c.ws.get_ref().fd().as_raw_fd()));
        if let Some(x) = c.exec.take() {
            for t in [x.out_token, x.in_token].into_iter().flatten() {
                self.entries.try_remove(t);
            }
            if let Some(s) = x.exec.stdout.as_ref() {
                let _ = self
                    .poll
                    .registry()
                    .deregister(&mut SourceFd(&s.as_raw_fd()));
            }
            if let Some(s) = x.exec.stdin.as_ref() {
                let _ = self
                    .poll
                    .registry()
                    .deregister(&mut SourceFd(&s.as_raw_fd()));
            }
            self.reaping.push(x.exec.finish(Instant::now()));
        }
        self.live -= 1;
        self.report_load();
    }
}
