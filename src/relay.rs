//! The TLS relay for handed-off connections. A TLS session cannot travel
//! with its fd to another process (see docs/ktls.md), so for a `wss://`
//! upgrade the HTTP process keeps the session and gives the worker one end
//! of a socketpair instead: the worker's code is the same for `ws://` and
//! `wss://`. This relay moves plaintext between the session and the pair,
//! with bounded buffers and back-pressure each way: when one side does not
//! read, the relay stops reading the other, so memory stays bounded however
//! large the messages.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};

use rustls::ServerConnection;

use crate::conn_io::FdIo;
use crate::sys;

/// Plaintext from the client waiting for the worker.
const TO_WORKER_LIMIT: usize = 256 * 1024;
/// Plaintext from the worker read per step.
const CHUNK: usize = 16 * 1024;

pub struct Relay {
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
    pub fn new(client: OwnedFd, tls: Box<ServerConnection>, pair: OwnedFd) -> Relay {
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
    pub fn drive(&mut self) -> Result<bool, String> {
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
                    match self.tls.read_tls(&mut FdIo(self.client.as_fd())) {
                        Ok(0) => {
                            self.client_readable = false;
                            self.client_eof = true;
                            moved = true;
                        }
                        Ok(_) => moved = true,
                        Err(e) if would_block(&e) => self.client_readable = false,
                        // rustls' plaintext buffer is full: drain it first.
                        Err(e) if e.kind() == io::ErrorKind::Other => {}
                        Err(e) => return Err(format!("relay read: {e}")),
                    }
                    if let Err(e) = self.tls.process_new_packets() {
                        let _ = self.tls.write_tls(&mut FdIo(self.client.as_fd()));
                        return Err(format!("TLS: {e}"));
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
            while self.client_writable && self.tls.wants_write() {
                match self.tls.write_tls(&mut FdIo(self.client.as_fd())) {
                    Ok(_) => moved = true,
                    Err(e) if would_block(&e) => self.client_writable = false,
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
