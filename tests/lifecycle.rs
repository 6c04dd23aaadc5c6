//! sd_notify and signals: READY, STATUS, WATCHDOG and STOPPING seen on a
//! fake NOTIFY_SOCKET; a graceful drain on SIGTERM, its hard deadline, and
//! the second signal.

mod common;
use common::*;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

#[test]
fn tells_a_notify_socket_ready_status_watchdog_reloading_and_stopping_in_order() {
    let site = site();
    let mut n = NotifySocket::new();
    let mut h = Handoff::start_env(
        &[n.env(), ("WATCHDOG_USEC", "300000")],
        &["--root", &root_arg(site.path())],
    );
    let pings = |m: &[String]| m.iter().filter(|x| x.contains("WATCHDOG=1")).count();
    assert!(
        n.until(Duration::from_secs(3), |m| pings(m) >= 4),
        "{:?}",
        n.got
    );
    // The listener goes to the fd store first (named by its role), then
    // READY with the first STATUS.
    let got = &n.got;
    assert_eq!(got[0], "FDSTORE=1\nFDNAME=http\n", "{got:?}");
    assert!(
        got[1].contains("READY=1") && got[1].contains("STATUS=0 connections"),
        "{got:?}"
    );
    let first_ping = n.position("WATCHDOG=1").unwrap();
    assert!(first_ping > 1, "{got:?}");

    // A live connection shows in STATUS.
    let mut c = h.connect();
    c.write_all(b"GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    read_response(&mut c).unwrap();
    assert!(
        n.wait_for("STATUS=1 connections", Duration::from_secs(3))
            .is_some(),
        "{:?}",
        n.got
    );

    // SIGHUP: RELOADING (with the monotonic time systemd wants beside it),
    // then READY again with the outcome.
    h.signal(Signal::SIGHUP);
    let reloaded = n
        .wait_for("no certificate files to reload", Duration::from_secs(3))
        .unwrap_or_else(|| panic!("{:?}", n.got));
    let reloading = n.position("RELOADING=1").unwrap();
    assert!(
        reloading < reloaded
            && n.got[reloading].contains("MONOTONIC_USEC=")
            && n.got[reloading].contains("STATUS=reloading: certificates")
            && n.got[reloaded].contains("READY=1"),
        "{:?}",
        n.got
    );

    drop(c);
    h.signal(Signal::SIGTERM);
    let stopping = n
        .wait_for("STOPPING=1", Duration::from_secs(3))
        .unwrap_or_else(|| panic!("{:?}", n.got));
    assert!(
        reloaded < stopping && stopping == n.got.len() - 1,
        "{:?}",
        n.got
    );
    assert!(
        h.wait_exit(Duration::from_secs(3))
            .expect("exits")
            .success()
    );
}

/// A request whose body is still coming, on a route that reads bodies
/// whole (the servers below have `--ws /ws=echo`; files answer at once).
fn in_flight(h: &Handoff) -> TcpStream {
    let mut s = h.connect();
    s.write_all(b"POST /ws HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nhello")
        .unwrap();
    s
}

#[test]
fn drains_on_sigterm_answering_requests_in_flight_and_refusing_new_ones() {
    let site = site();
    let mut h = Handoff::start(&[
        "--root",
        &root_arg(site.path()),
        "--shutdown-timeout",
        "10",
        "--ws",
        "/ws=echo",
    ]);
    let mut idle = h.connect();
    idle.write_all(b"GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    read_response(&mut idle).unwrap();
    let mut slow: Vec<TcpStream> = (0..3).map(|_| in_flight(&h)).collect();
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    h.signal(Signal::SIGTERM);

    assert!(
        closed_within(&mut idle, Duration::from_secs(1)),
        "an idle keep-alive connection was not closed at once"
    );
    assert!(
        wait_until(Duration::from_secs(1), || TcpStream::connect(h.addr)
            .is_err()),
        "new connections are still accepted"
    );
    std::thread::sleep(Duration::from_millis(300));
    for s in &mut slow {
        s.write_all(b"world").unwrap();
    }
    for s in &mut slow {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let r = read_response(s).unwrap();
        assert_eq!(r.status, 426, "a plain request on a WebSocket route");
        assert_eq!(r.header("connection"), Some("close"));
    }
    let status = h
        .wait_exit(Duration::from_secs(5))
        .expect("did not exit after draining");
    assert!(status.success());
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}, the deadline was 10 s",
        t.elapsed()
    );
}

#[test]
fn closes_what_is_left_at_the_shutdown_deadline() {
    let site = site();
    let mut h = Handoff::start(&[
        "--root",
        &root_arg(site.path()),
        "--shutdown-timeout",
        "1",
        "--ws",
        "/ws=echo",
    ]);
    let _stuck = in_flight(&h);
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    h.signal(Signal::SIGTERM);
    assert!(
        h.wait_exit(Duration::from_secs(4))
            .expect("did not exit at the deadline")
            .success()
    );
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "exited before the deadline: {:?}",
        t.elapsed()
    );
}

#[test]
fn a_second_signal_exits_at_once() {
    let site = site();
    let mut h = Handoff::start(&[
        "--root",
        &root_arg(site.path()),
        "--shutdown-timeout",
        "30",
        "--ws",
        "/ws=echo",
    ]);
    let _stuck = in_flight(&h);
    std::thread::sleep(Duration::from_millis(200));
    h.signal(Signal::SIGTERM);
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    h.signal(Signal::SIGINT);
    assert!(
        h.wait_exit(Duration::from_secs(2))
            .expect("did not exit on the second signal")
            .success()
    );
    assert!(t.elapsed() < Duration::from_secs(1));
}

/// Counts complete responses (status lines) in what a client got.
fn answers(got: &str) -> usize {
    got.matches("HTTP/1.1 200 OK\r\n").count()
}

#[test]
fn on_sigterm_every_request_that_reached_the_server_is_answered() {
    let site = site();
    let mut h = Handoff::start(&["--root", &root_arg(site.path()), "--shutdown-timeout", "10"]);
    const GET: &[u8] = b"GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n";
    // Eight busy keep-alive connections, as under wrk.
    let mut busy: Vec<TcpStream> = (0..8)
        .map(|_| {
            let mut s = h.connect();
            s.write_all(GET).unwrap();
            read_response(&mut s).unwrap();
            s
        })
        .collect();
    // Frozen, the server cannot look at anything that arrives now: requests
    // on the busy connections (one a pipelined batch), and new connections
    // that wait in the backlog with their requests, more than one turn of
    // the loop accepts.
    let pid = nix::unistd::Pid::from_raw(h.pid() as i32);
    nix::sys::signal::kill(pid, Signal::SIGSTOP).unwrap();
    for (i, s) in busy.iter_mut().enumerate() {
        s.write_all(&GET.repeat(if i == 0 { 4 } else { 1 }))
            .unwrap();
    }
    let mut waiting: Vec<TcpStream> = (0..100)
        .map(|_| {
            let mut s = TcpStream::connect(h.addr).unwrap();
            s.write_all(GET).unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    h.signal(Signal::SIGTERM);
    nix::sys::signal::kill(pid, Signal::SIGCONT).unwrap();
    let mut got = 0;
    for s in busy.iter_mut().chain(waiting.iter_mut()) {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        got += answers(&read_to_close(s));
    }
    assert_eq!(got, 4 + 7 + 100);
    let status = h
        .wait_exit(Duration::from_secs(5))
        .expect("did not exit after draining");
    assert!(status.success());
}
