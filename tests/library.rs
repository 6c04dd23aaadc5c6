//! The Server API in-process: add_socket / add_stream, max_concurrent on
//! every path, pause/resume, handler panics.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use handoff::{Added, Options, Request, Response, Server};

mod common;

fn echo(req: &Request<'_>, res: &mut Response<'_>) {
    if req.path() == "/panic" {
        panic!("handler bug");
    }
    res.body(format!("path={}", req.path()));
}

fn server(max_concurrent: usize) -> Server {
    Server::new(
        Options {
            max_concurrent,
            max_queued: 2,
            ..Options::default()
        },
        echo,
    )
    .unwrap()
}

/// Steps the server for a while.
fn pump(s: &mut Server, ms: u64) {
    let end = Instant::now() + Duration::from_millis(ms);
    while Instant::now() < end {
        s.step(Some(Duration::from_millis(5))).unwrap();
    }
}

/// Reads what is there without blocking.
fn available(c: &mut impl Read) -> String {
    let mut buf = [0u8; 4096];
    let mut all = Vec::new();
    while let Ok(n) = c.read(&mut buf) {
        if n == 0 {
            break;
        }
        all.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&all).into_owned()
}

const REQ: &[u8] = b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n";

fn quiet_panics<T>(f: impl FnOnce() -> T) -> T {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let r = f();
    std::panic::set_hook(hook);
    r
}

#[test]
fn max_concurrent_holds_with_twice_as_many_clients_on_a_listener() {
    let mut s = server(2);
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    assert!(matches!(s.add_socket(l).unwrap(), Added::Listener(_)));
    let mut clients: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(addr).unwrap()).collect();
    for c in &mut clients {
        c.set_nonblocking(true).unwrap();
        c.write_all(REQ).unwrap();
    }
    pump(&mut s, 200);
    assert_eq!(s.connections(), 2);
    let answered: Vec<bool> = clients
        .iter_mut()
        .map(|c| available(c).contains("path=/x"))
        .collect();
    assert_eq!(answered.iter().filter(|a| **a).count(), 2, "{answered:?}");
    // The others wait in the backlog, not accepted-and-closed. Free a slot:
    let served = answered.iter().position(|a| *a).unwrap();
    drop(clients.remove(served));
    pump(&mut s, 200);
    assert_eq!(s.connections(), 2);
    let now_answered = clients
        .iter_mut()
        .map(available)
        .filter(|t| t.contains("path=/x"))
        .count();
    assert_eq!(
        now_answered, 1,
        "exactly one waiting client got the freed slot"
    );
}

#[test]
fn max_concurrent_holds_for_sockets_given_to_add_socket() {
    let mut s = server(2);
    let mut clients = Vec::new();
    let mut added = Vec::new();
    for _ in 0..4 {
        let (ours, theirs) = UnixStream::pair().unwrap();
        theirs.set_nonblocking(true).unwrap();
        added.push(s.add_socket(ours).unwrap());
        clients.push(theirs);
    }
    assert_eq!(
        added,
        [
            Added::Connection,
            Added::Connection,
            Added::Queued,
            Added::Queued
        ]
    );
    let (ours, _theirs) = UnixStream::pair().unwrap();
    let e = s.add_socket(ours).unwrap_err();
    assert!(e.to_string().contains("queue"), "{e}");
    for c in &mut clients {
        c.write_all(REQ).unwrap();
    }
    pump(&mut s, 100);
    let answered: Vec<bool> = clients
        .iter_mut()
        .map(|c| available(c).contains("path=/x"))
        .collect();
    assert_eq!(answered, [true, true, false, false]);
    drop(clients.remove(0));
    pump(&mut s, 100);
    assert_eq!((s.connections(), s.queued()), (2, 1));
    assert!(
        available(&mut clients[1]).contains("path=/x"),
        "the first queued socket is served next"
    );
}

