//! Logging through tracing-subscriber, with one twist: while the event loop
//! runs a turn, log lines are collected and written with one `write` at the
//! end of the turn, so an access line per request does not cost a syscall
//! per request. Outside a turn (start-up, other threads) lines go straight
//! out.

use std::cell::{Cell, RefCell};
use std::io::{self, Write};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tracing::{Level, Metadata};

#[cfg(feature = "cli")]
use tracing_subscriber::EnvFilter;
#[cfg(feature = "cli")]
use tracing_subscriber::fmt::MakeWriter;

pub(crate) mod access;
pub use access::AccessFormat;
pub(crate) use access::{Access, on as access_on, set_turn_time};

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
    /// `HANDOFF_SYSLOG_SOCKET`, one datagram a line with its priority (facility
    /// daemon). Under inetd stderr is the client's socket.
    Syslog,
}

/// The variable naming another syslog socket (tests use it).
pub(crate) const SYSLOG_ENV: &str = "HANDOFF_SYSLOG_SOCKET";
/// Where syslog lines go unless `HANDOFF_SYSLOG_SOCKET` says otherwise.
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
    /// The path too, to open it again after SIGUSR1.
    File(PathBuf, Mutex<std::fs::File>),
    Syslog(Mutex<Syslog>),
}

static SINK: OnceLock<Sink> = OnceLock::new();

/// Set by SIGUSR1: the log file is opened again (by path) before the next
/// write, logrotate's `postrotate` convention. Checked at a write, not in
/// the handler: opening a file is not async-signal-safe.
static REOPEN: LazyLock<Arc<AtomicBool>> = LazyLock::new(Arc::default);

fn open_log(path: &std::path::Path) -> io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

fn sink() -> &'static Sink {
    SINK.get().unwrap_or(&Sink::Stderr)
}

/// Are the log's lines ours to write (the binary set up its sink)? In a
/// program on the library they go to its own tracing subscriber instead.
pub(crate) fn ours() -> bool {
    SINK.get().is_some()
}

fn emit(data: &[u8]) {
    match sink() {
        Sink::Stderr | Sink::Journal => {
            let _ = io::stderr().write_all(data);
        }
        Sink::File(path, f) => {
            let mut f = f.lock().unwrap_or_else(|e| e.into_inner());
            if REOPEN.load(Ordering::Relaxed) && REOPEN.swap(false, Ordering::Relaxed) {
                // A failure keeps the old file: lines still go somewhere,
                // and the reason goes there too.
                match open_log(path) {
                    Ok(new) => *f = new,
                    Err(e) => {
                        let _ = writeln!(
                            f,
                            "handoff: cannot reopen {}: {e}; writing on to the old file",
                            path.display()
                        );
                    }
                }
            }
            let _ = f.write_all(data);
        }
        Sink::Syslog(s) => {
            let mut s = s.lock().unwrap_or_else(|e| e.into_inner());
            for line in data.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                s.send(line);
            }
        }
    }
}

/// Reports why the process cannot go on, once where a person will see it:
/// a terminal (or a pipe) gets the plain `handoff: WHY` line alone; the
/// journal gets it as an error line (with its priority); a log file or
/// syslog gets it as an error line and stderr the plain line too (whoever
/// started the process reads stderr, not the file). Before the log is set
/// up, only the plain line.
pub fn fatal(why: &dyn std::fmt::Display) {
    match SINK.get() {
        Some(Sink::Stderr) | None => eprintln!("handoff: {why}"),
        Some(Sink::Journal) => {
            tracing::error!("{why}");
            flush();
        }
        Some(Sink::File(..) | Sink::Syslog(_)) => {
            tracing::error!("{why}");
            flush();
            eprintln!("handoff: {why}");
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
    /// The writer of access lines (info, as the journal and syslog see them).
    pub(crate) fn access() -> LogWriter {
        LogWriter { level: Level::INFO }
    }

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
#[cfg(feature = "cli")]
pub(crate) struct MakeLogWriter;

#[cfg(feature = "cli")]
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

#[cfg(feature = "cli")]
/// Installs the subscriber: `RUST_LOG` filters it, `info` by default (one
/// access line per request under the target `handoff::access`).
pub(crate) fn init(target: LogTarget, format: AccessFormat) -> io::Result<()> {
    access::set_format(format);
    // Every process that logs takes SIGUSR1 (whose default would kill it),
    // whatever its sink: the HTTP process passes it on to its workers, and
    // a stray `systemctl kill -s USR1` to the whole unit kills none. Before
    // the file is opened, so that a rotation meanwhile is not missed (a
    // worker ignores SIGUSR1 until here: `sys::process::spawn_worker`).
    signal_hook::flag::register(signal_hook::consts::SIGUSR1, Arc::clone(&REOPEN))?;
    let sink = match target {
        LogTarget::Stderr if stderr_is_journal() => Sink::Journal,
        LogTarget::Stderr => Sink::Stderr,
        LogTarget::File(p) => {
            let f = open_log(&p)?;
            Sink::File(p, Mutex::new(f))
        }
        LogTarget::Syslog => {
            let path = std::env::var_os(SYSLOG_ENV)
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
