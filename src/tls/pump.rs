//! Moving TLS records between a rustls session and a non-blocking socket,
//! for every place that does it: a served connection (`server/connection/io.rs`), its
//! sniffed first bytes, and the relay of a `wss://` connection handed to a
//! worker. Plaintext is the caller's business; records are this file's.

use std::io::{self, Read, Write};
use std::os::fd::BorrowedFd;

use rustls::ServerConnection;

use crate::sys::{self, would_block};

/// A socket as `Write` for rustls (reads go through `Reading`).
pub(crate) struct FdIo<'a>(pub BorrowedFd<'a>);

/// A socket read for rustls that notes whether the read came back
/// shorter than asked.
struct Reading<'a> {
    fd: BorrowedFd<'a>,
    short: bool,
}

impl Read for Reading<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = sys::read(self.fd, buf)?;
        self.short = n < buf.len();
        Ok(n)
    }
}

impl Write for FdIo<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        sys::write(self.0, buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What one read of records found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Records {
    /// Records were read and processed: there may be plaintext.
    Read,
    /// As `Read`, and the read was shorter than rustls asked for: the
    /// socket had no more then (edge-triggered, a new arrival raises a new
    /// edge), so no `read` is spent to hear `EAGAIN`.
    Drained,
    /// Nothing more until the socket is readable again.
    WouldBlock,
    /// rustls holds as much plaintext as it takes: read that first.
    Full,
    /// The peer closed the socket (what it sent before was processed).
    Eof,
}

/// Why the session cannot go on.
#[derive(Debug)]
pub(crate) enum Failed {
    Io(io::Error),
    /// A bad record or handshake; the alert rustls queued was sent.
    Tls(rustls::Error),
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failed::Io(e) => write!(f, "read: {e}"),
            Failed::Tls(e) => write!(f, "TLS: {e}"),
        }
    }
}

/// Reads what the socket has (one `read`) and processes the records.
pub(crate) fn read_records(
    t: &mut ServerConnection,
    fd: BorrowedFd<'_>,
) -> Result<Records, Failed> {
    let mut rd = Reading { fd, short: false };
    let got = match t.read_tls(&mut rd) {
        Ok(0) => Records::Eof,
        Ok(_) if rd.short => Records::Drained,
        Ok(_) => Records::Read,
        Err(e) if would_block(&e) => return Ok(Records::WouldBlock),
        Err(e) if e.kind() == io::ErrorKind::Other => return Ok(Records::Full),
        Err(e) => return Err(Failed::Io(e)),
    };
    process(t, fd)?;
    Ok(got)
}

/// Feeds bytes that were read elsewhere (a sniffed ClientHello) and
/// processes them.
pub(crate) fn feed_records(
    t: &mut ServerConnection,
    fd: BorrowedFd<'_>,
    mut bytes: &[u8],
) -> Result<(), Failed> {
    while !bytes.is_empty() {
        t.read_tls(&mut bytes).map_err(Failed::Io)?;
        process(t, fd)?;
    }
    Ok(())
}

/// Processes received records; on a TLS error, sends the alert rustls
/// queued (best effort) and reports why.
fn process(t: &mut ServerConnection, fd: BorrowedFd<'_>) -> Result<(), Failed> {
    let was = t.is_handshaking();
    if let Err(e) = t.process_new_packets() {
        let _ = t.write_tls(&mut FdIo(fd));
        return Err(Failed::Tls(e));
    }
    if was && !t.is_handshaking() {
        crate::metrics::inc(crate::metrics::M::TlsHandshakes);
    }
    Ok(())
}

/// What writing records did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Written {
    /// Some bytes went out.
    pub any: bool,
    /// The socket is full; records are left for its next writability.
    pub blocked: bool,
}

