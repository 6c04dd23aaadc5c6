//! Counters for `--metrics`, served as Prometheus text (exposition format
//! 0.0.4) by a thread of their own.
//!
//! Each thread that counts has its own block of counters, registered once;
//! only that thread writes it (a relaxed load and store, no locked
//! instruction, no cache line shared between event loops), and the
//! metrics thread sums the blocks when scraped. A gauge (connections open)
//! is two counters, opened and closed, so it too needs no shared write.
//! Counting is always on: it costs a few stores per request, less than
//! asking whether it is wanted.
//!
//! Written by hand rather than with the `prometheus` or `metrics` crates:
//! both share each counter between threads (an atomic add on a contended
//! line per request) and bring a registry and text encoder larger than
//! this file.

use std::cell::OnceCell;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What is counted. Each is one series; `SERIES` gives its name and labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub(crate) enum M {
    AcceptedListener,
    AcceptedHanded,
    RefusedListener,
    RefusedHanded,
    RefusedPerClient,
    Opened,
    Closed,
    Status1xx,
    Status2xx,
    Status3xx,
    Status4xx,
    Status5xx,
    /// Hand-offs: the worker answers.
    StatusNone,
    BodyBytes,
    ControlTaken,
    ControlRefusedPeer,
    ControlRefusedFd,
    ControlRefusedStopping,
    ControlRefusedOther,
    WsHandedOff,
    WsRefusedBusy,
    WsRefusedFailed,
    WorkerRestarts,
    TlsHandshakes,
    TlsFailures,
    CutIdle,
    CutRequest,
    CutWrite,
    CutLinger,
    H2Connections,
    H2Requests,
    H2GoAway,
    H2Calmed,
    BusPublished,
    BusRead,
    BusRefused,
    BusConnects,
    BusLosses,
    BusGaps,
}

const COUNT: usize = M::BusGaps as usize + 1;

