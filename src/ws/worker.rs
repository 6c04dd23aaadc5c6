//! `handoff ws-worker`: a mio loop that adopts WebSocket connections handed
//! over by HTTP processes (the handoff wire format on a `SOCK_SEQPACKET`
//! socket), writes the 101 itself, and runs the protocol with tungstenite
//! on the non-blocking socket, starting from the bytes the HTTP process had
//! already read (`WebSocket::from_partially_read`).

use std::io::{self, IoSlice, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use tungstenite::protocol::frame::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{Role, WebSocketConfig};
use tungstenite::{Message, WebSocket};

use super::exec::{Exec, Output, Reaping};
use super::route::{Mode, Route};
use crate::handoff::wire::{self, Kind};
use crate::sys::{self, fdpass};

#[derive(Clone, Debug)]
pub struct WorkerConfig {
    pub routes: Vec<Route>,
    /// Most connections this worker serves; more are refused (the HTTP
    /// process answers those with 503).
    pub max_connections: usize,
    pub max_message: usize,
    pub max_frame: usize,
    /// A ping goes to each connection this often.
    pub ping_interval: Duration,
    /// A connection from which nothing (not even a pong) arrives for this
    /// long is closed.
    pub idle_timeout: Duration,
    /// Uids (besides our own) allowed to connect to a listening control
    /// socket (`--socket`, a systemd socket); checked with `SO_PEERCRED`.
    pub allowed_uids: Vec<u32>,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            routes: Vec::new(),
            max_connections: 10_000,
            max_message: 64 << 20,
            max_frame: 16 << 20,
            ping_interval: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(120),
            allowed_uids: Vec::new(),
        }
    }
}

/// A socket fd as a blocking-API stream for tungstenite; `WouldBlock`
/// comes through as an error, which tungstenite passes up.
pub struct FdStream(pub OwnedFd);

impl Read for FdStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        sys::read(self.0.as_fd(), buf)
    }
}

