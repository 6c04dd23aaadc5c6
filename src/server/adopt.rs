//! How a socket enters the loop: `add_socket` and `add_stream` for every
//! source (the accept loop included), classification by the kernel, the
//! queue under `max_concurrent`, and registration of a served connection.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use super::accept::{self, Queued};
use super::connection::Wrapping;
use super::per_client::Admit;
use super::{Added, Server, Socket};
use crate::metrics::{M, inc};
use crate::sys::{self, Addr, SockKind};
use crate::tls::TlsMode;

impl Server {
    /// Adds a listening socket (accepted from from now on) or a connected
    /// one (served as one connection). What it is is asked of the kernel;
    /// anything but a stream socket is refused. Adopted fds are made
    /// non-blocking and close-on-exec.
    pub fn add_socket(&mut self, sock: impl Into<Socket>) -> io::Result<Added> {
        self.adopt(sock.into(), &[], true)
    }

    /// Adds a connected socket from which `pre_read` was already read: those
    /// bytes are served as if they had come from the socket.
    pub fn add_stream(&mut self, sock: impl Into<Socket>, pre_read: &[u8]) -> io::Result<Added> {
        let mut sock = sock.into();
        if let SockKind::Listener { .. } = sock.classify_and_prepare()? {
            let e = "add_stream takes a connected socket";
            return Err(io::Error::new(io::ErrorKind::InvalidInput, e));
        }
        self.adopt(sock, pre_read, true)
    }

    /// `handed`: given by a caller (counted as such); else accepted here.
    pub(super) fn adopt(
        &mut self,
        sock: Socket,
        pre_read: &[u8],
        handed: bool,
    ) -> io::Result<Added> {
        use crate::metrics::{M, inc};
        let added = self.adopt_counted(sock, pre_read);
        match (&added, handed) {
            (Ok(Added::Connection | Added::Queued), true) => inc(M::AcceptedHanded),
            (Err(_), true) => inc(M::RefusedHanded),
            (Err(_), false) => inc(M::RefusedListener),
            _ => {}
        }
        added
    }

