//! Moving bytes between a connection's socket and its sans-I/O engine:
//! directly for plain HTTP (one `read`, one `writev`, `sendfile` for
//! files), or through a rustls session for TLS, whose handshake is just a
//! state of the connection in the loop: nothing here blocks.

use std::io::{self, IoSlice, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::Instant;

use rustls::{ServerConfig, ServerConnection};

use crate::http::output::SENDFILE_MAX;
use crate::http::{BufPool, Conn, Limits};
use crate::sys;
use crate::tls::pump::{self, Failed, Records};

/// How much plaintext rustls may hold before `write` stops taking more:
/// back-pressure towards the engine.
const TLS_BUFFER: usize = 64 * 1024;
/// A TLS handshake record starts with content type 22.
const TLS_HANDSHAKE: u8 = 0x16;

pub enum Transport {
    Plain,
    /// `auto`: the first byte decides between plain HTTP and TLS.
    Sniff(Arc<ServerConfig>),
    Tls(Box<ServerConnection>),
}

impl Transport {
    pub fn tls(cfg: Arc<ServerConfig>) -> io::Result<Transport> {
        let mut c = ServerConnection::new(cfg).map_err(io::Error::other)?;
        c.set_buffer_limit(Some(TLS_BUFFER));
        Ok(Transport::Tls(Box::new(c)))
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Transport::Tls(_))
    }

    /// Is there anything to write (plaintext queued, or TLS records)?
    pub fn wants_write(&self, conn: &mut Conn) -> bool {
        !conn.output().is_empty() || matches!(self, Transport::Tls(t) if t.wants_write())
    }
}

use crate::sys::would_block;

/// Why a connection has to be closed: the log says it at a level by kind
/// (a broken TLS session is worth an info line; a peer that vanished is not).
#[derive(Debug)]
pub enum Broken {
    /// The socket failed (a reset, a broken pipe).
    Io(&'static str, io::Error),
    /// The TLS session failed (a bad record, a handshake error).
    Tls(String),
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
        }
    }
}

