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

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// Past this many buffered bytes a turn's log is written early.
const FLUSH_AT: usize = 64 * 1024;

thread_local! {
    static BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static BATCHING: Cell<bool> = const { Cell::new(false) };
}

/// Starts or ends batching on this thread (the server does it per turn).
pub fn batch(on: bool) {
    BATCHING.with(|b| b.set(on));
}

/// Where log lines go.
#[derive(Clone, Debug)]
pub enum LogTarget {
    Stderr,
    /// Appended to a file.
    File(PathBuf),
    /// To the local syslog (journald provides it too) at /dev/log, one
    /// datagram a line. Under inetd stderr is the client's socket.
    Syslog,
}

enum Sink {
    Stderr,
    File(Mutex<std::fs::File>),
    Syslog(Option<UnixDatagram>),
}

static SINK: OnceLock<Sink> = OnceLock::new();

fn emit(data: &[u8]) {
    match SINK.get().unwrap_or(&Sink::Stderr) {
        Sink::Stderr => {
            let _ = io::stderr().write_all(data);
        }
        Sink::File(f) => {
            let _ = f.lock().unwrap_or_else(|e| e.into_inner()).write_all(data);
        }
        Sink::Syslog(Some(sock)) => {
            // <30>: facility daemon, severity info.
            let pid = std::process::id();
            for line in data.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                let mut msg = format!("<30>handoff[{pid}]: ").into_bytes();
                msg.extend_from_slice(line);
                let _ = sock.send(&msg);
            }
        }
        Sink::Syslog(None) => {}
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

pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if BATCHING.with(|b| b.get()) {
            let full = BUF.with(|b| {
                let mut b = b.borrow_mut();
                b.extend_from_slice(data);
                b.len() >= FLUSH_AT
            });
            if full {
                flush();
            }
            Ok(data.len())
        } else {
            emit(data);
            Ok(data.len())
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;
    fn make_writer(&'a self) -> Self::Writer {
        LogWriter
    }
}

/// Installs the subscriber: `RUST_LOG` filters it, `info` by default (one
/// access line per request under the target `handoff::access`).
pub fn init(target: LogTarget) -> io::Result<()> {
    let sink = match target {
        LogTarget::Stderr => Sink::Stderr,
        LogTarget::File(p) => Sink::File(Mutex::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)?,
        )),
        // Non-blocking: a stalled syslog must not stall the event loop; a
        // line it cannot take is dropped.
        LogTarget::Syslog => Sink::Syslog(
            UnixDatagram::unbound()
                .ok()
                .filter(|s| s.connect("/dev/log").is_ok() && s.set_nonblocking(true).is_ok()),
        ),
    };
    let _ = SINK.set(sink);
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(LogWriter)
        .with_ansi(false)
        .try_init(); // Panic messages go to the log too: under inetd stderr is not ours.
    std::panic::set_hook(Box::new(|info| {
        tracing::error!("panic: {info}");
        flush();
    }));
    Ok(())
}