#[test]
fn add_stream_serves_pre_read_bytes_as_if_read_from_the_socket() {
    let mut s = server(8);
    let (ours, mut theirs) = UnixStream::pair().unwrap();
    theirs.set_nonblocking(true).unwrap();
    s.add_stream(ours, b"GET /pre HTTP/1.1\r\nHo").unwrap();
    theirs
        .write_all(b"st: t\r\n\r\nGET /second HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    pump(&mut s, 100);
    let out = available(&mut theirs);
    let first = out.find("path=/pre").unwrap();
    let second = out.find("path=/second").unwrap();
    assert!(first < second);
}

#[test]
fn a_listener_with_more_waiting_than_one_batch_is_emptied_without_new_arrivals() {
    let mut s = Server::new(
        Options {
            accept_batch: 2,
            ..Options::default()
        },
        echo,
    )
    .unwrap();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    // Ten connections are waiting in the backlog before the server sees the
    // listener: one edge, five batches.
    let mut clients: Vec<TcpStream> = (0..10)
        .map(|i| {
            let mut c = TcpStream::connect(addr).unwrap();
            write!(c, "GET /{i} HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
            c.set_nonblocking(true).unwrap();
            c
        })
        .collect();
    s.add_socket(OwnedFd::from(l)).unwrap();
    pump(&mut s, 300);
    let answered = clients
        .iter_mut()
        .map(available)
        .filter(|out| out.contains("200 OK"))
        .count();
    assert_eq!(answered, 10, "connections left in the backlog");
}

/// A socket passed with part of the HTTP/2 preface already read (by a
/// front that sniffed it) is served as HTTP/2, by the same handler, which
/// is told the version.
#[test]
fn add_stream_serves_http2_whose_preface_came_in_part_with_the_pre_read_bytes() {
    use common::h2raw::{self, PREFACE};
    let mut s = Server::new(
        Options::default(),
        |req: &Request<'_>, res: &mut Response<'_>| {
            res.body(format!("{:?} {}", req.version(), req.path()));
        },
    )
    .unwrap();
    let (ours, mut theirs) = UnixStream::pair().unwrap();
    theirs.set_nonblocking(true).unwrap();
    s.add_stream(ours, &PREFACE[..10]).unwrap();
    pump(&mut s, 20);
    // Not taken for an HTTP/1.1 request meanwhile: nothing was answered.
    assert_eq!(available(&mut theirs), "");
    let mut rest = PREFACE[10..].to_vec();
    let frame = |ty: u8, flags: u8, stream: u32, payload: &[u8]| {
        let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        f.extend_from_slice(&[ty, flags]);
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    };
    rest.extend(frame(h2raw::SETTINGS, 0, 0, &[]));
    let fields = h2raw::get_fields("/over-h2");
    let fields: Vec<(&str, &str)> = fields.iter().map(|(n, v)| (*n, v.as_str())).collect();
    rest.extend(frame(
        h2raw::HEADERS,
        h2raw::END_HEADERS | h2raw::END_STREAM,
        1,
        &h2raw::block(&fields),
    ));
    theirs.write_all(&rest).unwrap();
    pump(&mut s, 100);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = theirs.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    // Walk the frames: the DATA of stream 1 is the handler's answer.
    let mut i = 0;
    let mut body = Vec::new();
    while i + 9 <= out.len() {
        let len = u32::from_be_bytes([0, out[i], out[i + 1], out[i + 2]]) as usize;
        if out[i + 3] == h2raw::DATA {
            body.extend_from_slice(&out[i + 9..i + 9 + len]);
        }
        i += 9 + len;
    }
    assert_eq!(String::from_utf8_lossy(&body), "Http2 /over-h2");
}

#[test]
fn add_stream_refuses_a_listener_without_adding_it() {
    let mut s = server(4);
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let e = s.add_stream(OwnedFd::from(l), b"").unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    assert!(s.local_addrs().is_empty(), "the refused listener was added");
    assert!(s.is_empty());
}

#[test]
fn a_handler_panic_gives_that_client_500_and_nothing_else() {
    let mut s = server(8);
    let (a, mut ca) = UnixStream::pair().unwrap();
    let (b, mut cb) = UnixStream::pair().unwrap();
    ca.set_nonblocking(true).unwrap();
    cb.set_nonblocking(true).unwrap();
    s.add_socket(a).unwrap();
    s.add_socket(b).unwrap();
    cb.write_all(REQ).unwrap();
    pump(&mut s, 20);
    ca.write_all(b"GET /panic HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    quiet_panics(|| pump(&mut s, 50));
    assert!(available(&mut ca).starts_with("HTTP/1.1 500 "));
    cb.write_all(REQ).unwrap();
    pump(&mut s, 50);
    assert_eq!(
        available(&mut cb).matches("path=/x").count(),
        2,
        "the other client lost nothing"
    );
}

#[test]
fn refuses_what_is_not_a_stream_socket_and_closes_it() {
    let mut s = server(8);
    // What each fd is, by what /proc says it links to: counting this
    // process's fds would race with the other tests running beside it.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let udp_is = fd_target(&udp);
    let e = s.add_socket(OwnedFd::from(udp)).unwrap_err();
    assert!(e.to_string().contains("not a stream socket"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("not-a-socket");
    let file = std::fs::File::create(&path).unwrap();
    let file_is = fd_target(&file);
    let e = s.add_socket(OwnedFd::from(file)).unwrap_err();
    assert!(e.to_string().contains("not a socket"), "{e}");
    assert!(!open_targets().contains(&udp_is), "the UDP socket was kept");
    assert!(!open_targets().contains(&file_is), "the file was kept");
}

/// What an fd of this process links to in /proc (`socket:[INODE]`, a path).
fn fd_target(fd: &impl std::os::fd::AsRawFd) -> std::path::PathBuf {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap()
}

fn open_targets() -> Vec<std::path::PathBuf> {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .collect()
}

#[test]
fn pause_stops_accepting_and_resume_starts_again() {
    let mut s = server(8);
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    s.add_socket(l).unwrap();
    s.pause();
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_nonblocking(true).unwrap();
    c.write_all(REQ).unwrap();
    pump(&mut s, 100);
    assert_eq!(s.connections(), 0);
    s.resume();
    pump(&mut s, 100);
    assert_eq!(s.connections(), 1);
    assert!(available(&mut c).contains("path=/x"));
}

#[test]
fn close_ends_everything_and_run_returns() {
    let mut s = server(8);
    s.add_socket(TcpListener::bind("127.0.0.1:0").unwrap())
        .unwrap();
    let (ours, mut theirs) = UnixStream::pair().unwrap();
    s.add_socket(ours).unwrap();
    s.close();
    assert!(s.is_empty());
    s.run().unwrap();
    theirs
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    assert_eq!(theirs.read(&mut [0u8; 8]).unwrap(), 0);
}

/// Reads until the server closes; an error (a reset) fails the test.
fn read_until_closed(c: &mut TcpStream) -> String {
    c.set_nonblocking(false).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut all = Vec::new();
    let r = c.read_to_end(&mut all);
    let got = String::from_utf8_lossy(&all).into_owned();
    assert!(r.is_ok(), "a reset, not a clean close: {r:?} after {got:?}");
    got
}

/// A server on a listener of its own, and the listener's address.
fn listening() -> (Server, std::net::SocketAddr) {
    let mut s = server(16);
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    s.add_socket(l).unwrap();
    (s, addr)
}

/// A keep-alive connection to `addr` that has had one request answered,
/// left non-blocking.
fn answered_once(s: &mut Server, addr: std::net::SocketAddr) -> TcpStream {
    let mut c = TcpStream::connect(addr).unwrap();
    c.write_all(REQ).unwrap();
    c.set_nonblocking(true).unwrap();
    let mut first = String::new();
    let end = Instant::now() + Duration::from_secs(5);
    while !first.contains("path=/x") && Instant::now() < end {
        s.step(Some(Duration::from_millis(5))).unwrap();
        first += &available(&mut c);
    }
    assert!(first.contains("path=/x"), "{first}");
    c
}

#[test]
fn drain_answers_requests_that_arrived_after_their_readiness_was_handled() {
    let _ = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_test_writer()
        .try_init();
    let (mut s, addr) = listening();
    let mut c = answered_once(&mut s, addr);
    // The connection is idle; now a pipelined batch reaches the socket and
    // the loop has not looked at it when the drain comes.
    c.write_all(&REQ.repeat(3)).unwrap();
    // And a client waits in the backlog, its request sent.
    let mut d = TcpStream::connect(addr).unwrap();
    d.write_all(REQ).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    s.drain();
    let t = std::thread::spawn(move || (read_until_closed(&mut c), read_until_closed(&mut d)));
    while !t.is_finished() {
        s.step(Some(Duration::from_millis(5))).unwrap();
    }
    let (c_got, d_got) = t.join().unwrap();
    assert_eq!(c_got.matches("path=/x").count(), 3, "{c_got}");
    assert!(c_got.contains("Connection: close"), "{c_got}");
    assert_eq!(d_got.matches("path=/x").count(), 1, "{d_got}");
    pump(&mut s, 50);
    assert!(s.is_empty());
}

/// A connection accepted before the drain whose request is a moment behind
/// its accept gets its answer: closing it as idle would lose the request.
#[test]
fn drain_answers_a_connection_whose_first_request_comes_after_it() {
    let (mut s, addr) = listening();
    // A keep-alive connection that has been answered: idle, so it closes.
    let mut idle = answered_once(&mut s, addr);
    // A new one, accepted and read, with nothing sent yet.
    let mut fresh = TcpStream::connect(addr).unwrap();
    pump(&mut s, 50);
    s.drain();
    pump(&mut s, 50);
    assert_eq!(
        read_until_closed(&mut idle),
        "",
        "an idle keep-alive connection closes at once"
    );
    fresh.write_all(REQ).unwrap();
    let t = std::thread::spawn(move || read_until_closed(&mut fresh));
    while !t.is_finished() {
        s.step(Some(Duration::from_millis(5))).unwrap();
    }
    let got = t.join().unwrap();
    assert_eq!(got.matches("path=/x").count(), 1, "{got}");
    assert!(got.contains("Connection: close"), "{got}");
    pump(&mut s, 50);
    assert!(s.is_empty());
}

use common::serve_in_background;

/// A deferred response (`Response::defer`) on an HTTP/2 stream, written
/// from another thread in steps, trailers included; one dropped
/// unanswered gets a 500; one never finished gets a 504 at the deadline.
#[test]
fn a_deferred_response_is_written_in_steps_on_an_http2_stream() {
    use common::h2raw::*;
    let opts = Options {
        timeouts: handoff::http::Timeouts {
            response: Duration::from_millis(300),
            ..Default::default()
        },
        ..Options::default()
    };
    let addr = serve_in_background(opts, |req: &Request<'_>, res: &mut Response<'_>| {
        let reply = res.defer();
        match req.path() {
            "/later" => {
                std::thread::spawn(move || {
                    reply
                        .send(|w| {
                            w.status(200).unwrap();
                            w.header("x-step", "1").unwrap();
                            w.write(b"written ").unwrap();
                        })
                        .unwrap();
                    std::thread::sleep(Duration::from_millis(20));
                    reply
                        .send(|w| {
                            w.write(b"later").unwrap();
                            w.finish_with_trailers(&[("x-sum", b"13")]).unwrap();
                        })
                        .unwrap();
                });
            }
            "/dropped" => drop(reply),
            // Kept, never sent: the deadline answers.
            _ => std::mem::forget(reply),
        }
    });
    let mut c = H2::connect(addr);
    c.get(1, "/later");
    let h = c.until(HEADERS, Some(1)).unwrap();
    assert_eq!(h.payload[0], 0x88, "an indexed :status 200");
    let mut body = Vec::new();
    let trailers = loop {
        let f = c.next().expect("the rest");
        match f.ty {
            DATA if f.stream == 1 => body.extend_from_slice(&f.payload),
            HEADERS if f.stream == 1 => break f,
            _ => {}
        }
    };
    assert_eq!(body, b"written later");
    assert_eq!(
        trailers.flags & END_STREAM,
        END_STREAM,
        "trailers end the stream"
    );
    c.get(3, "/dropped");
    let (status, body) = c.response(3);
    // 500 is in HPACK's static table at index 14.
    assert_eq!(status, 0x8e, "{}", String::from_utf8_lossy(&body));
    assert_eq!(body, b"500 the response was dropped\n");
    c.get(5, "/forgotten");
    let (_, body) = c.response(5);
    assert_eq!(body, b"504 the response was not ready in time\n");
}

/// On HTTP/2 a client that asks for `100 Continue` gets it before it
/// sends the body, and the body's trailers reach the handler as on
/// HTTP/1.1 (`Request::trailers`).
#[test]
fn an_http2_request_gets_100_continue_and_its_trailers_reach_the_handler() {
    use common::h2raw::*;
    let addr = serve_in_background(
        Options::default(),
        |req: &Request<'_>, res: &mut Response<'_>| {
            let trailers: Vec<String> = req
                .trailers()
                .iter()
                .map(|(n, v)| format!("{n}={}", String::from_utf8_lossy(v)))
                .collect();
            res.body(format!(
                "{} {}",
                String::from_utf8_lossy(req.body()),
                trailers.join(",")
            ));
        },
    );
    let mut c = H2::connect(addr);
    c.headers(
        1,
        &[
            (":method", "POST"),
            (":scheme", "http"),
            (":authority", "t"),
            (":path", "/up"),
            ("expect", "100-continue"),
        ],
        false,
    );
    // The 100 comes before any of the body was sent: a HEADERS without
    // END_STREAM (100 is not in HPACK's static table).
    let interim = c.until(HEADERS, Some(1)).expect("a 100");
    assert_eq!(interim.flags & END_STREAM, 0);
    assert_ne!(interim.payload[0], 0x88, "not the final 200 yet");
    c.send(DATA, 0, 1, b"hello");
    c.headers(1, &[("x-sum", "5")], true);
    let (status, body) = c.response(1);
    assert_eq!(status, 0x88);
    assert_eq!(String::from_utf8_lossy(&body), "hello x-sum=5");
}

/// Request bodies held for handlers on one HTTP/2 connection are bounded
/// by `max_body` in all (plus the stream holding the most), however many
/// streams the client opens: windows are given back only so far, and a
/// client that keeps to them (as this one does, frame by frame) can send
/// no more. Without the bound, 5 streams could hold 5 × `max_body`.
#[test]
fn an_http2_connection_holds_no_more_body_than_max_body_and_its_leader() {
    use common::h2raw::*;
    use std::collections::HashMap;
    let max_body = 100_000;
    let opts = Options {
        limits: handoff::http::Limits {
            max_body,
            ..Default::default()
        },
        ..Options::default()
    };
    let addr = serve_in_background(opts, |req: &Request<'_>, res: &mut Response<'_>| {
        res.body(format!("{}", req.body().len()));
    });
    let mut c = H2::connect(addr);
    let streams = [1u32, 3, 5, 7, 9];
    for id in streams {
        c.headers(
            id,
            &[
                (":method", "POST"),
                (":scheme", "http"),
                (":authority", "t"),
                (":path", "/up"),
            ],
            false,
        );
    }
    // Windows as RFC 9113 has them: 65,535 each to begin with.
    let mut conn_window: i64 = 65_535;
    let mut windows: HashMap<u32, i64> = streams.iter().map(|&s| (s, 65_535)).collect();
    let want = 90_000i64;
    let mut sent: HashMap<u32, i64> = streams.iter().map(|&s| (s, 0)).collect();
    c.s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    loop {
        // Send what the windows allow, 4 KiB at a time, round robin.
        let mut moved = false;
        for id in streams {
            let w = windows[&id]
                .min(conn_window)
                .min(want - sent[&id])
                .min(4096);
            if w > 0 {
                c.send(DATA, 0, id, &vec![b'x'; w as usize]);
                *windows.get_mut(&id).unwrap() -= w;
                conn_window -= w;
                *sent.get_mut(&id).unwrap() += w;
                moved = true;
            }
        }
        if moved {
            continue;
        }
        // Blocked: wait for WINDOW_UPDATEs; none in 300 ms ends the test.
        let mut h = [0u8; 9];
        if c.s.read_exact(&mut h).is_err() {
            break;
        }
        let len = u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize;
        let mut p = vec![0u8; len];
        c.s.read_exact(&mut p).unwrap();
        let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
        if h[3] == WINDOW_UPDATE {
            let inc = i64::from(u32::from_be_bytes([p[0], p[1], p[2], p[3]]) & 0x7fff_ffff);
            if stream == 0 {
                conn_window += inc;
            } else if let Some(w) = windows.get_mut(&stream) {
                *w += inc;
            }
        }
    }
    let total: i64 = sent.values().sum();
    // Held: at most max_body in all plus the leader's own (at most
    // max_body), plus one initial connection window in flight.
    assert!(
        total <= 2 * max_body as i64 + 65_535,
        "the client could send {total} bytes: {sent:?}"
    );
    assert!(total > max_body as i64, "it could send only {total}");
    // The one holding the most finishes; its answer frees room.
    let leader = *streams.iter().max_by_key(|s| sent[s]).unwrap();
    c.s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.send(DATA, END_STREAM, leader, b"");
    let (status, body) = c.response(leader);
    assert_eq!(status, 0x88);
    assert_eq!(String::from_utf8_lossy(&body), sent[&leader].to_string());
}

/// A foreign poll loop takes `timeout()` in whole milliseconds: it is
/// rounded up, never down to a 0 ms wait that would spin.
#[test]
fn timeout_is_whole_milliseconds_rounded_up_for_a_foreign_poll_loop() {
    let mut s = server(4);
    let (ours, mut client) = UnixStream::pair().unwrap();
    s.add_socket(OwnedFd::from(ours)).unwrap();
    client.set_nonblocking(true).unwrap();
    client.write_all(REQ).unwrap();
    pump(&mut s, 30);
    assert!(available(&mut client).contains("path=/x"));
    // An idle keep-alive connection: its idle deadline is pending.
    for _ in 0..50 {
        let t = s.timeout().expect("the idle deadline");
        assert!(t > Duration::ZERO);
        assert_eq!(t.subsec_nanos() % 1_000_000, 0, "{t:?}");
        std::thread::sleep(Duration::from_micros(137));
    }
}

#[test]
fn headers_first_finds_the_first_value_of_each_name_in_any_case() {
    let mut s = Server::new(
        Options::default(),
        |req: &Request<'_>, res: &mut Response<'_>| {
            let [a, b, c] = req.headers_first(["x-one", "X-TWO", "x-absent"]);
            let show = |v: Option<&[u8]>| {
                v.map_or("-".into(), |v| String::from_utf8_lossy(v).into_owned())
            };
            res.body(format!("{} {} {}", show(a), show(b), show(c)));
        },
    )
    .unwrap();
    let (ours, mut client) = UnixStream::pair().unwrap();
    s.add_socket(OwnedFd::from(ours)).unwrap();
    client.set_nonblocking(true).unwrap();
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\nx-two: 2\r\nX-One: 1\r\nx-one: again\r\nX-Two: twice\r\n\r\n")
        .unwrap();
    pump(&mut s, 30);
    assert!(available(&mut client).ends_with("1 2 -"));
}

/// A server answering every request with a file of `len` bytes of a
/// pattern, and the bytes.
fn serving_a_file(len: u32) -> (tempfile::TempDir, Vec<u8>, Server) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.bin");
    let content: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    std::fs::write(&path, &content).unwrap();
    let file = std::sync::Arc::new(std::fs::File::open(&path).unwrap());
    let len = content.len() as u64;
    let s = Server::new(
        Options::default(),
        move |_: &Request<'_>, res: &mut Response<'_>| {
            res.body(handoff::Body::File {
                file: file.clone(),
                offset: 0,
                len,
            });
        },
    )
    .unwrap();
    (dir, content, s)
}

/// A large file goes out a share at a time: with room in the socket and
/// more to send, the connection yields, and the loop asks to be stepped
/// again at once (its other connections' turn comes between); the whole
/// file arrives, in order.
#[test]
fn a_large_file_goes_out_in_shares_and_the_loop_asks_to_be_stepped_again_at_once() {
    let (_dir, content, mut s) = serving_a_file(4 << 20);
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (ours, _) = l.accept().unwrap();
    s.add_socket(OwnedFd::from(ours)).unwrap();
    let reader = std::thread::spawn(move || {
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        // The kernel grows a connection's buffers as it is used: the
        // first responses may find the socket full before a share is
        // spent, the later ones not.
        (0..8)
            .map(|_| {
                client.write_all(REQ).unwrap();
                one_response(&mut client)
            })
            .collect::<Vec<_>>()
    });
    fn one_response(client: &mut TcpStream) -> Vec<u8> {
        let mut got = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut body_at = None;
        loop {
            let n = client.read(&mut buf).unwrap();
            assert!(n > 0, "closed after {} bytes", got.len());
            got.extend_from_slice(&buf[..n]);
            body_at =
                body_at.or_else(|| got.windows(4).position(|w| w == b"\r\n\r\n").map(|e| e + 4));
            if let Some(at) = body_at
                && got.len() - at == 4 << 20
            {
                return got.split_off(at);
            }
        }
    }
    let (mut turns, mut at_once) = (0, 0);
    let end = Instant::now() + Duration::from_secs(10);
    while !reader.is_finished() && Instant::now() < end {
        s.step(Some(Duration::from_millis(5))).unwrap();
        turns += 1;
        if s.timeout() == Some(Duration::ZERO) {
            at_once += 1;
        }
    }
    for got in reader.join().unwrap() {
        assert!(got == content, "the file arrives whole");
    }
    // 8 times 4 MiB in shares of 256 KiB: some turns end with more to send
    // and room for it.
    assert!(
        at_once >= 2,
        "{at_once} of {turns} turns asked for another at once"
    );
}

/// Over a Unix socket a share has no segment to end on (it asks the
/// socket's TCP segment size and gets none): the file still arrives whole,
/// share after share.
#[test]
fn a_large_file_goes_out_whole_over_a_unix_socket() {
    let (_dir, content, mut s) = serving_a_file(3 << 20);
    let (mut client, ours) = UnixStream::pair().unwrap();
    s.add_socket(OwnedFd::from(ours)).unwrap();
    let reader = std::thread::spawn(move || {
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        client.write_all(REQ).unwrap();
        let mut got = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = client.read(&mut buf).unwrap();
            assert!(n > 0, "closed after {} bytes", got.len());
            got.extend_from_slice(&buf[..n]);
            if let Some(at) = got.windows(4).position(|w| w == b"\r\n\r\n")
                && got.len() - (at + 4) == 3 << 20
            {
                return got.split_off(at + 4);
            }
        }
    });
    let end = Instant::now() + Duration::from_secs(10);
    while !reader.is_finished() && Instant::now() < end {
        s.step(Some(Duration::from_millis(5))).unwrap();
    }
    assert!(reader.join().unwrap() == content, "the file arrives whole");
}
