//! Logging through tracing-subscriber, with one twist: while the event loop
//! runs a turn, log lines are collected and written with one `write` at the
//! end of the turn, so an access line per request does not cost a syscall
//! per request. Outside a turn (start-up, other threads) lines go straight
//! out.

use std::cell::{Cell, RefCell};
use std::io::{self, Write};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use tracing::{Level, Metadata};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// Past this many buffered bytes a turn's log is written early.
const FLUSH_AT: usize = 64 * 1024;

thread_local! {
    static BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static BATCHING: Cell<bool> = const { Cell::new(false) };
}

/// Starts or ends batching on this thread (the server does it per turn).
pub(crate) fn batch(on: bool) {
    BATCHING.with(|b| b.set(on));
}

/// Where log lines go.
#[derive(Clone, Debug)]
pub(crate) enum LogTarget {
    /// Stderr; when stderr is the journal (`JOURNAL_STREAM` names it),
    /// each line carries its priority as `<N>` and no timestamp of ours.
    Stderr,
    /// Appended to a file.
    File(PathBuf),
    /// To the local syslog (journald provides it too) at /dev/log, or at
    /// `HANDOFF_SYSLOG`, one datagram a line with its priority (facility
    /// daemon). Under inetd stderr is the client's socket.
    Syslog,
}

/// Where syslog lines go unless `HANDOFF_SYSLOG` says otherwise.
const SYSLOG_PATH: &str = "/dev/log";
/// Facility `daemon` (3), shifted as RFC 5424 §6.2.1 says.
const DAEMON: u8 = 3 << 3;
/// How often a missing syslog socket is looked for again.
const SYSLOG_RETRY: Duration = Duration::from_secs(1);

/// A syslog socket that may come and go (syslogd restarts, /dev/log absent
/// in a container): lines it cannot take are counted, and the count is
/// reported once it takes lines again, so losing lines is never silent.
struct Syslog {
    path: PathBuf,
    sock: Option<UnixDatagram>,
    last_try: Option<Instant>,
    dropped: u64,
}

impl Syslog {
    fn connect(path: &std::path::Path) -> Option<UnixDatagram> {
        // Non-blocking: a stalled syslog must not stall the event loop.
        UnixDatagram::unbound()
            .ok()
            .filter(|s| s.connect(path).is_ok() && s.set_nonblocking(true).is_ok())
    }

    fn send(&mut self, line: &[u8]) {
        if self.sock.is_none() && self.last_try.is_none_or(|t| t.elapsed() >= SYSLOG_RETRY) {
            self.last_try = Some(Instant::now());
            self.sock = Self::connect(&self.path);
        }
        let Some(sock) = &self.sock else {
            self.dropped += 1;
            return;
        };
        if self.dropped > 0 {
            let note = format!(
                "<{}>handoff[{}]: {} log lines were dropped while syslog at {} did not take them",
                DAEMON | 4,
                std::process::id(),
                self.dropped,
                self.path.display()
            );
            if sock.send(note.as_bytes()).is_ok() {
                self.dropped = 0;
            }
        }
        match sock.send(line) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.dropped += 1,
            // Gone (syslogd restarted): look for it again.
            Err(_) => {
                self.dropped += 1;
                self.sock = None;
            }
        }
    }
}

enum Sink {
    Stderr,
    Journal,
    File(Mutex<std::fs::File>),
    Syslog(Mutex<Syslog>),
}

static SINK: OnceLock<Sink> = OnceLock::new();

fn sink() -> &'static Sink {
    SINK.get().unwrap_or(&Sink::Stderr)
}

fn emit(data: &[u8]) {
    match sink() {
        Sink::Stderr | Sink::Journal => {
            let _ = io::stderr().write_all(data);
        }
        Sink::File(f) => {
            let _ = f.lock().unwrap_or_else(|e| e.into_inner()).write_all(data);
        }
        Sink::Syslog(s) => {
            let mut s = s.lock().unwrap_or_else(|e| e.into_inner());
            for line in data.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                s.send(line);
            }
        }
    }
}

/// Writes what this thread has buffered.
pub fn flush() {
    BUF.with(|b| {
        let mut b = b.borrow_mut();
        if !b.is_empty() {
            emit(&b);
            b.clear();
        }
    });
}

