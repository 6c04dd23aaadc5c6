//! The PROXY protocol on a listener (`--listen ADDR,proxy=v1|v2|any`): the
//! client address it carries becomes the request's peer; a missing, bad or
//! late header closes the connection with a log line. Directly, with
//! `curl --haproxy-protocol`, and behind a real HAProxy (`send-proxy`,
//! `send-proxy-v2`, health checks with `check-send-proxy`), to a TCP and a
//! Unix socket listener, HTTP and a WebSocket upgrade to an `exec:` command
//! that prints its `REMOTE_ADDR`.

mod common;
use common::*;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

fn ask(addr: SocketAddr, parts: &[&[u8]]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    for p in parts {
        s.write_all(p).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    read_to_close(&mut s)
}

const GET: &[u8] = b"GET /a.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";

#[test]
fn a_proxy_listener_takes_the_client_address_from_v1_and_v2_headers_and_closes_without_one() {
    let site = site();
    let h = Handoff::start(&[
        "--root",
        &root_arg(site.path()),
        "--listen",
        "127.0.0.1:0,proxy=any",
        "--setup-timeout",
        "1",
    ]);
    let (plain, proxied) = (h.nth_addr(0), h.nth_addr(1));
    let v1 = b"PROXY TCP4 203.0.113.7 127.0.0.1 51258 8080\r\n";
    let got = ask(proxied, &[v1, GET]);
    assert!(
        got.starts_with("HTTP/1.1 200 ") && got.ends_with("alpha\n"),
        "{got}"
    );
    // v2, the header and the request in pieces.
    let v2 = v2_header([198, 51, 100, 9], 40000);
    let got = ask(proxied, &[&v2[..7], &v2[7..], &GET[..5], &GET[5..]]);
    assert!(got.ends_with("alpha\n"), "{got}");
    // Header and request in one write.
    let got = ask(proxied, &[&[v1.as_slice(), GET].concat()]);
    assert!(got.ends_with("alpha\n"), "{got}");
    // LOCAL (a health check's): the socket's own address stands.
    let local = b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00";
    let got = ask(proxied, &[&[local.as_slice(), GET].concat()]);
    assert!(got.ends_with("alpha\n"), "{got}");
    // No header: closed, with a warning; a PROXY line on a plain listener
    // is a bad request.
    let got = ask(proxied, &[GET]);
    assert_eq!(got, "");
    let got = ask(plain, &[v1, GET]);
    assert!(got.starts_with("HTTP/1.1 400 "), "{got}");
    // A v1 line with a stray CR before a multi-byte character (it once
    // panicked inside ppp): that connection closes, the server serves on.
    let got = ask(
        proxied,
        &["PROXY TCP4 1.2.3.4\r\u{c9}5.6.7.8 1 2\r\n".as_bytes(), GET],
    );
    assert_eq!(got, "");
    let got = ask(proxied, &[v1, GET]);
    assert!(got.ends_with("alpha\n"), "{got}");
    // A header that never ends is cut at the setup deadline.
    let mut s = TcpStream::connect(proxied).unwrap();
    s.write_all(b"PROXY TCP4 203.0.113.7").unwrap();
    assert!(closed_within(&mut s, Duration::from_secs(3)));
    let log = h.log();
    assert!(
        logged(&log, "203.0.113.7 ", "\"GET /a.txt HTTP/1.1\" 200"),
        "{log}"
    );
    assert!(
        logged(&log, "198.51.100.9 ", "\"GET /a.txt HTTP/1.1\" 200"),
        "{log}"
    );
    assert!(
        log.contains("PROXY protocol: the connection does not start with a PROXY header"),
        "{log}"
    );
    // No fd left behind by the closed ones.
    assert!(wait_until(Duration::from_secs(3), || h.fds() <= 16));
}

#[test]
#[ignore = "full tier (scripts/test.sh): needs curl"]
fn curl_haproxy_protocol_reaches_a_proxy_listener() {
    let site = site();
    let h = Handoff::start(&[
        "--root",
        &root_arg(site.path()),
        "--listen",
        "127.0.0.1:0,proxy=v1",
    ]);
    let out = Command::new("curl")
        .args(["-sS", "--haproxy-protocol"])
        .arg(format!("http://{}/a.txt", h.nth_addr(1)))
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "alpha\n", "{out:?}");
}

