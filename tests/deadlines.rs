//! Every deadline, against the real binary with short settings.

mod common;
use common::*;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

#[test]
fn cuts_off_a_client_sending_one_byte_a_second_while_serving_others() {
    let (h, _site) = serve_site(&["--setup-timeout", "2"]);
    let started = Instant::now();
    let mut slow = h.connect();
    let addr = h.addr;
    // One thread reads and notes when the answer arrives; the other
    // dribbles the request (and stops once the server has closed).
    let mut reader = slow.try_clone().unwrap();
    let answer = std::thread::spawn(move || {
        let mut first = [0u8; 1];
        let n = std::io::Read::read(&mut reader, &mut first).unwrap_or(0);
        let took = started.elapsed();
        let rest = read_to_close(&mut reader);
        (
            format!("{}{rest}", String::from_utf8_lossy(&first[..n])),
            took,
        )
    });
    let dribble = std::thread::spawn(move || {
        for b in b"GET /a.txt HTTP/1.1\r\nHost: t\r\nX-Slow: aaaaaaaaaaaaaaaaaaaa\r\n\r\n" {
            if slow.write_all(std::slice::from_ref(b)).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    // Meanwhile other clients are served promptly.
    for _ in 0..10 {
        let t = Instant::now();
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /b.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .unwrap();
        assert!(read_to_close(&mut s).ends_with("bravo\n"));
        assert!(t.elapsed() < Duration::from_millis(500));
        std::thread::sleep(Duration::from_millis(100));
    }
    let (resp, took) = answer.join().unwrap();
    drop(dribble);
    assert!(resp.starts_with("HTTP/1.1 408 "), "{resp}");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(4),
        "cut off after {took:?}"
    );
}

#[test]
fn closes_a_connection_that_sends_nothing_at_the_setup_deadline() {
    let (h, _site) = serve_site(&["--setup-timeout", "1"]);
    let mut s = h.connect();
    let t = Instant::now();
    assert!(closed_within(&mut s, Duration::from_secs(3)));
    assert!(t.elapsed() >= Duration::from_millis(900));
}

#[test]
fn closes_an_idle_keep_alive_connection_at_the_intra_stream_deadline() {
    let (h, _site) = serve_site(&["--idle-timeout", "1"]);
    let mut s = h.connect();
    s.write_all(b"GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut s).unwrap().status, 200);
    let t = Instant::now();
    assert!(closed_within(&mut s, Duration::from_secs(3)));
    assert!(t.elapsed() >= Duration::from_millis(900));
}

#[test]
fn answers_408_when_the_body_stops_arriving() {
    // A WebSocket route reads a body whole before answering (files answer
    // at once and drop it).
    let (h, _site) = serve_site(&["--body-timeout", "1", "--ws", "/ws=echo"]);
    let mut s = h.connect();
    s.write_all(b"POST /ws HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
        .unwrap();
    let t = Instant::now();
    let resp = read_to_close(&mut s);
    assert!(resp.starts_with("HTTP/1.1 408 "), "{resp}");
    assert!(t.elapsed() >= Duration::from_millis(900) && t.elapsed() < Duration::from_secs(3));
}

#[test]
fn aborts_a_client_that_stops_reading_and_keeps_serving_others() {
    let site = site();
    let big = vec![b'z'; 64 << 20];
    std::fs::write(site.path().join("big.bin"), &big).unwrap();
    let h = Handoff::start(&["--root", &root_arg(site.path()), "--write-timeout", "1"]);
    h.warm(&["/a.txt", "/big.bin"]);
    let before = h.settled_fds();
    let mut stuck = h.connect();
    stuck
        .write_all(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    // Do not read. Another client is served meanwhile.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(h.get("/a.txt").text(), "alpha\n");
    assert!(
        wait_until(Duration::from_secs(4), || h.fds() == before),
        "the stuck connection was not closed"
    );
    // What the stuck client finally reads is cut short.
    let mut got = 0usize;
    let mut buf = vec![0; 1 << 20];
    stuck
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    while let Ok(n) = stuck.read(&mut buf) {
        if n == 0 {
            break;
        }
        got += n;
    }
    assert!(
        got < big.len(),
        "the whole body arrived; the deadline did nothing"
    );
}

#[test]
fn a_body_trickled_below_the_minimum_rate_gets_408_though_no_gap_is_long_and_a_steady_one_does_not()
{
    let (h, _site) = serve_site(&[
        "--body-timeout",
        "2",
        "--body-min-rate",
        "100",
        "--ws",
        "/ws=echo",
    ]);
    // R.U.D.Y.: a byte every 300 ms, far below 100 B/s.
    let mut s = h.connect();
    s.write_all(b"POST /ws HTTP/1.1\r\nHost: t\r\nContent-Length: 10000\r\n\r\n")
        .unwrap();
    let t = Instant::now();
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while t.elapsed() < Duration::from_secs(8) {
        if s.write_all(b"x").is_err() {
            break;
        }
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    let took = t.elapsed();
    let got = String::from_utf8_lossy(&got);
    assert!(got.starts_with("HTTP/1.1 408 "), "{got}");
    assert!(
        took >= Duration::from_millis(1800) && took < Duration::from_secs(5),
        "cut after {took:?}"
    );
    // 150 bytes every 500 ms (300 B/s) outlasts the first 2 s: each 100
    // bytes buy a second.
    let mut s = h.connect();
    s.write_all(
        b"POST /ws HTTP/1.1\r\nHost: t\r\nContent-Length: 1200\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    for _ in 0..8 {
        std::thread::sleep(Duration::from_millis(500));
        s.write_all(&[b'y'; 150]).unwrap();
    }
    let resp = read_to_close(&mut s);
    assert!(resp.starts_with("HTTP/1.1 426 "), "read whole: {resp}");
}

#[test]
fn a_dropped_body_is_answered_at_once_and_cut_when_it_stalls_past_the_linger() {
    let (h, _site) = serve_site(&[]);
    h.warm(&["/a.txt"]);
    let before = h.settled_fds();
    let mut s = h.connect();
    s.write_all(b"POST /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 10000\r\n\r\nabc")
        .unwrap();
    let t = Instant::now();
    let resp = read_to_close(&mut s);
    let took = t.elapsed();
    assert!(resp.starts_with("HTTP/1.1 405 "), "{resp}");
    assert!(!resp.contains("408"), "{resp}");
    // The linger (2 s) after the last byte, then its own linger.
    assert!(
        took >= Duration::from_millis(1800) && took < Duration::from_secs(6),
        "cut after {took:?}"
    );
    assert!(wait_until(Duration::from_secs(3), || h.fds() == before));
}
