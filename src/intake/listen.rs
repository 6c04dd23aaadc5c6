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
    /// How the socket is set up when we bind it.
    pub bind: BindOptions,
}

/// How a socket we bind is set up: `,reuseport` and `,v6only[=on|off]` on
/// TCP, `,mode=0660,owner=USER,group=GROUP` on a Unix socket (lua-http's
/// `.mode`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BindOptions {
    /// `SO_REUSEPORT`: other sockets may bind the same address, each given
    /// a share of its connections by the kernel.
    pub reuseport: bool,
    /// `IPV6_V6ONLY` on an IPv6 address: on, IPv6 alone; off, IPv4 too
    /// (mapped); `None`, the system's default (`net.ipv6.bindv6only`).
    pub v6only: Option<bool>,
    /// A Unix socket file's permission bits.
    pub mode: Option<u32>,
    /// A Unix socket file's owner (a name or a number).
    pub owner: Option<String>,
    /// A Unix socket file's group (a name or a number).
    pub group: Option<String>,
}

impl BindOptions {
    fn for_unix(&self) -> bool {
        self.mode.is_some() || self.owner.is_some() || self.group.is_some()
    }
    fn for_tcp(&self) -> bool {
        self.reuseport || self.v6only.is_some()
    }
}

impl Listen {
    /// `ADDR`, then any of `,tls=auto|on|off` (default off),
    /// `,proxy=v1|v2|any` (default none) and `,http2=on|off` (default on),
    /// on TCP `,reuseport` and `,v6only[=on|off]`, on a Unix socket
    /// `,mode=OCTAL`, `,owner=USER` and `,group=GROUP`, in any order.
    pub fn parse(s: &str) -> Result<Listen, String> {
        let mut addr = s;
        let mut tls = None;
        let mut proxy = None;
        let mut http2 = None;
        let mut bind = BindOptions::default();
        while let Some((a, opt)) = addr.rsplit_once(',') {
            match opt.split_once('=').unwrap_or((opt, "")) {
                ("reuseport", "") => bind.reuseport = true,
                ("v6only", v) => {
                    bind.v6only = Some(match v {
                        "" | "on" => true,
                        "off" => false,
                        _ => return Err(format!("{s:?}: v6only= takes on or off")),
                    })
                }
                ("mode", m) => {
                    let mode = u32::from_str_radix(m, 8)
                        .ok()
                        .filter(|m| *m <= 0o777)
                        .ok_or_else(|| format!("{s:?}: mode= takes octal bits, as 0660"))?;
                    bind.mode = Some(mode);
                }
                ("owner", u) if !u.is_empty() => bind.owner = Some(u.into()),
                ("group", g) if !g.is_empty() => bind.group = Some(g.into()),
                _ => match opt.split_once('=') {
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
                },
            }
            addr = a;
        }
        let spec = ListenSpec::parse(addr)?;
        match spec {
            ListenSpec::Tcp(_) if bind.for_unix() => {
                return Err(format!(
                    "{s:?}: mode=, owner= and group= are for Unix sockets"
                ));
            }
            ListenSpec::Unix(_) if bind.for_tcp() => {
                return Err(format!("{s:?}: reuseport and v6only are for TCP"));
            }
            _ => {}
        }
        Ok(Listen {
            spec,
            tls: tls.unwrap_or(crate::tls::TlsMode::Off),
            proxy,
            http2: http2.unwrap_or(true),
            bind,
        })
    }
}

impl Listen {
    /// Binds and listens (non-blocking, close-on-exec, the largest backlog
    /// the kernel allows), framed as said.
    pub fn bind(&self) -> io::Result<crate::server::Socket> {
        let socket = crate::server::Socket::new(bind_with(&self.spec, &self.bind)?)
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
    bind_with(spec, &BindOptions::default())
}

/// `bind`, set up as `opts` says.
fn bind_with(spec: &ListenSpec, opts: &BindOptions) -> io::Result<OwnedFd> {
    match spec {
        ListenSpec::Tcp(s) => {
            let addr: SocketAddr = s.to_socket_addrs()?.next().ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, format!("{s}: no address"))
            })?;
            sys::listen_tcp(addr, opts.reuseport, opts.v6only)
        }
        ListenSpec::Unix(path) => {
            remove_stale(path)?;
            if !opts.for_unix() {
                return sys::listen_unix(path);
            }
            // Bound under a name of its own, given its mode and owner, then
            // renamed into place: no moment when the path is there with
            // the umask's permissions for anyone to connect.
            let mut tmp = path.as_os_str().to_owned();
            tmp.push(format!(".{}.new", std::process::id()));
            let tmp = std::path::PathBuf::from(tmp);
            let _ = std::fs::remove_file(&tmp);
            let fd = sys::listen_unix(&tmp)?;
            let set = set_up_file(&tmp, opts).and_then(|()| std::fs::rename(&tmp, path));
            if let Err(e) = set {
                let _ = std::fs::remove_file(&tmp);
                return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display())));
            }
            Ok(fd)
        }
    }
}

/// A socket file's mode, owner and group, as `opts` says.
fn set_up_file(path: &Path, opts: &BindOptions) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(mode) = opts.mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    let uid = opts
        .owner
        .as_deref()
        .map(|u| {
            crate::sys::privileges::id_of(u, ("owner", "user"), nix::unistd::Uid::from_raw, |n| {
                nix::unistd::User::from_name(n).map(|u| u.map(|u| u.uid))
            })
        })
        .transpose()?;
    let gid = opts
        .group
        .as_deref()
        .map(|g| {
            crate::sys::privileges::id_of(g, ("group", "group"), nix::unistd::Gid::from_raw, |n| {
                nix::unistd::Group::from_name(n).map(|g| g.map(|g| g.gid))
            })
        })
        .transpose()?;
    if uid.is_some() || gid.is_some() {
        nix::unistd::chown(path, uid, gid)
            .map_err(|e| io::Error::other(format!("owner/group: {e}")))?;
    }
    Ok(())
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
        let l = Listen::parse("[::]:80,v6only,reuseport,tls=on").unwrap();
        assert_eq!(l.spec, ListenSpec::Tcp("[::]:80".into()));
        assert_eq!(l.bind.v6only, Some(true));
        assert!(l.bind.reuseport);
        assert_eq!(
            Listen::parse("[::]:80,v6only=off").unwrap().bind.v6only,
            Some(false)
        );
        let l = Listen::parse("/run/h.sock,mode=0660,owner=www-data,group=33").unwrap();
        assert_eq!(l.spec, ListenSpec::Unix("/run/h.sock".into()));
        assert_eq!(l.bind.mode, Some(0o660));
        assert_eq!(l.bind.owner.as_deref(), Some("www-data"));
        assert_eq!(l.bind.group.as_deref(), Some("33"));
        for bad in [
            "/run/h.sock,reuseport",
            "127.0.0.1:1,mode=0600",
            "/run/h.sock,mode=999",
            "/run/h.sock,mode=rw",
            "[::]:1,v6only=maybe",
        ] {
            assert!(Listen::parse(bad).is_err(), "{bad}");
        }
        let l = Listen::parse("127.0.0.1:1,http2=off,tls=on").unwrap();
        assert!(!l.http2);
        assert_eq!(l.tls, crate::tls::TlsMode::On);
        assert!(Listen::parse("127.0.0.1:1,http2=maybe").is_err());
    }
}
