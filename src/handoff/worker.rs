//! An application process behind `handoff serve --app`: the HTTP process
//! lends it HTTP/1.1 connections whose request is on one of its routes (the
//! socket, the request's bytes, the client's address, over a line in the
//! wire format), this process's `Server` answers on the client's socket
//! itself, and gives each connection back as soon as it is idle, so the
//! client's next request is routed afresh (`docs/apps.md`).
//!
//! ```no_run
//! use handoff::{Options, Request, Response, Server};
//!
//! let mut server = Server::new(Options::default(), |req: &Request<'_>, res: &mut Response<'_>| {
//!     res.body(format!("{} from the app\n", req.path()));
//! })?;
//! // `exec:` routes start us with our line; a `unix:` route's socket is
//! // ours by systemd socket activation (or `Lines::listen`).
//! handoff::worker::Lines::from_env()?.run(&mut server)
//! # ; Ok::<(), std::io::Error>(())
//! ```

use std::io::{self, IoSlice};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use super::wire::{self, Kind, Message};
use crate::server::{Inbox, Mover, Server, Socket, Submission};
use crate::sys::{self, Addr, SockKind, fdpass};

/// The variable naming the fd of the line an `exec:` app process is
/// started with.
pub const LINE_FD_VAR: &str = "HANDOFF_APP_FD";

/// How long the loop may take to adopt a lent connection before the
/// HTTP process is told no.
const ADOPT_WAIT: Duration = Duration::from_secs(5);

/// Where lent connections come from: one line (an `exec:` app process's),
/// or a `SOCK_SEQPACKET` listener each HTTP process connects to (a `unix:`
/// app's).
pub struct Lines(Source);

enum Source {
    Line(OwnedFd),
    Listener(OwnedFd),
}

impl Lines {
    /// The line `handoff serve --app PREFIX=exec:CMD` started us with
    /// (`HANDOFF_APP_FD`), else a `SOCK_SEQPACKET` socket systemd socket
    /// activation gave us (`ListenSequentialPacket=`, for `--app
    /// PREFIX=unix:PATH`). Call it before starting threads.
    pub fn from_env() -> io::Result<Lines> {
        if let Some(fd) = sys::process::take_env_fd(LINE_FD_VAR)? {
            return Ok(Lines(Source::Line(fd)));
        }
        for inherited in sys::process::take_listen_fds()? {
            if sys::fdpass::is_seqpacket(inherited.fd.as_fd()) {
                return Ok(Lines(Source::Listener(inherited.fd)));
            }
        }
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no line: neither {LINE_FD_VAR} nor a SOCK_SEQPACKET socket from systemd"),
        ))
    }

    /// Listens at `path` (mode 0600) for HTTP processes (`--app
    /// PREFIX=unix:PATH`), for an app started by hand.
    pub fn listen(path: &Path) -> io::Result<Lines> {
        Ok(Lines(Source::Listener(fdpass::seqpacket_listen(path)?)))
    }

    /// Serves what comes on the lines with `server`: each line is read on
    /// a thread of its own; each connection lent is given to the server's
    /// loop (as `add_stream`, with the request's bytes and the client's
    /// address) and goes back on its line once idle; the line's answer
    /// (`ACK`) is sent once the loop took it. Returns when the server is
    /// empty and no line is open (the HTTP process that started us has
    /// gone); a listener keeps it running.
    pub fn run(self, server: &mut Server) -> io::Result<()> {
        let inbox = server.inbox();
        let open = Arc::new(AtomicUsize::new(0));
        let listening = matches!(self.0, Source::Listener(_));
        match self.0 {
            Source::Line(fd) => spawn_reader(fd, inbox, open.clone())?,
            Source::Listener(listener) => {
                let open = open.clone();
                std::thread::Builder::new()
                    .name("app-lines".into())
                    .spawn(move || {
                        loop {
                            let line = fdpass::accept_resting(listener.as_fd(), "app line");
                            if let Err(e) = spawn_reader(line, inbox.clone(), open.clone()) {
                                tracing::error!("app line: no thread: {e}");
                            }
                        }
                    })?;
            }
        }
        while listening || open.load(Ordering::Acquire) > 0 || !server.is_empty() {
            server.step(None)?;
        }
        Ok(())
    }
}

fn spawn_reader(line: OwnedFd, inbox: Inbox, open: Arc<AtomicUsize>) -> io::Result<()> {
    open.fetch_add(1, Ordering::AcqRel);
    let r = std::thread::Builder::new()
        .name("app-line".into())
        .spawn(move || {
            read_line(Arc::new(line), &inbox);
            // The loop looks again whether anything is left to serve.
            open.fetch_sub(1, Ordering::AcqRel);
            let _ = inbox.wake();
        });
    r.map(drop)
}

