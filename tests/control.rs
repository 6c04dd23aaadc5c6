//! The control socket: fd passing from a front proxy, every refusal case,
//! the limits on this path, no fd leaked; `handoff pass` and the Python
//! example proxy end to end.

mod common;
use common::*;

use std::io::{IoSlice, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use handoff::fdpass;
use handoff::wire::{self, Kind, Message};

struct Ctl {
    h: Handoff,
    path: PathBuf,
    _dir: tempfile::TempDir,
    _site: tempfile::TempDir,
}

fn server(extra: &[&str]) -> Ctl {
    let site = site();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("control.sock");
    let root = root_arg(site.path());
    let ctl = path.to_str().unwrap().to_string();
    let mut args = vec!["--root", &root, "--control", &ctl];
    args.extend_from_slice(extra);
    let h = Handoff::start(&args);
    Ctl {
        h,
        path,
        _dir: dir,
        _site: site,
    }
}

fn connect(path: &Path) -> OwnedFd {
    let c = fdpass::seqpacket_connect(path).unwrap();
    fdpass::set_recv_timeout(c.as_fd(), Duration::from_secs(10)).unwrap();
    c
}

/// Sends raw bytes with fds and returns the decoded answer.
fn ask_raw(conn: &OwnedFd, rec: &[u8], fds: &[BorrowedFd<'_>]) -> Message {
    fdpass::send_with_fds(conn.as_fd(), &[IoSlice::new(rec)], fds).unwrap();
    let mut buf = vec![0u8; wire::MAX_MESSAGE];
    let r = fdpass::recv_with_fds(conn.as_fd(), &mut buf)
        .unwrap()
        .expect("an answer");
    Message::decode(&buf[..r.len]).unwrap()
}

fn ask(conn: &OwnedFd, m: &Message, fds: &[BorrowedFd<'_>]) -> Message {
    ask_raw(conn, &m.encode(), fds)
}

/// A connected TCP pair: (the server's end to hand over, the client's end).
fn tcp_pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (server_end, _) = l.accept().unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    (server_end, client)
}

#[test]
fn creates_the_control_socket_mode_0600() {
    use std::os::unix::fs::PermissionsExt;
    let c = server(&[]);
    let mode = std::fs::metadata(&c.path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn serves_a_handed_over_connection_with_its_pre_read_bytes() {
    let c = server(&[]);
    let conn = connect(&c.path);
    let (ours, mut client) = tcp_pair();
    let mut m = Message::new(Kind::PassConnection, 11);
    m.peer = Some("203.0.113.9:4444".into());
    m.data = b"GET /a.txt HTTP/1.1\r\nHo".to_vec();
    let answer = ask(&conn, &m, &[ours.as_fd()]);
    assert_eq!((answer.kind(), answer.id), (Kind::Ack, 11), "{answer:?}");
    drop(ours); // after the ACK the server owns its own copy
    client
        .write_all(b"st: t\r\n\r\nGET /b.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let all = read_to_close(&mut client);
    let (a, b) = (all.find("alpha").unwrap(), all.find("bravo").unwrap());
    assert!(a < b);
    assert!(wait_until(Duration::from_secs(2), || logged(
        &c.h.log(),
        "203.0.113.9 ",
        "\"GET /a.txt"
    )));
}

/// A connection handed over with part of the HTTP/2 preface already read
/// (a front that sniffed it) is served as HTTP/2.
#[test]
fn serves_http2_on_a_handed_over_connection_whose_preface_came_in_part() {
    use common::h2raw::{H2, PREFACE, SETTINGS};
    let c = server(&[]);
    let conn = connect(&c.path);
    let (ours, client) = tcp_pair();
    let mut m = Message::new(Kind::PassConnection, 12);
    m.data = PREFACE[..7].to_vec();
    let answer = ask(&conn, &m, &[ours.as_fd()]);
    assert_eq!((answer.kind(), answer.id), (Kind::Ack, 12), "{answer:?}");
    drop(ours);
    let mut h2 = H2 { s: client };
    h2.s.write_all(&PREFACE[7..]).unwrap();
    h2.send(SETTINGS, 0, 0, &[]);
    h2.get(1, "/a.txt");
    assert_eq!(h2.response(1).1, b"alpha\n");
    assert!(wait_until(Duration::from_secs(2), || c
        .h
        .log()
        .contains("\"GET /a.txt HTTP/2.0\" 200")));
}

#[test]
fn accepts_from_a_handed_over_listener() {
    let c = server(&[]);
    let conn = connect(&c.path);
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let answer = ask(&conn, &Message::new(Kind::PassListener, 5), &[l.as_fd()]);
    assert_eq!(answer.kind(), Kind::Ack, "{answer:?}");
    drop(l);
    for _ in 0..3 {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /c.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .unwrap();
        assert!(read_to_close(&mut s).ends_with("charlie\n"));
    }
}

#[test]
fn refuses_every_malformed_handoff_closes_its_fds_and_goes_on() {
    let c = server(&[]);
    let conn = connect(&c.path);
    // Warm up (threads, buffers), then count.
    let (ours, _client) = tcp_pair();
    assert_eq!(
        ask(
            &conn,
            &Message::new(Kind::PassConnection, 1),
            &[ours.as_fd()]
        )
        .kind(),
        Kind::Ack
    );
    drop((ours, _client));
    std::thread::sleep(Duration::from_millis(200));
    c.h.warm(&["/a.txt"]);
    let before = c.h.settled_fds();

    let refuse = |rec: &[u8], fds: &[BorrowedFd<'_>], why: &str| {
        let a = ask_raw(&conn, rec, fds);
        assert_eq!(a.kind(), Kind::Refuse, "expected a refusal for {why}");
        let reason = a.reason.unwrap_or_default();
        assert!(reason.contains(why), "{reason:?} does not say {why:?}");
    };
    let pass = Message::new(Kind::PassConnection, 2).encode();
    let (s1, _c1) = tcp_pair();
    let (s2, _c2) = tcp_pair();
    refuse(&pass, &[s1.as_fd(), s2.as_fd()], "exactly one fd, got 2");
    refuse(&pass, &[], "exactly one fd, got 0");
    let many: Vec<TcpStream> = (0..20).map(|_| tcp_pair().0).collect();
    let many_fds: Vec<BorrowedFd<'_>> = many.iter().map(|s| s.as_fd()).collect();
    refuse(&pass, &many_fds, "truncated");
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    refuse(&pass, &[udp.as_fd()], "not a stream socket");
    let file = std::fs::File::open("/dev/null").unwrap();
    refuse(&pass, &[file.as_fd()], "not a socket");
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    refuse(&pass, &[l.as_fd()], "with a listening socket");
    let mut bad = pass.clone();
    bad[4] = 9;
    refuse(&bad, &[s1.as_fd()], "version 9");
    let mut bad = pass.clone();
    bad.extend_from_slice(b"junk");
    refuse(&bad, &[s1.as_fd()], "length");
    refuse(&pass[..8], &[s1.as_fd()], "shorter");
    let mut tls = Message::new(Kind::PassConnection, 3);
    tls.flags = wire::flags::TLS;
    refuse(&tls.encode(), &[s1.as_fd()], "TLS");
    let huge = vec![0u8; wire::MAX_MESSAGE + 10];
    refuse(&huge, &[s1.as_fd()], "larger than");

    // The server goes on: a good handoff still works on the same socket.
    let (ours, mut client) = tcp_pair();
    assert_eq!(
        ask(
            &conn,
            &Message::new(Kind::PassConnection, 4),
            &[ours.as_fd()]
        )
        .kind(),
        Kind::Ack
    );
    drop(ours);
    client
        .write_all(b"GET /a.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    assert!(read_to_close(&mut client).ends_with("alpha\n"));
    drop(client);
    assert!(
        wait_until(Duration::from_secs(3), || c.h.fds() == before),
        "server fds: {before} before, {} after",
        c.h.fds()
    );
}

#[test]
#[ignore = "full tier (scripts/test.sh): needs python3"]
fn refuses_a_peer_with_another_uid_and_says_why_even_after_its_request() {
    use std::os::unix::fs::PermissionsExt;
    let c = server(&[]);
    // Open the socket file to everyone so that only SO_PEERCRED stands in
    // the way (by default mode 0600 already keeps other users out).
    std::fs::set_permissions(&c.path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let script = r#"
import socket, struct, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.settimeout(10)
s.connect(sys.argv[1])
# A request sent at once, as a client does (refused unread; EPIPE if the
# server has closed already): the refusal must still be read, not a reset.
try:
    s.send(b"HOFF" + bytes(8))
except OSError:
    pass
r = s.recv(65536)
print(r[12:].decode("latin-1"))
"#;
    let out = Command::new("python3")
        .args(["-c", script, c.path.to_str().unwrap()])
        .uid(65534)
        .output()
        .expect("python3");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("uid 65534 is not allowed"),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

use std::os::unix::process::CommandExt;

#[test]
fn holds_max_concurrent_and_refuses_past_the_queue_on_this_path_too() {
    let c = server(&["--max-concurrent", "1", "--max-queued", "1"]);
    let conn = connect(&c.path);
    let mut kept = Vec::new();
    let mut answers = Vec::new();
    for id in 1..=3 {
        let (ours, client) = tcp_pair();
        answers.push(ask(
            &conn,
            &Message::new(Kind::PassConnection, id),
            &[ours.as_fd()],
        ));
        kept.push(client);
    }
    assert_eq!(answers[0].kind(), Kind::Ack);
    assert_eq!(answers[1].kind(), Kind::Ack, "queued");
    assert_eq!(answers[2].kind(), Kind::Refuse);
    assert!(
        answers[2].reason.as_deref().unwrap_or("").contains("queue"),
        "{:?}",
        answers[2]
    );
    // The queued one is served once the first closes.
    kept[1]
        .write_all(b"GET /b.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    kept[1]
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(
        kept[1].read(&mut [0u8; 64]).is_err(),
        "served past max_concurrent"
    );
    drop(kept.remove(0));
    kept[0]
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert!(read_to_close(&mut kept[0]).ends_with("bravo\n"));
}

#[test]
#[ignore = "full tier (scripts/test.sh): needs curl, python3"]
fn the_python_example_proxy_hands_connections_over() {
    let c = server(&[]);
    let mut proxy = Command::new("python3")
        .args([
            "examples/front_proxy.py",
            "--listen",
            "127.0.0.1:0",
            "--to",
            c.path.to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(proxy.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap()
        .to_string();
    for (path, want) in [("/a.txt", "alpha\n"), ("/c.txt", "charlie\n")] {
        let out = Command::new("curl")
            .args(["-sS", "-m", "10", &format!("http://{addr}{path}")])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), want);
    }
    let _ = proxy.kill();
    let _ = proxy.wait();
}

#[test]
fn pass_spreads_connections_round_robin_and_skips_a_dead_server() {
    let sites: Vec<tempfile::TempDir> = (0..2).map(|_| site()).collect();
    std::fs::write(sites[0].path().join("who.txt"), "one").unwrap();
    std::fs::write(sites[1].path().join("who.txt"), "two").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let paths: Vec<String> = (0..2)
        .map(|i| {
            dir.path()
                .join(format!("c{i}.sock"))
                .to_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let mut servers: Vec<Option<Handoff>> = (0..2)
        .map(|i| {
            Some(Handoff::start(&[
                "--root",
                &root_arg(sites[i].path()),
                "--control",
                &paths[i],
            ]))
        })
        .collect();
    let mut pass = Command::new(env!("CARGO_BIN_EXE_handoff"))
        .args([
            "pass",
            "--listen",
            "127.0.0.1:0",
            "--to",
            &paths[0],
            "--to",
            &paths[1],
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = announced_addr(&mut pass);
    let who = || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"GET /who.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .unwrap();
        let r = read_to_close(&mut s);
        r.rsplit("\r\n\r\n").next().unwrap_or("").to_string()
    };
    let first: Vec<String> = (0..4).map(|_| who()).collect();
    assert_eq!(first, ["one", "two", "one", "two"]);
    servers[0] = None; // killed
    let after: Vec<String> = (0..3).map(|_| who()).collect();
    assert_eq!(after, ["two", "two", "two"]);
    let _ = pass.kill();
    let _ = pass.wait();
    drop(servers);
}

#[test]
fn takes_a_proxy_flagged_connection_with_its_header_in_data_or_already_read_into_peer() {
    let c = server(&[]);
    let conn = connect(&c.path);
    // The header (and the request) still to read, in DATA.
    let (ours, mut client) = tcp_pair();
    let mut m = Message::new(Kind::PassConnection, 1);
    m.flags = wire::flags::PROXY;
    m.data = b"PROXY TCP4 203.0.113.7 127.0.0.1 5000 80\r\nGET /a.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".to_vec();
    assert_eq!(ask(&conn, &m, &[ours.as_fd()]).kind(), Kind::Ack);
    drop(ours);
    assert!(read_to_close(&mut client).ends_with("alpha\n"));
    // The front read it: the client is in PEER.
    let (ours, mut client) = tcp_pair();
    let mut m = Message::new(Kind::PassConnection, 2);
    m.flags = wire::flags::PROXY;
    m.peer = Some("198.51.100.9:6000".into());
    assert_eq!(ask(&conn, &m, &[ours.as_fd()]).kind(), Kind::Ack);
    drop(ours);
    client
        .write_all(b"GET /b.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    assert!(read_to_close(&mut client).ends_with("bravo\n"));
    // The access line is written at the end of the loop's turn, which may
    // come just after the client has its answer.
    wait_until(Duration::from_secs(2), || {
        c.h.log().contains("198.51.100.9 - - [")
    });
    let log = c.h.log();
    assert!(
        logged(&log, "203.0.113.7 ", "\"GET /a.txt HTTP/1.1\" 200"),
        "{log}"
    );
    assert!(
        logged(&log, "198.51.100.9 ", "\"GET /b.txt HTTP/1.1\" 200"),
        "{log}"
    );
}
