//! The TLS relay for handed-off connections. A TLS session cannot travel
//! with its fd to another process (see docs/ktls.md), so for a `wss://`
//! upgrade the HTTP process keeps the session and gives the worker one end
//! of a socketpair instead: the worker's code is the same for `ws://` and
//! `wss://`. This relay moves plaintext between the session and the pair,
//! with bounded buffers and back-pressure each way: when one side does not
//! read, the relay stops reading the other, so memory stays bounded however
//! large the messages.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};

use rustls::ServerConnection;

use super::Readiness;
use crate::sys;
use crate::sys::would_block;
use crate::tls::pump::{self, Records};

/// Plaintext from the client waiting for the worker.
const TO_WORKER_LIMIT: usize = 256 * 1024;
/// Plaintext from the worker read per step.
const CHUNK: usize = 16 * 1024;

/// One side of the relay: a socket, the readiness its events reported,
/// and how far its conversation has got.
pub(super) struct End {
    pub(super) fd: OwnedFd,
    pub(super) ready: Readiness,
    /// Nothing more will come from it (its end of input, or it is gone).
    eof: bool,
    /// We told it we are done writing (a FIN, or close_notify).
    shut: bool,
}

impl End {
    fn new(fd: OwnedFd) -> End {
        End {
            fd,
            ready: Readiness {
                readable: true,
                writable: true,
                fin_queued: false,
            },
            eof: false,
            shut: false,
        }
    }
}

pub(super) struct Relay {
    /// The TLS client.
    pub(super) client: End,
    /// Our end of the worker's socketpair.
    pub(super) pair: End,
    tls: Box<ServerConnection>,
    to_worker: Vec<u8>,
    to_client: Vec<u8>,
}

impl Relay {
    pub(super) fn new(client: OwnedFd, tls: Box<ServerConnection>, pair: OwnedFd) -> Relay {
        Relay {
            client: End::new(client),
            pair: End::new(pair),
            tls,
            to_worker: Vec::new(),
            to_client: Vec::new(),
        }
    }

    /// Moves what can move. `Ok(true)` while the relay lives.
    pub(super) fn drive(&mut self) -> Result<bool, String> {
        loop {
            let mut moved = self.client_to_worker()?;
            moved |= self.worker_to_client()?;
            if self.client.ready.writable {
                match pump::write_records(&mut self.tls, self.client.fd.as_fd()) {
                    Ok(w) => {
                        moved |= w.any;
                        self.client.ready.writable = !w.blocked;
                    }
                    Err(_) => return Ok(false), // the client is gone
                }
            }
            if self.client.shut && !self.tls.wants_write() {
                let _ = sys::shutdown_write(self.client.fd.as_fd());
            }
            // Done when the worker has closed, all it sent has gone out,
            // and the client has its close_notify: nothing more will be
            // relayed.
            if self.pair.eof && self.client.shut && !self.tls.wants_write() {
                return Ok(false);
            }
            if !moved {
                return Ok(true);
            }
        }
    }

    /// Client → worker: plaintext out of the session into the pair, read
    /// only while what waits for the worker is under its bound.
    fn client_to_worker(&mut self) -> Result<bool, String> {
        let mut moved = false;
        if !self.to_worker.is_empty() && self.pair.ready.writable {
            match sys::write(self.pair.fd.as_fd(), &self.to_worker) {
                Ok(n) => {
                    self.to_worker.drain(..n);
                    moved = true;
                }
                Err(e) if would_block(&e) => self.pair.ready.writable = false,
                Err(_) => {
                    // The worker is gone: nothing more goes that way.
                    self.to_worker.clear();
                    self.client.eof = true;
                    self.pair.eof = true;
                }
            }
        }
        if self.to_worker.len() < TO_WORKER_LIMIT && !self.client.eof {
            if self.client.ready.readable {
                match pump::read_records(&mut self.tls, self.client.fd.as_fd())
                    .map_err(|e| e.to_string())?
                {
                    Records::Eof => {
                        self.client.ready.readable = false;
                        self.client.eof = true;
                        moved = true;
                    }
                    Records::Read => moved = true,
                    Records::Drained => {
                        moved = true;
                        self.client.ready.drained();
                    }
                    Records::WouldBlock => self.client.ready.readable = false,
                    // rustls' plaintext buffer is full: drain it first.
                    Records::Full => {}
                }
            }
            let mut buf = [0u8; CHUNK];
            let room = (TO_WORKER_LIMIT - self.to_worker.len()).min(CHUNK);
            match self.tls.reader().read(&mut buf[..room]) {
                Ok(0) => self.client.eof = true,
                Ok(n) => {
                    self.to_worker.extend_from_slice(&buf[..n]);
                    moved = true;
                }
                Err(e) if would_block(&e) => {}
                Err(_) => self.client.eof = true,
            }
        }
        if self.client.eof && self.to_worker.is_empty() && !self.pair.shut {
            let _ = sys::shutdown_write(self.pair.fd.as_fd());
            self.pair.shut = true;
            moved = true;
        }
        Ok(moved)
    }

