//! The worker's side of the handoff: control sockets to HTTP processes
//! (their peers checked), `PASS_CONNECTION` adopted (the 101 written here),
//! `LOAD` and `BROADCAST` messages.

use super::*;

/// What a hand-off asks of a worker (`Worker::request_of`).
struct Asked {
    /// The route's index.
    route: usize,
    /// `Sec-WebSocket-Accept`.
    accept: String,
    /// The request's variables for an `exec:` command.
    env: Vec<(String, String)>,
    /// The request target, for the access line.
    target: String,
}

impl Worker {
    /// Only our own uid and the allowed ones may hand us connections: a
    /// peer that may write PASS_CONNECTION can make us speak on any socket
    /// it has. Others get a REFUSE and are closed.
    pub(super) fn peer_allowed(&self, fd: &OwnedFd) -> bool {
        let (uid, pid) = match fdpass::peer_cred(fd.as_fd()) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("worker control peer credentials: {e}");
                return false;
            }
        };
        if uid == crate::sys::process::euid() || self.cfg.allowed_uids.contains(&uid) {
            return true;
        }
        let why = crate::intake::control::uid_refused(uid, "worker socket");
        tracing::warn!(pid, "worker control peer refused: {why}");
        let m = wire::Message::refuse(0, why);
        let _ = fdpass::send_last(fd.as_fd(), &m.encode());
        false
    }

    /// Sends to the pool on `token`, after what waits for room there.
    pub(super) fn send_ctl(&mut self, token: usize, m: &wire::Message) {
        let Some(Entry::Ctl(fd, out)) = self.entries.get_mut(token) else {
            return;
        };
        let was_waiting = !out.is_empty();
        match out.send(fd.as_fd(), &m.encode()) {
            Ok(true) if !was_waiting => self.watch_ctl(token, true),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!("worker control send: {e}");
                self.drop_ctl(token);
            }
        }
    }

    /// The line on `token` has room again: what waits goes.
    pub(super) fn flush_ctl(&mut self, token: usize) {
        let Some(Entry::Ctl(fd, out)) = self.entries.get_mut(token) else {
            return;
        };
        if out.is_empty() {
            return;
        }
        match out.flush(fd.as_fd()) {
            Ok(true) => {}
            Ok(false) => self.watch_ctl(token, false),
            Err(e) => {
                tracing::warn!("worker control send: {e}");
                self.drop_ctl(token);
            }
        }
    }

    /// Nothing may overtake what waits on a line (a moving session after
    /// its broadcasts).
    pub(super) fn ctl_clear(&self, token: usize) -> bool {
        matches!(self.entries.get(token), Some(Entry::Ctl(_, out)) if out.is_empty())
    }

    fn watch_ctl(&self, token: usize, on: bool) {
        let Some(Entry::Ctl(fd, _)) = self.entries.get(token) else {
            return;
        };
        if let Err(e) =
            crate::handoff::outbox::watch(self.poll.registry(), fd.as_fd(), Token(token), on)
        {
            tracing::warn!("worker control line: {e}");
        }
    }

    pub(super) fn ctl_tokens(&self) -> Vec<usize> {
        self.entries
            .iter()
            .filter_map(|(t, e)| matches!(e, Entry::Ctl(..)).then_some(t))
            .collect()
    }

    pub(super) fn report_load(&mut self) {
        let m = wire::Message::new(Kind::Load, self.live as u64);
        for t in self.ctl_tokens() {
            self.send_ctl(t, &m);
        }
    }

    pub(super) fn read_ctl(&mut self, token: usize) {
        let mut buf = vec![0u8; wire::MAX_MESSAGE];
        loop {
            let Some(Entry::Ctl(fd, _)) = self.entries.get(token) else {
                return;
            };
            let rec = match fdpass::recv_with_fds(fd.as_fd(), &mut buf) {
                Ok(Some(r)) => r,
                Ok(None) => {
                    tracing::info!("an HTTP process went away");
                    return self.drop_ctl(token);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::warn!("worker control: {e}");
                    return self.drop_ctl(token);
                }
            };
            let mut fds = rec.fds;
            let msg = match wire::Message::decode(&buf[..rec.len]) {
                Ok(m) => m,
                Err((id, why)) => {
                    self.send_ctl(token, &wire::Message::refuse(id, why));
                    continue;
                }
            };
            match msg.kind() {
                Kind::PassConnection if fds.len() == 1 && !rec.truncated && !rec.ctrunc => {
                    let fd = fds.remove(0);
                    let answer = match self.adopt(fd, &msg) {
                        Ok(()) => wire::Message::ack(msg.id),
                        Err(why) => {
                            tracing::warn!(id = msg.id, "WebSocket handoff refused: {why}");
                            wire::Message::refuse(msg.id, why)
                        }
                    };
                    self.send_ctl(token, &answer);
                    self.report_load();
                }
                Kind::PassConnection => {
                    self.send_ctl(
                        token,
                        &wire::Message::refuse(msg.id, "expected exactly one fd"),
                    );
                }
                Kind::Broadcast if msg.flags & wire::flags::REFUSED != 0 => {
                    self.refused_by_bus(msg.id);
                }
                Kind::Broadcast => {
                    if msg.bus_id.is_none() {
                        self.seq = msg.seq.unwrap_or(self.seq);
                    }
                    let binary = msg.flags & wire::flags::BINARY != 0;
                    let path = msg.name.clone().unwrap_or_default();
                    self.deliver(&path, &msg.data, binary, msg.bus_id);
                }
                Kind::PassWebsocket if fds.is_empty() && msg.id == 0 => {
                    self.start_moving(token, msg.seq.unwrap_or(0));
                }
                Kind::PassWebsocket if !rec.truncated && !rec.ctrunc => {
                    let answer = match self.adopt_moved(fds, &msg) {
                        Ok(()) => wire::Message::ack(msg.id),
                        Err(why) => {
                            tracing::warn!(id = msg.id, "moved WebSocket refused: {why}");
                            wire::Message::refuse(msg.id, why)
                        }
                    };
                    self.send_ctl(token, &answer);
                    self.report_load();
                }
                Kind::Configure => {
                    let answer =
                        match WorkerConfig::from_settings(&String::from_utf8_lossy(&msg.data)) {
                            Ok(cfg) => {
                                self.configure(cfg);
                                wire::Message::ack(msg.id)
                            }
                            Err(why) => {
                                tracing::error!("{why}");
                                wire::Message::refuse(msg.id, why)
                            }
                        };
                    self.send_ctl(token, &answer);
                }
                Kind::Ack => self.moved(msg.id),
                Kind::Refuse => self.not_moved(msg.id, msg.reason.as_deref().unwrap_or("")),
                other => {
                    self.send_ctl(
                        token,
                        &wire::Message::refuse(msg.id, format!("a worker does not take {other:?}")),
                    );
                }
            }
        }
    }

    pub(super) fn drop_ctl(&mut self, token: usize) {
        if let Some(Entry::Ctl(fd, _)) = self.entries.try_remove(token) {
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&fd.as_raw_fd()));
        }
    }

    /// What a hand-off says of its request: the route, the accept value,
    /// the request's variables and its target. Taken from `ROUTE`, `ACCEPT`
    /// and `ENV` as the HTTP process computed them; only a message from a
    /// process older than those fields has its `HEAD` parsed here.
    fn request_of(&self, msg: &wire::Message) -> Result<Asked, String> {
        if let (Some(route), Some(accept)) = (&msg.route, &msg.accept) {
            let env = wire::decode_env(&msg.env).ok_or("the ENV field is not NAME=VALUE pairs")?;
            let target = env
                .iter()
                .find(|(k, _)| k == "REQUEST_URI")
                .map_or_else(|| route.clone(), |(_, v)| v.clone());
            return Ok(Asked {
                route: self.route_of(route)?,
                accept: accept.clone(),
                env,
                target,
            });
        }
        let mut headers = [httparse::EMPTY_HEADER; 128];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&msg.head) {
            Ok(httparse::Status::Complete(_)) => {}
            _ => return Err("the HEAD field is not a complete request head".into()),
        }
        let target = req.path.unwrap_or("/");
        let path = target.split_once('?').map_or(target, |(p, _)| p);
        let route = self.route_of(path)?;
        let key = req
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("sec-websocket-key"))
            .map(|h| h.value.trim_ascii())
            .ok_or("no Sec-WebSocket-Key")?;
        let env = crate::ws::exec::request_environment(
            "GET",
            target,
            &self.cfg.routes[route].path,
            req.headers.iter().map(|h| (h.name, h.value)),
        );
        Ok(Asked {
            route,
            accept: tungstenite::handshake::derive_accept_key(key),
            env,
            target: target.to_string(),
        })
    }

    /// Takes a handed-over connection: checks it, writes the 101, and
    /// starts the protocol from the bytes already read.
    pub(super) fn adopt(&mut self, fd: OwnedFd, msg: &wire::Message) -> Result<(), String> {
        self.has_room()?;
        let Asked {
            route,
            accept,
            mut env,
            target,
        } = self.request_of(msg)?;
        sys::prepare_adopted(fd.as_fd()).map_err(|e| e.to_string())?;
        let peer = msg
            .peer
            .clone()
            .unwrap_or_else(|| sys::peer_addr(fd.as_fd()).to_string());

        let exec = match &self.cfg.routes[route].mode {
            Mode::Exec { command, binary } => {
                crate::ws::exec::complete_environment(
                    &mut env,
                    &crate::ws::exec::Connection {
                        peer: peer.parse().ok(),
                        local: msg.local.as_deref().and_then(|l| l.parse().ok()),
                        secure: msg.flags & wire::flags::SECURE != 0,
                        passenv: &self.cfg.passenv,
                    },
                );
                Some(
                    Exec::spawn(command, *binary, &env)
                        .map_err(|e| format!("cannot start {command:?}: {e}"))?,
                )
            }
            _ => None,
        };

        // The 101 goes out ahead of every frame, through the session's own
        // output (a full socket waits for writable; nothing sleeps).
        let var = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        let extensions = var(crate::ws::deflate::EXTENSIONS_VAR);
        let mut stream = FdStream::new(fd, msg.data.clone());
        if let Some(agreed) = extensions {
            let d = super::deflate::Deflate::new(
                crate::ws::deflate::window_bits(agreed),
                self.cfg.max_frame,
                self.cfg.max_message,
            );
            stream = stream.with_deflate(d).map_err(|e| e.to_string())?;
        }
        stream.owe(&crate::http::encode::switching_to_websocket(
            &accept,
            var(crate::ws::PROTOCOL_VAR),
            extensions,
        ));
        let token = self.insert_session(stream, route, peer.clone(), exec, &[], msg.bus_id)?;
        // The request's access line is the HTTP process's, written when we
        // answer ACK (one line a request); this is the worker's own log.
        tracing::info!(
            peer = %peer,
            target = %target,
            "websocket {} worker={}",
            self.cfg.routes[route],
            std::process::id()
        );
        // The client's first frames may have come with the upgrade.
        self.drive(token);
        Ok(())
    }

    /// A refusal if this worker is at its connection limit.
    pub(super) fn has_room(&self) -> Result<(), String> {
        if self.live >= self.cfg.max_connections {
            return Err(format!(
                "worker at its limit of {} connections",
                self.cfg.max_connections
            ));
        }
        Ok(())
    }

    /// The index of the route serving `path`.
    pub(super) fn route_of(&self, path: &str) -> Result<usize, String> {
        self.cfg
            .routes
            .iter()
            .position(|r| r.path == path)
            .ok_or_else(|| format!("no WebSocket route for {path}"))
    }

    /// Starts serving a session whose handshake is done: a new one, or one
    /// moved here from another process's worker (with the messages it is
    /// still owed, sent first). Returns its token.
    pub(super) fn insert_session(
        &mut self,
        stream: FdStream,
        route: usize,
        peer: String,
        exec: Option<crate::ws::exec::Exec>,
        backlog: &[(bool, Vec<u8>)],
        bus_last: Option<wire::BusId>,
    ) -> Result<usize, String> {
        let raw = stream.fd().as_raw_fd();
        // What arrived before goes through the stream (not tungstenite's
        // own buffer), so that frames are counted from the first byte.
        let mut ws =
            WebSocket::from_partially_read(stream, Vec::new(), Role::Server, Some(self.ws_config));
        let mut blocked = false;
        for (binary, data) in backlog {
            let m = if *binary {
                Message::binary(data.clone())
            } else {
                Message::text(String::from_utf8_lossy(data).into_owned())
            };
            blocked |= queue(&mut ws, m).map_err(|e| e.to_string())?;
        }
        let now = Instant::now();
        let entry = self.entries.vacant_entry();
        let token = entry.key();
        self.poll
            .registry()
            .register(
                &mut SourceFd(&raw),
                Token(token),
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(|e| e.to_string())?;
        entry.insert(Entry::Ws(Box::new(WsConn {
            ws,
            route,
            blocked,
            last_seen: now,
            next_ping: now + self.cfg.ping_interval,
            exec: None,
            peer,
            frozen: None,
            retry_at: None,
            serial: self.next_serial,
            bus_last,
        })));
        self.next_serial += 1;
        self.live += 1;
        if let Some(exec) = exec {
            self.attach_exec(token, exec);
        }
        Ok(token)
    }
}
