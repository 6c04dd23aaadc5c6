//! How a socket enters the loop: `add_socket` and `add_stream` for every
//! source (the accept loop included), classification by the kernel, the
//! queue under `max_concurrent`, and registration of a served connection.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use mio::unix::SourceFd;
use mio::{Interest, Token};

use super::accept::{self, Queued};
use super::connection::{Connection, Readiness};
use super::{Added, Server, Socket};
use crate::conn_io::Transport;
use crate::http::Conn;
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
        let not_a_stream = || {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "add_stream takes a connected socket",
            )
        };
        let sock = sock.into();
        if let Some(SockKind::Listener { .. }) = sock.kind {
            return Err(not_a_stream());
        }
        match self.adopt(sock, pre_read)? {
            Added::Listener(_) => Err(not_a_stream()),
            r => Ok(r),
        }
    }

    pub(super) fn adopt(&mut self, sock: Socket, pre_read: &[u8]) -> io::Result<Added> {
        if self.closed {
            return Err(io::Error::other("server is closed"));
        }
        let Socket {
            fd,
            kind,
            peer,
            tls,
        } = sock;
        if tls != TlsMode::Off && self.shared.tls.is_none() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "TLS asked for but no certificate is configured",
            ));
        }
        let kind = match kind {
            Some(k) => k,
            None => {
                let k = sys::classify(fd.as_fd())?;
                sys::prepare_adopted(fd.as_fd())?;
                if let SockKind::Stream { unix: false } | SockKind::Listener { unix: false } = k {
                    // Listeners pass it on to what they accept.
                    sys::set_nodelay(fd.as_fd())?;
                }
                k
            }
        };
        match kind {
            SockKind::Listener { unix } => {
                if !pre_read.is_empty() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "a listener has no pre-read bytes",
                    ));
                }
                let (token, local) = self.listeners.add(self.poll.registry(), fd, unix, tls)?;
                tracing::debug!(%local, "listener added");
                self.accept_from(token);
                Ok(Added::Listener(local))
            }
            SockKind::Stream { .. } => {
                let peer = peer.unwrap_or_else(|| sys::peer_addr(fd.as_fd()));
                if self.live >= self.shared.opts.max_concurrent {
                    if self.queued.len() >= self.shared.opts.max_queued {
                        return Err(io::Error::new(
                            io::ErrorKind::WouldBlock,
                            "at max_concurrent and the queue of waiting sockets is full",
                        ));
                    }
                    self.queued.push_back(Queued {
                        fd,
                        peer,
                        pre_read: pre_read.to_vec(),
                        tls,
                    });
                    return Ok(Added::Queued);
                }
                self.serve(fd, peer, pre_read, tls)?;
                Ok(Added::Connection)
            }
        }
    }

    /// Registers an fd under the next free slab key, which the caller then
    /// fills.
    pub(super) fn register(&self, fd: &OwnedFd, interest: Interest) -> io::Result<usize> {
        let token = self.entries.vacant_key();
        self.poll
            .registry()
            .register(&mut SourceFd(&fd.as_raw_fd()), Token(token), interest)?;
        Ok(token)
    }

    pub(super) fn serve(
        &mut self,
        fd: OwnedFd,
        peer: Addr,
        pre_read: &[u8],
        tls: TlsMode,
    ) -> io::Result<()> {
        let transport = match (tls, &self.shared.tls) {
            (TlsMode::Off, _) => Transport::Plain,
            (_, None) => {
                return Err(io::Error::other(
                    "TLS asked for but no certificate is configured",
                ));
            }
            (TlsMode::Auto, Some(c)) => Transport::Sniff(c.clone()),
            (TlsMode::On, Some(c)) => Transport::tls(c.clone())?,
        };
        let token = self.register(&fd, Interest::READABLE | Interest::WRITABLE)?;
        let mut conn = Conn::new(peer, self.now);
        conn.feed(pre_read, &mut self.shared.pool, self.now);
        self.next_gen += 1;
        self.entries.insert(Box::new(Connection {
            fd,
            conn,
            transport,
            ready: Readiness {
                // Draining, a connection from the backlog is read at once:
                // its request is what it is being accepted for, and
                // without bytes it would be judged idle and closed.
                readable: self.shared.draining,
                writable: true,
                peer_closed: false,
            },
            generation: self.next_gen,
            timer_at: None,
        }));
        self.live += 1;
        self.drive(token);
        Ok(())
    }

    /// May the server take another connection now?
    fn can_accept(&self) -> bool {
        !self.paused
            && !self.closed
            && !self.shared.draining
            && self.live < self.shared.opts.max_concurrent
    }

    /// Accepts from a ready listener up to the batch and `max_concurrent`,
    /// and adopts what it gave.
    pub(super) fn accept_from(&mut self, token: usize) {
        if !self.can_accept() {
            return;
        }
        let opts = &self.shared.opts;
        let limit = opts.accept_batch.min(opts.max_concurrent - self.live);
        let mut got = std::mem::take(&mut self.accepted);
        self.listeners
            .accept(token, limit, self.now, opts.accept_backoff, &mut got);
        for sock in got.drain(..) {
            if let Err(e) = self.adopt(sock, &[]) {
                tracing::warn!("dropping accepted connection: {e}");
            }
        }
        self.accepted = got;
    }

    /// Accepts everything waiting in the listeners' backlogs (at most what
    /// `max_concurrent` and `max_queued` allow): draining, they are about
    /// to close, which would reset those connections.
    pub(super) fn take_backlogs(&mut self) {
        let opts = &self.shared.opts;
        let room =
            (opts.max_concurrent + opts.max_queued).saturating_sub(self.live + self.queued.len());
        let mut got = Vec::new();
        self.listeners.take_backlogs(room, &mut got);
        if !got.is_empty() {
            tracing::info!(
                taken = got.len(),
                "draining: took the connections waiting in the backlog"
            );
        }
        for sock in got {
            if let Err(e) = self.adopt(sock, &[]) {
                tracing::warn!("dropping a connection from the backlog: {e}");
            }
        }
    }

    /// Once a turn, at its end: serve queued sockets while there are free
    /// slots, then accept from listeners done resting, and, if slots were
    /// freed this turn, from those still ready (which stopped at the
    /// limit). Accepting never re-enters from inside closing.
    pub(super) fn admit_waiting(&mut self) {
        let freed = std::mem::take(&mut self.freed);
        while self.live < self.shared.opts.max_concurrent && !self.closed {
            let Some(q) = self.queued.pop_front() else {
                break;
            };
            if let Err(e) = self.serve(q.fd, q.peer, &q.pre_read, q.tls) {
                tracing::warn!("queued connection dropped: {e}");
            }
        }
        // By index: no allocation on a turn that accepts nothing.
        for i in 0..self.listeners.len() {
            let t = accept::LISTENER_TOKENS + i;
            if self.listeners.is_due(t, self.now, freed) {
                self.accept_from(t);
            }
        }
    }
}
