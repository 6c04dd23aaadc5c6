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
    let mut args = vec!["--ws", "/echo=echo"];
    args.extend_from_slice(extra);
    serve_site(&args)
}

fn connect_ws(h: &Handoff, path: &str) -> Ws {
    let s = h.connect();
    let (ws, resp) = tungstenite::client(format!("ws://{}{path}", h.addr), s).expect("handshake");
    assert_eq!(resp.status(), 101);
    ws
}

fn next_text<S: Read + Write>(ws: &mut WebSocket<S>) -> String {
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
    children_of(h.pid() as i32)
}

#[test]
#[ignore = "full tier (scripts/test.sh): needs pgrep"]
fn workers_are_named_as_the_binary_so_pgrep_finds_them() {
    let (h, _site) = ws_server(&["--ws-workers", "2"]);
    let mut workers = Vec::new();
    assert!(wait_until(Duration::from_secs(5), || {
        workers = worker_pids(&h);
        workers.len() == 2
    }));
    for pid in &workers {
        // Between fork and exec a child's cmdline reads empty (a loaded
        // machine shows it): wait for the exec, then check what it is.
        let mut argv0 = String::new();
        wait_until(Duration::from_secs(5), || {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            argv0 = String::from_utf8_lossy(cmdline.split(|&b| b == 0).next().unwrap_or(&[]))
                .into_owned();
            !argv0.is_empty()
        });
        assert_eq!(argv0, env!("CARGO_BIN_EXE_handoff"), "argv[0] of {pid}");
        // Named as it starts, a moment after exec.
        let mut comm = String::new();
        assert!(
            wait_until(Duration::from_secs(5), || {
                comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                comm.trim() == "handoff"
            }),
            "comm of {pid}: {comm}"
        );
    }
    let found = std::process::Command::new("pgrep")
        .args(["-x", "-P", &h.pid().to_string(), "handoff"])
        .output()
        .unwrap();
    let mut found: Vec<i32> = String::from_utf8_lossy(&found.stdout)
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    found.sort();
    workers.sort();
    assert_eq!(found, workers);
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

fn exec_server(route: &str) -> (Handoff, tempfile::TempDir) {
    serve_site(&["--ws", route, "--ws-workers", "1"])
}

fn pid_alive(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

/// Pids of the worker's children (the exec commands).
fn exec_pids(h: &Handoff) -> Vec<i32> {
    worker_pids(h).into_iter().flat_map(children_of).collect()
}

#[test]
fn exec_runs_cat_with_messages_larger_than_a_pipe_buffer_both_ways() {
    let (h, _site) = exec_server("/cat=exec:cat");
    let mut ws = connect_ws(&h, "/cat");
    ws.send(Message::text("hello")).unwrap();
    assert_eq!(next_text(&mut ws), "hello");
    // 1 MiB lines: far past the 64 KiB a pipe holds, in both directions,
    // several in flight at once.
    let big: Vec<String> = (0..3)
        .map(|i| format!("{i}{}", "x".repeat(1 << 20)))
        .collect();
    for b in &big {
        ws.send(Message::text(b.clone())).unwrap();
    }
    for b in &big {
        assert_eq!(&next_text(&mut ws), b);
    }
    let pids = exec_pids(&h);
    assert_eq!(pids.len(), 1, "one process per connection: {pids:?}");
    ws.close(None).unwrap();
    let _ = ws.read();
    assert!(
        wait_until(Duration::from_secs(5), || !pid_alive(pids[0])),
        "cat is still running after the client closed"
    );
}

#[test]
fn exec_gives_the_command_a_cgi_environment_and_sends_what_it_prints_on_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("talk.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\necho \"script=$SCRIPT_NAME path=[$PATH_INFO] query=$QUERY_STRING addr=$REMOTE_ADDR agent=$HTTP_X_TEST\"\nfor i in 1 2 3; do echo \"tick $i\"; done\nwhile read line; do echo \"got $line\"; done\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let (h, _site) = exec_server(&format!("/talk=exec:{}", script.display()));
    let s = h.connect();
    let req = upgrade_request(&h, "/talk?x=1", "t", &[("X-Test", "probe")]);
    let (mut ws, _) = tungstenite::client(req, s).unwrap();
    assert_eq!(
        next_text(&mut ws),
        "script=/talk path=[] query=x=1 addr=127.0.0.1 agent=probe"
    );
    for i in 1..=3 {
        assert_eq!(next_text(&mut ws), format!("tick {i}"));
    }
    ws.send(Message::text("ping")).unwrap();
    assert_eq!(next_text(&mut ws), "got ping");
    let pids = exec_pids(&h);
    drop(ws); // an abrupt close, not a close handshake
    assert!(
        wait_until(Duration::from_secs(5), || pids
            .iter()
            .all(|p| !pid_alive(*p))),
        "{pids:?} outlived the connection"
    );
}

/// Every line an `exec:env` command prints, until it ends.
fn exec_env(h: &Handoff, path: &str, extra_headers: &[(&str, &str)]) -> Vec<String> {
    let s = h.connect();
    let host = format!("example.test:{}", h.addr.port());
    let req = upgrade_request(h, path, &host, extra_headers);
    let (mut ws, _) = tungstenite::client(req, s).unwrap();
    let mut lines = Vec::new();
    loop {
        match ws.read() {
            Ok(Message::Text(t)) => lines.push(t.to_string()),
            Ok(Message::Close(_)) | Err(_) => return lines,
            Ok(_) => {}
        }
    }
}

#[test]
fn exec_commands_get_none_of_the_servers_environment_but_what_passenv_names() {
    let site = site();
    let root = root_arg(site.path());
    let h = Handoff::start_env(
        &[
            ("AWS_SECRET_ACCESS_KEY", "do-not-leak"),
            ("HANDOFF_TEST_TOKEN", "do-not-leak-either"),
            ("PASSED_ON", "yes"),
        ],
        &[
            "--root",
            &root,
            "--ws",
            "/env=exec:env",
            "--ws-workers",
            "1",
            "--ws-passenv",
            "PASSED_ON",
            "--ws-passenv",
            "NOT_SET_ANYWHERE",
        ],
    );
    let lines = exec_env(
        &h,
        "/env?a=b",
        &[("Proxy", "http://evil.test:3128"), ("X_Spoof", "1")],
    );
    let env: std::collections::HashMap<&str, &str> =
        lines.iter().filter_map(|l| l.split_once('=')).collect();
    assert!(env.len() > 5, "{lines:?}");
    for secret in [
        "AWS_SECRET_ACCESS_KEY",
        "HANDOFF_TEST_TOKEN",
        "NOTIFY_SOCKET",
        "HOME",
    ] {
        assert!(!env.contains_key(secret), "{secret} leaked: {lines:?}");
    }
    assert!(
        !lines.iter().any(|l| l.contains("do-not-leak")),
        "{lines:?}"
    );
    let port = h.addr.port().to_string();
    for (k, v) in [
        ("PASSED_ON", "yes"),
        ("PATH", "/usr/local/bin:/usr/bin:/bin"),
        ("GATEWAY_INTERFACE", "CGI/1.1"),
        ("REQUEST_METHOD", "GET"),
        ("SCRIPT_NAME", "/env"),
        ("PATH_INFO", ""),
        ("QUERY_STRING", "a=b"),
        ("SERVER_NAME", "example.test"),
        ("SERVER_PORT", port.as_str()),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("REMOTE_ADDR", "127.0.0.1"),
    ] {
        assert_eq!(env.get(k).copied(), Some(v), "{k}: {lines:?}");
    }
    // httpoxy: a Proxy header never becomes HTTP_PROXY; an underscore
    // name could pose as another header's variable.
    assert!(!env.contains_key("HTTP_PROXY"), "{lines:?}");
    assert!(!env.contains_key("HTTP_X_SPOOF"), "{lines:?}");
    assert!(!env.contains_key("HTTPS"), "{lines:?}");
    assert!(!env.contains_key("NOT_SET_ANYWHERE"), "{lines:?}");
}

#[test]
fn ws_passenv_refuses_what_is_no_variable_name() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_handoff"))
        .args(["serve", "--ws-passenv", "A=B"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not a variable name"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn exec_ends_a_command_that_ignores_its_closed_stdin() {
    let (h, _site) = exec_server("/stubborn=exec:trap '' INT; sleep 60");
    let mut ws = connect_ws(&h, "/stubborn");
    assert!(wait_until(Duration::from_secs(3), || exec_pids(&h).len() == 1));
    let pids = exec_pids(&h);
    ws.close(None).unwrap();
    let _ = ws.read();
    // INT is ignored; TERM (1.5 s after the close) ends it.
    assert!(
        wait_until(Duration::from_secs(5), || !pid_alive(pids[0])),
        "the command was not ended"
    );
}

#[test]
fn broadcast_delivers_every_message_once_to_three_clients_on_two_workers() {
    let (h, _site) = serve_site(&["--ws", "/chat=broadcast", "--ws-workers", "2"]);
    let mut clients: Vec<Ws> = (0..3).map(|_| connect_ws(&h, "/chat")).collect();
    // Least-loaded placement spreads three clients over both workers.
    let logs = || h.log();
    assert!(wait_until(Duration::from_secs(2), || logs()
        .matches("INFO handoff::ws::worker::ctl: websocket /")
        .count()
        == 3));
    for c in &mut clients {
        c.get_mut()
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
    }
    let mut sent = Vec::new();
    for (i, c) in clients.iter_mut().enumerate() {
        for j in 0..2 {
            let m = format!("from {i} #{j}");
            c.send(Message::text(m.clone())).unwrap();
            sent.push(m);
        }
    }
    for c in &mut clients {
        let mut got: Vec<String> = (0..sent.len()).map(|_| next_text(c)).collect();
        got.sort();
        let mut want = sent.clone();
        want.sort();
        assert_eq!(got, want);
        // And nothing more: no duplicates arrive.
        c.get_mut()
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        if let Ok(Message::Text(t)) = c.read() {
            panic!("a message arrived twice: {t}");
        }
    }
    let workers: std::collections::HashSet<String> = h
        .log()
        .lines()
        .filter(|l| l.contains("INFO handoff::ws::worker::ctl: websocket /"))
        .filter_map(|l| {
            l.split("worker=")
                .nth(1)?
                .split(' ')
                .next()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(
        workers.len(),
        2,
        "the clients were not spread over two workers: {workers:?}"
    );
}

#[test]
fn reaches_a_worker_running_on_its_own_by_path() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("worker.sock");
    let mut worker = std::process::Command::new(env!("CARGO_BIN_EXE_handoff"))
        .args([
            "ws-worker",
            "--socket",
            sock.to_str().unwrap(),
            "--ws",
            "/echo=echo",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_until(Duration::from_secs(5), || sock.exists()));
    let site = site();
    let h = Handoff::start(&[
        "--root",
        &root_arg(site.path()),
        "--ws",
        "/echo=echo",
        "--ws-workers",
        "0",
        "--ws-worker-socket",
        sock.to_str().unwrap(),
    ]);
    let mut ws = connect_ws(&h, "/echo");
    ws.send(Message::text("via a socket")).unwrap();
    assert_eq!(next_text(&mut ws), "via a socket");
    assert!(
        worker_pids(&h).is_empty(),
        "serve started workers of its own"
    );
    let _ = worker.kill();
    let _ = worker.wait();
}

fn upgrade_status(h: &Handoff, path: &str) -> u16 {
    upgrade_from(h, path, None)
}

#[test]
fn answers_503_when_no_worker_is_there_or_the_worker_refuses() {
    let (h, _site) = ws_server(&["--ws-workers", "0"]);
    assert_eq!(upgrade_status(&h, "/echo"), 503);
    assert_eq!(h.get("/a.txt").text(), "alpha\n");

    let (h, _site) = ws_server(&["--ws-workers", "1", "--ws-max-connections", "1"]);
    let _first = connect_ws(&h, "/echo");
    assert_eq!(upgrade_status(&h, "/echo"), 503);
    assert!(wait_until(Duration::from_secs(2), || h
        .log()
        .contains("worker at its limit of 1 connections")));
}

#[test]
fn enforces_the_message_limit_pings_and_closes_idle_clients() {
    let (h, _site) = ws_server(&[
        "--ws-max-message",
        "1000",
        "--ws-ping-interval",
        "0.3",
        "--ws-idle-timeout",
        "1.5",
    ]);
    // Too large a message: closed with 1009 (message too big).
    let mut ws = connect_ws(&h, "/echo");
    ws.send(Message::text("x".repeat(2000))).unwrap();
    let mut closed_with = None;
    for _ in 0..5 {
        match ws.read() {
            Ok(Message::Close(Some(f))) => {
                closed_with = Some(u16::from(f.code));
                break;
            }
            Ok(_) => continue,
            Err(_) => break,
        }
    }
    assert_eq!(closed_with, Some(1009));

    // Pings come at the interval; a client that answers them stays.
    let mut ws = connect_ws(&h, "/echo");
    ws.get_mut()
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let t = Instant::now();
    let mut pings = 0;
    while t.elapsed() < Duration::from_secs(2) {
        if let Ok(Message::Ping(_)) = ws.read() {
            pings += 1; // tungstenite answers with a pong on the next read/flush
        }
        let _ = ws.flush();
    }
    assert!(pings >= 4, "{pings} pings in 2 s at a 0.3 s interval");
    ws.send(Message::text("still here")).unwrap();
    assert_eq!(next_text(&mut ws), "still here");

    // A client that sends nothing at all, not even pongs, is closed.
    let mut s = h.connect();
    s.write_all(b"GET /echo HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").unwrap();
    let t = Instant::now();
    assert!(
        closed_within(&mut s, Duration::from_secs(5)),
        "an idle client was not closed"
    );
    assert!(
        t.elapsed() >= Duration::from_secs(1),
        "closed too early: {:?}",
        t.elapsed()
    );
}

#[test]
fn on_sigterm_websocket_clients_get_a_1001_close_and_the_server_exits() {
    let (mut h, _site) = ws_server(&["--ws-workers", "2", "--shutdown-timeout", "10"]);
    let mut clients: Vec<Ws> = (0..3).map(|_| connect_ws(&h, "/echo")).collect();
    for c in &mut clients {
        c.send(Message::text("hi")).unwrap();
        assert_eq!(next_text(c), "hi");
        c.get_mut()
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
    }
    let t = Instant::now();
    h.signal(nix::sys::signal::Signal::SIGTERM);
    for c in &mut clients {
        let code = loop {
            match c.read() {
                Ok(Message::Close(Some(f))) => break Some(u16::from(f.code)),
                Ok(Message::Close(None)) => break None,
                Ok(_) => continue,
                Err(e) => panic!("no close frame: {e}"),
            }
        };
        assert_eq!(code, Some(1001));
        // Answer it, as a well-behaved client does.
        let _ = c.flush();
    }
    let status = h
        .wait_exit(Duration::from_secs(8))
        .expect("the server did not exit");
    assert!(status.success());
    assert!(
        t.elapsed() < Duration::from_secs(6),
        "took {:?}",
        t.elapsed()
    );
}

#[test]
fn a_worker_that_does_not_take_a_connection_in_time_is_killed_and_only_one_answer_goes_out() {
    let (h, _site) = ws_server(&["--ws-workers", "1", "--ws-ack-timeout", "0.5"]);
    // The pool starts its worker a moment after the address is printed.
    // Wait for the pool's word that it runs: stopped between fork and exec,
    // it would hold the pool inside `spawn` (which waits for the exec).
    let mut before = Vec::new();
    assert!(wait_until(Duration::from_secs(5), || {
        before = worker_pids(&h);
        before.len() == 1 && h.log().contains("WebSocket worker ready")
    }));
    let stopped = nix::unistd::Pid::from_raw(before[0]);
    // Made slow on purpose: the worker cannot read its queue.
    nix::sys::signal::kill(stopped, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let mut s = h.connect();
    write!(
        s,
        "GET /echo HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let head = read_head(&mut s).unwrap();
    assert_eq!(head.status, 503);
    // Were it alive, the worker would now take the queued socket and
    // write its 101 after our 503.
    let _ = nix::sys::signal::kill(stopped, nix::sys::signal::Signal::SIGCONT);
    std::thread::sleep(Duration::from_millis(500));
    assert!(!pid_alive(before[0]), "the hung worker still runs");
    let rest = read_to_close(&mut s);
    assert!(!rest.contains("HTTP/1.1"), "a second answer: {rest}");
    assert!(
        !h.log()
            .contains("INFO handoff::ws::worker::ctl: websocket /"),
        "{}",
        h.log()
    );
    // A new worker serves the next upgrade.
    assert!(wait_until(Duration::from_secs(3), || worker_pids(&h).len()
        == 1
        && !worker_pids(&h).contains(&before[0])));
    let mut ws = connect_ws(&h, "/echo");
    ws.send(Message::text("after")).unwrap();
    assert_eq!(next_text(&mut ws), "after");
}

#[test]
fn a_dead_worker_is_restarted_after_the_binary_on_disk_was_replaced() {
    // A package upgrade replaces the file; the running process's path then
    // names a deleted file (or another version).
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("handoff");
    std::fs::copy(env!("CARGO_BIN_EXE_handoff"), &copy).unwrap();
    let site = site();
    let root = root_arg(site.path());
    let mut cmd = std::process::Command::new(&copy);
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--root",
        &root,
        "--ws",
        "/echo=echo",
        "--ws-workers",
        "1",
    ])
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let addr = announced_addr(&mut child);
    std::fs::remove_file(&copy).unwrap();
    let pids = || children_of(child.id() as i32);
    assert!(wait_until(Duration::from_secs(3), || pids().len() == 1));
    let first = pids()[0];
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let restarted = wait_until(Duration::from_secs(3), || {
        let p = pids();
        p.len() == 1 && p[0] != first
    });
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let up = tungstenite::client(format!("ws://{addr}/echo"), s).map(|(mut ws, _)| {
        ws.send(Message::text("still here")).unwrap();
        next_text(&mut ws)
    });
    let _ = child.kill();
    let _ = child.wait();
    assert!(restarted, "no worker after the binary was replaced");
    assert_eq!(up.unwrap(), "still here");
}

/// The status of an upgrade on `path` sent with `origin` (none: no header).
fn upgrade_from(h: &Handoff, path: &str, origin: Option<&str>) -> u16 {
    let mut s = h.connect();
    let origin = origin.map_or(String::new(), |o| format!("Origin: {o}\r\n"));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {}\r\n{origin}Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        h.addr
    )
    .unwrap();
    read_head(&mut s).unwrap().status
}

#[test]
fn exec_paths_refuse_pages_of_other_origins_unless_listed() {
    let same = |h: &Handoff| format!("http://{}", h.addr);
    let (h, _site) = ws_server(&["--ws", "/cmd=exec:cat", "--ws-workers", "1"]);
    assert_eq!(upgrade_from(&h, "/cmd", Some("https://evil.example")), 403);
    assert_eq!(upgrade_from(&h, "/cmd", Some("null")), 403);
    assert_eq!(upgrade_from(&h, "/cmd", Some(&same(&h))), 101);
    assert_eq!(
        upgrade_from(&h, "/cmd", None),
        101,
        "not a browser: not judged"
    );
    assert_eq!(upgrade_from(&h, "/echo", Some("https://evil.example")), 101);
    assert!(wait_until(Duration::from_secs(2), || h
        .log()
        .contains("cross-origin WebSocket upgrade refused")));

    let (h, _site) = ws_server(&[
        "--ws",
        "/cmd=exec:cat",
        "--ws-workers",
        "1",
        "--ws-origin",
        "https://app.example",
    ]);
    assert_eq!(upgrade_from(&h, "/cmd", Some("https://app.example")), 101);
    assert_eq!(upgrade_from(&h, "/cmd", Some("https://evil.example")), 403);
    assert_eq!(
        upgrade_from(&h, "/echo", Some("https://evil.example")),
        403,
        "a list restricts every path"
    );
    assert_eq!(upgrade_from(&h, "/echo", Some(&same(&h))), 101);

    let (h, _site) = ws_server(&["--ws-workers", "1", "--ws-same-origin"]);
    assert_eq!(upgrade_from(&h, "/echo", Some("https://evil.example")), 403);
    assert_eq!(upgrade_from(&h, "/echo", Some(&same(&h))), 101);
}

/// Connects to a worker socket as uid 65534 and says what happened: the
/// kind byte of a message it got, or "open" if nothing came and the
/// connection stayed up.
fn connect_as_nobody(sock: &std::path::Path) -> String {
    let script = format!(
        "import socket\ns = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)\ns.settimeout(1)\ns.connect({:?})\ntry:\n    m = s.recv(4096)\n    print(m[5] if m else 'eof')\nexcept socket.timeout:\n    print('open')\n",
        sock.to_str().unwrap()
    );
    let out = std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            // Debian's python3: the image's pyenv one is under /root.
            "/usr/bin/python3",
            "-c",
            &script,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
#[ignore = "full tier (scripts/test.sh): needs setpriv"]
fn a_worker_on_its_own_socket_refuses_peers_of_other_uids_unless_allowed() {
    use std::os::unix::fs::PermissionsExt;
    for (extra, want) in [(None, "4"), (Some("65534"), "open")] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let sock = dir.path().join("worker.sock");
        let log = dir.path().join("log");
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_handoff"));
        cmd.args([
            "ws-worker",
            "--socket",
            sock.to_str().unwrap(),
            "--ws",
            "/echo=echo",
            "--log-file",
            log.to_str().unwrap(),
        ]);
        if let Some(uid) = extra {
            cmd.args(["--allow-uid", uid]);
        }
        let _worker = standalone_worker(&mut cmd, &sock);
        // As a socket unit with SocketMode=0666 would make it.
        std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
        // 4 is REFUSE in the wire format.
        assert_eq!(connect_as_nobody(&sock), want, "--allow-uid {extra:?}");
        if extra.is_none() {
            // The worker writes its log at the end of its turn, which may
            // come after the REFUSE reached the peer.
            let said = "uid 65534 is not allowed on this worker socket";
            assert!(
                wait_until(Duration::from_secs(3), || {
                    std::fs::read_to_string(&log).is_ok_and(|l| l.contains(said))
                }),
                "{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
    }
}

/// Starts `cmd` (a `handoff ws-worker --socket SOCK …`) with its output
/// dropped, and waits for its socket; it is killed when dropped.
fn standalone_worker(cmd: &mut std::process::Command, sock: &std::path::Path) -> KillOnDrop {
    let worker = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let worker = KillOnDrop(worker);
    assert!(wait_until(Duration::from_secs(5), || sock.exists()));
    worker
}

struct KillOnDrop(std::process::Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends one `PASS_CONNECTION` with `theirs` to a worker's control socket
/// and returns the kind of its answer.
fn pass_to_worker(
    ctl: &std::os::fd::OwnedFd,
    m: &handoff::wire::Message,
    theirs: &std::os::unix::net::UnixStream,
) -> handoff::wire::Kind {
    use handoff::{fdpass, wire};
    use std::os::fd::AsFd;
    fdpass::send_with_fds(
        ctl.as_fd(),
        &[std::io::IoSlice::new(&m.encode())],
        &[theirs.as_fd()],
    )
    .unwrap();
    let mut buf = vec![0u8; wire::MAX_MESSAGE];
    loop {
        let r = fdpass::recv_with_fds(ctl.as_fd(), &mut buf)
            .unwrap()
            .expect("an answer");
        let answer = wire::Message::decode(&buf[..r.len]).unwrap();
        // The worker also says how many it serves (LOAD).
        if answer.kind() != wire::Kind::Load {
            assert_eq!(answer.id, m.id, "{answer:?}");
            return answer.kind();
        }
    }
}

/// The 101's head, read byte by byte from a client's end.
fn read_101(s: &mut std::os::unix::net::UnixStream) -> String {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut b).unwrap(), 1, "closed after {head:?}");
        head.push(b[0]);
    }
    String::from_utf8(head).unwrap()
}

/// An HTTP process of this version hands an upgrade over with what it
/// matched and computed (`ROUTE`, `ACCEPT`, `ENV`): the worker answers
/// from those and does not parse the head (here no head at all). A
/// hand-off of the older form (the head alone) is still served.
#[test]
fn a_worker_answers_from_route_accept_and_env_without_parsing_the_head_and_takes_the_old_form() {
    use handoff::{fdpass, wire};
    use std::os::unix::net::UnixStream;
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("worker.sock");
    let _worker = standalone_worker(
        std::process::Command::new(env!("CARGO_BIN_EXE_handoff"))
            .args(["ws-worker", "--socket", sock.to_str().unwrap()])
            .args(["--ws", "/echo=echo", "--ws", "/env=exec:env"]),
        &sock,
    );
    let ctl = fdpass::seqpacket_connect(&sock).unwrap();

    let (mut ours, theirs) = UnixStream::pair().unwrap();
    ours.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut m = wire::Message::new(wire::Kind::PassConnection, 1);
    m.peer = Some("192.0.2.7:5555".into());
    m.route = Some("/env".into());
    // Whatever the HTTP process says: the worker takes it as it is.
    m.accept = Some("computed+by+the+HTTP+process=".into());
    m.env = wire::encode_env(&[
        ("REQUEST_URI".into(), "/env?from=env".into()),
        ("HTTP_X_PROBE".into(), "42".into()),
    ]);
    m.head = b"not a request head at all".to_vec();
    assert_eq!(pass_to_worker(&ctl, &m, &theirs), wire::Kind::Ack);
    drop(theirs);
    let head = read_101(&mut ours);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert!(
        head.contains("Sec-WebSocket-Accept: computed+by+the+HTTP+process=\r\n"),
        "{head}"
    );
    let mut ws = WebSocket::from_raw_socket(ours, tungstenite::protocol::Role::Client, None);
    let mut lines = Vec::new();
    while let Ok(msg) = ws.read() {
        if let Message::Text(t) = msg {
            lines.push(t.to_string());
        }
    }
    for want in [
        "HTTP_X_PROBE=42",
        "REQUEST_URI=/env?from=env",
        "REMOTE_ADDR=192.0.2.7",
    ] {
        assert!(lines.iter().any(|l| l == want), "{want}: {lines:?}");
    }

    // The older form: the head alone, parsed by the worker.
    let (mut ours, theirs) = UnixStream::pair().unwrap();
    ours.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut m = wire::Message::new(wire::Kind::PassConnection, 2);
    m.head = b"GET /echo HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".to_vec();
    assert_eq!(pass_to_worker(&ctl, &m, &theirs), wire::Kind::Ack);
    drop(theirs);
    let head = read_101(&mut ours);
    // RFC 6455's own example key and accept value.
    assert!(
        head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
        "{head}"
    );
    let mut ws = WebSocket::from_raw_socket(ours, tungstenite::protocol::Role::Client, None);
    ws.send(Message::text("old form")).unwrap();
    assert_eq!(next_text(&mut ws), "old form");
}

/// One access line for one upgrade, written by the HTTP process when the
/// worker took it (with what the request said: its User-Agent, its time),
/// and none by the worker; an upgrade no worker takes gets one 503 line.
#[test]
fn an_upgrade_has_one_access_line_with_its_outcome() {
    let (h, _site) = serve_site(&[
        "--ws",
        "/echo=echo",
        "--ws-workers",
        "1",
        "--ws-max-connections",
        "1",
        "--access-log-format",
        "json",
    ]);
    let req = upgrade_request(&h, "/echo", "t", &[("User-Agent", "probe/1")]);
    let (mut ws, _) = tungstenite::client(req, h.connect()).unwrap();
    ws.send(Message::text("hi")).unwrap();
    assert_eq!(next_text(&mut ws), "hi");
    // The worker is at its limit now: the next upgrade is refused, 503.
    let mut s = h.connect();
    write!(
        s,
        "GET /echo HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nUser-Agent: second/1\r\n\r\n"
    )
    .unwrap();
    assert_eq!(read_head(&mut s).unwrap().status, 503);
    let lines = |log: &str| -> Vec<String> {
        log.lines()
            .filter(|l| l.contains("\"request\":\"GET /echo HTTP/1.1\""))
            .map(str::to_string)
            .collect()
    };
    let mut log = String::new();
    wait_until(Duration::from_secs(3), || {
        log = h.log();
        lines(&log).len() >= 2
    });
    let lines = lines(&log);
    assert_eq!(lines.len(), 2, "{log}");
    let first = lines.iter().find(|l| l.contains("probe/1")).expect(&log);
    assert!(first.contains("\"status\":101"), "{first}");
    assert!(
        first.contains("\"note\":\"websocket /echo worker="),
        "{first}"
    );
    assert!(!first.contains("\"request_time\":null"), "{first}");
    let second = lines.iter().find(|l| l.contains("second/1")).expect(&log);
    assert!(second.contains("\"status\":503"), "{second}");
    assert!(second.contains("at its limit"), "{second}");
}

/// The pool gives a worker it starts its routes and limits in one
/// `CONFIGURE` (the settings file's keys): a worker started with no route
/// serves the routes it is sent, and refuses, with why, a configuration
/// it does not understand (keeping the one it had).
#[test]
fn a_worker_serves_the_routes_a_configure_message_gives_and_refuses_a_bad_one() {
    use handoff::{fdpass, wire};
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("worker.sock");
    let _worker = standalone_worker(
        std::process::Command::new(env!("CARGO_BIN_EXE_handoff")).args([
            "ws-worker",
            "--socket",
            sock.to_str().unwrap(),
        ]),
        &sock,
    );
    let ctl = fdpass::seqpacket_connect(&sock).unwrap();
    let configure = |data: &str| {
        let mut m = wire::Message::new(wire::Kind::Configure, 0);
        m.data = data.as_bytes().to_vec();
        fdpass::send_with_fds(ctl.as_fd(), &[std::io::IoSlice::new(&m.encode())], &[]).unwrap();
        let mut buf = vec![0u8; wire::MAX_MESSAGE];
        loop {
            let r = fdpass::recv_with_fds(ctl.as_fd(), &mut buf)
                .unwrap()
                .expect("an answer");
            let m = wire::Message::decode(&buf[..r.len]).unwrap();
            // LOAD reports come between answers.
            if m.kind() != wire::Kind::Load {
                return m;
            }
        }
    };
    let upgrade = |id: u64| {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let mut m = wire::Message::new(wire::Kind::PassConnection, id);
        m.route = Some("/said".into());
        m.accept = Some("x".into());
        (pass_to_worker(&ctl, &m, &theirs), ours)
    };
    // No route yet: refused.
    assert_eq!(upgrade(1).0, wire::Kind::Refuse);

    let answer = configure("ws = [\"/said=echo\"]\nws-max-message = 4096\n");
    assert_eq!(answer.kind(), wire::Kind::Ack, "{answer:?}");
    let (kind, mut ours) = upgrade(2);
    assert_eq!(kind, wire::Kind::Ack);
    ours.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    read_101(&mut ours);
    let mut ws = WebSocket::from_raw_socket(ours, tungstenite::protocol::Role::Client, None);
    ws.send(Message::text("configured")).unwrap();
    assert_eq!(next_text(&mut ws), "configured");

    let answer = configure("ws = [\"/said=echo\"]\nws-max-mesage = 1\n");
    assert_eq!(answer.kind(), wire::Kind::Refuse);
    let why = answer.reason.unwrap_or_default();
    assert!(why.contains("unknown key ws-max-mesage"), "{why}");
    // The configuration it had still holds.
    assert_eq!(upgrade(3).0, wire::Kind::Ack);
}

/// An upgrade offering `offers` in Sec-WebSocket-Protocol: the protocol
/// answered, and the socket.
fn connect_offering(h: &Handoff, path: &str, offers: &str) -> (Option<String>, Ws) {
    use tungstenite::client::IntoClientRequest;
    let mut req = format!("ws://{}{path}", h.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("sec-websocket-protocol", offers.parse().unwrap());
    let (ws, resp) = tungstenite::client(req, h.connect()).expect("handshake");
    let answered = resp
        .headers()
        .get("sec-websocket-protocol")
        .map(|v| v.to_str().unwrap().to_string());
    (answered, ws)
}

#[test]
fn a_route_answers_the_first_offered_subprotocol_it_speaks_and_exec_sees_it() {
    let (h, _site) = serve_site(&[
        "--ws",
        "/chat=echo,protocols=chat|superchat",
        "--ws",
        "/who=exec:echo proto=$WEBSOCKET_PROTOCOL,protocols=v1.example|v2.example",
        "--ws-workers",
        "1",
    ]);
    let (p, mut ws) = connect_offering(&h, "/chat", "mqtt, superchat, chat");
    assert_eq!(p.as_deref(), Some("superchat"));
    ws.send(Message::text("hi")).unwrap();
    assert_eq!(next_text(&mut ws), "hi");
    // None of ours: no header, and the client, as Chromium does, gives up.
    use tungstenite::client::IntoClientRequest;
    let mut req = format!("ws://{}/chat", h.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("sec-websocket-protocol", "mqtt".parse().unwrap());
    let err = tungstenite::client(req, h.connect()).unwrap_err();
    assert!(format!("{err:?}").contains("NoSubProtocol"), "{err:?}");
    let (p, mut ws) = connect_offering(&h, "/who", "v2.example");
    assert_eq!(p.as_deref(), Some("v2.example"));
    assert_eq!(next_text(&mut ws), "proto=v2.example");
    let err = refused_start(&["--ws", "/x=echo,protocols=a b"]);
    assert!(err.contains("is not a subprotocol name"), "{err}");
}
