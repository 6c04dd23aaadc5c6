//! Where a connection a handler handed off goes: to the hook the
//! application set (the WebSocket pool). A plain socket goes as it is; a
//! TLS session cannot go with its fd, so it stays here and the hook gets
//! one end of a socketpair carrying the plaintext, relayed by `Relays`.

use std::os::fd::AsFd;

use mio::Registry;

use super::connection::Relays;
use super::connection::Transport;
use super::connections::Leaving;
use super::{AccessLine, HandedOff};
use crate::sys;

/// What the application does with a handed-off connection.
pub(super) type Hook = Box<dyn FnMut(HandedOff)>;

/// Gives the connection to the hook; without a hook (or without the head)
/// it is closed, with a log line.
pub(super) fn give(hook: Option<&mut Hook>, relays: &mut Relays, registry: &Registry, h: Leaving) {
    let (c, taken) = h;
    let peer = c.engine.peer().clone();
    let local = sys::local_addr(c.io.fd.as_fd());
    let Some(crate::http::Taken {
        head,
        rest,
        context,
        seen,
    }) = taken
    else {
        return tracing::error!(%peer, "a handed-off connection without its request; closed");
    };
    let access = AccessLine::new(peer.clone(), seen);
    let Some(hook) = hook else {
        tracing::error!(%peer, "a handler handed off a connection but no hand-off hook is set; closed");
        return access.write(None, "handed off, but no hand-off hook: closed");
    };
    match c.io.transport {
        Transport::Tls(tls) => match sys::fdpass::stream_pair() {
            Ok((ours, theirs)) => {
                hook(HandedOff {
                    socket: theirs,
                    head,
                    rest,
                    peer,
                    local,
                    tls: true,
                    context,
                    access,
                });
                relays.start(registry, c.io.fd, tls, ours);
            }
            Err(e) => {
                tracing::error!(%peer, "no socketpair for a TLS hand-off: {e}; closed");
                access.write(None, "handed off, but no socketpair for TLS: closed");
            }
        },
        _ => hook(HandedOff {
            socket: c.io.fd,
            head,
            rest,
            peer,
            local,
            tls: false,
            context,
            access,
        }),
    }
}
