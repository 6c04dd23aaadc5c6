//! Moving bytes between a connection's socket and its sans-I/O engine:
//! directly for plain HTTP (one `read`, one `writev`, `sendfile` for
//! files), or through a rustls session for TLS, whose handshake is just a
//! state of the connection in the loop: nothing here blocks.

use std::io::{self, IoSlice, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::Instant;

use mio::event::Event;
use rustls::{ServerConfig, ServerConnection};

use crate::http::output::{FileSlice, SENDFILE_MAX, Sink};
use crate::http::{BufPool, EngineIo, Limits};
use crate::proxy::{self as proxy_header, ProxyMode};
use crate::sys;
use crate::tls::TlsMode;
use crate::tls::pump::{self, Failed, Records};

/// How much plaintext rustls may hold before `write` stops taking more:
/// back-pressure towards the engine.
const TLS_BUFFER: usize = 64 * 1024;
/// A TLS handshake record starts with content type 22.
const TLS_HANDSHAKE: u8 = 0x16;

/// Why a socket asked to be served with TLS is refused.
pub(crate) const NO_CERTIFICATE: &str = "TLS asked for but no certificate is configured";

/// What wraps a socket's HTTP bytes: TLS or not, whether a PROXY
/// protocol header comes first, and whether HTTP/2 may be spoken there
/// (`--listen ADDR,http2=off` says not; the server's `--http2 off` says not
/// anywhere). (Not the body's framing, `http::head::Framing`.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Wrapping {
    pub(crate) tls: TlsMode,
    pub(crate) proxy: Option<ProxyMode>,
    pub(crate) http2: bool,
}

impl From<TlsMode> for Wrapping {
    fn from(tls: TlsMode) -> Wrapping {
        Wrapping {
            tls,
            proxy: None,
            http2: true,
        }
    }
}

pub(crate) enum Transport {
    /// Plain bytes. The socket's segment size, asked when a file first goes
    /// out in shares (`ToSocket::file_step`): 0 not asked yet, 1 none to
    /// align to. Kept here, in the enum's room to spare: a field of `Io`
    /// took a connection's allocation to the next size class (+15 B of
    /// RSS per idle connection).
    Plain(u16),
    /// `auto`: the first byte decides between plain HTTP and TLS.
    Sniff(Arc<ServerConfig>),
    Tls(Box<ServerConnection>),
    /// A PROXY header comes first: read into `buf` (not the engine, which
    /// would take it for a request) until it is whole, then `then`.
    Proxy {
        mode: ProxyMode,
        buf: Vec<u8>,
        then: TlsMode,
        cfg: Option<Arc<ServerConfig>>,
    },
}

impl Transport {
    pub(crate) fn tls(cfg: Arc<ServerConfig>) -> io::Result<Transport> {
        let mut c = ServerConnection::new(cfg).map_err(io::Error::other)?;
        c.set_buffer_limit(Some(TLS_BUFFER));
        Ok(Transport::Tls(Box::new(c)))
    }

    /// The transport a socket framed so starts with.
    pub(crate) fn for_wrapping(
        wrapping: Wrapping,
        cfg: Option<&Arc<ServerConfig>>,
    ) -> io::Result<Transport> {
        if let Some(mode) = wrapping.proxy {
            if wrapping.tls != TlsMode::Off && cfg.is_none() {
                return Err(io::Error::other(NO_CERTIFICATE));
            }
            return Ok(Transport::Proxy {
                mode,
                buf: Vec::new(),
                then: wrapping.tls,
                cfg: cfg.cloned(),
            });
        }
        Self::for_mode(wrapping.tls, cfg)
    }

    /// The transport a socket served in `mode` starts with.
    pub(crate) fn for_mode(
        mode: TlsMode,
        cfg: Option<&Arc<ServerConfig>>,
    ) -> io::Result<Transport> {
        match (mode, cfg) {
            (TlsMode::Off, _) => Ok(Transport::Plain(0)),
            (_, None) => Err(io::Error::other(NO_CERTIFICATE)),
            (TlsMode::Auto, Some(c)) => Ok(Transport::Sniff(c.clone())),
            (TlsMode::On, Some(c)) => Transport::tls(c.clone()),
        }
    }