    fn adopt_counted(&mut self, mut sock: Socket, pre_read: &[u8]) -> io::Result<Added> {
        if self.admission.closed {
            return Err(io::Error::other("server is closed"));
        }
        if sock.wrapping.tls != TlsMode::Off && self.shared.tls.is_none() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                super::connection::NO_CERTIFICATE,
            ));
        }
        let kind = sock.classify_and_prepare()?;
        let Socket {
            fd,
            peer,
            wrapping,
            resume_h2,
            back,
            ..
        } = sock;
        if let SockKind::Listener { unix } = kind {
            if !pre_read.is_empty() || resume_h2.is_some() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "a listener has no pre-read bytes or HTTP/2 state",
                ));
            }
            let epoll = sys::poll_fd(&self.poll);
            let (token, local) = self.admission.listeners.add(epoll, fd, unix, wrapping)?;
            tracing::debug!(%local, "listener added");
            self.accept_from(token);
            return Ok(Added::Listener(local));
        }
        let peer = peer.unwrap_or_else(|| sys::peer_addr(fd.as_fd()));
        if !self
            .conns
            .budget
            .try_reserve(self.shared.opts.max_concurrent)
        {
            let pre_read = pre_read.to_vec();
            let q = Queued {
                fd,
                peer,
                pre_read,
                wrapping,
                resume_h2,
                back,
            };
            self.admission
                .queued
                .offer(q, self.shared.opts.max_queued)?;
            return Ok(Added::Queued);
        }
        self.serve(fd, peer, pre_read, wrapping, resume_h2.as_deref(), back)?;
        Ok(Added::Connection)
    }

    /// Serves a connection in a slot already reserved (given back if it
    /// cannot be served).
    pub(super) fn serve(
        &mut self,
        fd: OwnedFd,
        peer: Addr,
        pre_read: &[u8],
        wrapping: Wrapping,
        resume_h2: Option<&[u8]>,
        back: Option<super::returning::Back>,
    ) -> io::Result<()> {
        let (registry, now) = (self.poll.registry(), self.now);
        // Served before the next turn asks (`add_stream`): asked now.
        self.shared.observer.look();
        // Behind a PROXY header the client is not known yet: counted
        // once it is (`Connection::ready`).
        let counted = wrapping.proxy.is_none() && self.conns.clients.limits_conns();
        if counted && self.conns.clients.open(&peer) == Admit::Refused {
            // No engine, no handler: its slot goes back, the socket is
            // closed.
            inc(M::RefusedPerClient);
            tracing::debug!(%peer, "refused: the client has its most connections open");
            self.conns.budget.unreserve();
            return Ok(());
        }
        let key = counted.then(|| peer.clone());
        let conn = (fd, peer, pre_read, wrapping, resume_h2);
        let token = match self.conns.insert(registry, conn, now, &mut self.shared) {
            Ok(t) => t,
            Err(e) => {
                if let Some(peer) = key {
                    self.conns.clients.close(&peer);
                }
                return Err(e);
            }
        };
        if let Some(back) = back {
            self.conns.back.insert(token, back);
        }
        self.conns.drive(token, now, &mut self.shared, registry);
        self.give_handed();
        Ok(())
    }

    /// May the server take another connection now?
    pub(super) fn can_accept(&self) -> bool {
        let (opts, in_use) = (&self.shared.opts, self.conns.budget.in_use());
        self.admission
            .is_open(self.shared.draining, in_use, opts.max_concurrent)
    }

    /// Accepts from a ready listener and adopts what it gave.
    pub(super) fn accept_from(&mut self, token: usize) {
        if self.can_accept() {
            let in_use = self.conns.budget.in_use();
            let got = self
                .admission
                .batch(token, in_use, &self.shared.opts, self.now);
            let got = self.adopt_all(got, "an accepted connection");
            self.admission.recycle(got);
        }
    }

    /// Closes the listeners for good and adopts what waited in their
    /// backlogs (`Admission::stop`).
    pub(super) fn stop_accepting(&mut self) {
        let in_use = self.conns.budget.in_use();
        let got = self
            .admission
            .stop(self.poll.registry(), in_use, &self.shared.opts);
        self.adopt_all(got, "a connection from the backlog");
    }

    fn adopt_all(&mut self, mut got: Vec<Socket>, what: &str) -> Vec<Socket> {
        for sock in got.drain(..) {
            if let Err(e) = self.adopt(sock, &[], false) {
                tracing::warn!("dropping {what}: {e}");
            }
        }
        got
    }

    /// Once a turn, at its end: serve queued sockets while there are free
    /// slots, then accept from every listener still ready (a batch or
    /// `max_concurrent` stopped it) or done resting. Accepting never
    /// re-enters from inside closing.
    #[inline]
    pub(super) fn admit(&mut self) {
        // After every turn; most have nothing to admit.
        if self.admission.queued.is_empty() && !self.admission.listeners.any_ready_or_resting() {
            return;
        }
        self.admit_now();
    }

    #[inline(never)]
    fn admit_now(&mut self) {
        while !self.admission.closed && !self.admission.queued.is_empty() {
            if !self
                .conns
                .budget
                .try_reserve(self.shared.opts.max_concurrent)
            {
                break;
            }
            let Some(q) = self.admission.queued.pop() else {
                self.conns.budget.unreserve();
                break;
            };
            let resume = q.resume_h2.as_deref();
            if let Err(e) = self.serve(q.fd, q.peer, &q.pre_read, q.wrapping, resume, q.back) {
                tracing::warn!("queued connection dropped: {e}");
            }
        }
        // By index: no allocation on a turn that accepts nothing.
        for i in 0..self.admission.listeners.len() {
            let t = accept::LISTENER_TOKENS + i;
            if self.admission.listeners.is_due(t, self.now) {
                self.accept_from(t);
            }
        }
    }
}
