//! `exec:COMMAND`, websocketd-style: one process per connection. Each text
//! message is a line on its stdin, each line of its stdout a message
//! (`exec-binary:` passes raw bytes both ways). Both pipes are non-blocking
//! and driven by the worker's loop independently, with bounded buffers, so a
//! full pipe in one direction never stalls the other or the worker.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

/// Most bytes queued for the child's stdin; past it the worker stops reading
/// the WebSocket until the child catches up.
pub(crate) const STDIN_LIMIT: usize = 1 << 20;
/// How much of the child's stdout is read per turn.
const READ_CHUNK: usize = 64 * 1024;

/// The command's process: started by this worker, or moved here with its
/// WebSocket from the worker of the process an upgrade replaced (then it
/// is not our child: a pidfd signals it and says when it has ended; its
/// parent, or init once the parent is gone, collects it).
pub(crate) enum Proc {
    Own(Child),
    Moved { pid: u32, pidfd: OwnedFd },
}

impl Proc {
    pub(crate) fn id(&self) -> u32 {
        match self {
            Proc::Own(c) => c.id(),
            Proc::Moved { pid, .. } => *pid,
        }
    }

    fn signal(&self, sig: Signal) {
        match self {
            Proc::Own(c) => crate::sys::signal_child(c, sig),
            Proc::Moved { pidfd, .. } => crate::sys::process::pidfd_signal(pidfd.as_fd(), sig),
        }
    }

    /// Has it ended? (Our own child is reaped here.)
    fn ended(&mut self) -> bool {
        match self {
            Proc::Own(c) => matches!(c.try_wait(), Ok(Some(_))),
            Proc::Moved { pidfd, .. } => crate::sys::process::pidfd_ended(pidfd.as_fd()),
        }
    }

    /// A pidfd to pass along with it.
    pub(crate) fn pidfd(&self) -> io::Result<OwnedFd> {
        match self {
            Proc::Own(c) => crate::sys::process::pidfd_open(c.id()),
            Proc::Moved { pidfd, .. } => pidfd.try_clone(),
        }
    }
}

/// What an `exec:` conversation is made of, to move it to another worker:
/// the pipes, the process, and the bytes in flight either way.
pub(crate) struct ExecParts {
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub pid: u32,
    pub pidfd: OwnedFd,
    pub binary: bool,
    /// Queued for its stdin.
    pub input: Vec<u8>,
    /// Part of an output line.
    pub output: Vec<u8>,
}

/// `PATH` for a command when `--ws-passenv PATH` does not pass the
/// server's own (websocketd and CGI servers give a fixed one too).
pub(crate) const SAFE_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// The request's part of an `exec:` command's environment (RFC 3875
/// §4.1): what the HTTP process knows from the request alone. It travels
/// to the worker in the hand-off (`ENV`); `complete_environment` adds the
/// connection's part there.
pub(crate) fn request_environment<'h>(
    method: &str,
    target: &str,
    route: &str,
    headers: impl Iterator<Item = (&'h str, &'h [u8])>,
) -> Vec<(String, String)> {
    let query = target.split_once('?').map_or("", |(_, q)| q);
    let mut env: Vec<(String, String)> = vec![
        ("GATEWAY_INTERFACE".into(), "CGI/1.1".into()),
        ("SERVER_PROTOCOL".into(), "HTTP/1.1".into()),
        (
            "SERVER_SOFTWARE".into(),
            concat!("handoff/", env!("CARGO_PKG_VERSION")).into(),
        ),
        ("REQUEST_METHOD".into(), method.into()),
        ("SCRIPT_NAME".into(), route.into()),
        // A route is one exact path: nothing follows the script's name.
        ("PATH_INFO".into(), String::new()),
        ("QUERY_STRING".into(), query.into()),
        ("REQUEST_URI".into(), target.into()),
    ];
    for (name, value) in headers {
        // `Proxy:` would become HTTP_PROXY, which HTTP clients in the
        // command take for their proxy (httpoxy, CVE-2016-5385). A name
        // with `_` would collide with the `-` spelling of another (Apache
        // drops those too); other characters make no variable name.
        if name.eq_ignore_ascii_case("proxy")
            || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            continue;
        }
        let name = format!("HTTP_{}", name.to_ascii_uppercase().replace('-', "_"));
        let value = String::from_utf8_lossy(value).into_owned();
        // Repeated fields are one variable, joined as RFC 9110 §5.3 allows.
        match env.iter_mut().find(|(k, _)| *k == name) {
            Some((_, v)) => {
                v.push_str(", ");
                v.push_str(&value);
            }
            None => env.push((name, value)),
        }
    }
    env
}