    /// Is there anything to write (plaintext queued, or TLS records)?
    pub(crate) fn wants_write(&self, conn: &mut impl EngineIo) -> bool {
        !conn.output().is_empty() || matches!(self, Transport::Tls(t) if t.wants_write())
    }
}

use crate::sys::would_block;

/// Why a connection has to be closed: the log says it at a level by kind
/// (a broken TLS session is worth an info line; a peer that vanished is not).
#[derive(Debug)]
pub(crate) enum Broken {
    /// The socket failed (a reset, a broken pipe).
    Io(&'static str, io::Error),
    /// The TLS session failed (a bad record, a handshake error).
    Tls(String),
    /// No good PROXY header where one was required.
    Proxy(String),
    /// The client the PROXY header names has its connections open already
    /// (`Options::per_client`).
    PerClient,
}

impl From<Failed> for Broken {
    fn from(f: Failed) -> Broken {
        match f {
            Failed::Io(e) => Broken::Io("read", e),
            Failed::Tls(e) => Broken::Tls(e.to_string()),
        }
    }
}

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Broken::Io(what, e) => write!(f, "{what}: {e}"),
            Broken::Tls(why) => write!(f, "TLS: {why}"),
            Broken::Proxy(why) => write!(f, "PROXY protocol: {why}"),
            Broken::PerClient => f.write_str("refused: the client has its most connections open"),
        }
    }
}

/// A connection's end of the wire: its socket, what wraps its HTTP bytes,
/// and the readiness the kernel last reported. `Connection::ready` moves
/// bytes between this and the engine with `read`, `write` and `shutdown`.
pub(crate) struct Io {
    pub(crate) fd: OwnedFd,
    pub(crate) transport: Transport,
    pub(crate) ready: Readiness,
    /// HTTP/2 is served here (`--http2`): by ALPN on TLS, by its preface
    /// on plain connections.
    pub(crate) http2: bool,
}

impl crate::http::request::Endpoint for Io {
    fn local_addr(&self) -> sys::Addr {
        sys::local_addr(self.fd.as_fd())
    }

    fn tls(&self) -> Option<&dyn crate::http::request::Session> {
        match &self.transport {
            Transport::Tls(t) if !t.is_handshaking() => Some(&**t),
            _ => None,
        }
    }
}

/// Readiness reported by edge-triggered events, remembered until acted on.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Readiness {
    pub(crate) readable: bool,
    pub(crate) writable: bool,
    /// The kernel reported the peer's FIN (`EPOLLRDHUP`) queued behind the
    /// data: a short read has not seen everything, and no new edge will
    /// announce the rest. Not the end of input itself: that is stored
    /// once, in the engine (`Conn::on_eof`, when a read returns 0).
    pub(crate) fin_queued: bool,
}

/// What one `Io::write` did.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Wrote {
    /// Anything was written.
    pub(crate) moved: bool,
    /// It stopped with its share for the turn spent (`WRITE_SHARE`), more
    /// to send and room in the socket: the others go first, then this
    /// connection again (`Outcome::Yield`).
    pub(crate) yielded: bool,
}

impl Readiness {
    /// Adds what an event reports. Errors and hang-ups count as ready both
    /// ways: the next read or write says what happened.
    pub(crate) fn update(&mut self, ev: &Event) {
        self.fin_queued |= ev.is_read_closed();
        self.readable |= ev.is_readable() || ev.is_read_closed() || ev.is_error();
        self.writable |= ev.is_writable() || ev.is_write_closed() || ev.is_error();
    }

