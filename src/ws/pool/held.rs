//! An upgrade on its way to a worker: what the pool holds until a worker
//! answers (our copy of the socket, for a 503, and the request's one access
//! line), and the `PASS_CONNECTION` that carries it.

use std::os::fd::{AsFd, OwnedFd};

use crate::handoff::wire::{self, Kind, Message};
use crate::server::{AccessLine, HandedOff};
use crate::sys;

/// An upgrade the pool holds until a worker answers: our copy of the
/// socket, for a 503, and the request's access line, written once with
/// the outcome (the worker writes none).
pub(super) struct Held {
    pub(super) fd: OwnedFd,
    pub(super) access: AccessLine,
    /// The route's path, for the line's note.
    pub(super) route: String,
}

impl Held {
    pub(super) fn of(h: HandedOff) -> (Held, Message) {
        let (msg, fd, access) = pass_connection(h, 0);
        let route = msg.route.clone().unwrap_or_else(|| "-".into());
        (Held { fd, access, route }, msg)
    }

    /// No worker took it: a 503, and the line says so.
    pub(super) fn refuse(self, why: &str) {
        answer_503(self.fd, why);
        self.access.write(Some(503), why);
    }

    /// A worker took it (and wrote the 101): our copy closes.
    pub(super) fn taken(self, by: &str) {
        self.access
            .write(Some(101), &format!("websocket {} {by}", self.route));
    }
}

/// Writes a 503 on a connection the pool could not place, and closes it.
fn answer_503(fd: OwnedFd, why: &str) {
    tracing::warn!(peer = %sys::peer_addr(fd.as_fd()), "WebSocket upgrade answered 503: {why}");
    crate::server::answer_untaken(fd.as_fd(), 503, why);
}

/// The `PASS_CONNECTION` that gives a worker an upgrade (`docs/handoff-protocol.md`):
/// the peer, the address it reached, whether it came over TLS, the head
/// and what was read after it, and what the HTTP process matched and
/// computed (`ROUTE`, `ACCEPT`, `ENV`), so the worker parses nothing
/// again. Returns the message and the socket to send with it.
fn pass_connection(h: HandedOff, id: u64) -> (Message, OwnedFd, AccessLine) {
    let mut msg = Message::new(Kind::PassConnection, id);
    msg.peer = Some(h.peer.to_string());
    msg.local = Some(h.local.to_string());
    if h.tls {
        msg.flags |= wire::flags::SECURE;
    }
    if let Some(a) = h
        .context
        .and_then(|c| c.downcast::<crate::ws::handshake::Accepted>().ok())
    {
        msg.env = wire::encode_env(&a.env);
        msg.route = Some(a.route);
        msg.accept = Some(a.accept);
    }
    // Sent still: a worker older than ROUTE and ACCEPT parses it.
    msg.head = h.head;
    msg.data = h.rest;
    (msg, h.socket, h.access)
}