/// Broadcast-bus threads without Redis now (`ws/bus`): the gauge
/// `handoff_bus_down`, and a word in `STATUS=`.
pub(crate) static BUS_DOWN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Each series: metric name, labels, help (given once per name), type.
const SERIES: [(&str, &str, &str, &str); COUNT] = [
    (
        "handoff_connections_accepted_total",
        "source=\"listener\"",
        "Connections taken, by source: accepted from a listener, or handed over connected (control socket, inetd, systemd Accept=yes, an upgrade).",
        "counter",
    ),
    (
        "handoff_connections_accepted_total",
        "source=\"handed\"",
        "",
        "",
    ),
    (
        "handoff_connections_refused_total",
        "source=\"listener\"",
        "Connections refused (the queue of waiting sockets full, the server closing), by source.",
        "counter",
    ),
    (
        "handoff_connections_refused_total",
        "source=\"handed\"",
        "",
        "",
    ),
    (
        "handoff_connections_refused_total",
        "source=\"per-client\"",
        "",
        "",
    ),
    (
        "handoff_connections_opened_total",
        "",
        "Connections that began to be served.",
        "counter",
    ),
    (
        "handoff_connections_closed_total",
        "",
        "Connections that ended.",
        "counter",
    ),
    (
        "handoff_requests_total",
        "class=\"1xx\"",
        "Requests answered, by status class; none: handed off to a WebSocket worker, which answers.",
        "counter",
    ),
    ("handoff_requests_total", "class=\"2xx\"", "", ""),
    ("handoff_requests_total", "class=\"3xx\"", "", ""),
    ("handoff_requests_total", "class=\"4xx\"", "", ""),
    ("handoff_requests_total", "class=\"5xx\"", "", ""),
    ("handoff_requests_total", "class=\"none\"", "", ""),
    (
        "handoff_response_body_bytes_total",
        "",
        "Response body bytes queued (as the access log's size).",
        "counter",
    ),
    (
        "handoff_control_handoffs_total",
        "",
        "Sockets taken on the control socket.",
        "counter",
    ),
    (
        "handoff_control_refusals_total",
        "reason=\"peer\"",
        "Control socket refusals, by reason: peer (uid not allowed, too many peers), fd (not a stream socket, bad ancillary data), stopping, other.",
        "counter",
    ),
    ("handoff_control_refusals_total", "reason=\"fd\"", "", ""),
    (
        "handoff_control_refusals_total",
        "reason=\"stopping\"",
        "",
        "",
    ),
    ("handoff_control_refusals_total", "reason=\"other\"", "", ""),
    (
        "handoff_websocket_handoffs_total",
        "",
        "WebSocket upgrades handed to a worker.",
        "counter",
    ),
    (
        "handoff_websocket_refusals_total",
        "reason=\"busy\"",
        "WebSocket upgrades no worker took, by reason: busy (every worker full or none), failed (a worker refused or did not answer in time).",
        "counter",
    ),
    (
        "handoff_websocket_refusals_total",
        "reason=\"failed\"",
        "",
        "",
    ),
    (
        "handoff_worker_restarts_total",
        "",
        "WebSocket worker processes started again after one ended.",
        "counter",
    ),
    (
        "handoff_tls_handshakes_total",
        "",
        "TLS handshakes completed.",
        "counter",
    ),
    (
        "handoff_tls_handshake_failures_total",
        "",
        "TLS sessions that failed before or during the handshake.",
        "counter",
    ),
    (
        "handoff_deadline_cuts_total",
        "kind=\"idle\"",
        "Connections cut by a deadline, by kind: idle (no request), request (a 408), write (the client stopped reading), linger (after our close or answer, the rest of the body late).",
        "counter",
    ),
    ("handoff_deadline_cuts_total", "kind=\"request\"", "", ""),
    ("handoff_deadline_cuts_total", "kind=\"write\"", "", ""),
    ("handoff_deadline_cuts_total", "kind=\"linger\"", "", ""),
    (
        "handoff_http2_connections_total",
        "",
        "Connections served as HTTP/2 (by ALPN or the preface).",
        "counter",
    ),
    (
        "handoff_http2_requests_total",
        "",
        "Requests answered on HTTP/2 streams (also counted in handoff_requests_total).",
        "counter",
    ),
    (
        "handoff_http2_goaways_total",
        "reason=\"protocol\"",
        "HTTP/2 connections ended with an error GOAWAY for what the client sent, by reason: protocol (a frame of the wrong shape), calm (a flood: ENHANCE_YOUR_CALM).",
        "counter",
    ),
    ("handoff_http2_goaways_total", "reason=\"calm\"", "", ""),
    (
        "handoff_bus_messages_total",
        "way=\"published\"",
        "Broadcast-bus messages (Redis Streams), by way: published (XADD), read (entries read, each relayed to every worker), refused (Redis away past bus-queue: the sender closed with 1013).",
        "counter",
    ),
    ("handoff_bus_messages_total", "way=\"read\"", "", ""),
    ("handoff_bus_messages_total", "way=\"refused\"", "", ""),
    (
        "handoff_bus_connections_total",
        "event=\"connected\"",
        "Broadcast-bus connections to Redis (a reader and a publisher per route), by event: connected, lost.",
        "counter",
    ),
    ("handoff_bus_connections_total", "event=\"lost\"", "", ""),
    (
        "handoff_bus_gaps_total",
        "",
        "Times a bus reader came back to find entries after its last one gone (trimmed by MAXLEN, or Redis restarted without its data).",
        "counter",
    ),
];

struct Block([AtomicU64; COUNT]);

static BLOCKS: Mutex<Vec<Arc<Block>>> = Mutex::new(Vec::new());

thread_local! {
    static MINE: OnceCell<Arc<Block>> = const { OnceCell::new() };
}

/// Adds `n` to `m` in this thread's block.
pub(crate) fn add(m: M, n: u64) {
    add_all(&[(m, n)])
}

/// Adds to several counters with one look-up of this thread's block.
fn add_all(counts: &[(M, u64)]) {
    MINE.with(|b| {
        let b = b.get_or_init(|| {
            let b = Arc::new(Block(std::array::from_fn(|_| AtomicU64::new(0))));
            BLOCKS
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Arc::clone(&b));
            b
        });
        // Only this thread writes its block: no read-modify-write needed.
        for &(m, n) in counts {
            let c = &b.0[m as usize];
            c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
        }
    });
}