    /// After a read of `n` bytes into `room`: a short read drained the
    /// socket (the next arrival raises a new edge), unless a FIN came with
    /// the data, which raises none: then read once more to see the end.
    fn after_read(&mut self, n: usize, room: usize) {
        if n < room {
            self.drained();
        }
    }

    /// A read came back short: the socket is drained (edge-triggered, the
    /// next arrival raises a new edge), unless the peer's FIN came with
    /// the data, which raises none: then it stays readable, to see the
    /// end. For plain reads and TLS records alike (a client's close_notify
    /// and FIN in one event had left a TLS connection in CLOSE-WAIT until
    /// its idle deadline).
    pub(crate) fn drained(&mut self) {
        self.readable = self.fin_queued;
    }
}

impl Io {
    /// Reads what the socket has into the engine. `Ok(true)` if anything
    /// moved.
    #[inline(always)]
    pub(crate) fn read(
        &mut self,
        conn: &mut impl EngineIo,
        pool: &mut BufPool,
        limits: &Limits,
        now: Instant,
    ) -> Result<bool, Broken> {
        let fd = self.fd.as_fd();
        read(
            fd,
            &mut self.transport,
            &mut self.ready,
            conn,
            pool,
            limits,
            now,
        )
    }

    /// Writes what the engine owes until done, the socket is full, or
    /// its share of a file for this turn is spent.
    pub(crate) fn write(&mut self, conn: &mut impl EngineIo, now: Instant) -> io::Result<Wrote> {
        let fd = self.fd.as_fd();
        let writable = &mut self.ready.writable;
        match &mut self.transport {
            Transport::Plain(mss) => write_plain(fd, mss, conn, writable, now),
            // Not yet known to be plain: no segment size kept (a PROXY
            // header or a first byte to come, no file going out yet).
            Transport::Sniff(_) | Transport::Proxy { .. } => {
                write_plain(fd, &mut 1, conn, writable, now)
            }
            Transport::Tls(t) => write_tls(fd, t, conn, writable, now).map(|moved| Wrote {
                moved,
                yielded: false,
            }),
        }
    }

    /// What a request's handler may ask of this connection (`Endpoint`).
    #[inline]
    pub(crate) fn via(&self) -> crate::http::request::Via<'_> {
        crate::http::request::Via(Some(self))
    }

    /// Its client is known: no PROXY header is awaited.
    #[inline]
    pub(crate) fn past_proxy(&self) -> bool {
        !matches!(self.transport, Transport::Proxy { .. })
    }

    /// Does the client speak HTTP/2? `first`: what it has sent so far.
    /// Over TLS, ALPN said so in the handshake (the preface comes next and
    /// is the HTTP/2 engine's to check); otherwise its first bytes are the preface
    /// (prior knowledge, RFC 9113 §3.3). `None`: too few bytes to tell.
    pub(crate) fn offers_h2(&self, first: &[u8]) -> Option<bool> {
        match &self.transport {
            Transport::Tls(t) if t.alpn_protocol() == Some(b"h2") => Some(true),
            Transport::Tls(_) => Some(false),
            // Not known yet which (a first byte or a PROXY header to come).
            Transport::Sniff(_) | Transport::Proxy { .. } => Some(false),
            Transport::Plain(_) if first.is_empty() => Some(false),
            Transport::Plain(_) => crate::http::h2::preface(first),
        }
    }

    /// Can it write now, and is there anything to write (plaintext queued,
    /// or TLS records)?
    pub(crate) fn wants_write(&self, conn: &mut impl EngineIo) -> bool {
        self.ready.writable && self.transport.wants_write(conn)
    }

    /// Our side is done: a TLS session says so (close_notify) before the
    /// socket's write side is shut.
    pub(crate) fn shutdown(&mut self) -> io::Result<()> {
        let fd = self.fd.as_fd();
        if let Transport::Tls(t) = &mut self.transport {
            t.send_close_notify();
            // Best effort: a peer that does not read gets a FIN without it.
            let _ = pump::write_records(t, fd);
        }
        sys::shutdown_write(fd)
    }
}

