//! The control socket: a front proxy passes us listeners, or connections
//! with the bytes it already read, over `SOCK_SEQPACKET` with `SCM_RIGHTS`,
//! in the wire format of `crate::handoff::wire`. Every message is answered
//! with an ACK or a REFUSE with a reason.
//!
//! The socket is served by blocking threads (one accepts, one per peer):
//! a handful of local proxies do not need the event loop, and the loop stays
//! free of anything but HTTP. Sockets reach the loop through its `Inbox`, so
//! `max_concurrent` and the queue bound apply exactly as for any other
//! source.

use std::io::{self, IoSlice};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use crate::handoff::wire::{self, Kind, Message};
use crate::server::{Added, Loops, Socket, Submission};
use crate::sys::fdpass;
use crate::sys::{self, Addr, SockKind};

#[derive(Clone, Debug)]
pub(crate) struct ControlConfig {
    /// Peers whose uid (`SO_PEERCRED`) is not here are refused.
    pub allowed_uids: Vec<u32>,
    /// How long to wait for the event loop to adopt a socket.
    pub adopt_timeout: Duration,
    /// Most peers served at once.
    pub max_peers: usize,
    /// Where `UPGRADE` requests go (the serving process's lifecycle), each
    /// with the channel its outcome comes back on; `None`: refused.
    pub upgrades: Option<mpsc::Sender<UpgradeRequest>>,
    /// How long an `UPGRADE` may take before its answer says so.
    pub upgrade_wait: Duration,
    /// `UPGRADE` answers not yet written: the process must not exit
    /// before they are (it is woken when one is).
    pub answering: Arc<AtomicUsize>,
}

/// An `UPGRADE` request: its outcome (the new PID, or why not) is sent back
/// on this.
pub(crate) type UpgradeRequest = mpsc::Sender<Result<u32, String>>;

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            allowed_uids: vec![sys::process::euid()],
            adopt_timeout: Duration::from_secs(5),
            max_peers: 64,
            upgrades: None,
            upgrade_wait: Duration::from_secs(30),
            answering: Arc::default(),
        }
    }
}

/// A control socket served on its thread: a copy of the listener (to pass
/// to the new process of an upgrade) and what stops the thread accepting.
pub(crate) struct Control {
    pub(crate) listener: OwnedFd,
    stop: std::os::unix::net::UnixStream,
}

impl Control {
    /// Stops accepting (peers already connected are served on); the
    /// socket stays open for whoever else has it.
    pub(crate) fn stop(self) {
        drop(self.stop);
    }
}

/// Serves a listening control socket on a thread of its own.
pub(crate) fn spawn(listener: OwnedFd, cfg: ControlConfig, loops: Loops) -> io::Result<Control> {
    if !fdpass::is_seqpacket(listener.as_fd()) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the control socket must be a SOCK_SEQPACKET socket",
        ));
    }
    sys::prepare_adopted(listener.as_fd())?;
    let copy = listener.try_clone()?;
    let (stop, stopped) = std::os::unix::net::UnixStream::pair()?;
    let peers = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            loop {
                let Some(conn) =
                    fdpass::accept_until(listener.as_fd(), stopped.as_fd(), "control socket")
                else {
                    return;
                };
                let (uid, pid) = match fdpass::peer_cred(conn.as_fd()) {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!("control peer credentials: {e}");
                        continue;
                    }
                };
                if !cfg.allowed_uids.contains(&uid) {
                    crate::metrics::inc(crate::metrics::M::ControlRefusedPeer);
                    let why = uid_refused(uid, "control socket");
                    tracing::warn!(pid, "control peer refused: {why}");
                    refuse(&conn, &Message::refuse(0, why));
                    continue;
                }
                if peers.load(Ordering::Relaxed) >= cfg.max_peers {
                    crate::metrics::inc(crate::metrics::M::ControlRefusedPeer);
                    tracing::warn!(uid, pid, "control peer refused: too many peers");
                    refuse(&conn, &Message::refuse(0, "too many control peers"));
                    continue;
                }
                peers.fetch_add(1, Ordering::Relaxed);
                let (cfg, loops, peers) = (cfg.clone(), loops.clone(), peers.clone());
                let spawned = std::thread::Builder::new()
                    .name("control-peer".into())
                    .spawn(move || {
                        tracing::debug!(uid, pid, "control peer connected");
                        serve_peer(&conn, &cfg, &loops);
                        peers.fetch_sub(1, Ordering::Relaxed);
                    });
                if let Err(e) = spawned {
                    tracing::warn!("control peer thread: {e}");
                }
            }
        })?;
    Ok(Control {
        listener: copy,
        stop,
    })
}

