//! `--listen`: sockets we bind ourselves (the default when started by hand).

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::OwnedFd;
use std::path::Path;

use crate::sys;

/// What `--listen` names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenSpec {
    /// `HOST:PORT`, IPv4 or `[IPv6]`.
    Tcp(String),
    /// A Unix socket path.
    Unix(std::path::PathBuf),
}

/// A `--listen` value: where, and with which TLS mode (`ADDR,tls=MODE`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listen {
    /// Where.
    pub spec: ListenSpec,
    /// Whether connections there speak TLS.
    pub tls: crate::tls::TlsMode,
    /// Whether they start with a PROXY protocol header.
    pub proxy: Option<crate::proxy::ProxyMode>,
    /// Whether HTTP/2 is served there (`http2=off`: HTTP/1.1 alone).
    pub http2: bool,
}

impl Listen {
    /// `ADDR`, then any of `,tls=auto|on|off` (default off),
    /// `,proxy=v1|v2|any` (default none) and `,http2=on|off` (default on),
    /// in any order.
    pub fn parse(s: &str) -> Result<Listen, String> {
        let mut addr = s;
        let mut tls = None;
        let mut proxy = None;
        let mut http2 = None;
        while let Some((a, opt)) = addr.rsplit_once(',') {
            match opt.split_once('=') {
                Some(("tls", m)) if tls.is_none() => tls = Some(crate::tls::TlsMode::parse(m)?),
                Some(("proxy", m)) if proxy.is_none() => {
                    proxy = Some(crate::proxy::ProxyMode::parse(m)?)
                }
                Some(("http2", m)) if http2.is_none() => {
                    http2 = Some(match m {
                        "on" => true,
                        "off" => false,
                        _ => return Err(format!("{s:?}: http2= takes on or off")),
                    })
                }
                Some((k, _)) if k == "tls" || k == "proxy" || k == "http2" => {
                    return Err(format!("{s:?}: {k}= given twice"));
                }
                _ => break, // a comma in a socket path
            }
            addr = a;
        }
        Ok(Listen {
            spec: ListenSpec::parse(addr)?,
            tls: tls.unwrap_or(crate::tls::TlsMode::Off),
            proxy,
            http2: http2.unwrap_or(true),
        })
    }
}

impl Listen {
    /// Binds and listens (non-blocking, close-on-exec, the largest backlog
    /// the kernel allows), framed as said.
    pub fn bind(&self) -> io::Result<crate::server::Socket> {
        let socket = crate::server::Socket::new(bind(&self.spec)?)
            .tls(self.tls)
            .http2(self.http2);
        Ok(match self.proxy {
            Some(p) => socket.proxy(p),
            None => socket,
        })
    }
}

impl ListenSpec {
    /// `host:port`, `[v6]:port`, or a Unix socket path (anything with a
    /// `/`, or `unix:PATH`).
    pub fn parse(s: &str) -> Result<ListenSpec, String> {
        if let Some(p) = s.strip_prefix("unix:") {
            return Ok(ListenSpec::Unix(p.into()));
        }
        if s.contains('/') {
            return Ok(ListenSpec::Unix(s.into()));
        }
        if s.rsplit_once(':')
            .is_none_or(|(_, port)| port.parse::<u16>().is_err())
        {
            return Err(format!(
                "{s:?}: expected host:port, [v6]:port or a socket path"
            ));
        }
        Ok(ListenSpec::Tcp(s.to_string()))
    }
}

/// Binds and listens, non-blocking and close-on-exec, with the largest
/// backlog the kernel allows (std's 128 is small for a burst).
pub(crate) fn bind(spec: &ListenSpec) -> io::Result<OwnedFd> {
    match spec {
        ListenSpec::Tcp(s) => {
            let addr: SocketAddr = s.to_socket_addrs()?.next().ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, format!("{s}: no address"))
            })?;
            sys::listen_tcp(addr)
        }
        ListenSpec::Unix(path) => {
            remove_stale(path)?;
            sys::listen_unix(path)
        }
    }
}

/// Removes a socket file left by a process that is gone; never one that
/// someone still answers on, and never a file that is not a socket.
/// Used for every socket path we bind (HTTP listeners, control sockets,
/// worker sockets): a live one answers a connect of its own type.
pub(crate) fn remove_stale(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            let live = std::os::unix::net::UnixStream::connect(path).is_ok()
                || crate::sys::fdpass::seqpacket_connect(path).is_ok();
            if live {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("{}: another process is listening there", path.display()),
                ));
            }
            std::fs::remove_file(path)
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_listen_specs() {
        assert_eq!(
            ListenSpec::parse("127.0.0.1:0").unwrap(),
            ListenSpec::Tcp("127.0.0.1:0".into())
        );
        assert_eq!(
            ListenSpec::parse("[::1]:8080").unwrap(),
            ListenSpec::Tcp("[::1]:8080".into())
        );
        assert_eq!(
            ListenSpec::parse("/run/h.sock").unwrap(),
            ListenSpec::Unix("/run/h.sock".into())
        );
        assert_eq!(
            ListenSpec::parse("unix:h.sock").unwrap(),
            ListenSpec::Unix("h.sock".into())
        );
        assert!(ListenSpec::parse("8080").is_err());
        assert!(ListenSpec::parse("host:http").is_err());
        let l = Listen::parse("127.0.0.1:8443,tls=on").unwrap();
        assert_eq!(
            (l.spec, l.tls),
            (
                ListenSpec::Tcp("127.0.0.1:8443".into()),
                crate::tls::TlsMode::On
            )
        );
        assert_eq!(
            Listen::parse("[::1]:80").unwrap().tls,
            crate::tls::TlsMode::Off
        );
        assert!(Listen::parse("127.0.0.1:1,tls=maybe").is_err());
        use crate::proxy::ProxyMode;
        for s in ["[::1]:443,tls=on,proxy=v2", "[::1]:443,proxy=v2,tls=on"] {
            let l = Listen::parse(s).unwrap();
            assert_eq!(
                (l.spec, l.tls, l.proxy),
                (
                    ListenSpec::Tcp("[::1]:443".into()),
                    crate::tls::TlsMode::On,
                    Some(ProxyMode::V2)
                ),
                "{s}"
            );
        }
        assert_eq!(
            Listen::parse("/run/h.sock,proxy=any").unwrap().proxy,
            Some(ProxyMode::Any)
        );
        assert!(Listen::parse("127.0.0.1:1,proxy=v3").is_err());
        assert!(Listen::parse("127.0.0.1:1,proxy=v1,proxy=v2").is_err());
        assert!(Listen::parse("127.0.0.1:1").unwrap().http2);
        let l = Listen::parse("127.0.0.1:1,http2=off,tls=on").unwrap();
        assert!(!l.http2);
        assert_eq!(l.tls, crate::tls::TlsMode::On);
        assert!(Listen::parse("127.0.0.1:1,http2=maybe").is_err());
    }
}