/// A connection from 127.0.0.2, so that the client differs from haproxy.
fn connect_from_127_0_0_2(port: u16) -> TcpStream {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrIn, bind, connect, socket};
    use std::os::fd::AsRawFd;
    let sock = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::empty(),
        None,
    )
    .unwrap();
    bind(sock.as_raw_fd(), &SockaddrIn::new(127, 0, 0, 2, 0)).unwrap();
    connect(sock.as_raw_fd(), &SockaddrIn::new(127, 0, 0, 1, port)).unwrap();
    let s = TcpStream::from(sock);
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

#[test]
#[ignore = "full tier (scripts/test.sh): needs haproxy"]
fn behind_haproxy_send_proxy_v1_and_v2_to_tcp_and_unix_listeners_show_the_client_address() {
    let site = site();
    let dir = tempfile::tempdir().unwrap();
    let unix = dir.path().join("proxied.sock");
    let h = Handoff::start(&[
        "--root",
        &root_arg(site.path()),
        "--listen",
        "127.0.0.1:0,proxy=v2",
        "--listen",
        &format!("{},proxy=v1", unix.display()),
        "--ws",
        "/env=exec:sh -c 'echo REMOTE_ADDR=$REMOTE_ADDR'",
    ]);
    let tcp = h.nth_addr(1);
    let (front_v2, front_v1) = (free_port(), free_port());
    let ha = haproxy(&format!(
        "global
    log stderr format raw local0
defaults
    mode tcp
    timeout connect 2s
    timeout client 10s
    timeout server 10s
frontend v2
    bind 127.0.0.1:{front_v2}
    default_backend to_tcp
frontend v1
    bind 127.0.0.1:{front_v1}
    default_backend to_unix
backend to_tcp
    server h {tcp} send-proxy-v2 check check-send-proxy inter 200ms
backend to_unix
    server h unix@{} send-proxy check check-send-proxy inter 200ms
",
        unix.display()
    ));
    // haproxy's health checks reach the listeners with their PROXY header
    // (and close without a request: no error).
    assert!(wait_until(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", front_v2)).is_ok()
            && std::net::TcpStream::connect(("127.0.0.1", front_v1)).is_ok()
    }));
    std::thread::sleep(Duration::from_millis(600));
    for port in [front_v2, front_v1] {
        let mut s = connect_from_127_0_0_2(port);
        s.write_all(GET).unwrap();
        let got = read_to_close(&mut s);
        assert!(got.ends_with("alpha\n"), "port {port}: {got}");
    }
    // A WebSocket upgrade through haproxy: the command sees the client.
    let ws_stream = connect_from_127_0_0_2(front_v2);
    let (mut ws, _) =
        tungstenite::client(format!("ws://127.0.0.1:{front_v2}/env"), ws_stream).unwrap();
    let said = loop {
        match ws.read().unwrap() {
            tungstenite::Message::Text(t) => break t.to_string(),
            _ => continue,
        }
    };
    assert_eq!(said, "REMOTE_ADDR=127.0.0.2");
    // Access lines leave at the end of the loop's turn, which on a loaded
    // machine may come well after the client had its answer.
    let mut log = String::new();
    let from_client = |log: &str| {
        log.lines()
            .filter(|l| l.starts_with("127.0.0.2 ") && l.contains("\"GET /a.txt HTTP/1.1\" 200"))
            .count()
    };
    wait_until(Duration::from_secs(3), || {
        log = h.log();
        from_client(&log) == 2 && logged(&log, "127.0.0.2 ", "\"GET /env HTTP/1.1\" 101")
    });
    assert_eq!(from_client(&log), 2, "{log}");
    assert!(
        logged(&log, "127.0.0.2 ", "\"GET /env HTTP/1.1\" 101"),
        "{log}"
    );
    assert!(
        !log.contains("PROXY protocol:"),
        "a check or request was refused\n{log}"
    );
    let said = ha.said();
    assert!(
        !said.contains("DOWN"),
        "haproxy marked handoff down:\n{said}"
    );
}