    /// Worker → client: what the pair gives, into the session as
    /// plaintext; the pair is read again only when that has gone in.
    fn worker_to_client(&mut self) -> Result<bool, String> {
        let mut moved = false;
        if !self.to_client.is_empty() {
            let n = self
                .tls
                .writer()
                .write(&self.to_client)
                .map_err(|e| format!("relay: {e}"))?;
            self.to_client.drain(..n);
            moved |= n > 0;
        }
        if self.to_client.is_empty() && self.pair.ready.readable && !self.pair.eof {
            let mut buf = [0u8; CHUNK];
            match sys::read(self.pair.fd.as_fd(), &mut buf) {
                Ok(0) => {
                    self.pair.eof = true;
                    moved = true;
                }
                Ok(n) => {
                    self.to_client.extend_from_slice(&buf[..n]);
                    moved = true;
                }
                Err(e) if would_block(&e) => self.pair.ready.readable = false,
                Err(_) => self.pair.eof = true,
            }
        }
        if self.pair.eof && self.to_client.is_empty() && !self.client.shut {
            self.tls.send_close_notify();
            self.client.shut = true;
            moved = true;
        }
        Ok(moved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::pump::tests::{handshake, pair_of_sessions, sockets};
    use std::os::unix::net::UnixStream;

    #[test]
    fn relays_plaintext_both_ways_and_ends_with_close_notify_when_the_worker_closes() {
        let (mut server, mut client) = pair_of_sessions();
        let (fd, mut sock) = sockets();
        handshake(&mut server, &fd, &mut client, &mut sock);
        let (pair, mut worker) = UnixStream::pair().unwrap();
        pair.set_nonblocking(true).unwrap();
        let mut relay = Relay::new(fd, Box::new(server), OwnedFd::from(pair));

        // Client -> worker.
        client.writer().write_all(b"to the worker").unwrap();
        client.write_tls(&mut sock).unwrap();
        assert!(relay.drive().unwrap());
        let mut got = [0u8; 64];
        let n = worker.read(&mut got).unwrap();
        assert_eq!(&got[..n], b"to the worker");

        // Worker -> client, then the worker closes: the client gets the
        // data and a close_notify, and the relay ends.
        worker.write_all(b"to the client").unwrap();
        // shutdown, not only drop: a child forked meanwhile by another
        // test holds a copy of the fd until it execs.
        worker.shutdown(std::net::Shutdown::Both).unwrap();
        relay.pair.ready.readable = true;
        assert!(!relay.drive().unwrap(), "the relay ends with the worker");
        let mut plain = Vec::new();
        loop {
            if client.read_tls(&mut sock).unwrap() == 0 {
                break;
            }
            let st = client.process_new_packets().unwrap();
            let mut buf = vec![0u8; st.plaintext_bytes_to_read()];
            client.reader().read_exact(&mut buf).unwrap();
            plain.extend_from_slice(&buf);
            if st.peer_has_closed() {
                break;
            }
        }
        assert_eq!(plain, b"to the client");
    }

    #[test]
    fn stops_reading_the_client_while_the_worker_does_not_read() {
        let (mut server, mut client) = pair_of_sessions();
        let (fd, mut sock) = sockets();
        handshake(&mut server, &fd, &mut client, &mut sock);
        let (pair, _worker) = UnixStream::pair().unwrap();
        pair.set_nonblocking(true).unwrap();
        let mut relay = Relay::new(fd, Box::new(server), OwnedFd::from(pair));
        sock.set_nonblocking(true).unwrap();
        // The client sends far more than the worker's socket and the
        // relay's bound hold; nobody reads the worker's end.
        let chunk = vec![1u8; 16 * 1024];
        let mut sent = 0;
        for _ in 0..256 {
            if client.writer().write(&chunk).unwrap_or(0) > 0 {
                while client.wants_write() {
                    if client.write_tls(&mut sock).is_err() {
                        break;
                    }
                }
            }
            sent += chunk.len();
            relay.client.ready.readable = true;
            relay.drive().unwrap();
        }
        assert!(relay.to_worker.len() <= TO_WORKER_LIMIT);
        assert!(sent > TO_WORKER_LIMIT * 4);
    }
}