/// Writes the records rustls has queued until none are left or the socket
/// is full.
pub(crate) fn write_records(t: &mut ServerConnection, fd: BorrowedFd<'_>) -> io::Result<Written> {
    let mut w = Written::default();
    while t.wants_write() {
        match t.write_tls(&mut FdIo(fd)) {
            Ok(_) => w.any = true,
            Err(e) if would_block(&e) => {
                w.blocked = true;
                break;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(w)
}

/// The tests' TLS client, shared with the integration tests.
#[cfg(test)]
#[path = "../../tests/common/tls_client.rs"]
#[allow(unreachable_pub)]
mod tls_client;

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    use std::os::fd::{AsFd, OwnedFd};
    use std::os::unix::net::UnixStream;

    /// A server session with a fresh self-signed certificate and a client
    /// that trusts it.
    pub(crate) fn pair_of_sessions() -> (ServerConnection, rustls::ClientConnection) {
        let names = vec!["localhost".to_string()];
        let (key, _, pem) = crate::tls::self_signed(&names).unwrap();
        let server = ServerConnection::new(crate::tls::server_config(vec![key]).unwrap()).unwrap();
        let cfg = super::tls_client::trusting(pem.as_bytes());
        let client = rustls::ClientConnection::new(cfg, "localhost".try_into().unwrap()).unwrap();
        (server, client)
    }

    /// Our end non-blocking, as the loop has it; the client's blocking.
    pub(crate) fn sockets() -> (OwnedFd, UnixStream) {
        let (ours, theirs) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        (OwnedFd::from(ours), theirs)
    }

    /// Runs the handshake: the client over its blocking socket, the server
    /// through the pump.
    pub(crate) fn handshake(
        server: &mut ServerConnection,
        fd: &OwnedFd,
        client: &mut rustls::ClientConnection,
        sock: &mut UnixStream,
    ) {
        while client.is_handshaking() || server.is_handshaking() {
            while client.wants_write() {
                client.write_tls(sock).unwrap();
            }
            while read_records(server, fd.as_fd()).unwrap() == Records::Read {}
            write_records(server, fd.as_fd()).unwrap();
            if client.is_handshaking() {
                client.read_tls(sock).unwrap();
                client.process_new_packets().unwrap();
            }
        }
    }

    #[test]
    fn moves_records_both_ways_over_a_socket_pair() {
        let (mut server, mut client) = pair_of_sessions();
        let (fd, mut sock) = sockets();
        handshake(&mut server, &fd, &mut client, &mut sock);
        client.writer().write_all(b"hello").unwrap();
        client.write_tls(&mut sock).unwrap();
        // One small record: the read comes back shorter than asked, so the
        // socket is known to be drained without another read.
        assert_eq!(
            read_records(&mut server, fd.as_fd()).unwrap(),
            Records::Drained
        );
        let mut got = [0u8; 16];
        let n = server.reader().read(&mut got).unwrap();
        assert_eq!(&got[..n], b"hello");
        assert_eq!(
            read_records(&mut server, fd.as_fd()).unwrap(),
            Records::WouldBlock
        );
        server.writer().write_all(b"world").unwrap();
        assert_eq!(
            write_records(&mut server, fd.as_fd()).unwrap(),
            Written {
                any: true,
                blocked: false
            }
        );
        client.read_tls(&mut sock).unwrap();
        client.process_new_packets().unwrap();
        let n = client.reader().read(&mut got).unwrap();
        assert_eq!(&got[..n], b"world");
        // shutdown, not only drop: a child forked meanwhile by another
        // test holds a copy of the fd until it execs.
        sock.shutdown(std::net::Shutdown::Both).unwrap();
        assert_eq!(read_records(&mut server, fd.as_fd()).unwrap(), Records::Eof);
    }

    #[test]
    fn a_bad_record_is_a_tls_failure_and_the_peer_gets_an_alert() {
        let (mut server, _) = pair_of_sessions();
        let (fd, mut sock) = sockets();
        // Plain HTTP where a ClientHello belongs: 'G' is no record type.
        sock.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        sock.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        assert!(matches!(
            read_records(&mut server, fd.as_fd()),
            Err(Failed::Tls(_))
        ));
        let mut alert = [0u8; 64];
        let n = sock.read(&mut alert).unwrap();
        assert_eq!(alert[0], 0x15, "an alert record: {:?}", &alert[..n]);
    }

    #[test]
    fn a_full_socket_leaves_records_queued() {
        let (mut server, mut client) = pair_of_sessions();
        let (fd, mut sock) = sockets();
        handshake(&mut server, &fd, &mut client, &mut sock);
        // Nobody reads the client's end: the socket buffer fills.
        server.set_buffer_limit(None);
        server.writer().write_all(&vec![7u8; 4 << 20]).unwrap();
        let w = write_records(&mut server, fd.as_fd()).unwrap();
        assert!(w.any && w.blocked, "{w:?}");
        assert!(server.wants_write());
    }
}