/// The syslog severity of a tracing level (RFC 5424 §6.2.1).
fn severity(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// One event's writer; it knows the event's level, which the journal and
/// syslog are told line by line.
pub(crate) struct LogWriter {
    level: Level,
}

impl LogWriter {
    /// The event's text, each line prefixed as its destination wants.
    fn framed(&self, data: &[u8]) -> Option<Vec<u8>> {
        let prefix = match sink() {
            Sink::Journal => format!("<{}>", severity(self.level)),
            Sink::Syslog(_) => format!(
                "<{}>handoff[{}]: ",
                DAEMON | severity(self.level),
                std::process::id()
            ),
            _ => return None,
        };
        let mut out = Vec::with_capacity(data.len() + prefix.len());
        for line in data.split_inclusive(|&b| b == b'\n') {
            out.extend_from_slice(prefix.as_bytes());
            out.extend_from_slice(line);
        }
        Some(out)
    }
}

impl Write for LogWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let framed = self.framed(data);
        let bytes = framed.as_deref().unwrap_or(data);
        if BATCHING.with(|b| b.get()) {
            let full = BUF.with(|b| {
                let mut b = b.borrow_mut();
                b.extend_from_slice(bytes);
                b.len() >= FLUSH_AT
            });
            if full {
                flush();
            }
        } else {
            emit(bytes);
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Makes a writer per event, with its level.
pub(crate) struct MakeLogWriter;

impl<'a> MakeWriter<'a> for MakeLogWriter {
    type Writer = LogWriter;
    fn make_writer(&'a self) -> Self::Writer {
        LogWriter { level: Level::INFO }
    }
    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        LogWriter {
            level: *meta.level(),
        }
    }
}

/// Is stderr the journal? systemd sets `JOURNAL_STREAM` to the device and
/// inode of the stream it connected; stderr may since have been redirected.
fn stderr_is_journal() -> bool {
    let Some(v) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = v.to_str().and_then(|v| v.split_once(':')) else {
        return false;
    };
    let fd = io::stderr();
    let Ok((d, i)) = crate::sys::dev_ino(std::os::fd::AsFd::as_fd(&fd)) else {
        return false;
    };
    dev.parse() == Ok(d) && ino.parse() == Ok(i)
}

/// The one access-line format, for every outcome:
/// `PEER "REQUEST LINE" STATUS BYTES` and, where there is more to say,
/// ` (NOTE)`. `-` stands for a request line not parsed (a refusal) or a
/// status not ours to give (a hand-off: the worker answers).
pub(crate) fn access(
    peer: &dyn std::fmt::Display,
    line: &dyn std::fmt::Display,
    status: Option<u16>,
    sent: u64,
    note: &str,
) {
    struct Status(Option<u16>);
    impl std::fmt::Display for Status {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            match self.0 {
                Some(s) => write!(f, "{s}"),
                None => f.write_str("-"),
            }
        }
    }
    let status = Status(status);
    if note.is_empty() {
        tracing::info!(target: "handoff::access", "{peer} \"{line}\" {status} {sent}");
    } else {
        tracing::info!(target: "handoff::access", "{peer} \"{line}\" {status} {sent} ({note})");
    }
}

/// Installs the subscriber: `RUST_LOG` filters it, `info` by default (one
/// access line per request under the target `handoff::access`).
pub(crate) fn init(target: LogTarget) -> io::Result<()> {
    let sink = match target {
        LogTarget::Stderr if stderr_is_journal() => Sink::Journal,
        LogTarget::Stderr => Sink::Stderr,
        LogTarget::File(p) => Sink::File(Mutex::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)?,
        )),
        LogTarget::Syslog => {
            let path = std::env::var_os("HANDOFF_SYSLOG")
                .map_or_else(|| PathBuf::from(SYSLOG_PATH), PathBuf::from);
            Sink::Syslog(Mutex::new(Syslog {
                sock: Syslog::connect(&path),
                path,
                last_try: Some(Instant::now()),
                dropped: 0,
            }))
        }
    };
    let _ = SINK.set(sink);
    let stamped = !matches!(self::sink(), Sink::Journal | Sink::Syslog(_));
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(MakeLogWriter)
        .with_ansi(false);
    // The journal and syslog stamp each line themselves.
    let _ = if stamped {
        fmt.try_init()
    } else {
        fmt.without_time().try_init()
    };
    // Panic messages go to the log too: under inetd stderr is not ours.
    std::panic::set_hook(Box::new(|info| {
        tracing::error!("panic: {info}");
        flush();
    }));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_map_to_syslog_severities() {
        let got: Vec<u8> = [
            Level::ERROR,
            Level::WARN,
            Level::INFO,
            Level::DEBUG,
            Level::TRACE,
        ]
        .into_iter()
        .map(severity)
        .collect();
        assert_eq!(got, [3, 4, 6, 7, 7]);
    }
}
