//! Where sockets come from besides the addresses a program binds itself:
//! systemd socket activation, inetd's fd 0, and a control socket on which
//! a front proxy passes connections in handoff's wire format
//! (`docs/handoff-protocol.md`). Each ends in `Server::add_socket` or
//! `add_stream`, as in the `handoff` binary.

use std::io;
use std::os::fd::OwnedFd;

use crate::intake::control::{self, ControlConfig};
use crate::intake::systemd;
use crate::server::{Loops, Socket};

/// A socket systemd passed (`LISTEN_FDS`), with its name
/// (`FileDescriptorName=`, from `LISTEN_FDNAMES`).
pub struct Activated {
    /// The name: `http` (and systemd's default `unknown`) for plain HTTP,
    /// `https` for TLS, `auto` for either per connection, each optionally
    /// followed by `-proxy`, `-proxy-v1` or `-proxy-v2` (connections start
    /// with a PROXY header) and `-http1` (no HTTP/2); `control` for a
    /// control socket.
    pub name: String,
    fd: OwnedFd,
}

impl Activated {
    /// Is this a control socket (named `control`)? Serve it with
    /// [`control`], not as HTTP.
    pub fn is_control(&self) -> bool {
        systemd::role(&self.name) == systemd::Role::Control
    }

    /// The socket, framed as its name says (TLS, PROXY header, HTTP/2), for
    /// `Server::add_socket` (a listener, or one connection of
    /// `Accept=yes`). A control socket comes back as it is.
    pub fn into_socket(self) -> Socket {
        let role = systemd::role(&self.name);
        systemd::Activated {
            fd: self.fd,
            name: self.name,
            role,
        }
        .into_socket()
        .unwrap_or_else(Socket::new)
    }

    /// The bare fd.
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }
}

/// Takes the sockets systemd passed: only if `LISTEN_PID` names this
/// process; the `LISTEN_*` variables are removed either way, so a child
/// does not take them for its own. Empty when the process was not socket
/// activated. Call it before starting threads (it changes the
/// environment).
pub fn systemd() -> io::Result<Vec<Activated>> {
    Ok(systemd::take()?
        .into_iter()
        .map(|a| Activated {
            name: a.name,
            fd: a.fd,
        })
        .collect())
}

/// Takes the socket inetd gave on fd 0 (a listener under `wait`, the
/// client's connection under `nowait`), and points fds 1 and 2, which
/// inetd makes the same socket, at `/dev/null`: log elsewhere. Call it
/// before starting threads.
pub fn inetd() -> io::Result<Socket> {
    crate::intake::inetd::take().map(Socket::new)
}

/// A control socket being served: stop accepting on it with
/// [`ControlSocket::stop`] (peers already connected are served on).
pub struct ControlSocket(control::Control);

impl ControlSocket {
    /// Stops accepting on it.
    pub fn stop(self) {
        self.0.stop();
    }
}

/// Serves a listening `SOCK_SEQPACKET` control socket on a thread of its
/// own: peers of this process's uid pass sockets (`PASS_LISTENER`,
/// `PASS_CONNECTION` with the bytes already read) and each is given to
/// the least loaded of `loops`, answered `ACK` or `REFUSE` with a reason.
pub fn control(listener: OwnedFd, loops: Loops) -> io::Result<ControlSocket> {
    control::spawn(listener, ControlConfig::default(), loops).map(ControlSocket)
}
