//! `handoff pass`: a small front that accepts connections and passes each
//! to one of several control sockets, round-robin, skipping one that
//! refuses or is gone. A useful tool (spreading one port over several
//! servers without a proxy in the data path) and our own end-to-end test
//! of the handoff protocol.
//!
//! It is deliberately simple: blocking calls, one connection at a time. A
//! handoff is a few microseconds of local syscalls, and the data never
//! passes through this process.

use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::time::Duration;

use crate::handoff::wire::{Kind, MAX_MESSAGE, Message};
use crate::intake::listen::{self, ListenSpec};
use crate::sys::{self, fdpass};

/// What `handoff pass` is told on its command line.
pub struct PassConfig {
    /// Where to accept.
    pub listen: ListenSpec,
    /// Control sockets to pass connections to, in turn.
    pub to: Vec<PathBuf>,
    /// How long a target has to answer.
    pub ack_timeout: Duration,
}

struct Target {
    path: PathBuf,
    conn: Option<OwnedFd>,
}

enum Failed {
    /// The target answered no; it stays connected.
    Refused(String),
    /// The target is unreachable or broke; it will be reconnected.
    Gone(io::Error),
}

/// Runs `handoff pass`: accepts and passes each connection over the wire format.
pub fn run(cfg: PassConfig) -> io::Result<()> {
    crate::log::init(
        crate::log::LogTarget::Stderr,
        crate::log::AccessFormat::default(),
    )?;
    if cfg.to.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "pass needs at least one --to",
        ));
    }
    let listener = listen::bind(&cfg.listen)?;
    sys::process::set_blocking(listener.as_fd())?;
    let local = sys::local_addr(listener.as_fd());
    match &local {
        sys::Addr::Inet(a) => println!("listening on http://{a}"),
        other => println!("listening on {other}"),
    }
    io::stdout().flush()?;
    let mut targets: Vec<Target> = cfg
        .to
        .iter()
        .map(|p| Target {
            path: p.clone(),
            conn: None,
        })
        .collect();
    let mut next = 0usize;
    let mut id = 0u64;
    loop {
        let client = fdpass::accept_resting(listener.as_fd(), "pass");
        id += 1;
        let mut msg = Message::new(Kind::PassConnection, id);
        msg.peer = Some(sys::peer_addr(client.as_fd()).to_string());
        msg.local = Some(local.to_string());
        let mut handed = false;
        for k in 0..targets.len() {
            let i = (next + k) % targets.len();
            match pass_to(&mut targets[i], &msg, &client, cfg.ack_timeout) {
                Ok(()) => {
                    handed = true;
                    next = i + 1;
                    break;
                }
                Err(Failed::Refused(why)) => {
                    tracing::warn!(target = %targets[i].path.display(), id, "refused: {why}")
                }
                Err(Failed::Gone(e)) => {
                    tracing::warn!(target = %targets[i].path.display(), id, "unreachable: {e}");
                    targets[i].conn = None;
                }
            }
        }
        if !handed {
            tracing::error!(id, "no target took the connection; answering 503");
            let _ = sys::write_all_blocking(
                client.as_fd(),
                &crate::http::encode::canned(503, "no server took the connection", ""),
            );
        }
    }
}

fn pass_to(
    t: &mut Target,
    msg: &Message,
    client: &OwnedFd,
    timeout: Duration,
) -> Result<(), Failed> {
    if t.conn.is_none() {
        let c = fdpass::seqpacket_connect(&t.path).map_err(Failed::Gone)?;
        fdpass::set_recv_timeout(c.as_fd(), timeout).map_err(Failed::Gone)?;
        t.conn = Some(c);
    }
    let Some(conn) = &t.conn else {
        return Err(Failed::Gone(io::ErrorKind::NotConnected.into()));
    };
    let mut buf = vec![0u8; MAX_MESSAGE];
    let r = fdpass::request(conn.as_fd(), &msg.encode(), &[client.as_fd()], &mut buf)
        .map_err(Failed::Gone)?
        .ok_or_else(|| Failed::Gone(io::ErrorKind::UnexpectedEof.into()))?;
    let reply =
        Message::decode(&buf[..r.len]).map_err(|(_, why)| Failed::Gone(io::Error::other(why)))?;
    match reply.kind() {
        Kind::Ack if reply.id == msg.id => Ok(()),
        Kind::Refuse => Err(Failed::Refused(reply.reason.unwrap_or_default())),
        _ => Err(Failed::Gone(io::Error::other("unexpected reply"))),
    }
}