/// Reads into the engine: plain bytes here (inlined: the request path),
/// the PROXY header and TLS records in `read_wrapped`.
#[inline(always)]
fn read(
    fd: BorrowedFd<'_>,
    transport: &mut Transport,
    ready: &mut Readiness,
    conn: &mut impl EngineIo,
    pool: &mut BufPool,
    limits: &Limits,
    now: Instant,
) -> Result<bool, Broken> {
    match transport {
        Transport::Plain(_) | Transport::Sniff(_) => {
            if !ready.readable {
                return Ok(false);
            }
            let Some(buf) = conn.read_buf(pool, limits) else {
                return Ok(false);
            };
            let room = buf.len();
            let moved = match sys::read(fd, buf) {
                Ok(0) => {
                    conn.on_eof();
                    ready.readable = false;
                    true
                }
                Ok(n) => {
                    conn.filled(n, now);
                    ready.after_read(n, room);
                    true
                }
                Err(e) if would_block(&e) => {
                    ready.readable = false;
                    false
                }
                Err(e) => return Err(Broken::Io("read", e)),
            };
            sniff(fd, transport, conn, pool, limits, now)?;
            Ok(moved)
        }
        _ => read_wrapped(fd, transport, ready, conn, pool, limits, now),
    }
}

/// `read` for a PROXY header still to come, or TLS.
#[inline(never)]
fn read_wrapped(
    fd: BorrowedFd<'_>,
    transport: &mut Transport,
    ready: &mut Readiness,
    conn: &mut impl EngineIo,
    pool: &mut BufPool,
    limits: &Limits,
    now: Instant,
) -> Result<bool, Broken> {
    match transport {
        // `read` takes these.
        Transport::Plain(_) | Transport::Sniff(_) => Ok(false),
        Transport::Proxy {
            mode,
            buf,
            then,
            cfg,
        } => {
            // What arrived with the socket (a front's DATA) may hold the
            // whole header: look before reading.
            let (len, peer) = loop {
                match proxy_header::parse(*mode, buf) {
                    proxy_header::Parsed::Done { len, peer, .. } => break (len, peer),
                    proxy_header::Parsed::Bad(why) => return Err(Broken::Proxy(why)),
                    proxy_header::Parsed::Partial if !ready.readable => return Ok(false),
                    proxy_header::Parsed::Partial => {}
                }
                // Small reads: what follows the header is handed on to the
                // next layer, and a header is rarely a hundred bytes.
                let mut chunk = [0u8; 512];
                match sys::read(fd, &mut chunk) {
                    Ok(0) => {
                        ready.readable = false;
                        let why = if buf.is_empty() {
                            "closed before its PROXY header"
                        } else {
                            "closed inside its PROXY header"
                        };
                        return Err(Broken::Proxy(why.into()));
                    }
                    Ok(n) => {
                        buf.extend_from_slice(&chunk[..n]);
                        ready.after_read(n, chunk.len());
                    }
                    Err(e) if would_block(&e) => {
                        ready.readable = false;
                        return Ok(false);
                    }
                    Err(e) => return Err(Broken::Io("read", e)),
                }
            };
            if let Some(p) = peer {
                conn.set_peer(sys::Addr::Inet(p));
            }
            let rest = buf.split_off(len);
            let next =
                Transport::for_mode(*then, cfg.as_ref()).map_err(|e| Broken::Tls(e.to_string()))?;
            *transport = next;
            if !rest.is_empty() {
                match transport {
                    Transport::Tls(t) => {
                        pump::feed_records(t, fd, &rest)?;
                        plaintext(t, conn, pool, limits, now);
                    }
                    _ => {
                        conn.feed(&rest, pool, now);
                        sniff(fd, transport, conn, pool, limits, now)?;
                    }
                }
            }
            Ok(true)
        }
        Transport::Tls(t) => {
            let mut moved = false;
            while ready.readable && conn.wants_read(limits) {
                match pump::read_records(t, fd)? {
                    Records::Read => moved = true,
                    Records::Drained => {
                        moved = true;
                        ready.drained();
                    }
                    Records::WouldBlock => ready.readable = false,
                    // Take the plaintext below, then read again.
                    Records::Full => {}
                    Records::Eof => {
                        ready.readable = false;
                        // The peer closed; what it sent before is read
                        // first, then the engine sees the end.
                        plaintext(t, conn, pool, limits, now);
                        conn.on_eof();
                        return Ok(true);
                    }
                }
                moved |= plaintext(t, conn, pool, limits, now);
            }
            // Records decrypted earlier may still hold plaintext.
            moved |= plaintext(t, conn, pool, limits, now);
            Ok(moved)
        }
    }
}