/// Reads what the socket has into the engine. `Ok(true)` if anything moved.
/// `peer_closed`: the readiness event said the peer sent its FIN
/// (`EPOLLRDHUP`), so a short read has not seen everything: the end of
/// input is still to be read, and no new edge will announce it.
#[allow(clippy::too_many_arguments)]
pub fn read(
    fd: BorrowedFd<'_>,
    transport: &mut Transport,
    conn: &mut Conn,
    readable: &mut bool,
    peer_closed: bool,
    pool: &mut BufPool,
    limits: &Limits,
    now: Instant,
) -> Result<bool, Broken> {
    match transport {
        Transport::Plain | Transport::Sniff(_) => {
            if !*readable {
                return Ok(false);
            }
            let Some(buf) = conn.read_buf(pool, limits) else {
                return Ok(false);
            };
            let room = buf.len();
            let moved = match sys::read(fd, buf) {
                Ok(0) => {
                    conn.on_eof();
                    *readable = false;
                    true
                }
                Ok(n) => {
                    conn.filled(n, now);
                    // A short read drained the socket; the next arrival
                    // raises a new edge. A FIN that came with the data
                    // raises none: read once more to see the end.
                    *readable = n == room || peer_closed;
                    true
                }
                Err(e) if would_block(&e) => {
                    *readable = false;
                    false
                }
                Err(e) => return Err(Broken::Io("read", e)),
            };
            if let Transport::Sniff(cfg) = transport
                && let Some(&first) = conn.unparsed().first()
            {
                if first == TLS_HANDSHAKE {
                    let hello = conn.take_unparsed();
                    let mut tls =
                        Transport::tls(cfg.clone()).map_err(|e| Broken::Tls(e.to_string()))?;
                    if let Transport::Tls(t) = &mut tls {
                        pump::feed_records(t, fd, &hello)?;
                        plaintext(t, conn, pool, limits, now);
                    }
                    *transport = tls;
                } else {
                    *transport = Transport::Plain;
                }
            }
            Ok(moved)
        }
        Transport::Tls(t) => {
            let mut moved = false;
            while *readable && conn.wants_read(limits) {
                match pump::read_records(t, fd)? {
                    Records::Read => moved = true,
                    Records::WouldBlock => *readable = false,
                    // Take the plaintext below, then read again.
                    Records::Full => {}
                    Records::Eof => {
                        *readable = false;
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

/// Moves decrypted bytes into the engine as far as it takes them. Returns
/// whether any moved. After close_notify (or a close without one) the
/// engine is told the input has ended.
fn plaintext(
    t: &mut ServerConnection,
    conn: &mut Conn,
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

/// Writes what the connection owes until done or the socket is full.
/// `Ok(true)` if anything was written.
pub fn write(
    fd: BorrowedFd<'_>,
    transport: &mut Transport,
    conn: &mut Conn,
    writable: &mut bool,
    now: Instant,
) -> io::Result<bool> {
    match transport {
        Transport::Plain | Transport::Sniff(_) => write_plain(fd, conn, writable, now),
        Transport::Tls(t) => write_tls(fd, t, conn, writable, now),
    }
}

fn write_plain(
    fd: BorrowedFd<'_>,
    conn: &mut Conn,
    writable: &mut bool,
    now: Instant,
) -> io::Result<bool> {
    let mut wrote = false;
    loop {
        let out = conn.output();
        out.prepare()?;
        let mut iov = [IoSlice::new(&[]); 32];
        let n = out.gather(&mut iov);
        if n > 0 {
            let total: usize = iov[..n].iter().map(|s| s.len()).sum();
            let w = match sys::writev(fd, &iov[..n]) {
                Ok(w) => w,
                Err(e) if would_block(&e) => {
                    *writable = false;
                    return Ok(wrote);
                }
                Err(e) => return Err(e),
            };
            out.advance(w);
            conn.wrote(now);
            wrote = true;
            if w < total {
                *writable = false;
                return Ok(wrote);
            }
            continue;
        }
        let Some(f) = out.front_file() else {
            return Ok(wrote);
        };
        let count = (f.left as usize).min(SENDFILE_MAX);
        let w = match sys::sendfile(fd, f.file.as_fd(), f.offset, count) {
            Ok(0) => return Err(io::Error::other("file shrank while being sent")),
            Ok(w) => w,
            Err(e) if would_block(&e) => {
                *writable = false;
                return Ok(wrote);
            }
            Err(e) => return Err(e),
        };
        out.advance_file(w as u64);
        conn.wrote(now);
        wrote = true;
        if w < count {
            *writable = false;
            return Ok(wrote);
        }
    }
}

fn write_tls(
    fd: BorrowedFd<'_>,
    t: &mut ServerConnection,
    conn: &mut Conn,
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
fn feed_tls(t: &mut ServerConnection, conn: &mut Conn) -> io::Result<bool> {
    let mut took = false;
    loop {
        let out = conn.output();
        out.prepare()?;
        let mut iov = [IoSlice::new(&[]); 32];
        let n = out.gather(&mut iov);
        if n > 0 {
            let w = t.writer().write_vectored(&iov[..n])?;
            out.advance(w);
            if w == 0 {
                return Ok(took);
            }
            took = true;
            continue;
        }
        let Some(f) = out.front_file() else {
            return Ok(took);
        };
        // No sendfile through userspace TLS: read a record's worth.
        let mut chunk = [0u8; 16 * 1024];
        let want = (f.left as usize).min(chunk.len());
        let r = f.file.read_at(&mut chunk[..want], *f.offset)?;
        if r == 0 {
            return Err(io::Error::other("file shrank while being sent"));
        }
        let w = t.writer().write(&chunk[..r])?;
        *f.offset += w as u64;
        out.advance_file(w as u64);
        if w == 0 {
            return Ok(took);
        }
        took = true;
    }
}

/// Our side is done: a TLS session says so (close_notify) before the
/// socket's write side is shut.
pub fn shutdown(fd: BorrowedFd<'_>, transport: &mut Transport) -> io::Result<()> {
    if let Transport::Tls(t) = transport {
        t.send_close_notify();
        // Best effort: a peer that does not read gets a FIN without it.
        let _ = pump::write_records(t, fd);
    }
    sys::shutdown_write(fd)
}
