//! What the server is told: its options, and the sockets handed to it.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use super::connection::Wrapping;
use crate::http::{Limits, Timeouts};
use crate::proxy::ProxyMode;
use crate::sys::{self, Addr, SockKind};
use crate::tls::TlsMode;

/// Server options. Every limit and deadline is on by default.
#[derive(Clone, Debug)]
pub struct Options {
    /// Most connections served at once. At the limit the server stops
    /// accepting (connections wait in the kernel's backlog, they are not
    /// accepted and closed), and connected sockets given to `add_socket`
    /// wait in a queue.
    pub max_concurrent: usize,
    /// Most connected sockets given to `add_socket`/`add_stream` that may
    /// wait for a slot; past it they are refused with an error.
    pub max_queued: usize,
    /// Sizes and counts, each with the status that refuses past it.
    pub limits: Limits,
    /// Deadlines.
    pub timeouts: Timeouts,
    /// How long a listener rests after accept failed for lack of fds or
    /// memory, instead of spinning on a readiness it cannot act on.
    pub accept_backoff: Duration,
    /// Connections accepted from one listener per turn, so a flood of new
    /// connections cannot starve the ones being served.
    pub accept_batch: usize,
    /// Header fields added to every response (Moonbridge's `static_headers`).
    pub static_headers: Vec<(String, String)>,
    /// Serve HTTP/2 too: to TLS clients that offer `h2` by ALPN (the TLS
    /// configuration must offer it, `tls::server_config` does), and to
    /// plain-text clients that start with its preface (prior knowledge).
    pub http2: bool,
    /// Limits per client address: connections open and a request rate
    /// (off by default). Clones share their counts, so the servers made
    /// from one `Options` (one per loop) hold them together.
    pub per_client: super::PerClient,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_concurrent: 4096,
            max_queued: 1024,
            limits: Limits::default(),
            timeouts: Timeouts::default(),
            accept_backoff: Duration::from_millis(100),
            accept_batch: 64,
            static_headers: Vec::new(),
            http2: true,
            per_client: Default::default(),
        }
    }
}

/// A socket handed to the server, with what is already known about it.
pub struct Socket {
    pub(super) fd: OwnedFd,
    pub(super) kind: Option<SockKind>,
    pub(super) peer: Option<Addr>,
    pub(super) wrapping: Wrapping,
    /// An HTTP/2 connection another process parked, going on here
    /// (`H2Conn::park`, the wire format's `H2_STATE`).
    pub(super) resume_h2: Option<Box<[u8]>>,
    /// Where the connection goes when it is idle again (`returning`).
    pub(super) back: Option<super::returning::Back>,
}

impl Socket {
    /// A socket to classify by asking the kernel.
    pub fn new(fd: OwnedFd) -> Self {
        Socket {
            fd,
            kind: None,
            peer: None,
            wrapping: TlsMode::Off.into(),
            resume_h2: None,
            back: None,
        }
    }

    /// Serve with TLS: `On` for a listener taking only TLS or a connection
    /// that is TLS from its first byte, `Auto` to sniff (see `TlsMode`).
    pub fn tls(mut self, mode: TlsMode) -> Self {
        self.wrapping.tls = mode;
        self
    }

    /// Every connection (from this listener) starts with a PROXY protocol
    /// header (`crate::proxy`), whose client address becomes the peer.
    pub fn proxy(mut self, mode: ProxyMode) -> Self {
        self.wrapping.proxy = Some(mode);
        self
    }
    /// Whether HTTP/2 is served on it (from this listener): `false` keeps
    /// it to HTTP/1.1 (no `h2` in ALPN, the preface answered 505), as
    /// `--listen ADDR,http2=off`. On by default, unless the server's
    /// `Options::http2` is off.
    pub fn http2(mut self, on: bool) -> Self {
        self.wrapping.http2 = on;
        self
    }

    /// A socket whose peer is known better than `getpeername` would say
    /// (the client behind a proxy).
    pub fn with_peer(fd: OwnedFd, peer: Addr) -> Self {
        Socket {
            fd,
            kind: None,
            peer: Some(peer),
            wrapping: TlsMode::Off.into(),
            resume_h2: None,
            back: None,
        }
    }
    /// What the socket is: as told, or asked of the kernel, in which case
    /// the fd is adopted (non-blocking, close-on-exec, and `TCP_NODELAY`,
    /// which listeners pass on to what they accept).
    pub(super) fn classify_and_prepare(&mut self) -> io::Result<SockKind> {
        if let Some(k) = self.kind {
            return Ok(k);
        }
        let k = sys::classify(self.fd.as_fd())?;
        sys::prepare_adopted(self.fd.as_fd())?;
        if let SockKind::Stream { unix: false } | SockKind::Listener { unix: false } = k {
            sys::set_nodelay(self.fd.as_fd())?;
            sys::set_notsent_lowat(self.fd.as_fd(), sys::NOTSENT_LOWAT)?;
        }
        self.kind = Some(k);
        Ok(k)
    }

    /// A connection lent by another process: as soon as it is idle again
    /// (a response ended, nothing read ahead, HTTP/1.1 without TLS), it is
    /// given to `back`, and closed here once taken, as `Server::hand_over`
    /// gives every connection. An application process gives connections
    /// back this way to the HTTP process that handed them off
    /// (`handoff::worker`), so that the client's next request is routed
    /// afresh. If `back` fails, the connection is served here from then on.
    /// A request after the first (pipelined behind it) is not answered
    /// here: it goes to `back` with the bytes read of it, its third
    /// argument (empty for an idle connection).
    pub fn returning(mut self, back: super::Mover) -> Self {
        self.back = Some(super::returning::Back::new(back));
        self
    }

