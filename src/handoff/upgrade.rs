//! Replacing the running binary (`docs/upgrade.md`, steps 1 to 4): on
//! SIGUSR2 the binary at our path now is started with a channel on its
//! fd 3, given a copy of every listener over the wire format, and, once it
//! says READY, this process drains and exits while the new one serves the
//! same listening sockets, so no connection attempt is refused. If it
//! fails to start or to become ready in time, it is killed and this
//! process carries on. Then every plain connection moves to the new process
//! as soon as it is idle (step 5; `Server::hand_over`), over the same
//! channel. WebSocket sessions move between the pools on a line of their
//! own (`crate::ws::pool`, step 6).

use std::ffi::OsString;
use std::io::{self, IoSlice};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use crate::handoff::wire::{self, Kind, Message};
use crate::intake::control::ControlConfig;
use crate::server::{Inbox, Loops, Mover, Server, Socket};
use crate::sys::{self, fdpass};
use crate::tls::TlsMode;

/// The fd number of the channel, in the new process.
pub(crate) const ENV_FD: &str = "HANDOFF_UPGRADE_FD";
/// The binary to start instead of the one at our path (an upgrade to a
/// binary elsewhere; tests start one that fails).
pub(crate) const ENV_EXE: &str = "HANDOFF_UPGRADE_EXE";

/// What to start: the path this process was started from, read at start
/// (after a package replaces the file, `/proc/self/exe` names the old,
/// deleted one), and our own arguments.
pub(crate) struct Successor {
    exe: PathBuf,
    args: Vec<OsString>,
    /// The self-signed certificate and key we serve (PEM), given to the
    /// new process so that its fingerprint survives the upgrade.
    pub(crate) self_signed: Option<String>,
}

impl Successor {
    pub(crate) fn of_this_process() -> io::Result<Successor> {
        let exe = match std::env::var_os(ENV_EXE) {
            Some(p) => PathBuf::from(p),
            None => std::env::current_exe()?,
        };
        Ok(Successor {
            exe,
            args: std::env::args_os().skip(1).collect(),
            self_signed: None,
        })
    }

    /// Starts the new process and gives it the listeners; a thread waits
    /// for its READY (or its end, or `timeout`) and sends the outcome (its
    /// PID, or why it failed), then wakes the loop through `wake`.
    /// `cancel`, once set, ends the wait early: the new process is killed
    /// and collected, and the outcome says so (unless it was ready first).
    pub(crate) fn start(
        &self,
        server: &Server,
        timeout: Duration,
        wake: Inbox,
        ws_pool: bool,
        controls: Vec<OwnedFd>,
        cancel: Arc<AtomicBool>,
    ) -> io::Result<mpsc::Receiver<Outcome>> {
        let (ours, theirs) = fdpass::seqpacket_pair()?;
        // A line between the WebSocket pools, for the sessions to move on.
        let pool_line = if ws_pool {
            Some(fdpass::seqpacket_pair()?)
        } else {
            None
        };
        let mut cmd = Command::new(&self.exe);
        cmd.args(&self.args)
            .env(ENV_FD, "3")
            .env_remove(ENV_EXE)
            .stdin(Stdio::null());
        let mut child = sys::process::spawn_successor(&mut cmd, theirs)?;
        let pid = child.id();
        let (pool_ours, pool_theirs) = pool_line.unzip();
        let sent = send_listeners(
            &ours,
            server.listener_sockets()?,
            controls,
            pool_theirs,
            self.self_signed.as_deref(),
        );
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("upgrade".into())
            .spawn(move || {
                let outcome = sent.and_then(|()| wait_ready(&ours, timeout, &cancel));
                let outcome = match outcome {
                    Ok(()) => mover(ours)
                        .map(|m| Ready {
                            pid,
                            mover: m,
                            pool_line: pool_ours,
                        })
                        .map_err(|e| e.to_string()),
                    Err(why) => {
                        // It never served: take it down and collect it.
                        let _ = child.kill();
                        let _ = child.wait();
                        Err(why)
                    }
                };
                let _ = tx.send(outcome);
                let _ = wake.wake();
            })?;
        Ok(rx)
    }
}

/// The new process is ready: its PID, what moves connections to it, and
/// the line to its WebSocket pool (if we have one).
pub(crate) struct Ready {
    pub(crate) pid: u32,
    pub(crate) mover: Mover,
    pub(crate) pool_line: Option<OwnedFd>,
}

/// How an upgrade ended: ready, or why not.
pub(crate) type Outcome = Result<Ready, String>;

/// The role of the WebSocket pools' line in the list of listeners.
const POOL_LINE: &str = "ws-pool";
/// The role of a control socket in the list of listeners.
const CONTROL: &str = "control";

/// What the process we replace passed: its listeners, its control sockets,
/// and the line to its WebSocket pool.
pub(crate) struct Passed {
    pub(crate) listeners: Vec<Socket>,
    pub(crate) controls: Vec<OwnedFd>,
    pub(crate) pool_line: Option<OwnedFd>,
    /// The self-signed certificate and key it served (PEM).
    pub(crate) self_signed: Option<String>,
}