/// What the worker knows of the connection an `exec:` command serves.
pub(crate) struct Connection<'a> {
    /// The client (the PROXY protocol's address where there was one).
    pub peer: Option<std::net::SocketAddr>,
    /// The address the client connected to.
    pub local: Option<std::net::SocketAddr>,
    /// Did the client come over TLS (ended by the HTTP process)?
    pub secure: bool,
    /// Names of the worker's own variables to pass on (`--ws-passenv`).
    pub passenv: &'a [String],
}

/// Completes `request_environment`'s variables into the command's whole
/// environment, built from scratch: the connection's (`SERVER_NAME` where
/// the request had no `Host`, `SERVER_PORT`, `HTTPS`, `REMOTE_*`),
/// `PATH` (safe unless passed on) and the variables `--ws-passenv` names,
/// and nothing else of the server's.
pub(crate) fn complete_environment(env: &mut Vec<(String, String)>, c: &Connection<'_>) {
    let host = env
        .iter()
        .find(|(k, _)| k == "HTTP_HOST")
        .map(|(_, v)| v.trim().to_string());
    // SERVER_NAME is the host the client asked for (RFC 3875 §4.1.14), a
    // bracketed IPv6 literal kept whole; else the address it reached.
    let (name, host_port) = host.as_deref().map_or((None, None), split_host);
    let scheme_port = if c.secure { "443" } else { "80" };
    let port = c
        .local
        .map(|a| a.port().to_string())
        .or(host_port.map(str::to_string))
        .unwrap_or_else(|| scheme_port.to_string());
    let name = name
        .map(str::to_string)
        .or_else(|| c.local.map(|a| a.ip().to_string()))
        .unwrap_or_else(|| "localhost".to_string());
    env.push(("SERVER_NAME".into(), name));
    env.push(("SERVER_PORT".into(), port));
    if c.secure {
        env.push(("HTTPS".into(), "on".into()));
    }
    if let Some(a) = c.peer {
        env.push(("REMOTE_ADDR".into(), a.ip().to_string()));
        env.push(("REMOTE_HOST".into(), a.ip().to_string()));
        env.push(("REMOTE_PORT".into(), a.port().to_string()));
    }
    let mut path = SAFE_PATH.to_string();
    for name in c.passenv {
        if let Some(v) = std::env::var_os(name) {
            let v = v.to_string_lossy().into_owned();
            if name == "PATH" {
                path = v;
            } else {
                env.retain(|(k, _)| k != name);
                env.push((name.clone(), v));
            }
        }
    }
    env.push(("PATH".into(), path));
}

/// `example.org:8080` → (`example.org`, `8080`); `[::1]:80` → (`[::1]`, `80`).
fn split_host(host: &str) -> (Option<&str>, Option<&str>) {
    let (name, port) = match host.rfind(':') {
        Some(i) if !host[i..].contains(']') => (&host[..i], Some(&host[i + 1..])),
        _ => (host, None),
    };
    let port = port.filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    ((!name.is_empty()).then_some(name), port)
}

