//! WebSocket upgrades handed off to worker processes: echo (including a
//! first frame sent with the upgrade), bad upgrades, a worker killed with
//! live connections, exec and broadcast.

mod common;
use common::*;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use tungstenite::{Message, WebSocket};

type Ws = WebSocket<TcpStream>;

fn ws_server(extra: &[&str]) -> (Handoff, tempfile::TempDir) {
    let site = site();
    let root = root_arg(site.path());
    let mut args = vec!["--root", &root, "--ws", "/echo=echo"];
    args.extend_from_slice(extra);
    (Handoff::start(&args), site)
}

fn connect_ws(h: &Handoff, path: &str) -> Ws {
    let s = h.connect();
    let (ws, resp) = tungstenite::client(format!("ws://{}{path}", h.addr), s).expect("handshake");
    assert_eq!(resp.status(), 101);
    ws
}

fn next_text(ws: &mut Ws) -> String {
    loop {
        match ws.read().expect("a message") {
            Message::Text(t) => return t.to_string(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn echoes_messages_through_a_worker() {
    let (h, _site) = ws_server(&[]);
    let mut ws = connect_ws(&h, "/echo");
    for text in ["hello", "", "ünïcödé"] {
        ws.send(Message::text(text)).unwrap();
        assert_eq!(next_text(&mut ws), text);
    }
    ws.send(Message::binary(vec![0u8, 1, 2, 255])).unwrap();
    assert_eq!(ws.read().unwrap(), Message::binary(vec![0u8, 1, 2, 255]));
    ws.close(None).unwrap();
    // The HTTP side still serves files.
    assert_eq!(h.get("/a.txt").text(), "alpha\n");
}

/// A masked client text frame.
fn client_frame(text: &[u8]) -> Vec<u8> {
    let mask = [1u8, 2, 3, 4];
    let mut f = vec![0x81, 0x80 | text.len() as u8];
    f.extend_from_slice(&mask);
    f.extend(text.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

#[test]
fn echoes_a_first_frame_sent_in_the_same_write_as_the_upgrade() {
    let (h, _site) = ws_server(&[]);
    let mut s = h.connect();
    let mut req = b"GET /echo HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".to_vec();
    req.extend(client_frame(b"early bird"));
    s.write_all(&req).unwrap();
    let mut got = Vec::new();
    let end = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 1024];
    while !got.windows(10).any(|w| w == b"early bird") && Instant::now() < end {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{text}"
    );
    assert!(
        text.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
        "{text}"
    );
    // The echo: an unmasked server text frame with the same payload.
    let head_end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(&got[head_end..head_end + 2], &[0x81, 10]);
    assert_eq!(&got[head_end + 2..head_end + 12], b"early bird");
}

#[test]
fn answers_bad_upgrades_with_400_or_426() {
    let (h, _site) = ws_server(&[]);
    let base = "GET /echo HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n";
    let key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    let cases = [
        (
            format!("{base}{key}Sec-WebSocket-Version: 8\r\n\r\n"),
            "426",
        ),
        (
            format!("{base}Sec-WebSocket-Key: short==\r\nSec-WebSocket-Version: 13\r\n\r\n"),
            "400",
        ),
        (format!("{base}Sec-WebSocket-Version: 13\r\n\r\n"), "400"),
        (
            format!(
                "POST /echo HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{key}Sec-WebSocket-Version: 13\r\nContent-Length: 0\r\n\r\n"
            ),
            "400",
        ),
        (
            format!(
                "GET /echo HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: keep-alive\r\n{key}Sec-WebSocket-Version: 13\r\n\r\n"
            ),
            "400",
        ),
        ("GET /echo HTTP/1.1\r\nHost: t\r\n\r\n".to_string(), "426"),
    ];
    for (req, want) in cases {
        let mut s = h.connect();
        s.write_all(req.as_bytes()).unwrap();
        let r = read_response(&mut s).unwrap();
        assert_eq!(r.status.to_string(), want, "{req}");
        if want == "426" {
            assert_eq!(r.header("sec-websocket-version"), Some("13"));
        }
    }
}

fn worker_pids(h: &Handoff) -> Vec<i32> {
    let out = std::process::Command::new("pgrep")
        .args(["-P", &h.pid().to_string()])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

#[test]
fn keeps_serving_when_a_worker_is_killed_and_starts_another_within_a_second() {
    let (h, _site) = ws_server(&["--ws-workers", "2"]);
    let mut live: Vec<Ws> = (0..4).map(|_| connect_ws(&h, "/echo")).collect();
    for ws in &mut live {
        ws.send(Message::text("before")).unwrap();
        assert_eq!(next_text(ws), "before");
    }
    let before = worker_pids(&h);
    assert_eq!(before.len(), 2, "{before:?}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(before[0]),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let killed_at = Instant::now();
    // HTTP goes on throughout.
    let mut replaced = false;
    while killed_at.elapsed() < Duration::from_secs(1) {
        assert_eq!(h.get("/a.txt").text(), "alpha\n");
        let now = worker_pids(&h);
        if now.len() == 2 && !now.contains(&before[0]) {
            replaced = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        replaced,
        "no new worker within a second: {:?}",
        worker_pids(&h)
    );
    // New WebSocket connections succeed.
    for _ in 0..4 {
        let mut ws = connect_ws(&h, "/echo");
        ws.send(Message::text("after")).unwrap();
        assert_eq!(next_text(&mut ws), "after");
    }
}