/// Counts one.
pub(crate) fn inc(m: M) {
    add(m, 1)
}

/// A request's answer: its status class and body bytes.
pub(crate) fn answered(status: Option<u16>, bytes: u64) {
    let m = match status {
        Some(100..=199) => M::Status1xx,
        Some(200..=299) => M::Status2xx,
        Some(300..=399) => M::Status3xx,
        Some(400..=499) => M::Status4xx,
        Some(_) => M::Status5xx,
        None => M::StatusNone,
    };
    add_all(&[(m, 1), (M::BodyBytes, bytes)]);
}

/// Every series summed over the threads.
fn totals() -> [u64; COUNT] {
    let mut sum = [0u64; COUNT];
    for b in BLOCKS.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        for (s, c) in sum.iter_mut().zip(&b.0) {
            *s = s.wrapping_add(c.load(Ordering::Relaxed));
        }
    }
    sum
}

/// The exposition text.
pub(crate) fn render() -> String {
    let t = totals();
    let mut out = String::new();
    for (i, (name, labels, help, kind)) in SERIES.iter().enumerate() {
        if !help.is_empty() {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        }
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {}", t[i]);
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {}", t[i]);
        }
        if i == M::Closed as usize {
            let open = t[M::Opened as usize].saturating_sub(t[M::Closed as usize]);
            let _ = writeln!(
                out,
                "# HELP handoff_connections_open Connections being served now.\n# TYPE handoff_connections_open gauge\nhandoff_connections_open {open}"
            );
        }
        if i == M::BusGaps as usize {
            let down = BUS_DOWN.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "# HELP handoff_bus_down Broadcast-bus threads (a reader and a publisher per route) without Redis now.\n# TYPE handoff_bus_down gauge\nhandoff_bus_down {down}"
            );
        }
    }
    out
}

/// Binds `addr` and serves `/metrics` on a thread of its own, one short
/// blocking exchange at a time (a scraper, not the public): a client gets
/// 2 s to send its request. Returns the bound address.
pub(crate) fn serve(addr: SocketAddr) -> io::Result<SocketAddr> {
    let l = crate::sys::listen_tcp_shared(addr)?;
    let local = l.local_addr()?;
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for s in l.incoming() {
                match s {
                    Ok(s) => {
                        if let Err(e) = exchange(s) {
                            tracing::debug!("metrics: {e}");
                        }
                    }
                    Err(e) => {
                        tracing::warn!("metrics: accept: {e}");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        })?;
    Ok(local)
}

fn exchange(mut s: std::net::TcpStream) -> io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut buf = [0u8; 4096];
    let mut got = 0;
    while !buf[..got].windows(4).any(|w| w == b"\r\n\r\n") {
        if got == buf.len() {
            return s.write_all(b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
        match s.read(&mut buf[got..])? {
            0 => return Ok(()),
            n => got += n,
        }
    }
    let line = buf[..got].split(|&b| b == b'\r').next().unwrap_or_default();
    let (status, body) = match line {
        b"GET /metrics HTTP/1.1" | b"GET /metrics HTTP/1.0" => ("200 OK", render()),
        _ if line.starts_with(b"GET ") => ("404 Not Found", "only /metrics here\n".into()),
        _ => ("405 Method Not Allowed", "GET /metrics\n".into()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
    s.write_all(body.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_from_every_thread_add_up() {
        let before = totals()[M::WorkerRestarts as usize];
        let t: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(|| (0..1000).for_each(|_| inc(M::WorkerRestarts))))
            .collect();
        t.into_iter().for_each(|t| t.join().unwrap());
        assert!(totals()[M::WorkerRestarts as usize] - before >= 4000);
        assert!(render().contains("handoff_worker_restarts_total "));
    }

    #[test]
    fn every_metric_name_has_its_help_and_type_once() {
        let text = render();
        for (name, ..) in SERIES {
            assert_eq!(
                text.matches(&format!("# TYPE {name} ")).count(),
                1,
                "{name}"
            );
            assert_eq!(
                text.matches(&format!("# HELP {name} ")).count(),
                1,
                "{name}"
            );
        }
    }
}
