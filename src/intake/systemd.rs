//! systemd socket activation: `LISTEN_FDS`, checked against `LISTEN_PID`,
//! with `LISTEN_FDNAMES` giving each fd a role. What each fd is (listener,
//! `Accept=yes` connection, something else) is asked of the kernel by
//! `Server::add_socket`, not guessed from the unit.

use std::io;
use std::os::fd::OwnedFd;

use crate::proxy::ProxyMode;
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

/// The fd name that gives a listener framed so its role back: `http`,
/// `https` or `auto`, then `-proxy` (either PROXY version), `-proxy-v1` or
/// `-proxy-v2` when its connections start with a PROXY header, then
/// `-http1` when HTTP/2 is not served on it.
pub(crate) fn name_for(f: crate::server::Wrapping) -> String {
    let base = match f.tls {
        crate::tls::TlsMode::Off => "http",
        crate::tls::TlsMode::On => "https",
        crate::tls::TlsMode::Auto => "auto",
    };
    let named = match f.proxy {
        None => base.to_string(),
        Some(ProxyMode::Any) => format!("{base}-proxy"),
        Some(ProxyMode::V1) => format!("{base}-proxy-v1"),
        Some(ProxyMode::V2) => format!("{base}-proxy-v2"),
    };
    if f.http2 {
        named
    } else {
        format!("{named}{HTTP1_ONLY}")
    }
}

/// The suffix of a name whose listener serves HTTP/1.1 alone.
const HTTP1_ONLY: &str = "-http1";

/// Is HTTP/2 served on a listener of this name (`name_for`)?
pub(crate) fn http2_of(name: &str) -> bool {
    !name.ends_with(HTTP1_ONLY)
}

/// The PROXY header a name's connections start with (`name_for`).
pub(crate) fn proxy_of(name: &str) -> Option<ProxyMode> {
    let name = name.strip_suffix(HTTP1_ONLY).unwrap_or(name);
    if name.ends_with("-proxy-v1") {
        Some(ProxyMode::V1)
    } else if name.ends_with("-proxy-v2") {
        Some(ProxyMode::V2)
    } else if name.ends_with("-proxy") {
        Some(ProxyMode::Any)
    } else {
        None
    }
}

pub(crate) fn role(name: &str) -> Role {
    let name = name.strip_suffix(HTTP1_ONLY).unwrap_or(name);
    let name = name.split("-proxy").next().unwrap_or(name);
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

impl Activated {
    /// The socket to serve, framed as its name says (TLS, PROXY header,
    /// HTTP/2); `Err(fd)` for a control socket, which is not served as HTTP.
    pub(crate) fn into_socket(self) -> Result<crate::server::Socket, OwnedFd> {
        use crate::tls::TlsMode;
        let tls = match self.role {
            Role::Control => return Err(self.fd),
            Role::Http => TlsMode::Off,
            Role::Https => TlsMode::On,
            Role::Auto => TlsMode::Auto,
        };
        let socket = crate::server::Socket::new(self.fd)
            .tls(tls)
            .http2(http2_of(&self.name));
        Ok(match proxy_of(&self.name) {
            Some(p) => socket.proxy(p),
            None => socket,
        })
    }
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
    use crate::tls::TlsMode;

    #[test]
    fn names_give_roles() {
        assert_eq!(role("http"), Role::Http);
        assert_eq!(role("unknown"), Role::Http);
        assert_eq!(role("https"), Role::Https);
        assert_eq!(role("control"), Role::Control);
        assert_eq!(role("auto"), Role::Auto);
        assert_eq!(role("https-proxy-v2"), Role::Https);
        assert_eq!(proxy_of("http-proxy"), Some(ProxyMode::Any));
        assert_eq!(proxy_of("auto-proxy-v1"), Some(ProxyMode::V1));
        assert_eq!(proxy_of("http"), None);
        for tls in [TlsMode::Off, TlsMode::On, TlsMode::Auto] {
            for proxy in [
                None,
                Some(ProxyMode::V1),
                Some(ProxyMode::V2),
                Some(ProxyMode::Any),
            ] {
                for http2 in [true, false] {
                    let name = name_for(crate::server::Wrapping { tls, proxy, http2 });
                    assert_eq!(proxy_of(&name), proxy, "{name}");
                    assert_eq!(http2_of(&name), http2, "{name}");
                    assert_ne!(role(&name), Role::Control, "{name}");
                    let want = match tls {
                        TlsMode::Off => Role::Http,
                        TlsMode::On => Role::Https,
                        TlsMode::Auto => Role::Auto,
                    };
                    assert_eq!(role(&name), want, "{name}");
                }
            }
        }
    }
}
