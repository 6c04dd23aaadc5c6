//! Clients that shut down their sending side after their last request
//! (`nc -N`, health checkers, scripted clients): they get every answer
//! owed, and then the connection closes at once, not at the idle timeout.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::Handoff;
use handoff::{Options, Request, Response, Server};

/// Sends `req`, half-closes, and reads until the server closes. Returns
/// what came back and how long the close took after the half-close.
fn half_closed(addr: std::net::SocketAddr, req: &[u8]) -> (String, Duration) {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // Request and FIN in one go, so they can arrive as one edge.
    c.write_all(req).unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let t = Instant::now();
    let mut got = Vec::new();
    let r = c.read_to_end(&mut got);
    let took = t.elapsed();
    assert!(r.is_ok(), "read failed after {took:?}: {r:?}");
    (String::from_utf8_lossy(&got).into_owned(), took)
}

const SOON: Duration = Duration::from_millis(1000);

/// The status codes of the responses in `s` (a status line starts the
/// answer or follows a CRLF and has three digits).
fn statuses(s: &str) -> Vec<&str> {
    s.match_indices("HTTP/1.1 ")
        .filter(|(i, _)| *i == 0 || s[..*i].ends_with('\n'))
        .map(|(i, _)| &s[i + 9..i + 12])
        .filter(|c| c.bytes().all(|b| b.is_ascii_digit()))
        .collect()
}

#[test]
fn a_half_closed_client_is_closed_after_its_file_404_and_405_answers() {
    let h = Handoff::start(&[]);
    for (req, want) in [
        (&b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..], "200"),
        (b"GET /no-such-file HTTP/1.1\r\nHost: x\r\n\r\n", "404"),
        (b"DELETE /index.html HTTP/1.1\r\nHost: x\r\n\r\n", "405"),
        (b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n", "200"),
    ] {
        let (got, took) = half_closed(h.addr, req);
        assert_eq!(statuses(&got), [want], "{got}");
        assert!(took < SOON, "closed after {took:?}");
    }
}

#[test]
fn pipelined_requests_then_eof_are_all_answered_then_closed() {
    let h = Handoff::start(&[]);
    let req = b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\nHEAD / HTTP/1.1\r\nHost: x\r\n\r\n";
    let (got, took) = half_closed(h.addr, req);
    assert_eq!(statuses(&got), ["200", "404", "200"], "{got}");
    assert!(took < SOON, "closed after {took:?}");
}

#[test]
fn a_body_cut_short_by_eof_gets_400_and_a_close() {
    // A WebSocket route reads a body whole before answering.
    let h = Handoff::start(&["--ws", "/ws=echo"]);
    let (got, took) = half_closed(
        h.addr,
        b"POST /ws HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly this",
    );
    assert_eq!(statuses(&got), ["400"], "{got}");
    assert!(got.contains("Connection: close"), "{got}");
    assert!(took < SOON, "closed after {took:?}");
    // Chunked, cut inside a chunk.
    let (got, _) = half_closed(
        h.addr,
        b"POST /ws HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nabc",
    );
    assert_eq!(statuses(&got), ["400"], "{got}");
}

#[test]
fn a_dropped_body_cut_short_by_eof_keeps_its_early_answer_and_closes() {
    let h = Handoff::start(&[]);
    let (got, took) = half_closed(
        h.addr,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly this",
    );
    assert_eq!(statuses(&got), ["405"], "{got}");
    assert!(took < SOON, "closed after {took:?}");
}

#[test]
fn a_half_closed_client_is_closed_after_a_204_from_a_handler() {
    let mut s = Server::new(
        Options::default(),
        |req: &Request<'_>, res: &mut Response<'_>| match req.path() {
            "/empty" => {
                res.status(204);
            }
            _ => {
                res.body("hello");
            }
        },
    )
    .unwrap();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    s.add_socket(l).unwrap();
    let t =
        std::thread::spawn(move || half_closed(addr, b"GET /empty HTTP/1.1\r\nHost: x\r\n\r\n"));
    let end = Instant::now() + Duration::from_secs(5);
    while !t.is_finished() && Instant::now() < end {
        s.step(Some(Duration::from_millis(10))).unwrap();
    }
    let (got, took) = t.join().unwrap();
    assert_eq!(statuses(&got), ["204"], "{got}");
    assert!(took < SOON, "closed after {took:?}");
}