    /// `returning`, but the lender lets us keep the connection for the
    /// client's next requests that `keep` claims (`returning::Keep`).
    pub(crate) fn keeping(mut self, keep: std::sync::Arc<super::returning::Keep>) -> Self {
        if let Some(b) = &mut self.back {
            b.keep = Some(keep);
        }
        self
    }

    /// An HTTP/2 connection another process parked (`H2Conn::park`),
    /// which goes on here from its state instead of starting afresh.
    pub(crate) fn resuming_h2(mut self, state: Vec<u8>) -> Self {
        self.resume_h2 = Some(state.into());
        self
    }

    /// The TLS mode it is served with.
    pub(crate) fn tls_mode(&self) -> TlsMode {
        self.wrapping.tls
    }

    /// The fd and how it is framed (TLS, PROXY).
    pub(crate) fn into_parts(self) -> (OwnedFd, Wrapping) {
        (self.fd, self.wrapping)
    }

    pub(super) fn listener(fd: OwnedFd, unix: bool, wrapping: Wrapping) -> Self {
        Socket {
            fd,
            kind: Some(SockKind::Listener { unix }),
            peer: None,
            wrapping,
            resume_h2: None,
            back: None,
        }
    }

    /// A connected socket that came over an app's line, lent or given
    /// back, with the client's address as the line said it (`PEER`). The
    /// other process adopted it already (non-blocking, `TCP_NODELAY`:
    /// every copy of a socket shares them; received close-on-exec): only
    /// what it is is asked of the kernel. `None`: not a connection.
    pub(crate) fn from_line(fd: OwnedFd, peer: Option<&str>) -> Option<Self> {
        let SockKind::Stream { unix } = sys::classify(fd.as_fd()).ok()? else {
            return None;
        };
        let peer = match peer.and_then(|p| p.parse().ok()) {
            Some(a) => Addr::Inet(a),
            None => sys::peer_addr(fd.as_fd()),
        };
        Some(Socket::accepted(fd, peer, unix, TlsMode::Off.into()))
    }

    pub(super) fn accepted(fd: OwnedFd, peer: Addr, unix: bool, wrapping: Wrapping) -> Self {
        Socket {
            fd,
            kind: Some(SockKind::Stream { unix }),
            peer: Some(peer),
            wrapping,
            resume_h2: None,
            back: None,
        }
    }
}

impl From<OwnedFd> for Socket {
    fn from(fd: OwnedFd) -> Self {
        Socket::new(fd)
    }
}
macro_rules! socket_from {
    ($($t:ty),*) => {$(
        impl From<$t> for Socket {
            fn from(s: $t) -> Self {
                Socket::new(OwnedFd::from(s))
            }
        }
    )*};
}
socket_from!(
    std::net::TcpListener,
    std::net::TcpStream,
    std::os::unix::net::UnixListener,
    std::os::unix::net::UnixStream
);

/// What `add_socket` did with a socket.
#[derive(Debug, PartialEq, Eq)]
pub enum Added {
    /// A listener, now accepted from; its local address.
    Listener(Addr),
    /// A connection, now served.
    Connection,
    /// A connection waiting for a slot under `max_concurrent`.
    Queued,
}

/// A connection a handler took away from HTTP (`Response::hand_off`).
pub struct HandedOff {
    /// The connection's socket (for a TLS connection, our end of a socketpair carrying the plaintext).
    pub socket: OwnedFd,
    /// The request head that was handed off.
    pub head: Vec<u8>,
    /// Bytes read after the head (a WebSocket client's first frames).
    pub rest: Vec<u8>,
    /// Who is at the other end.
    pub peer: Addr,
    /// The address the client connected to.
    pub local: Addr,
    /// Did the client come over TLS? (Then `socket` carries the plaintext
    /// the server decrypts.)
    pub tls: bool,
    /// What the handler told the receiver (`Response::hand_off_with`).
    pub context: Option<crate::http::HandOffContext>,
    /// The request's access line, for the receiver to write once it knows
    /// how the request ended (one line per request: the receiver writes
    /// none of its own).
    pub access: AccessLine,
}

/// The access line of a request whose connection was handed off: written
/// once, by whoever learns how the request ended (`write`: a WebSocket
/// worker's 101, or the 503 when none took it), or, if nobody does, when
/// dropped, with no status and "handed off".
pub struct AccessLine {
    peer: Addr,
    seen: crate::http::events::Kept,
    written: bool,
}

impl AccessLine {
    pub(crate) fn new(peer: Addr, seen: crate::http::events::Kept) -> AccessLine {
        AccessLine {
            peer,
            seen,
            written: false,
        }
    }

    /// Writes the line: the status the client got (`None`: not ours to
    /// say) and what there is to add.
    pub fn write(mut self, status: Option<u16>, note: &str) {
        self.emit(status, note);
    }

    fn emit(&mut self, status: Option<u16>, note: &str) {
        if std::mem::replace(&mut self.written, true) || !crate::log::access_on() {
            return;
        }
        let request = self.seen.seen();
        crate::log::Access {
            peer: &self.peer,
            line: request.map(|r| r.line),
            status,
            sent: 0,
            referer: request.and_then(|r| r.referer),
            agent: request.and_then(|r| r.agent),
            took: self.seen.took(std::time::Instant::now()),
            note,
        }
        .log();
    }
}

impl Drop for AccessLine {
    fn drop(&mut self) {
        self.emit(None, "handed off");
    }
}
