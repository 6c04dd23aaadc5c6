//! systemd socket activation: `LISTEN_FDS`, checked against `LISTEN_PID`,
//! with `LISTEN_FDNAMES` giving each fd a role. What each fd is (listener,
//! `Accept=yes` connection, something else) is asked of the kernel by
//! `Server::add_socket`, not guessed from the unit.

use std::io;
use std::os::fd::OwnedFd;

use crate::sys::process::{self, Inherited};

/// The role an fd name gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// Plain HTTP (names `http`, `unknown` (systemd's default), or any other).
    Http,
    /// HTTPS (name `https`): TLS only.
    Https,
    /// TLS or plain HTTP, told apart per connection (name `auto`; what
    /// `--listen ADDR,tls=auto` stores in the fd store).
    Auto,
    /// The control socket (name `control`).
    Control,
}

/// The fd name that gives a listener of this TLS mode its role back.
pub(crate) fn name_for(tls: crate::tls::TlsMode) -> &'static str {
    match tls {
        crate::tls::TlsMode::Off => "http",
        crate::tls::TlsMode::On => "https",
        crate::tls::TlsMode::Auto => "auto",
    }
}

pub(crate) fn role(name: &str) -> Role {
    match name {
        "control" => Role::Control,
        "https" => Role::Https,
        "auto" => Role::Auto,
        _ => Role::Http,
    }
}

pub(crate) struct Activated {
    pub fd: OwnedFd,
    pub name: String,
    pub role: Role,
}

/// Takes the activation fds and clears the `LISTEN_*` variables. Must run
/// before any thread starts. Empty when the process was not activated.
pub(crate) fn take() -> io::Result<Vec<Activated>> {
    Ok(process::take_listen_fds()?
        .into_iter()
        .map(|Inherited { fd, name }| Activated {
            role: role(&name),
            fd,
            name,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_give_roles() {
        assert_eq!(role("http"), Role::Http);
        assert_eq!(role("unknown"), Role::Http);
        assert_eq!(role("https"), Role::Https);
        assert_eq!(role("control"), Role::Control);
        assert_eq!(role("auto"), Role::Auto);
    }
}