/// Is `name` something `--ws-passenv` can pass (a portable variable name)?
pub(crate) fn valid_env_name(name: &str) -> bool {
    let mut b = name.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

pub(crate) struct Exec {
    pub proc: Proc,
    // Pipes as files: a spawned child's `ChildStdin`/`ChildStdout` and
    // pipes that arrived by SCM_RIGHTS are the same to us.
    pub stdin: Option<File>,
    pub stdout: Option<File>,
    stdin_buf: Vec<u8>,
    line: Vec<u8>,
    binary: bool,
}

/// One piece of output for the WebSocket.
pub(crate) enum Output {
    Text(String),
    Binary(Vec<u8>),
}

impl Exec {
    /// Starts `sh -c 'exec COMMAND'` with exactly the environment given
    /// (`environment`): nothing of the server's own is inherited, so
    /// secrets the unit's `EnvironmentFile=` set (and `NOTIFY_SOCKET`,
    /// which would let a command speak for the service) stay with it.
    pub(crate) fn spawn(command: &str, binary: bool, env: &[(String, String)]) -> io::Result<Exec> {
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("exec {command}"))
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child.stdin.take().map(|s| File::from(OwnedFd::from(s)));
        let stdout = child.stdout.take().map(|s| File::from(OwnedFd::from(s)));
        for fd in [
            stdin.as_ref().map(|s| s.as_fd()),
            stdout.as_ref().map(|s| s.as_fd()),
        ]
        .into_iter()
        .flatten()
        {
            crate::sys::prepare_adopted(fd)?;
        }
        Ok(Exec {
            proc: Proc::Own(child),
            stdin,
            stdout,
            stdin_buf: Vec::new(),
            line: Vec::new(),
            binary,
        })
    }

    /// Takes over a conversation another worker gave up (`into_parts`).
    pub(crate) fn from_parts(p: ExecParts) -> io::Result<Exec> {
        for fd in [p.stdin.as_ref(), p.stdout.as_ref()].into_iter().flatten() {
            crate::sys::prepare_adopted(fd.as_fd())?;
        }
        Ok(Exec {
            proc: Proc::Moved {
                pid: p.pid,
                pidfd: p.pidfd,
            },
            stdin: p.stdin.map(File::from),
            stdout: p.stdout.map(File::from),
            stdin_buf: p.input,
            line: p.output,
            binary: p.binary,
        })
    }

    /// Queues a message for the child's stdin (a line, unless binary).
    pub(crate) fn queue_input(&mut self, data: &[u8]) {
        if self.stdin.is_none() {
            return; // the child closed its stdin: nothing to deliver to
        }
        self.stdin_buf.extend_from_slice(data);
        if !self.binary {
            self.stdin_buf.push(b'\n');
        }
    }

    /// Bytes queued for its stdin and not yet written.
    pub(crate) fn queued_input(&self) -> &[u8] {
        &self.stdin_buf
    }

    /// An output line read in part.
    pub(crate) fn partial_output(&self) -> &[u8] {
        &self.line
    }

    pub(crate) fn is_binary(&self) -> bool {
        self.binary
    }

    pub(crate) fn input_full(&self) -> bool {
        self.stdin_buf.len() >= STDIN_LIMIT
    }

    /// Writes what is queued until the pipe is full.
    pub(crate) fn write_input(&mut self) {
        let Some(stdin) = self.stdin.as_mut() else {
            self.stdin_buf.clear();
            return;
        };
        while !self.stdin_buf.is_empty() {
            match stdin.write(&self.stdin_buf) {
                Ok(n) => {
                    self.stdin_buf.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    // EPIPE: the child is not reading any more.
                    self.stdin = None;
                    self.stdin_buf.clear();
                    return;
                }
            }
        }
    }

    /// Reads what the child wrote, up to one chunk, turning it into
    /// messages. Returns false once stdout is at its end.
    pub(crate) fn read_output(&mut self, out: &mut Vec<Output>, max_line: usize) -> bool {
        let Some(stdout) = self.stdout.as_mut() else {
            return false;
        };
        let mut buf = vec![0u8; READ_CHUNK];
        match stdout.read(&mut buf) {
            Ok(0) => {
                if !self.line.is_empty() {
                    out.push(Output::Text(
                        String::from_utf8_lossy(&std::mem::take(&mut self.line)).into_owned(),
                    ));
                }
                self.stdout = None;
                false
            }
            Ok(n) if self.binary => {
                out.push(Output::Binary(buf[..n].to_vec()));
                true
            }
            Ok(n) => {
                self.line.extend_from_slice(&buf[..n]);
                while let Some(p) = self.line.iter().position(|&b| b == b'\n') {
                    let rest = self.line.split_off(p + 1);
                    let mut l = std::mem::replace(&mut self.line, rest);
                    l.pop();
                    if l.last() == Some(&b'\r') {
                        l.pop();
                    }
                    out.push(Output::Text(String::from_utf8_lossy(&l).into_owned()));
                }
                if self.line.len() > max_line {
                    // A line longer than a message may be: send what there is.
                    out.push(Output::Text(
                        String::from_utf8_lossy(&std::mem::take(&mut self.line)).into_owned(),
                    ));
                }
                true
            }
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock
                    || e.kind() == io::ErrorKind::Interrupted =>
            {
                true
            }
            Err(_) => {
                self.stdout = None;
                false
            }
        }
    }

    /// Ends the conversation: stdin is closed, and the child gets a
    /// schedule of signals until it is gone.
    pub(crate) fn finish(mut self, now: Instant) -> Reaping {
        self.stdin = None;
        self.stdout = None;
        Reaping {
            proc: self.proc,
            since: now,
            sent: 0,
        }
    }
}

/// A child on its way out: closed stdin, then INT, TERM and KILL.
pub(crate) struct Reaping {
    proc: Proc,
    since: Instant,
    sent: u8,
}

/// After closing stdin: INT at 0.5 s, TERM at 1.5 s, KILL at 2.5 s.
const SCHEDULE: [(Duration, Signal); 3] = [
    (Duration::from_millis(500), Signal::SIGINT),
    (Duration::from_millis(1500), Signal::SIGTERM),
    (Duration::from_millis(2500), Signal::SIGKILL),
];

impl Reaping {
    /// True once the child is gone (and reaped).
    pub(crate) fn tick(&mut self, now: Instant) -> bool {
        if self.proc.ended() {
            return true;
        }
        while let Some((after, sig)) = SCHEDULE.get(self.sent as usize) {
            if now < self.since + *after {
                break;
            }
            self.proc.signal(*sig);
            self.sent += 1;
        }
        self.proc.ended()
    }

    pub(crate) fn pid(&self) -> u32 {
        self.proc.id()
    }
}
