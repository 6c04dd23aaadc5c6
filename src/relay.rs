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

use crate::sys;
use crate::tls::pump::{self, Records};

/// Plaintext from the client waiting for the worker.
const TO_WORKER_LIMIT: usize = 256 * 1024;
/// Plaintext from the worker read per step.
const CHUNK: usize = 16 * 1024;

pub(crate) struct Relay {
    pub client: OwnedFd,
    pub pair: OwnedFd,
    tls: Box<ServerConnection>,
    to_worker: Vec<u8>,
    to_client: Vec<u8>,
    pub client_readable: bool,
    pub client_writable: bool,
    pub pair_readable: bool,
    pub pair_writable: bool,
    client_eof: bool,
    pair_eof: bool,
    pair_shut: bool,
    client_shut: bool,
}

use crate::sys::would_block;

impl Relay {
    /// `rest`: plaintext the client sent after the upgrade that the HTTP
    /// engine had already taken out of the session.
    pub(crate) fn new(client: OwnedFd, tls: Box<ServerConnection>, pair: OwnedFd) -> Relay {
        Relay {
            client,
            pair,
            tls,
            to_worker: Vec::new(),
            to_client: Vec::new(),
            client_readable: true,
            client_writable: true,
            pair_readable: true,
            pair_writable: true,
            client_eof: false,
            pair_eof: false,
            pair_shut: false,
            client_shut: false,
        }
    }

    /// Moves what can move. `Ok(true)` while the relay lives.
    pub(crate) fn drive(&mut self) -> Result<bool, String> {
        loop {
            let mut moved = false;

            // Client → worker.
            if !self.to_worker.is_empty() && self.pair_writable {
                match sys::write(self.pair.as_fd(), &self.to_worker) {
                    Ok(n) => {
                        self.to_worker.drain(..n);
                        moved = true;
                    }
                    Err(e) if would_block(&e) => self.pair_writable = false,
                    Err(_) => {
                        // The worker is gone: nothing more goes that way.
                        self.to_worker.clear();
                        self.client_eof = true;
                        self.pair_eof = true;
                    }
                }
            }
            if self.to_worker.len() < TO_WORKER_LIMIT && !self.client_eof {
                if self.client_readable {
                    match pump::read_records(&mut self.tls, self.client.as_fd())
                        .map_err(|e| e.to_string())?
                    {
                        Records::Eof => {
                            self.client_readable = false;
                            self.client_eof = true;
                            moved = true;
                        }
                        Records::Read => moved = true,
                        Records::WouldBlock => self.client_readable = false,
                        // rustls' plaintext buffer is full: drain it first.
                        Records::Full => {}
                    }
                }
                let mut buf = [0u8; CHUNK];
                let room = (TO_WORKER_LIMIT - self.to_worker.len()).min(CHUNK);
                match self.tls.reader().read(&mut buf[..room]) {
                    Ok(0) => self.client_eof = true,
                    Ok(n) => {
                        self.to_worker.extend_from_slice(&buf[..n]);
                        moved = true;
                    }
                    Err(e) if would_block(&e) => {}
                    Err(_) => self.client_eof = true,
                }
            }
            if self.client_eof && self.to_worker.is_empty() && !self.pair_shut {
                let _ = sys::shutdown_write(self.pair.as_fd());
                self.pair_shut = true;
                moved = true;
            }

            // Worker → client.
            if !self.to_client.is_empty() {
                let n = self
                    .tls
                    .writer()
                    .write(&self.to_client)
                    .map_err(|e| format!("relay: {e}"))?;
                self.to_client.drain(..n);
                moved |= n > 0;
            }
            if self.to_client.is_empty() && self.pair_readable && !self.pair_eof {
                let mut buf = [0u8; CHUNK];
                match sys::read(self.pair.as_fd(), &mut buf) {
                    Ok(0) => {
                        self.pair_eof = true;
                        moved = true;
                    }
                    Ok(n) => {
                        self.to_client.extend_from_slice(&buf[..n]);
                        moved = true;
                    }
                    Err(e) if would_block(&e) => self.pair_readable = false,
                    Err(_) => self.pair_eof = true,
                }
            }
            if self.pair_eof && self.to_client.is_empty() && !self.client_shut {
                self.tls.send_close_notify();
                self.client_shut = true;
                moved = true;
            }
            if self.client_writable {
                match pump::write_records(&mut self.tls, self.client.as_fd()) {
                    Ok(w) => {
                        moved |= w.any;
                        self.client_writable = !w.blocked;
                    }
                    Err(_) => return Ok(false), // the client is gone
                }
            }
            if self.client_shut && !self.tls.wants_write() {
                let _ = sys::shutdown_write(self.client.as_fd());
            }
            // Done when both directions are: the worker has closed and all
            // it sent has gone out; the client has closed or is gone.
            if self.pair_eof && self.client_shut && !self.tls.wants_write() {
                // The worker ended the conversation and the client has its
                // close_notify: nothing more will be relayed.
                return Ok(false);
            }
            if !moved {
                return Ok(true);
            }
        }
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
        relay.pair_readable = true;
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
            relay.client_readable = true;
            relay.drive().unwrap();
        }
        assert!(relay.to_worker.len() <= TO_WORKER_LIMIT);
        assert!(sent > TO_WORKER_LIMIT * 4);
    }
}
