//! Requests for an app that cannot be lent with their connection: an
//! HTTP/2 stream, or a request over TLS (the session stays here). The app
//! is lent one end of a socketpair instead, on which this side speaks
//! HTTP/1.1 for that one request (`Connection: close`); a thread writes the
//! body and reads the answer, which goes to the client through the
//! deferred reply, streamed at the client's pace. What the app cannot
//! serve comes back on the socketpair like any answer (the pool's 503).

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::{Apps, Lent};
use crate::http::{Answer, BodyStream, Reply, Request, Response, StreamWaker, Version};
use crate::sys::{self, fdpass};

/// Relayed requests in flight at most, over every loop: each has a thread.
const MAX_RELAYS: usize = 256;
/// How long an app may take to answer a relayed request, head to last byte.
const RELAY_TIMEOUT: Duration = Duration::from_secs(60);
/// The largest answer head taken from an app.
const MAX_HEAD: usize = 64 * 1024;
/// Body bytes held for the client at most; past it the app is not read.
const FEED_CAP: usize = 64 * 1024;

static RELAYS: AtomicUsize = AtomicUsize::new(0);

/// Fields not passed on either way: one hop's, and those the relay sets
/// itself (the length, the host, the date).
fn hop_by_hop(name: &str) -> bool {
    crate::http::token::hop_by_hop(name)
        || ["content-length", "host", "date"]
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h))
}

/// Relays `req` (read whole) to route `route`'s app.
pub(crate) fn relay(apps: &Apps, route: usize, req: &Request<'_>, res: &mut Response<'_>) {
    if RELAYS.fetch_add(1, Ordering::AcqRel) >= MAX_RELAYS {
        RELAYS.fetch_sub(1, Ordering::AcqRel);
        res.header("Retry-After", "1")
            .plain(503, "503 Service Unavailable: too many relayed requests\n");
        return;
    }
    let pair = fdpass::stream_pair().and_then(|(ours, theirs)| {
        sys::process::set_blocking(ours.as_fd())?;
        sys::process::set_blocking(theirs.as_fd())?;
        fdpass::set_recv_timeout(ours.as_fd(), RELAY_TIMEOUT)?;
        fdpass::set_send_timeout(ours.as_fd(), RELAY_TIMEOUT)?;
        Ok((ours, theirs))
    });
    let (ours, theirs) = match pair {
        Ok(p) => p,
        Err(e) => {
            RELAYS.fetch_sub(1, Ordering::AcqRel);
            tracing::error!("app relay: no socketpair: {e}");
            res.plain(503, "503 Service Unavailable\n");
            return;
        }
    };
    apps.lend_relay(Lent {
        socket: theirs,
        data: request_head(req),
        peer: req.peer_addr().clone(),
        local: req.local_addr(),
        secure: req.is_tls(),
        route,
    });
    let reply = res.defer_within(RELAY_TIMEOUT + Duration::from_secs(1));
    let waker = res.stream_waker();
    let body = req.body().to_vec();
    let head_only = req.is_head();
    let spawned = std::thread::Builder::new()
        .name("app-relay".into())
        .spawn(move || {
            Relay {
                sock: ours,
                reply,
                waker,
                deadline: Instant::now() + RELAY_TIMEOUT,
            }
            .run(&body, head_only);
            RELAYS.fetch_sub(1, Ordering::AcqRel);
        });
    if let Err(e) = spawned {
        // The reply, dropped unanswered, becomes a 500.
        RELAYS.fetch_sub(1, Ordering::AcqRel);
        tracing::error!("app relay: no thread: {e}");
    }
}

