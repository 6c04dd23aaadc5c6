//! `--threads 2`: two event loops in one process. Every intake path gives
//! both loops the listener (each logs "listener added" for it), connected
//! sockets and WebSocket hand-offs work from either loop, `max_concurrent`
//! holds for the process, and a drain ends both loops.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Command, Stdio};
use std::time::Duration;

use handoff::fdpass;
use handoff::wire::{Kind, Message};

/// How many loops hold a listener on `addr`, by the log.
fn loops_holding(log: &str, addr: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("listener added") && l.contains(addr))
        .count()
}

fn thread_names(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|c| c.trim().to_string())
        .collect()
}

/// `n` connections at once, each asking for a file; all must be answered.
fn burst(addr: std::net::SocketAddr, n: usize) {
    let mut conns: Vec<TcpStream> = (0..n)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all(b"GET /a.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                .unwrap();
            s
        })
        .collect();
    for s in &mut conns {
        assert!(read_to_close(s).ends_with("alpha\n"));
    }
}

#[test]
fn two_loops_share_our_own_listener_and_answer_a_burst() {
    let site = site();
    let h = Handoff::start(&["--root", &root_arg(site.path()), "--threads", "2"]);
    burst(h.addr, 64);
    let addr = h.addr.to_string();
    assert!(
        wait_until(Duration::from_secs(2), || loops_holding(&h.log(), &addr)
            == 2),
        "{}",
        h.log()
    );
    assert!(thread_names(h.pid()).contains(&"loop-1".to_string()));
}

#[test]
fn one_thread_means_one_loop() {
    let site = site();
    let h = Handoff::start(&["--root", &root_arg(site.path()), "--threads", "1"]);
    burst(h.addr, 8);
    assert_eq!(loops_holding(&h.log(), &h.addr.to_string()), 1);
    assert!(!thread_names(h.pid()).contains(&"loop-1".to_string()));
}

#[test]
#[ignore = "full tier (scripts/test.sh): needs systemd-socket-activate"]
fn both_loops_take_a_systemd_socket() {
    let site = site();
    let dir = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let log = dir.path().join("app.log");
    let mut child = Command::new("systemd-socket-activate")
        .args(["-l", &listen, "-E", "RUST_LOG=debug"])
        .arg(env!("CARGO_BIN_EXE_handoff"))
        .args(["serve", "--threads", "2", "--root", &root_arg(site.path())])
        .arg("--log-file")
        .arg(&log)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("systemd-socket-activate must be installed (scripts/test.sh installs systemd)");
    assert!(wait_until(Duration::from_secs(5), || TcpStream::connect(
        &listen
    )
    .is_ok()));
    burst(listen.parse().unwrap(), 16);
    let text = || std::fs::read_to_string(&log).unwrap_or_default();
    let ok = wait_until(Duration::from_secs(2), || {
        loops_holding(&text(), &listen) == 2
    });
    let _ = child.kill();
    let _ = child.wait();
    assert!(ok, "{}", text());
}

#[test]
fn both_loops_accept_from_an_inetd_wait_listener() {
    let site = site();
    let dir = tempfile::tempdir().unwrap();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let log = dir.path().join("app.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_handoff"))
        .args([
            "serve",
            "--inetd",
            "--threads",
            "2",
            "--root",
            &root_arg(site.path()),
        ])
        .arg("--log-file")
        .arg(&log)
        .env("RUST_LOG", "debug")
        .stdin(Stdio::from(OwnedFd::from(l)))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    burst(addr, 16);
    let text = || std::fs::read_to_string(&log).unwrap_or_default();
    let ok = wait_until(Duration::from_secs(2), || {
        loops_holding(&text(), &addr.to_string()) == 2
    });
    let _ = child.kill();
    let _ = child.wait();
    assert!(ok, "{}", text());
}

