//! How a socket enters the loop: `add_socket` and `add_stream` for every
//! source (the accept loop included), classification by the kernel, the
//! queue under `max_concurrent`, and registration of a served connection.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use super::accept::{self, Queued};
use super::{Added, Server, Socket};
use crate::sys::{self, Addr, SockKind};
use crate::tls::TlsMode;

impl Server {
    /// Adds a listening socket (accepted from from now on) or a connected
    /// one (served as one connection). What it is is asked of the kernel;
    /// anything but a stream socket is refused. Adopted fds are made
    /// non-blocking and close-on-exec.
    pub fn add_socket(&mut self, sock: impl Into<Socket>) -> io::Result<Added> {
        self.adopt(sock.into(), &[])
    }

    /// Adds a connected socket from which `pre_read` was already read: those
    /// bytes are served as if they had come from the socket.
    pub fn add_stream(&mut self, sock: impl Into<Socket>, pre_read: &[u8]) -> io::Result<Added> {
        let mut sock = sock.into();
        if let SockKind::Listener { .. } = sock.kind()? {
            let e = "add_stream takes a connected socket";
            return Err(io::Error::new(io::ErrorKind::InvalidInput, e));
        }
        self.adopt(sock, pre_read)
    }

    pub(super) fn adopt(&mut self, mut sock: Socket, pre_read: &[u8]) -> io::Result<Added> {
        if self.closed {
            return Err(io::Error::other("server is closed"));
        }
        if sock.tls != TlsMode::Off && self.shared.tls.is_none() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "TLS asked for but no certificate is configured",
            ));
        }
        let kind = sock.kind()?;
        let Socket { fd, peer, tls, .. } = sock;
        if let SockKind::Listener { unix } = kind {
            if !pre_read.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "a listener has no pre-read bytes",
                ));
            }
            let epoll = sys::poll_fd(&self.poll);
            let (token, local) = self.listeners.add(epoll, fd, unix, tls)?;
            tracing::debug!(%local, "listener added");
            self.accept_from(token);
            return Ok(Added::Listener(local));
        }
        let peer = peer.unwrap_or_else(|| sys::peer_addr(fd.as_fd()));
        if !self.conns.try_reserve(self.shared.opts.max_concurrent) {
            let pre_read = pre_read.to_vec();
            let q = Queued {
                fd,
                peer,
                pre_read,
                tls,
            };
            self.queued.offer(q, self.shared.opts.max_queued)?;
            return Ok(Added::Queued);
        }
        self.serve(fd, peer, pre_read, tls)?;
        Ok(Added::Connection)
    }

    /// Serves a connection in a slot already reserved, which is given back
    /// if it cannot be served.
    /// Serves a connection in a slot already reserved (given back if it
    /// cannot be served).
    pub(super) fn serve(
        &mut self,
        fd: OwnedFd,
        peer: Addr,
        pre_read: &[u8],
        tls: TlsMode,
    ) -> io::Result<()> {
        let (registry, now) = (self.poll.registry(), self.now);
        let conn = (fd, peer, pre_read, tls);
        let token = self.conns.insert(registry, conn, now, &mut self.shared)?;
        self.conns.drive(token, now, &mut self.shared, registry);
        self.give_handed();
        Ok(())
    }

    /// May the server take another connection now?
    pub(super) fn can_accept(&self) -> bool {
        !self.paused
            && !self.closed
            && !self.shared.draining
            && self.conns.in_use() < self.shared.opts.max_concurrent
    }

    /// Accepts from a ready listener up to the batch and `max_concurrent`,
    /// and adopts what it gave.
    pub(super) fn accept_from(&mut self, token: usize) {
        if !self.can_accept() {
            return;
        }
        let opts = &self.shared.opts;
        let limit = opts
            .accept_batch
            .min(opts.max_concurrent - self.conns.len());
        let mut got = std::mem::take(&mut self.accepted);
        self.listeners
            .accept(token, limit, self.now, opts.accept_backoff, &mut got);
        self.adopt_accepted(&mut got);
        self.accepted = got;
    }

    fn adopt_accepted(&mut self, got: &mut Vec<Socket>) {
        for sock in got.drain(..) {
            if let Err(e) = self.adopt(sock, &[]) {
                tracing::warn!("dropping an accepted connection: {e}");
            }
        }
    }

    /// Closes the listeners for good, after taking what waits in their
    /// backlogs (closing would reset those connections). Not woken any
    /// more first, then emptied: a connection arriving from now on wakes
    /// another loop or process still accepting from the same socket.
    pub(super) fn stop_accepting(&mut self) {
        self.listeners.deregister_all(self.poll.registry());
        self.take_backlogs();
        self.listeners.close_all(self.poll.registry());
    }

    /// Accepts everything waiting in the listeners' backlogs (at most what
    /// `max_concurrent` and `max_queued` allow).
    fn take_backlogs(&mut self) {
        let opts = &self.shared.opts;
        let room = (opts.max_concurrent + opts.max_queued)
            .saturating_sub(self.conns.in_use() + self.queued.len());
        let mut got = Vec::new();
        self.listeners.take_backlogs(room, &mut got);
        if !got.is_empty() {
            tracing::info!(
                taken = got.len(),
                "draining: took the backlog's connections"
            );
        }
        self.adopt_accepted(&mut got);
    }

    /// Once a turn, at its end: serve queued sockets while there are free
    /// slots, then accept from every listener still ready (a batch or
    /// `max_concurrent` stopped it) or done resting. Accepting never
    /// re-enters from inside closing.
    pub(super) fn admit(&mut self) {
        while !self.closed && !self.queued.is_empty() {
            if !self.conns.try_reserve(self.shared.opts.max_concurrent) {
                break;
            }
            let Some(q) = self.queued.pop() else {
                self.conns.unreserve();
                break;
            };
            if let Err(e) = self.serve(q.fd, q.peer, &q.pre_read, q.tls) {
                tracing::warn!("queued connection dropped: {e}");
            }
        }
        // By index: no allocation on a turn that accepts nothing.
        for i in 0..self.listeners.len() {
            let t = accept::LISTENER_TOKENS + i;
            if self.listeners.is_due(t, self.now) {
                self.accept_from(t);
            }
        }
    }
}