/// `auto`: once the first byte is there, it decides between TLS (a
/// handshake record) and plain HTTP. Whether there is anything to sniff is
/// asked inline: the call to learn that a plain connection has nothing
/// cost 24 instructions a read (callgrind).
#[inline(always)]
fn sniff(
    fd: BorrowedFd<'_>,
    transport: &mut Transport,
    conn: &mut impl EngineIo,
    pool: &mut BufPool,
    limits: &Limits,
    now: Instant,
) -> Result<(), Broken> {
    match transport {
        Transport::Sniff(_) => decide_transport(fd, transport, conn, pool, limits, now),
        _ => Ok(()),
    }
}

/// `sniff` for a transport still to decide.
#[inline(never)]
fn decide_transport(
    fd: BorrowedFd<'_>,
    transport: &mut Transport,
    conn: &mut impl EngineIo,
    pool: &mut BufPool,
    limits: &Limits,
    now: Instant,
) -> Result<(), Broken> {
    if let Transport::Sniff(cfg) = transport
        && let Some(&first) = conn.unparsed().first()
    {
        if first == TLS_HANDSHAKE {
            let hello = conn.take_unparsed();
            let mut tls = Transport::tls(cfg.clone()).map_err(|e| Broken::Tls(e.to_string()))?;
            if let Transport::Tls(t) = &mut tls {
                pump::feed_records(t, fd, &hello)?;
                plaintext(t, conn, pool, limits, now);
            }
            *transport = tls;
        } else {
            *transport = Transport::Plain(0);
        }
    }
    Ok(())
}

/// Moves decrypted bytes into the engine as far as it takes them. Returns
/// whether any moved. After close_notify (or a close without one) the
/// engine is told the input has ended.
fn plaintext(
    t: &mut ServerConnection,
    conn: &mut impl EngineIo,
    pool: &mut BufPool,
    limits: &Limits,
    now: Instant,
) -> bool {
    let mut moved = false;
    loop {
        let Some(buf) = conn.read_buf(pool, limits) else {
            return moved;
        };
        match t.reader().read(buf) {
            Ok(0) => {
                conn.on_eof();
                return true;
            }
            Ok(n) => {
                conn.filled(n, now);
                moved = true;
            }
            Err(e) if would_block(&e) => return moved,
            Err(_) => {
                conn.on_eof();
                return true;
            }
        }
    }
}

fn write_plain(
    fd: BorrowedFd<'_>,
    mss: &mut u16,
    conn: &mut impl EngineIo,
    writable: &mut bool,
    now: Instant,
) -> io::Result<Wrote> {
    let mut sink = ToSocket {
        fd,
        share: WRITE_SHARE,
        spent: false,
        held: 0,
        mss,
    };
    let (moved, full) = conn.output().drain_into(&mut sink)?;
    if moved {
        conn.wrote(now);
    }
    if full {
        *writable = false;
    }
    Ok(Wrote {
        moved,
        yielded: sink.spent && !full && !conn.output().is_empty(),
    })
}

/// Plaintext read from a file for TLS at once: one record's worth.
const TLS_FILE_STEP: usize = 16 * 1024;