const ENDED: &str = "the new process ended before it was ready";

/// The other end of the channel is closed: the new process is gone.
fn gone(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EPIPE | libc::ECONNRESET))
}

/// Why a write to the channel failed, for the log and `handoff upgrade`.
fn channel_error(e: &io::Error, doing: &str) -> String {
    if gone(e) {
        ENDED.to_string()
    } else {
        format!("{doing}: {e}")
    }
}

fn send_listeners(
    chan: &OwnedFd,
    listeners: Vec<Socket>,
    controls: Vec<OwnedFd>,
    pool_line: Option<OwnedFd>,
    self_signed: Option<&str>,
) -> Result<(), String> {
    let n = listeners.len() + controls.len();
    if let Some(pem) = self_signed {
        // A socketpair between the two processes: the key never touches a
        // disk or the environment (which /proc shows).
        let mut m = Message::new(Kind::PassCertificate, 0);
        m.data = pem.as_bytes().to_vec();
        fdpass::send_with_fds(chan.as_fd(), &[IoSlice::new(&m.encode())], &[])
            .map_err(|e| channel_error(&e, "could not pass the self-signed certificate"))?;
    }
    for (i, fd) in controls.iter().enumerate() {
        let mut m = Message::new(Kind::PassListener, (listeners.len() + i) as u64);
        m.name = Some(CONTROL.into());
        fdpass::send_with_fds(chan.as_fd(), &[IoSlice::new(&m.encode())], &[fd.as_fd()])
            .map_err(|e| channel_error(&e, "could not pass a control socket"))?;
    }
    if let Some(line) = pool_line {
        let mut m = Message::new(Kind::PassChannel, 0);
        m.name = Some(POOL_LINE.into());
        fdpass::send_with_fds(chan.as_fd(), &[IoSlice::new(&m.encode())], &[line.as_fd()])
            .map_err(|e| channel_error(&e, "could not pass the WebSocket pools' line"))?;
    }
    for (i, socket) in listeners.into_iter().enumerate() {
        let (fd, wrapping) = socket.into_parts();
        let mut m = Message::new(Kind::PassListener, i as u64);
        if wrapping.tls != TlsMode::Off {
            m.flags |= wire::flags::TLS;
        }
        if wrapping.proxy.is_some() {
            m.flags |= wire::flags::PROXY;
        }
        // The role, as the fd store names it: TLS auto and the PROXY
        // version survive the move.
        m.name = Some(crate::intake::systemd::name_for(wrapping));
        fdpass::send_with_fds(chan.as_fd(), &[IoSlice::new(&m.encode())], &[fd.as_fd()])
            .map_err(|e| channel_error(&e, "could not pass a listener"))?;
    }
    // The end of the list: an ACK whose ID is how many there were (the
    // channel stays open both ways: connections follow on it).
    let end = Message::new(Kind::Ack, n as u64);
    fdpass::send_with_fds(chan.as_fd(), &[IoSlice::new(&end.encode())], &[])
        .map(|_| ())
        .map_err(|e| channel_error(&e, "channel"))
}

/// Why an upgrade ended when this process was asked to stop meanwhile.
pub(crate) const CANCELLED: &str = "this process was asked to stop; the new one was ended";

/// How often the wait for READY looks at its `cancel` flag.
const CANCEL_CHECK: Duration = Duration::from_millis(100);

fn wait_ready(chan: &OwnedFd, timeout: Duration, cancel: &AtomicBool) -> Result<(), String> {
    let deadline = std::time::Instant::now() + timeout;
    let mut buf = vec![0u8; wire::MAX_MESSAGE];
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(format!("the new process was not ready within {timeout:?}"));
        }
        fdpass::set_recv_timeout(chan.as_fd(), left.min(CANCEL_CHECK))
            .map_err(|e| e.to_string())?;
        return match fdpass::recv_with_fds(chan.as_fd(), &mut buf) {
            Ok(Some(r)) => match Message::decode(&buf[..r.len]) {
                Ok(m) if m.kind() == Kind::Ready => Ok(()),
                Ok(m) => Err(format!("the new process said {:?}, not READY", m.kind())),
                Err((_, why)) => Err(format!("the new process sent garbage: {why}")),
            },
            Ok(None) => Err(ENDED.into()),
            Err(e) if gone(&e) => Err(ENDED.into()),
            Err(e) if sys::would_block(&e) && cancel.load(Ordering::Acquire) => {
                Err(CANCELLED.into())
            }
            Err(e) if sys::would_block(&e) => continue,
            Err(e) => Err(format!("channel: {e}")),
        };
    }
}