/// Takes what comes on one line until the HTTP process closes it. Asked
/// to finish, it says so (`ACK` to the `FINISH`) each time none of the
/// line's connections is left here: a connection lent as it said so, the
/// HTTP process waits for the next.
fn read_line(line: Arc<OwnedFd>, inbox: &Inbox) {
    let back = back_on(line.clone());
    let mut buf = vec![0u8; wire::MAX_MESSAGE];
    let (mut finishing, mut said) = (None, false);
    loop {
        // Each connection of this line holds a clone of its way back
        // (`Socket::returning`) until it is given back or closed.
        let none_here = Arc::strong_count(&back) == 1;
        if let Some(id) = finishing
            && none_here
            && !said
        {
            let done = Message::new(Kind::Ack, id).encode();
            let _ = fdpass::send_with_fds(line.as_fd(), &[IoSlice::new(&done)], &[]);
        }
        said = finishing.is_some() && none_here;
        let rec = match fdpass::recv_with_fds(line.as_fd(), &mut buf) {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) if finishing.is_some() && sys::would_block(&e) => continue,
            Err(e) => {
                tracing::debug!("app line: {e}");
                return;
            }
        };
        if let Ok(m) = Message::decode(&buf[..rec.len])
            && m.kind() == Kind::Finish
        {
            // Looked at again every 20 ms while connections come back.
            (finishing, said) = (Some(m.id), false);
            let _ = fdpass::set_recv_timeout(line.as_fd(), Duration::from_millis(20));
            continue;
        }
        let answer = match take(&buf[..rec.len], rec, inbox, &back) {
            Ok(id) => {
                // Said again once this one is back too.
                said = false;
                Message::new(Kind::Ack, id)
            }
            Err((id, why)) => {
                tracing::warn!("app line: refused a connection: {why}");
                let mut m = Message::new(Kind::Refuse, id);
                m.reason = Some(why);
                m
            }
        };
        if fdpass::send_with_fds(line.as_fd(), &[IoSlice::new(&answer.encode())], &[]).is_err() {
            return;
        }
    }
}

/// Adopts one lent connection: its ID, or why not.
fn take(
    bytes: &[u8],
    rec: fdpass::Received,
    inbox: &Inbox,
    back: &Mover,
) -> Result<u64, (u64, String)> {
    let msg = Message::decode(bytes).map_err(|(id, why)| (id, format!("malformed: {why}")))?;
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
    match sys::classify(fd.as_fd()) {
        Ok(SockKind::Stream { .. }) => {}
        _ => return Err((id, "not a connected stream socket".into())),
    }
    let socket = match msg.peer.as_deref().and_then(|p| p.parse().ok()) {
        Some(a) => Socket::with_peer(fd, Addr::Inet(a)),
        None => Socket::new(fd),
    };
    let mut pre_read = msg.head;
    pre_read.extend_from_slice(&msg.data);
    let (tx, rx) = mpsc::channel();
    let ticket = inbox
        .submit(Submission {
            socket: socket.returning(back.clone()),
            pre_read,
            reply: Some(tx),
        })
        .map_err(|e| (id, format!("the loop is gone: {e}")))?;
    let outcome = match rx.recv_timeout(ADOPT_WAIT) {
        Ok(r) => r,
        // Taken back unseen: the HTTP process still owns the socket.
        Err(_) if inbox.cancel(ticket) => return Err((id, "the loop is busy".into())),
        Err(_) => rx
            .recv()
            .unwrap_or_else(|_| Err(io::Error::other("the loop is gone"))),
    };
    outcome.map(|_| id).map_err(|e| (id, e.to_string()))
}

/// Where this line's connections go when idle: back on the line, one
/// message each, not answered (`RETURNED`). Sent without waiting: a line
/// too full to take it now leaves the connection here.
fn back_on(line: Arc<OwnedFd>) -> Mover {
    let next = AtomicU64::new(1);
    Arc::new(move |fd: BorrowedFd<'_>, peer: &Addr, state: &[u8]| {
        if !state.is_empty() {
            return Err(io::Error::other("an HTTP/2 connection is not given back"));
        }
        let mut m = Message::new(Kind::PassConnection, next.fetch_add(1, Ordering::Relaxed));
        m.flags = wire::flags::RETURNED;
        if let Addr::Inet(a) = peer {
            m.peer = Some(a.to_string());
        }
        fdpass::send_with_fds_now(line.as_fd(), &[IoSlice::new(&m.encode())], &[fd]).map(drop)
    })
}