/// The request as HTTP/1.1 for one exchange: its method, target and
/// fields (the host from `:authority` on HTTP/2), its body's length.
fn request_head(req: &Request<'_>) -> Vec<u8> {
    let mut h = format!("{} {} HTTP/1.1\r\n", req.method(), req.target()).into_bytes();
    if let Some(host) = req.host() {
        h.extend_from_slice(format!("Host: {host}\r\n").as_bytes());
    }
    for (name, value) in req.headers() {
        if hop_by_hop(name) || name.starts_with(':') {
            continue;
        }
        h.extend_from_slice(name.as_bytes());
        h.extend_from_slice(b": ");
        h.extend_from_slice(value);
        h.extend_from_slice(b"\r\n");
    }
    let body = req.body().len();
    if body > 0 || req.header("content-length").is_some() {
        h.extend_from_slice(format!("Content-Length: {body}\r\n").as_bytes());
    }
    if req.version() == Version::Http2 || req.is_tls() {
        let proto = if req.is_tls() { "https" } else { "http" };
        h.extend_from_slice(format!("X-Forwarded-Proto: {proto}\r\n").as_bytes());
    }
    h.extend_from_slice(b"Connection: close\r\n\r\n");
    h
}

struct Relay {
    sock: OwnedFd,
    reply: Reply,
    waker: StreamWaker,
    deadline: Instant,
}

/// How the answer's body is framed.
enum Framing {
    Length(u64),
    Chunked(crate::http::chunked::Chunked),
    Close,
    None,
}

impl Relay {
    fn run(self, body: &[u8], head_only: bool) {
        let Relay {
            sock,
            reply,
            waker,
            deadline,
        } = self;
        let mut sock = std::fs::File::from(sock);
        // The app may answer before reading all of the body; an error here
        // shows in what it answers (or does not).
        let _ = sock.write_all(body);
        let mut buf = Vec::new();
        let (status, fields, framing, start) = match read_head(&mut sock, &mut buf, head_only) {
            Ok(h) => h,
            Err((status, why)) => {
                tracing::warn!("app relay: {why}; {status}");
                let _ = reply.answer(
                    Answer::new(status)
                        .header("Content-Type", "text/plain; charset=utf-8")
                        .body(format!("{status} {why}\n")),
                );
                return;
            }
        };
        let feed = Arc::new(Feed::default());
        let stream = FeedStream(feed.clone());
        let streamed = !matches!(framing, Framing::None);
        let sent = reply.send(move |w| {
            let head = (|| {
                w.status(status)?;
                for (n, v) in &fields {
                    w.header(n, v)?;
                }
                w.finish_headers()
            })();
            if head.is_err() || !streamed || w.stream(Box::new(stream)).is_err() {
                let _ = w.finish();
            }
        });
        if sent.is_err() || !streamed {
            return;
        }
        buf.drain(..start);
        pump(&mut sock, buf, framing, &feed, &waker, deadline);
    }
}

/// Moves the body from the app to the feed until it ends.
fn pump(
    sock: &mut std::fs::File,
    mut buf: Vec<u8>,
    mut framing: Framing,
    feed: &Feed,
    waker: &StreamWaker,
    deadline: Instant,
) {
    {
        let limits = crate::http::Limits::default();
        let mut chunk = vec![0u8; 16 * 1024];
        loop {
            // What is in `buf` is raw; take what it decodes to.
            let (data, done) = match &mut framing {
                Framing::Length(left) => {
                    let n = (*left).min(buf.len() as u64) as usize;
                    *left -= n as u64;
                    (buf.drain(..n).collect::<Vec<u8>>(), *left == 0)
                }
                Framing::Chunked(c) => match c.decode(&mut buf, &limits) {
                    Ok(step) => {
                        buf.truncate(buf.len() - step.removed);
                        let n = c.body_len();
                        let data: Vec<u8> = buf.drain(..n).collect();
                        c.take_decoded();
                        (data, step.done)
                    }
                    Err(_) => return feed.end_woken(false, waker),
                },
                Framing::Close | Framing::None => (std::mem::take(&mut buf), false),
            };
            if !data.is_empty() && !feed.put(&data, waker) {
                return; // the client left
            }
            if done {
                return feed.end_woken(true, waker);
            }
            if Instant::now() >= deadline {
                tracing::warn!("app relay: the answer took too long; cut");
                return feed.end_woken(false, waker);
            }
            match sock.read(&mut chunk) {
                Ok(0) => {
                    let whole = matches!(framing, Framing::Close);
                    return feed.end_woken(whole, waker);
                }
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return feed.end_woken(false, waker),
            }
        }
    }
}