/// A peer's last message before we close on it unheard.
fn refuse(conn: &OwnedFd, m: &Message) {
    if let Err(e) = fdpass::send_last(conn.as_fd(), &m.encode()) {
        tracing::debug!("control refusal: {e}");
    }
}

/// Why a peer's uid is refused on `socket`, for the log and the peer.
pub(crate) fn uid_refused(uid: u32, socket: &str) -> String {
    let mut why = format!("uid {uid} is not allowed on this {socket}");
    if sys::process::is_unmapped_uid(uid) {
        why.push_str(
            " (the overflow uid: the peer's user is not mapped in this \
             process's user namespace, as under systemd's PrivateUsers=yes, \
             which maps root and the unit's user alone)",
        );
    }
    why
}

fn reply(conn: &OwnedFd, m: &Message) {
    if let Err(e) = fdpass::send_with_fds(conn.as_fd(), &[IoSlice::new(&m.encode())], &[]) {
        tracing::debug!("control reply: {e}");
    }
}

pub(crate) fn serve_peer(conn: &OwnedFd, cfg: &ControlConfig, loops: &Loops) {
    let mut buf = vec![0u8; wire::MAX_MESSAGE];
    loop {
        let rec = match fdpass::recv_with_fds(conn.as_fd(), &mut buf) {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!("control peer: {e}");
                return;
            }
        };
        if let Ok(m) = Message::decode(&buf[..rec.len])
            && m.kind() == Kind::Upgrade
            && rec.fds.is_empty()
        {
            cfg.answering.fetch_add(1, Ordering::AcqRel);
            reply(conn, &upgrade(m.id, cfg, loops));
            cfg.answering.fetch_sub(1, Ordering::AcqRel);
            let _ = loops.all()[0].wake();
            continue;
        }
        let answer = match handle(
            &buf[..rec.len],
            rec.fds,
            rec.truncated,
            rec.ctrunc,
            rec.other_cmsg,
            cfg,
            loops,
        ) {
            Ok(id) => {
                crate::metrics::inc(crate::metrics::M::ControlTaken);
                Message::ack(id)
            }
            Err((id, why)) => {
                use crate::metrics::M;
                crate::metrics::inc(if why.contains("stopping") {
                    M::ControlRefusedStopping
                } else if why.contains("fd")
                    || why.contains("ancillary")
                    || why.contains("truncated")
                {
                    M::ControlRefusedFd
                } else {
                    M::ControlRefusedOther
                });
                tracing::warn!(id, "handoff refused: {why}");
                Message::refuse(id, why)
            }
        };
        reply(conn, &answer);
    }
}

/// `UPGRADE`: asks the lifecycle to replace the binary and answers with its
/// outcome.
fn upgrade(id: u64, cfg: &ControlConfig, loops: &Loops) -> Message {
    let Some(requests) = &cfg.upgrades else {
        return Message::refuse(id, "this server does not take upgrade requests");
    };
    let (tx, rx) = mpsc::channel();
    if requests.send(tx).is_err() || loops.all()[0].wake().is_err() {
        return Message::refuse(id, "the server is stopping");
    }
    match rx.recv_timeout(cfg.upgrade_wait) {
        Ok(Ok(pid)) => {
            let mut m = Message::ack(id);
            m.name = Some(pid.to_string());
            m
        }
        Ok(Err(why)) => Message::refuse(id, why),
        Err(_) => Message::refuse(id, "no outcome in time; see the server's log"),
    }
}