#[test]
fn the_control_socket_gives_a_listener_to_both_loops_and_connections_to_either() {
    let site = site();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("control.sock");
    let h = Handoff::start(&[
        "--root",
        &root_arg(site.path()),
        "--control",
        path.to_str().unwrap(),
        "--threads",
        "2",
    ]);
    let c = fdpass::seqpacket_connect(&path).unwrap();
    fdpass::set_recv_timeout(c.as_fd(), Duration::from_secs(10)).unwrap();
    let ask = |m: &Message, fd: std::os::fd::BorrowedFd<'_>| {
        fdpass::send_with_fds(c.as_fd(), &[std::io::IoSlice::new(&m.encode())], &[fd]).unwrap();
        let mut buf = vec![0u8; 4096];
        let r = fdpass::recv_with_fds(c.as_fd(), &mut buf).unwrap().unwrap();
        Message::decode(&buf[..r.len]).unwrap()
    };
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let laddr = l.local_addr().unwrap();
    assert_eq!(
        ask(&Message::new(Kind::PassListener, 1), l.as_fd()).kind(),
        Kind::Ack
    );
    drop(l);
    burst(laddr, 16);
    assert!(
        wait_until(Duration::from_secs(2), || loops_holding(
            &h.log(),
            &laddr.to_string()
        ) == 2),
        "{}",
        h.log()
    );
    // Connections, one after another, each answered.
    for id in 2..8 {
        let tl = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(tl.local_addr().unwrap()).unwrap();
        let (server_end, _) = tl.accept().unwrap();
        let m = Message::new(Kind::PassConnection, id);
        assert_eq!(ask(&m, server_end.as_fd()).kind(), Kind::Ack);
        drop(server_end);
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        client
            .write_all(b"GET /b.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .unwrap();
        assert!(read_to_close(&mut client).ends_with("bravo\n"));
    }
}

#[test]
fn websocket_hand_offs_work_from_both_loops() {
    let site = site();
    let h = Handoff::start(&[
        "--root",
        &root_arg(site.path()),
        "--ws",
        "/echo=echo",
        "--threads",
        "2",
    ]);
    let mut clients: Vec<_> = (0..12)
        .map(|_| {
            let s = TcpStream::connect(h.addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            tungstenite::client(format!("ws://{}/echo", h.addr), s)
                .expect("handshake")
                .0
        })
        .collect();
    for (i, ws) in clients.iter_mut().enumerate() {
        ws.send(tungstenite::Message::text(format!("hello {i}")))
            .unwrap();
        assert_eq!(
            ws.read().unwrap().into_text().unwrap().as_str(),
            format!("hello {i}")
        );
    }
}

#[test]
fn max_concurrent_holds_for_the_whole_process() {
    let site = site();
    let h = Handoff::start(&[
        "--root",
        &root_arg(site.path()),
        "--threads",
        "2",
        "--max-concurrent",
        "2",
    ]);
    // Four idle connections: two are served (a request on each is answered),
    // two wait in the backlog, whichever loop accepted.
    let mut conns: Vec<TcpStream> = (0..4).map(|_| h.connect()).collect();
    std::thread::sleep(Duration::from_millis(300));
    for s in &mut conns {
        s.write_all(b"GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
    }
    let (mut served, mut waiting) = (Vec::new(), Vec::new());
    for mut s in conns {
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut buf = [0u8; 512];
        if matches!(s.read(&mut buf), Ok(n) if n > 0) {
            served.push(s);
        } else {
            waiting.push(s);
        }
    }
    assert_eq!(served.len(), 2, "served past max_concurrent across loops");
    // Closing the served ones lets the waiting ones in, whichever loop
    // freed the slot.
    drop(served);
    for s in &mut waiting {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200 "));
    }
}

#[test]
fn a_drain_answers_in_flight_requests_on_both_loops_and_exits() {
    let site = site();
    std::fs::write(site.path().join("big.bin"), vec![b'x'; 32 << 20]).unwrap();
    let mut h = Handoff::start(&["--root", &root_arg(site.path()), "--threads", "2"]);
    // Several slow downloads, spread by the kernel over the loops.
    let mut conns: Vec<TcpStream> = (0..6)
        .map(|_| {
            let mut s = h.connect();
            s.write_all(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
                .unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    h.signal(nix::sys::signal::Signal::SIGTERM);
    for s in &mut conns {
        let mut got = 0usize;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) => panic!("{e}"),
            }
        }
        assert!(got > 32 << 20, "a download was cut: {got} bytes");
    }
    let status = h.wait_exit(Duration::from_secs(10)).expect("exited");
    assert!(status.success());
}
