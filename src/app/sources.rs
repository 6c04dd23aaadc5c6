//! Where `serve`'s sockets come from, in order: systemd's (by name), the
//! inetd socket, the control socket, and the listeners we bind (the default
//! one only when no other source gave a socket). Each ends in
//! `Server::add_socket`.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use super::{DEFAULT_LISTEN, ServeConfig, announce};
use crate::intake::control::{self, ControlConfig};
use crate::intake::listen::{self, Listen, ListenSpec};
use crate::intake::systemd::{Activated, Role};
use crate::server::{Added, Loops, Server, Socket};
use crate::sys::fdpass;
use crate::tls::TlsMode;

/// The sockets this process was given at start: systemd's, inetd's, and,
/// in an upgrade, the listeners and control sockets of the process it
/// replaces.
pub(super) struct Given {
    pub(super) activated: Vec<Activated>,
    pub(super) inetd: Option<OwnedFd>,
    pub(super) upgrade: Option<crate::handoff::upgrade::Passed>,
}

/// Adds every source's sockets; returns how many listeners there are, the
/// control sockets served, and the control socket's announcement.
pub(super) fn add_sources(
    cfg: &ServeConfig,
    server: &mut Server,
    given: Given,
    loops: &Loops,
    control_cfg: ControlConfig,
    bound: Vec<Socket>,
    lines: &mut Vec<String>,
) -> io::Result<(usize, Vec<control::Control>, Option<String>)> {
    let Given {
        activated,
        inetd: inetd_fd,
        upgrade,
    } = given;
    let mut control_line = None;
    let mut listeners = 0usize;
    let mut controls = Vec::new();
    // One socket may come twice: from its socket unit and from the fd
    // store, where an earlier run of ours put it. The first is kept.
    let mut seen = std::collections::HashSet::new();
    let mut control_paths = Vec::new();
    for a in activated {
        if let Ok(id) = crate::sys::dev_ino(a.fd.as_fd())
            && !seen.insert(id)
        {
            tracing::debug!(name = %a.name, "systemd fd given twice; one kept");
            continue;
        }
        let name = a.name.clone();
        let socket = match a.into_socket() {
            Ok(s) => s,
            Err(fd) => {
                if let crate::sys::Addr::Unix(Some(p)) = crate::sys::local_addr(fd.as_fd()) {
                    control_paths.push(p);
                }
                controls.push(
                    control::spawn(fd, control_cfg.clone(), loops.clone()).map_err(|e| {
                        io::Error::new(e.kind(), format!("systemd fd {name:?}: {e}"))
                    })?,
                );
                continue;
            }
        };
        let tls = socket.tls_mode();
        match server.add_socket(socket) {
            Ok(Added::Listener(addr)) => {
                listeners += 1;
                announce(lines, &addr, tls);
            }
            Ok(_) => tracing::info!(%name, "serving one connection (Accept=yes)"),
            Err(e) => tracing::error!(%name, "systemd fd refused: {e}"),
        }
    }
    if let Some(fd) = inetd_fd {
        match server.add_socket(fd)? {
            Added::Listener(addr) => {
                listeners += 1;
                tracing::info!(%addr, "inetd wait mode: accepting from fd 0");
            }
            _ => tracing::info!("inetd nowait mode: serving the connection on fd 0"),
        }
    }
    let upgrading = upgrade.is_some();
    let (passed_listeners, passed_controls) = match upgrade {
        Some(p) => (p.listeners, p.controls),
        None => (Vec::new(), Vec::new()),
    };
    let had_passed_control = !passed_controls.is_empty();
    // An upgrade: the control sockets of the process we replace (systemd's
    // and our --control one alike) are ours now; it stops accepting on
    // them once we are ready.
    for fd in passed_controls {
        controls.push(control::spawn(fd, control_cfg.clone(), loops.clone())?);
    }
    if let Some(path) = &cfg.control
        && (had_passed_control || control_paths.iter().any(|p| p == path) && path.exists())
    {
        // Passed in an upgrade, or kept for us in systemd's fd store.
        control_line = Some(format!("control on {}", path.display()));
    } else if let Some(path) = &cfg.control {
        if upgrading {
            // The process we replace still listens there until it exits:
            // its socket is unlinked, not stolen (a `handoff upgrade`
            // connected to it gets its answer), and new peers reach us.
            match std::fs::remove_file(path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        } else {
            listen::remove_stale(path)?;
        }
        let fd = fdpass::seqpacket_listen(path)?;
        controls.push(control::spawn(fd, control_cfg.clone(), loops.clone())?);
        control_line = Some(format!("control on {}", path.display()));
    }
    // An upgrade: the process we replace gave us its listeners, which
    // stand for our --listen addresses (binding them again would fail or,
    // with port 0, pick other ports).
    for socket in passed_listeners {
        let tls = socket.tls_mode();
        if let Added::Listener(addr) = server.add_socket(socket)? {
            listeners += 1;
            announce(lines, &addr, tls);
        }
    }
    for socket in bound {
        let tls = socket.tls_mode();
        if let Added::Listener(addr) = server.add_socket(socket)? {
            listeners += 1;
            announce(lines, &addr, tls);
        }
    }
    Ok((listeners, controls, control_line))
}

/// Binds the `--listen` addresses (the default one when no other source
/// gives a socket), before anything else starts: an address in use stops
/// the process before it has said it serves or started a worker. None in
/// an upgrade: the process we replace passes its listeners, which stand
/// for them (binding again would fail or, with port 0, pick other ports).
pub(super) fn bind_listeners(
    cfg: &ServeConfig,
    activated: &[Activated],
    inetd: bool,
    upgrading: bool,
) -> io::Result<Vec<Socket>> {
    if upgrading {
        return Ok(Vec::new());
    }
    let had_source = !activated.is_empty() || inetd || cfg.control.is_some();
    let mut listen = cfg.listen.clone();
    if listen.is_empty() && !had_source {
        listen.push(Listen {
            spec: ListenSpec::Tcp(DEFAULT_LISTEN.into()),
            tls: TlsMode::Off,
            proxy: None,
            http2: true,
            bind: Default::default(),
        });
    }
    let have: Vec<_> = activated
        .iter()
        .filter(|a| a.role != Role::Control)
        .map(|a| crate::sys::local_addr(a.fd.as_fd()))
        .collect();
    let mut out = Vec::new();
    for l in &listen {
        if already_have(&l.spec, &have) {
            // Kept for us in systemd's fd store across a restart: binding
            // again would fail (the port is taken, by us).
            tracing::info!(listen = ?l.spec, "listener taken from systemd's fd store");
            continue;
        }
        out.push(l.bind()?);
    }
    Ok(out)
}

/// Is a `--listen` address already one of the listeners (by its exact
/// address: a port 0 never matches)?
fn already_have(spec: &ListenSpec, have: &[crate::sys::Addr]) -> bool {
    use crate::sys::Addr;
    match spec {
        ListenSpec::Tcp(s) => {
            use std::net::ToSocketAddrs;
            s.to_socket_addrs()
                .is_ok_and(|mut a| a.any(|a| a.port() != 0 && have.contains(&Addr::Inet(a))))
        }
        ListenSpec::Unix(p) => have.contains(&Addr::Unix(Some(p.clone()))),
    }
}