type Head = (u16, Vec<(String, Vec<u8>)>, Framing, usize);

/// Reads the answer's head; `Err`: what the client gets instead.
fn read_head(
    sock: &mut std::fs::File,
    buf: &mut Vec<u8>,
    head_only: bool,
) -> Result<Head, (u16, String)> {
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 100];
        let mut r = httparse::Response::new(&mut headers);
        match r.parse(buf) {
            Ok(httparse::Status::Complete(end)) => {
                let status = r.code.unwrap_or(502);
                let mut fields = Vec::new();
                let mut framing = Framing::Close;
                for h in r.headers.iter() {
                    if h.name.eq_ignore_ascii_case("transfer-encoding") {
                        framing = Framing::Chunked(crate::http::chunked::Chunked::new(u64::MAX));
                    } else if h.name.eq_ignore_ascii_case("content-length")
                        && !matches!(framing, Framing::Chunked(_))
                    {
                        let n = std::str::from_utf8(h.value)
                            .ok()
                            .and_then(|v| v.trim().parse().ok());
                        framing =
                            Framing::Length(n.ok_or((502, "a bad Content-Length".to_string()))?);
                    }
                    if !hop_by_hop(h.name) {
                        fields.push((h.name.to_string(), h.value.to_vec()));
                    }
                }
                if head_only || matches!(status, 204 | 304) || matches!(framing, Framing::Length(0))
                {
                    framing = Framing::None;
                }
                if status < 200 {
                    return Err((502, "the app sent an interim answer".into()));
                }
                return Ok((status, fields, framing, end));
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {}
            Ok(httparse::Status::Partial) => {
                return Err((502, "the app's answer head is too large".into()));
            }
            Err(e) => return Err((502, format!("the app's answer is not HTTP: {e}"))),
        }
        match sock.read(&mut chunk) {
            Ok(0) => return Err((502, "the app closed without an answer".into())),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err((504, "the app did not answer in time".into()));
            }
            Err(e) => return Err((502, format!("the app's socket failed: {e}"))),
        }
    }
}

/// A body on its way from the relay's thread to the client: bounded, the
/// thread waiting while it is full, the connection woken when it is not
/// empty.
#[derive(Default)]
struct Feed {
    state: Mutex<FeedState>,
    room: Condvar,
}

#[derive(Default)]
struct FeedState {
    bytes: VecDeque<u8>,
    /// `Some(true)`: ended whole; `Some(false)`: cut short.
    end: Option<bool>,
    reader_gone: bool,
}

impl Feed {
    fn lock(&self) -> std::sync::MutexGuard<'_, FeedState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `data`, waiting for room; `false` once the reader is gone.
    fn put(&self, data: &[u8], waker: &StreamWaker) -> bool {
        let mut s = self.lock();
        while s.bytes.len() >= FEED_CAP && !s.reader_gone {
            s = self.room.wait(s).unwrap_or_else(|p| p.into_inner());
        }
        if s.reader_gone {
            return false;
        }
        s.bytes.extend(data);
        drop(s);
        waker.wake();
        true
    }

    fn end_woken(&self, whole: bool, waker: &StreamWaker) {
        self.lock().end = Some(whole);
        waker.wake();
    }
}

struct FeedStream(Arc<Feed>);

impl BodyStream for FeedStream {
    fn read_into(&mut self, buf: &mut Vec<u8>, max: usize) -> io::Result<bool> {
        let mut s = self.0.lock();
        let n = s.bytes.len().min(max);
        buf.extend(s.bytes.drain(..n));
        let (empty, end) = (s.bytes.is_empty(), s.end);
        drop(s);
        if n > 0 {
            self.0.room.notify_one();
        }
        match (empty, end) {
            (true, Some(false)) => Err(io::Error::other("the app's answer was cut short")),
            (true, Some(true)) => Ok(false),
            _ => Ok(true),
        }
    }
}

impl Drop for FeedStream {
    fn drop(&mut self) {
        self.0.lock().reader_gone = true;
        self.0.room.notify_one();
    }
}