impl Write for FdStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        sys::write(self.0.as_fd(), buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

struct WsConn {
    ws: WebSocket<FdStream>,
    route: usize,
    /// Output is queued in tungstenite that the socket has not taken: stop
    /// reading (from the client and from an exec child) until it has.
    blocked: bool,
    last_seen: Instant,
    next_ping: Instant,
    exec: Option<ExecSlot>,
    peer: String,
}

struct ExecSlot {
    exec: Exec,
    out_token: Option<usize>,
    in_token: Option<usize>,
}

enum Entry {
    Ctl(OwnedFd),
    CtlListener(OwnedFd),
    Ws(Box<WsConn>),
    /// A child's stdout or stdin, standing for the connection it serves.
    ExecPipe(usize),
}

pub struct Worker {
    poll: Poll,
    /// SIGTERM arrived: connections are being closed with 1001.
    term: std::sync::Arc<std::sync::atomic::AtomicBool>,
    stopping_until: Option<Instant>,
    entries: Slab<Entry>,
    cfg: WorkerConfig,
    live: usize,
    reaping: Vec<Reaping>,
    ws_config: WebSocketConfig,
}

fn would_block(e: &tungstenite::Error) -> bool {
    matches!(e, tungstenite::Error::Io(io) if io.kind() == io::ErrorKind::WouldBlock)
}

/// Queues a message. `WouldBlock` from tungstenite's `write` means it was
/// queued but the socket is full: back-pressure, not an error. Returns
/// whether the connection is now blocked.
fn queue(ws: &mut WebSocket<FdStream>, m: Message) -> Result<bool, tungstenite::Error> {
    match ws.write(m) {
        Ok(()) => Ok(false),
        Err(e) if would_block(&e) => Ok(true),
        Err(e) => Err(e),
    }
}

/// Writes all of `data` to a fresh non-blocking socket, waiting (a little)
/// if it is full. Used for the 101 only, which fits any socket buffer.
fn write_all_soon(fd: &OwnedFd, mut data: &[u8]) -> io::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(2);
    while !data.is_empty() {
        match sys::write(fd.as_fd(), data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl Worker {
    pub fn new(cfg: WorkerConfig) -> io::Result<Worker> {
        let ws_config = WebSocketConfig::default()
            .max_message_size(Some(cfg.max_message))
            .max_frame_size(Some(cfg.max_frame));
        let term = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        signal_hook::flag::register(signal_hook::consts::SIGTERM, term.clone())?;
        Ok(Worker {
            poll: Poll::new()?,
            term,
            stopping_until: None,
            entries: Slab::new(),
            cfg,
            live: 0,
            reaping: Vec::new(),
            ws_config,
        })
    }

    /// A socket to an HTTP process (one end of a socketpair).
    pub fn add_ctl(&mut self, fd: OwnedFd) -> io::Result<()> {
        self.register(fd, Entry::Ctl)
    }

    /// A listening `SOCK_SEQPACKET` socket HTTP processes connect to
    /// (`--ws-worker-socket`).
    pub fn add_ctl_listener(&mut self, fd: OwnedFd) -> io::Result<()> {
        self.register(fd, Entry::CtlListener)
    }

    fn register(&mut self, fd: OwnedFd, entry: fn(OwnedFd) -> Entry) -> io::Result<()> {
        sys::prepare_adopted(fd.as_fd())?;
        let e = self.entries.vacant_entry();
        self.poll.registry().register(
            &mut SourceFd(&fd.as_raw_fd()),
            Token(e.key()),
            Interest::READABLE,
        )?;
        e.insert(entry(fd));
        Ok(())
    }

    fn has_ctl(&self) -> bool {
        self.entries
            .iter()
            .any(|(_, e)| matches!(e, Entry::Ctl(_) | Entry::CtlListener(_)))
    }

    /// Runs until every HTTP process is gone.
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(512);
        let mut next_tick = Instant::now() + Duration::from_secs(1);
        loop {
            let now = Instant::now();
            if self.term.load(std::sync::atomic::Ordering::Relaxed) && self.stopping_until.is_none()
            {
                self.going_away(now);
            }
            match self.stopping_until {
                Some(until) if self.live == 0 || now >= until => break,
                None if !self.has_ctl() && self.live == 0 => break,
                _ => {}
            }
            // Often enough for the configured ping interval and idle deadline,
            // and for the signal schedule of exiting exec children.
            let mut tick_every = Duration::from_secs(1)
                .min(self.cfg.ping_interval / 2)
                .min(self.cfg.idle_timeout / 4);
            if !self.reaping.is_empty() {
                tick_every = tick_every.min(Duration::from_millis(100));
            }
            next_tick = next_tick.min(now + tick_every);
            crate::log::batch(true);
            match self
                .poll
                .poll(&mut events, Some(next_tick.saturating_duration_since(now)))
            {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            let tokens: Vec<usize> = events.iter().map(|e| e.token().0).collect();
            for t in tokens {
                self.on_event(t);
            }
            let now = Instant::now();
            if now >= next_tick {
                self.tick(now);
                next_tick = now + tick_every;
            }
            crate::log::flush();
            crate::log::batch(false);
        }
        Ok(())
    }

    fn on_event(&mut self, token: usize) {
        match self.entries.get(token) {
            Some(Entry::Ctl(_)) => self.read_ctl(token),
            Some(Entry::CtlListener(l)) => {
                let mut accepted = Vec::new();
                while let Ok((fd, _)) = sys::accept(l.as_fd()) {
                    accepted.push(fd);
                }
                for fd in accepted {
                    if self.peer_allowed(&fd)
                        && let Err(e) = self.add_ctl(fd)
                    {
                        tracing::warn!("worker control peer: {e}");
                    }
                }
            }
            Some(Entry::Ws(_)) => self.drive(token),
            Some(Entry::ExecPipe(conn)) => {
                let conn = *conn;
                self.drive(conn)
            }
            None => {}
        }
    }

    /// Only our own uid and the allowed ones may hand us connections: a
    /// peer that may write PASS_CONNECTION can make us speak on any socket
    /// it has. Others get a REFUSE and are closed.
    fn peer_allowed(&self, fd: &OwnedFd) -> bool {
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
        tracing::warn!(uid, pid, "worker control peer refused: uid not allowed");
        let m = wire::Message::refuse(0, format!("uid {uid} is not allowed on this worker socket"));
        let _ = fdpass::send_with_fds(fd.as_fd(), &[IoSlice::new(&m.encode())], &[]);
        false
    }

    fn send_ctl(&self, token: usize, m: &wire::Message) {
        if let Some(Entry::Ctl(fd)) = self.entries.get(token)
            && let Err(e) = fdpass::send_with_fds(fd.as_fd(), &[IoSlice::new(&m.encode())], &[])
        {
            tracing::debug!("worker control send: {e}");
        }
    }

    fn ctl_tokens(&self) -> Vec<usize> {
        self.entries
            .iter()
            .filter_map(|(t, e)| matches!(e, Entry::Ctl(_)).then_some(t))
            .collect()
    }

    fn report_load(&self) {
        let m = wire::Message::new(Kind::Load, self.live as u64);
        for t in self.ctl_tokens() {
            self.send_ctl(t, &m);
        }
    }

    fn read_ctl(&mut self, token: usize) {
        let mut buf = vec![0u8; wire::MAX_MESSAGE];
        loop {
            let Some(Entry::Ctl(fd)) = self.entries.get(token) else {
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
                Kind::Broadcast => {
                    let binary = msg.flags & wire::flags::BINARY != 0;
                    let path = msg.name.clone().unwrap_or_default();
                    self.deliver(&path, &msg.data, binary, None);
                }
                other => {
                    self.send_ctl(
                        token,
                        &wire::Message::refuse(msg.id, format!("a worker does not take {other:?}")),
                    );
                }
            }
        }
    }

    fn drop_ctl(&mut self, token: usize) {
        if let Some(Entry::Ctl(fd)) = self.entries.try_remove(token) {
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&fd.as_raw_fd()));
        }
    }

    /// Takes a handed-over connection: checks it, writes the 101, and
    /// starts the protocol from the bytes already read.
    fn adopt(&mut self, fd: OwnedFd, msg: &wire::Message) -> Result<(), String> {
        if self.live >= self.cfg.max_connections {
            return Err(format!(
                "worker at its limit of {} connections",
                self.cfg.max_connections
            ));
        }
        let mut headers = [httparse::EMPTY_HEADER; 128];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&msg.head) {
            Ok(httparse::Status::Complete(_)) => {}
            _ => return Err("the HEAD field is not a complete request head".into()),
        }
        let target = req.path.unwrap_or("/");
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let route = self
            .cfg
            .routes
            .iter()
            .position(|r| r.path == path)
            .ok_or_else(|| format!("no WebSocket route for {path}"))?;
        let key = req
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("sec-websocket-key"))
            .map(|h| h.value.trim_ascii())
            .ok_or("no Sec-WebSocket-Key")?;
        sys::prepare_adopted(fd.as_fd()).map_err(|e| e.to_string())?;
        let peer = msg
            .peer
            .clone()
            .unwrap_or_else(|| sys::peer_addr(fd.as_fd()).to_string());

        let exec = match &self.cfg.routes[route].mode {
            Mode::Exec { command, binary } => {
                let mut env: Vec<(String, String)> = vec![
                    ("GATEWAY_INTERFACE".into(), "CGI/1.1".into()),
                    ("SERVER_PROTOCOL".into(), "HTTP/1.1".into()),
                    ("REQUEST_METHOD".into(), "GET".into()),
                    ("PATH_INFO".into(), path.into()),
                    ("QUERY_STRING".into(), query.into()),
                    ("REQUEST_URI".into(), target.into()),
                ];
                if let Ok(a) = peer.parse::<std::net::SocketAddr>() {
                    env.push(("REMOTE_ADDR".into(), a.ip().to_string()));
                    env.push(("REMOTE_PORT".into(), a.port().to_string()));
                }
                for h in req.headers.iter() {
                    let name: String = h
                        .name
                        .chars()
                        .map(|c| {
                            if c == '-' {
                                '_'
                            } else {
                                c.to_ascii_uppercase()
                            }
                        })
                        .collect();
                    env.push((
                        format!("HTTP_{name}"),
                        String::from_utf8_lossy(h.value).into_owned(),
                    ));
                }
                Some(
                    Exec::spawn(command, *binary, &env)
                        .map_err(|e| format!("cannot start {command:?}: {e}"))?,
                )
            }
            _ => None,
        };

        let accept = tungstenite::handshake::derive_accept_key(key);
        let response = crate::http::encode::switching_to_websocket(&accept);
        write_all_soon(&fd, &response).map_err(|e| format!("writing the 101: {e}"))?;

        let raw = fd.as_raw_fd();
        let ws = WebSocket::from_partially_read(
            FdStream(fd),
            msg.data.clone(),
            Role::Server,
            Some(self.ws_config),
        );
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
            blocked: false,
            last_seen: now,
            next_ping: now + self.cfg.ping_interval,
            exec: None,
            peer: peer.clone(),
        })));
        self.live += 1;
        if let Some(exec) = exec {
            self.attach_exec(token, exec);
        }
        tracing::info!(target: "handoff::access", "{peer} \"GET {target}\" 101 websocket {} worker={}", self.cfg.routes[route], std::process::id());
        // The client's first frames may have come with the upgrade.
        self.drive(token);
        Ok(())
    }

    fn attach_exec(&mut self, token: usize, exec: Exec) {
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
    fn register_pipe(
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
    fn drive(&mut self, token: usize) {
        let now = Instant::now();
        let max_line = self.cfg.max_message;
        let mut broadcasts: Vec<(Vec<u8>, bool)> = Vec::new();
        let Some(Entry::Ws(c)) = self.entries.get_mut(token) else {
            return;
        };
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
        for (data, binary) in broadcasts {
            let path = self.cfg.routes[route].path.clone();
            self.deliver(&path, &data, binary, None);
            let mut m = wire::Message::new(Kind::Broadcast, 0);
            m.name = Some(path);
            m.data = data;
            m.flags = if binary { wire::flags::BINARY } else { 0 };
            for t in self.ctl_tokens() {
                self.send_ctl(t, &m);
            }
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

    /// Sends a message to every connection on `path` in this worker.
    fn deliver(&mut self, path: &str, data: &[u8], binary: bool, except: Option<usize>) {
        let Some(route) = self.cfg.routes.iter().position(|r| r.path == path) else {
            return;
        };
        let targets: Vec<usize> = self
            .entries
            .iter()
            .filter_map(|(t, e)| match e {
                Entry::Ws(c) if c.route == route && Some(t) != except => Some(t),
                _ => None,
            })
            .collect();
        for t in targets {
            let Some(Entry::Ws(c)) = self.entries.get_mut(t) else {
                continue;
            };
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

    fn close(&mut self, token: usize) {
        let Some(Entry::Ws(c)) = self.entries.try_remove(token) else {
            return;
        };
        let mut c = c;
        let _ = self
            .poll
            .registry()
            .deregister(&mut SourceFd(&c.ws.get_ref().0.as_raw_fd()));
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

    /// SIGTERM: every connection gets a Close frame with 1001 (going away)
    /// and a moment to answer it; new handoffs are refused; the worker
    /// exits when all are closed or after two seconds.
    fn going_away(&mut self, now: Instant) {
        tracing::info!(
            connections = self.live,
            "SIGTERM: closing WebSocket connections with 1001"
        );
        self.stopping_until = Some(now + Duration::from_secs(2));
        let tokens: Vec<usize> = self
            .entries
            .iter()
            .filter_map(|(t, e)| matches!(e, Entry::Ws(_)).then_some(t))
            .collect();
        for t in tokens {
            if let Some(Entry::Ws(c)) = self.entries.get_mut(t) {
                let frame = CloseFrame {
                    code: CloseCode::Away,
                    reason: "server shutting down".into(),
                };
                let r = c.ws.close(Some(frame)).and_then(|()| c.ws.flush());
                if let Err(e) = r
                    && !would_block(&e)
                {
                    self.close(t);
                }
            }
        }
    }

    /// Once a second (ten times while children are being ended): pings,
    /// idle deadlines, and the signal schedule of exec children.
    fn tick(&mut self, now: Instant) {
        let mut idle = Vec::new();
        for (t, e) in self.entries.iter_mut() {
            if let Entry::Ws(c) = e {
                if now >= c.last_seen + self.cfg.idle_timeout {
                    idle.push(t);
                    continue;
                }
                if now >= c.next_ping {
                    c.next_ping = now + self.cfg.ping_interval;
                    let r = queue(&mut c.ws, Message::Ping(Vec::new().into()))
                        .and_then(|_| c.ws.flush());
                    if let Err(e) = r
                        && !would_block(&e)
                    {
                        idle.push(t);
                    }
                }
            }
        }
        for t in idle {
            tracing::debug!("WebSocket idle past its deadline; closed");
            self.close(t);
        }
        self.reaping.retain_mut(|r| {
            let gone = r.tick(now);
            if gone {
                tracing::debug!(pid = r.pid(), "exec child ended");
            }
            !gone
        });
    }
}