/// Checks one message and hands its socket to the loop. Every fd that came
/// with a refused message is closed when `fds` is dropped.
fn handle(
    rec: &[u8],
    mut fds: Vec<OwnedFd>,
    truncated: bool,
    ctrunc: bool,
    other_cmsg: bool,
    cfg: &ControlConfig,
    loops: &Loops,
) -> Result<u64, (u64, String)> {
    if truncated {
        return Err((
            0,
            format!("message larger than {} bytes", wire::MAX_MESSAGE),
        ));
    }
    if ctrunc {
        return Err((0, "control data truncated (too many fds)".into()));
    }
    if other_cmsg {
        return Err((
            0,
            "unexpected control message (only SCM_RIGHTS is accepted)".into(),
        ));
    }
    let msg = Message::decode(rec)?;
    let id = msg.id;
    let kind = msg.kind();
    if !kind.carries_fd() {
        return Err((id, format!("a {kind:?} message is not a request")));
    }
    if fds.len() != 1 {
        return Err((id, format!("expected exactly one fd, got {}", fds.len())));
    }
    let fd = fds.pop().ok_or((id, "no fd".to_string()))?;
    let actual = sys::classify(fd.as_fd()).map_err(|e| (id, format!("fd refused: {e}")))?;
    match (kind, actual) {
        (Kind::PassListener, SockKind::Listener { .. })
        | (Kind::PassConnection, SockKind::Stream { .. }) => {}
        (Kind::PassListener, _) => {
            return Err((
                id,
                "PASS_LISTENER with a socket that is not listening".into(),
            ));
        }
        _ => return Err((id, "PASS_CONNECTION with a listening socket".into())),
    }
    if kind == Kind::PassListener && !(msg.data.is_empty() && msg.h2_state.is_empty()) {
        return Err((
            id,
            "a listener has no pre-read bytes or HTTP/2 state".into(),
        ));
    }
    // A connection goes to the least-loaded loop; a listener to the first,
    // whose answer is reported, and then a copy to every other loop.
    let inbox = match kind {
        Kind::PassListener => &loops.all()[0],
        _ => loops.least_loaded(),
    };
    let copies = match kind {
        Kind::PassListener => loops.all()[1..]
            .iter()
            .map(|_| fd.try_clone())
            .collect::<io::Result<Vec<_>>>()
            .map_err(|e| (id, format!("cannot share the listener: {e}")))?,
        _ => Vec::new(),
    };
    let socket = match msg.peer.as_deref().and_then(|p| p.parse().ok()) {
        Some(a) => Socket::with_peer(fd, Addr::Inet(a)),
        None => Socket::new(fd),
    };
    // A stream marked TLS is served with TLS like an accepted one (the
    // server refuses it if it has no certificate).
    let tls = if msg.flags & wire::flags::TLS != 0 {
        crate::tls::TlsMode::On
    } else {
        crate::tls::TlsMode::Off
    };
    let mut socket = socket.tls(tls);
    // PROXY: a listener's connections, or this connection, start with a
    // PROXY header, unless the front read it already and says what it
    // said in PEER (then PEER is the client, as without the flag).
    let proxy =
        msg.flags & wire::flags::PROXY != 0 && (kind == Kind::PassListener || msg.peer.is_none());
    if proxy {
        socket = socket.proxy(crate::proxy::ProxyMode::Any);
    }
    if !msg.h2_state.is_empty() {
        socket = socket.resuming_h2(msg.h2_state);
    }
    let (tx, rx) = mpsc::channel();
    let ticket = inbox
        .submit(Submission {
            socket,
            pre_read: msg.data,
            reply: Some(tx),
        })
        .map_err(|e| (id, format!("server unavailable: {e}")))?;
    let outcome = match rx.recv_timeout(cfg.adopt_timeout) {
        Ok(r) => r,
        // A REFUSE promises the sender that it still owns the socket and
        // that we do not: take the submission back before saying so. If
        // the loop has it already, its answer is on the way (adopting does
        // not block), so wait for that instead of refusing.
        Err(_) if inbox.cancel(ticket) => {
            return Err((id, "the server did not adopt the socket in time".into()));
        }
        Err(_) => rx
            .recv()
            .map_err(|_| (id, "the server stopped while adopting the socket".into()))?,
    };
    match outcome {
        Ok(Added::Listener(a)) => {
            tracing::info!(id, local = %a, "listener handed over");
            for (other, fd) in loops.all()[1..].iter().zip(copies) {
                let mut socket = Socket::new(fd).tls(tls);
                if proxy {
                    socket = socket.proxy(crate::proxy::ProxyMode::Any);
                }
                let copy = Submission {
                    socket,
                    pre_read: Vec::new(),
                    reply: None,
                };
                if let Err(e) = other.submit(copy) {
                    tracing::warn!(id, "a loop did not take its copy of the listener: {e}");
                }
            }
            Ok(id)
        }
        Ok(_) => Ok(id),
        Err(e) => Err((id, e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Options, Request, Response, Server};
    use std::os::unix::net::UnixStream;

    fn pass_connection(
        inbox: &crate::server::Inbox,
        timeout: Duration,
    ) -> (Result<u64, (u64, String)>, UnixStream) {
        pass_connection_with(inbox, timeout, Vec::new())
    }

    fn pass_connection_with(
        inbox: &crate::server::Inbox,
        timeout: Duration,
        h2_state: Vec<u8>,
    ) -> (Result<u64, (u64, String)>, UnixStream) {
        let (ours, client) = UnixStream::pair().unwrap();
        let cfg = ControlConfig {
            adopt_timeout: timeout,
            ..ControlConfig::default()
        };
        let mut m = Message::new(Kind::PassConnection, 7);
        m.h2_state = h2_state;
        let rec = m.encode();
        let r = handle(
            &rec,
            vec![OwnedFd::from(ours)],
            false,
            false,
            false,
            &cfg,
            &Loops::new(vec![inbox.clone()]),
        );
        (r, client)
    }

    fn server() -> Server {
        Server::new(
            Options::default(),
            |_: &Request<'_>, res: &mut Response<'_>| {
                res.body("served");
            },
        )
        .unwrap()
    }

    #[test]
    fn a_connection_with_an_http2_state_that_does_not_read_is_refused_and_not_kept() {
        let mut s = server();
        let inbox = s.inbox();
        let t = std::thread::spawn(move || {
            pass_connection_with(&inbox, Duration::from_secs(5), b"not a state".to_vec())
        });
        while !t.is_finished() {
            s.step(Some(Duration::from_millis(10))).unwrap();
        }
        let (r, _client) = t.join().unwrap();
        let (id, why) = r.unwrap_err();
        assert_eq!(id, 7);
        assert!(why.contains("HTTP/2 state"), "{why}");
        assert_eq!(s.connections(), 0);
    }

    #[test]
    fn a_refused_handoff_is_never_adopted_later() {
        let mut s = server();
        let inbox = s.inbox();
        // The loop is busy (not stepped) past the adoption deadline.
        let (r, _client) = pass_connection(&inbox, Duration::from_millis(50));
        assert_eq!(r.map_err(|e| e.0), Err(7));
        // When it comes round, the submission is gone: one owner, the sender.
        s.step(Some(Duration::from_millis(50))).unwrap();
        assert_eq!(s.connections(), 0);
        assert!(s.is_empty());
    }

    #[test]
    fn a_handoff_adopted_in_time_is_acknowledged() {
        let mut s = server();
        let inbox = s.inbox();
        let t = std::thread::spawn(move || pass_connection(&inbox, Duration::from_secs(5)));
        while !t.is_finished() {
            s.step(Some(Duration::from_millis(10))).unwrap();
        }
        let (r, _client) = t.join().unwrap();
        assert_eq!(r, Ok(7));
        assert_eq!(s.connections(), 1);
    }
}