/// How many file bytes one connection sends in a turn of the loop before
/// the others have theirs. Why: one 1 MiB `sendfile` filled the socket past
/// what the client had read, and the kernel profile
/// (`scripts/large-files.py`) showed our thread at a full core in the send
/// path, working off the client's ACKs queued behind the socket's lock and
/// waking the client, with a third of both CPUs idle: 2.4-2.7 GB/s on the
/// bench's 1 MiB case against lighttpd's 4.6-5.2, which sends 256 KiB per
/// connection per turn. In turns of 256 KiB: 3.9. Fairer to the loop's
/// other clients, too.
const WRITE_SHARE: usize = 256 * 1024;

struct ToSocket<'a> {
    fd: BorrowedFd<'a>,
    /// File bytes it may still take this turn.
    share: usize,
    /// The share ran out with file bytes left.
    spent: bool,
    /// Bytes the last `vectored` held back (`MSG_MORE`) for a file's.
    held: usize,
    mss: &'a mut u16,
}

impl ToSocket<'_> {
    /// The segment size to end a share on, asked once per connection.
    fn mss(&mut self) -> usize {
        if *self.mss == 0 {
            // Not TCP (a Unix socket): 1, nothing to align to.
            let m = sys::tcp_mss(self.fd).unwrap_or(1);
            *self.mss = m.clamp(1, u16::MAX.into()) as u16;
        }
        usize::from(*self.mss)
    }
}

impl Sink for ToSocket<'_> {
    fn vectored(&mut self, iov: &[IoSlice<'_>], file_next: bool) -> io::Result<usize> {
        // A head with its file body next goes with `MSG_MORE`, so its bytes
        // leave in the body's first segment, not in a small one of their
        // own. Why: a client's receive-buffer autotuning takes the time a
        // whole receive window takes to arrive as its round trip, keeping
        // the smallest; a head alone opened that measurement and the first
        // body segment closed it microseconds later, so on a fast link the
        // client kept a 7 us round trip and a 128 KiB buffer for good
        // (`ss -tim`: rcv_rtt:0.007, zero windows, an ACK per segment):
        // 2-3 GB/s on the bench's 1 MiB case where lighttpd, which corks
        // head and body, had 6.
        let more = file_next && self.share > 0;
        let sent = if more {
            sys::send_more(self.fd, iov)
        } else {
            sys::writev(self.fd, iov)
        };
        match sent {
            Ok(n) => {
                self.held = if more { n } else { 0 };
                Ok(n)
            }
            Err(e) if would_block(&e) => Ok(0),
            Err(e) => Err(e),
        }
    }
    fn file_step(&mut self, left: u64) -> usize {
        let step = (left as usize).min(SENDFILE_MAX);
        if step <= self.share {
            return step;
        }
        let mss = self.mss();
        let step = share_step(step, step as u64 == left, self.held, self.share, mss);
        if step == 0 {
            self.spent = true;
        }
        step
    }
    fn file(&mut self, f: FileSlice<'_>) -> io::Result<usize> {
        let count = self.file_step(f.left);
        self.held = 0;
        match sys::sendfile(self.fd, f.file.as_fd(), f.offset, count) {
            Ok(0) => Err(io::Error::other("file shrank while being sent")),
            Ok(n) => {
                // A body's end may go a little past the share.
                self.share = self.share.saturating_sub(n);
                Ok(n)
            }
            Err(e) if would_block(&e) => Ok(0),
            r => r,
        }
    }
}

/// How much of `step` file bytes, more than the turn's `share`, to send
/// now, `held` bytes (its head) waiting before them: up to the last
/// segment's end the share reaches, 0 when it reaches none; all of them when
/// they end the body less than a segment past the share (not one small step
/// a turn later). Why: a share that ends inside a segment leaves that part
/// segment to go as a runt of its own (`TCP_NODELAY` pushes it). 256 KiB
/// is four 64 KiB loopback segments and 212 bytes: with that runt between
/// shares, 1 MiB at wrk -c8 went at 4.7 GB/s for 200 us of our CPU per
/// response, aligned at 5.7 GB/s for 155 us (lighttpd 5.7 for 147: it
/// writes until the socket is full, which stops on a segment's end).
fn share_step(step: usize, ends_body: bool, held: usize, share: usize, mss: usize) -> usize {
    if ends_body && step - share < mss {
        return step;
    }
    ((held + share) / mss * mss).saturating_sub(held)
}