/// Moves a connection to the new process over the channel and waits for
/// its answer: `ACK`, and this process closes its copy; anything else, and
/// it keeps serving the connection. One at a time (the lock), since the
/// answers come back on the same channel.
fn mover(chan: OwnedFd) -> io::Result<Mover> {
    // Set once: every answer may take this long.
    fdpass::set_recv_timeout(chan.as_fd(), ANSWER_WITHIN)?;
    let chan = std::sync::Mutex::new(chan);
    let next = std::sync::atomic::AtomicU64::new(0);
    Ok(Arc::new(move |fd, peer, h2_state| {
        let chan = chan.lock().unwrap_or_else(|e| e.into_inner());
        let id = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut m = Message::new(Kind::PassConnection, id);
        if let crate::sys::Addr::Inet(a) = peer {
            m.peer = Some(a.to_string());
        }
        m.h2_state = h2_state.to_vec();
        fdpass::send_with_fds(chan.as_fd(), &[IoSlice::new(&m.encode())], &[fd])?;
        let mut buf = vec![0u8; wire::MAX_MESSAGE];
        let r = fdpass::recv_with_fds(chan.as_fd(), &mut buf)?
            .ok_or_else(|| io::Error::other("the new process is gone"))?;
        let answer = Message::decode(&buf[..r.len])
            .map_err(|(_, why)| io::Error::other(format!("garbled answer: {why}")))?;
        match (answer.kind(), answer.id) {
            (Kind::Ack, a) if a == id => Ok(()),
            (Kind::Refuse, _) => Err(io::Error::other(format!(
                "the new process refused it: {}",
                answer.reason.unwrap_or_default()
            ))),
            (k, a) => Err(io::Error::other(format!("unexpected answer {k:?} for {a}"))),
        }
    }))
}

/// How long a moved connection's answer may take (the new process adopts
/// without blocking; this only bounds a stuck one).
const ANSWER_WITHIN: Duration = Duration::from_secs(2);

/// In the new process: the channel from the process it replaces, if this
/// is an upgrade (taken once; the variable is removed).
pub(crate) fn take_channel() -> io::Result<Option<OwnedFd>> {
    sys::process::take_env_fd(ENV_FD)
}

/// In the new process: the listeners the old one passed, until the ACK
/// that ends the list (its ID is how many there were), and the line to the
/// old process's WebSocket pool if it sent one.
pub(crate) fn receive_listeners(chan: &OwnedFd) -> io::Result<Passed> {
    let mut out = Vec::new();
    let mut controls = Vec::new();
    let mut line = None;
    let mut self_signed = None;
    let mut buf = vec![0u8; wire::MAX_MESSAGE];
    loop {
        let mut r = fdpass::recv_with_fds(chan.as_fd(), &mut buf)?
            .ok_or_else(|| io::Error::other("upgrade channel closed before the list ended"))?;
        let m = Message::decode(&buf[..r.len])
            .map_err(|(_, why)| io::Error::other(format!("upgrade channel: {why}")))?;
        if m.kind() == Kind::Ack && m.id == (out.len() + controls.len()) as u64 {
            return Ok(Passed {
                listeners: out,
                controls,
                pool_line: line,
                self_signed,
            });
        }
        if m.kind() == Kind::PassCertificate {
            let pem = String::from_utf8(m.data)
                .map_err(|_| io::Error::other("upgrade channel: a certificate that is no PEM"))?;
            self_signed = Some(pem);
            continue;
        }
        if m.kind() == Kind::PassChannel && m.name.as_deref() == Some(POOL_LINE) {
            line = r.fds.pop();
            continue;
        }
        let (Kind::PassListener, Some(fd)) = (m.kind(), r.fds.pop()) else {
            return Err(io::Error::other(
                "upgrade channel: expected a listener with its fd",
            ));
        };
        if m.name.as_deref() == Some(CONTROL) {
            controls.push(fd);
            continue;
        }
        use crate::intake::systemd::{Role, http2_of, proxy_of, role};
        let name = m.name.as_deref().unwrap_or("");
        let tls = match (role(name), m.flags & wire::flags::TLS != 0) {
            (Role::Auto, _) => TlsMode::Auto,
            (_, true) => TlsMode::On,
            _ => TlsMode::Off,
        };
        let mut socket = Socket::new(fd).tls(tls).http2(http2_of(name));
        if let Some(p) = proxy_of(name)
            .or((m.flags & wire::flags::PROXY != 0).then_some(crate::proxy::ProxyMode::Any))
        {
            socket = socket.proxy(p);
        }
        out.push(socket);
    }
}

/// In the new process, once it serves: tells the old one, then takes the
/// connections it moves (`PASS_CONNECTION`, answered `ACK` or `REFUSE` as
/// on the control socket) until it closes the channel.
pub(crate) fn say_ready(chan: OwnedFd, loops: Loops) -> io::Result<()> {
    let m = Message::new(Kind::Ready, u64::from(std::process::id()));
    fdpass::send_with_fds(chan.as_fd(), &[IoSlice::new(&m.encode())], &[])?;
    std::thread::Builder::new()
        .name("upgrade-in".into())
        .spawn(move || {
            crate::intake::control::serve_peer(&chan, &ControlConfig::default(), &loops);
        })?;
    Ok(())
}