struct ToTls<'a>(&'a mut ServerConnection);

impl Sink for ToTls<'_> {
    fn vectored(&mut self, iov: &[IoSlice<'_>], _: bool) -> io::Result<usize> {
        self.0.writer().write_vectored(iov)
    }
    fn file_step(&mut self, left: u64) -> usize {
        (left as usize).min(TLS_FILE_STEP)
    }
    fn file(&mut self, f: FileSlice<'_>) -> io::Result<usize> {
        // No sendfile through userspace TLS: read a record's worth.
        let mut chunk = [0u8; TLS_FILE_STEP];
        let want = self.file_step(f.left);
        let r = f.file.read_at(&mut chunk[..want], *f.offset)?;
        if r == 0 {
            return Err(io::Error::other("file shrank while being sent"));
        }
        let w = self.0.writer().write(&chunk[..r])?;
        *f.offset += w as u64;
        Ok(w)
    }
}

fn write_tls(
    fd: BorrowedFd<'_>,
    t: &mut ServerConnection,
    conn: &mut impl EngineIo,
    writable: &mut bool,
    now: Instant,
) -> io::Result<bool> {
    let mut wrote = false;
    loop {
        let took = feed_tls(t, conn)?;
        // Records out to the socket.
        let w = pump::write_records(t, fd)?;
        if w.any {
            conn.wrote(now);
        }
        if w.blocked {
            *writable = false;
            return Ok(wrote || w.any);
        }
        wrote |= w.any;
        // The socket took everything: loop while there is more plaintext
        // and rustls took some last time.
        if conn.output().is_empty() || !took {
            return Ok(wrote);
        }
    }
}

/// Plaintext into rustls, as far as its buffer takes it. `Ok(true)` if it
/// took anything.
fn feed_tls(t: &mut ServerConnection, conn: &mut impl EngineIo) -> io::Result<bool> {
    conn.output()
        .drain_into(&mut ToTls(t))
        .map(|(took, _)| took)
}

#[cfg(test)]
mod tests {
    use super::share_step;

    #[test]
    fn a_share_inside_a_body_ends_on_a_segment_with_the_held_head_counted() {
        const LO: usize = 65483; // loopback's segment size
        const MIB: usize = 1 << 20;
        for (step, ends_body, held, share, mss, sent) in [
            // 256 KiB: four whole segments, not four and a 212-byte runt.
            (MIB, true, 0, 256 * 1024, LO, 4 * LO),
            // The head went first with MSG_MORE: it fills the first segment.
            (MIB, true, 180, 256 * 1024, LO, 4 * LO - 180),
            // What is left of a share after a step: under a segment, none.
            (MIB, true, 0, 212, LO, 0),
            // The body's end, less than a segment past the share: all of it.
            (
                256 * 1024 + 1000,
                true,
                0,
                256 * 1024,
                LO,
                256 * 1024 + 1000,
            ),
            (LO - 1, true, 0, 0, LO, LO - 1),
            // Not its end (one sendfile's most): aligned as before.
            (256 * 1024 + 1000, false, 0, 256 * 1024, LO, 4 * LO),
            // Ethernet's segments.
            (MIB, true, 0, 256 * 1024, 1448, 181 * 1448),
            // Not TCP: nothing to align to, the share as it is.
            (MIB, true, 100, 256 * 1024, 1, 256 * 1024),
        ] {
            assert_eq!(
                share_step(step, ends_body, held, share, mss),
                sent,
                "{step} {ends_body} {held} {share} {mss}"
            );
        }
    }
}
