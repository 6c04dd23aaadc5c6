//! Where log lines go and with what priority: syslog under inetd (facility
//! daemon, severity by level, lines dropped while syslog is away counted
//! and reported), and the journal when stderr is the journal's stream.

mod common;
use common::*;

use std::io::{Read, Write};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_handoff");

/// `handoff serve --inetd` (nowait) on one end of a socketpair; syslog at
/// `syslog`. Returns the process and our end.
fn inetd(syslog: &Path, args: &[&str]) -> (Child, UnixStream) {
    let (ours, theirs) = UnixStream::pair().unwrap();
    let child = Command::new(BIN)
        .args(["serve", "--inetd"])
        .args(args)
        .env("HANDOFF_SYSLOG_SOCKET", syslog)
        .env("RUST_LOG", "debug")
        .stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    (child, ours)
}

/// Datagrams received until `until` holds or 5 s pass.
fn collect(sock: &UnixDatagram, until: impl Fn(&[String]) -> bool) -> Vec<String> {
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let end = Instant::now() + Duration::from_secs(5);
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    while Instant::now() < end && !until(&got) {
        if let Ok(n) = sock.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    got
}

fn get(conn: &mut UnixStream) -> String {
    conn.write_all(b"GET /a.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut s = String::new();
    conn.read_to_string(&mut s).unwrap();
    s
}

#[test]
fn under_inetd_syslog_lines_carry_the_priority_of_their_level() {
    let site = site();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.sock");
    let syslog = UnixDatagram::bind(&path).unwrap();
    let (mut child, mut conn) = inetd(&path, &["--root", &root_arg(site.path())]);
    assert!(get(&mut conn).ends_with("alpha\n"));
    let pid = child.id();
    let lines = collect(&syslog, |l| {
        l.iter().any(|l| l.contains("\"GET /a.txt HTTP/1.1\" 200"))
    });
    let _ = child.wait();
    let tag = format!("handoff[{pid}]: ");
    // daemon.info = 3*8+6.
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("<30>{tag}")) && l.contains("200 6")),
        "{lines:#?}"
    );
    // Syslog stamps lines itself.
    assert!(
        lines
            .iter()
            .all(|l| !l[l.find(": ").unwrap() + 2..].starts_with("20")),
        "{lines:#?}"
    );

    // An error is daemon.err (27).
    let (mut child, _conn) = inetd(&path, &["--root", "/nonexistent/handoff-root"]);
    let lines = collect(&syslog, |l| l.iter().any(|l| l.contains("nonexistent")));
    let _ = child.wait();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("<27>handoff[") && l.contains("nonexistent")),
        "{lines:#?}"
    );
}

#[test]
fn lines_dropped_while_syslog_is_away_are_counted_when_it_returns() {
    let site = site();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.sock");
    // No syslog yet: the start-up lines cannot go anywhere.
    let (mut child, mut conn) = inetd(&path, &["--root", &root_arg(site.path())]);
    std::thread::sleep(Duration::from_millis(300));
    let syslog = UnixDatagram::bind(&path).unwrap();
    // It is looked for again at most once a second.
    std::thread::sleep(Duration::from_millis(1100));
    assert!(get(&mut conn).ends_with("alpha\n"));
    let lines = collect(&syslog, |l| l.iter().any(|l| l.contains("200 6")));
    let _ = child.wait();
    let note = lines
        .iter()
        .find(|l| l.contains("log lines were dropped"))
        .unwrap_or_else(|| panic!("{lines:#?}"));
    assert!(note.starts_with("<28>"), "a warning: {note}");
    assert!(lines.iter().any(|l| l.contains("200 6")), "{lines:#?}");
}

#[test]
fn on_the_journal_stream_lines_carry_their_priority_and_no_timestamp() {
    use std::os::unix::fs::MetadataExt;
    let site = site();
    let dir = tempfile::tempdir().unwrap();
    let err = dir.path().join("stderr");
    let file = std::fs::File::create(&err).unwrap();
    let meta = file.metadata().unwrap();
    let mut child = Command::new(BIN)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--root",
            &root_arg(site.path()),
            "--max-body",
            "4",
        ])
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(file)
        .spawn()
        .unwrap();
    let addr = announced_addr(&mut child);
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /a.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let _ = read_to_close(&mut s);
    assert!(wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(&err).unwrap().contains("200 6")
    }));
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(&err).unwrap();
    for l in log.lines() {
        assert!(
            l.starts_with('<') && l.as_bytes()[2] == b'>',
            "no priority: {l:?}"
        );
        assert!(!l[3..].trim_start().starts_with("20"), "a timestamp: {l:?}");
    }
    assert!(
        log.lines()
            .any(|l| l.starts_with("<6>") && l.contains("serving files")),
        "{log}"
    );

    // Without a matching JOURNAL_STREAM (stderr redirected elsewhere): plain lines.
    let plain = dir.path().join("plain");
    let mut child = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--root", &root_arg(site.path())])
        .env("JOURNAL_STREAM", "1:1")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&plain).unwrap())
        .spawn()
        .unwrap();
    assert!(wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(&plain)
            .unwrap()
            .contains("serving files")
    }));
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(&plain).unwrap();
    assert!(log.starts_with("20"), "{log}");
}

/// Sends a request with a Referer and a User-Agent and waits for its line.
fn logged_request(h: &Handoff, file: &Path, path: &str) -> String {
    let r = h.exchange(
        format!(
            "GET {path} HTTP/1.1\r\nHost: t\r\nReferer: http://r.example/\"x\r\nUser-Agent: probe/1.0\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    );
    assert!(r.starts_with("HTTP/1.1 "), "{r}");
    let mut line = String::new();
    assert!(
        wait_until(Duration::from_secs(5), || {
            let log = std::fs::read_to_string(file).unwrap_or_default();
            line = log
                .lines()
                .rfind(|l| l.contains(path))
                .unwrap_or("")
                .to_string();
            !line.is_empty()
        }),
        "no line for {path} in {}: {}\n(beside it: {:?})",
        file.display(),
        std::fs::read_to_string(file).unwrap_or_default(),
        std::fs::read_dir(file.parent().unwrap())
            .map(|d| d
                .flatten()
                .map(|e| (
                    e.file_name(),
                    std::fs::read_to_string(e.path()).unwrap_or_default()
                ))
                .collect::<Vec<_>>())
            .unwrap_or_default()
    );
    line
}

#[test]
#[ignore = "full tier (scripts/test.sh): needs python3"]
fn access_lines_come_in_the_common_combined_and_json_formats() {
    let site = site();
    let dir = tempfile::tempdir().unwrap();
    let root = root_arg(site.path());
    let start = |file: &Path, format: &str| {
        Handoff::start(&[
            "--root",
            &root,
            "--log-file",
            file.to_str().unwrap(),
            "--access-log-format",
            format,
        ])
    };
    // `[10/Oct/2000:13:55:36 +0000]`: 28 bytes between the brackets' ends.
    let stamp = |l: &str| {
        let (a, b) = (l.find('[').unwrap(), l.find(']').unwrap());
        assert_eq!(b - a, 27, "{l}");
        assert!(l[a..=b].ends_with(" +0000]"), "{l}");
        l[..a].to_string() + "[]" + &l[b + 1..]
    };

    let file = dir.path().join("common.log");
    let h = start(&file, "common");
    let line = logged_request(&h, &file, "/a.txt");
    assert_eq!(
        stamp(&line),
        "127.0.0.1 - - [] \"GET /a.txt HTTP/1.1\" 200 6"
    );
    drop(h);

    // combined is the default; the time is last, seconds and milliseconds.
    let file = dir.path().join("combined.log");
    let h = Handoff::start(&["--root", &root, "--log-file", file.to_str().unwrap()]);
    let line = logged_request(&h, &file, "/missing");
    let line = stamp(&line);
    let (head, took) = line.rsplit_once(' ').unwrap();
    assert_eq!(
        head,
        "127.0.0.1 - - [] \"GET /missing HTTP/1.1\" 404 14 \"http://r.example/\\\"x\" \"probe/1.0\""
    );
    let (s, ms) = took.split_once('.').unwrap();
    assert!(
        s.parse::<u64>().is_ok() && ms.len() == 3 && ms.parse::<u32>().is_ok(),
        "{took}"
    );
    drop(h);

    // json: checked by Python's json module, not by us.
    let file = dir.path().join("json.log");
    let h = start(&file, "json");
    let line = logged_request(&h, &file, "/b.txt");
    let py = Command::new("python3")
        .args([
            "-c",
            "import json,sys; o=json.loads(sys.argv[1]); print(o['client'], o['request'], o['status'], o['bytes'], o['referer'], o['user_agent'], type(o['request_time']).__name__, o['time'][-1], sorted(o))",
            &line,
        ])
        .output()
        .unwrap();
    assert!(
        py.status.success(),
        "{line}: {}",
        String::from_utf8_lossy(&py.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&py.stdout).trim(),
        "127.0.0.1 GET /b.txt HTTP/1.1 200 6 http://r.example/\"x probe/1.0 float Z ['bytes', 'client', 'note', 'peer', 'referer', 'request', 'request_time', 'status', 'time', 'user_agent']"
    );
    drop(h);

    // off: the error log only.
    let file = dir.path().join("off.log");
    let h = start(&file, "off");
    assert_eq!(h.get("/a.txt").status, 200);
    assert!(wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(&file)
            .unwrap()
            .contains("serving files")
    }));
    std::thread::sleep(Duration::from_millis(200));
    assert!(!std::fs::read_to_string(&file).unwrap().contains("/a.txt"));
}

/// A server logging to `file` with one WebSocket worker (on /ws).
fn with_a_worker(site: &tempfile::TempDir, file: &Path) -> Handoff {
    Handoff::start(&[
        "--root",
        &root_arg(site.path()),
        "--log-file",
        file.to_str().unwrap(),
        "--ws",
        "/ws=echo",
        "--ws-workers",
        "1",
    ])
}

/// logrotate's way: move the file, signal the main process, and the next
/// lines go to a new file at the old path, the WebSocket worker's too (the
/// HTTP process passes SIGUSR1 on to its workers).
#[test]
fn sigusr1_opens_the_log_file_again_after_it_was_moved_in_workers_too() {
    let site = site();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("handoff.log");
    let h = with_a_worker(&site, &file);
    logged_request(&h, &file, "/a.txt");
    let rotated = dir.path().join("handoff.log.1");
    std::fs::rename(&file, &rotated).unwrap();
    h.signal(nix::sys::signal::Signal::SIGUSR1);
    // A request served before the signal is handled still goes to the old
    // file, as with any server; the line says when it was.
    assert!(wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(&file).is_ok_and(|l| l.contains("the log file is opened again"))
    }));
    let line = logged_request(&h, &file, "/b.txt");
    assert!(line.contains("\"GET /b.txt HTTP/1.1\" 200"), "{line}");
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert!(old.contains("/a.txt") && !old.contains("/b.txt"), "{old}");
    // Still alive and serving, workers included.
    let (mut ws, _) = tungstenite::connect(format!("ws://{}/ws", h.addr)).unwrap();
    ws.send(tungstenite::Message::text("hi")).unwrap();
    assert_eq!(ws.read().unwrap().into_text().unwrap().as_str(), "hi");
    // The worker's own line (the access line is the HTTP process's).
    assert!(wait_until(Duration::from_secs(5), || {
        let log = std::fs::read_to_string(&file).unwrap();
        log.contains("\"GET /ws HTTP/1.1\" 101") && log.contains("websocket /ws=echo worker=")
    }));
    assert!(!std::fs::read_to_string(&rotated).unwrap().contains("/ws"));
}

/// A worker just started ignores SIGUSR1 until its log takes it, so the
/// signals the HTTP process passes on while one starts (here a storm of
/// them across a worker's restart) kill none.
#[test]
fn sigusr1_passed_on_while_a_worker_starts_kills_none() {
    let site = site();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("handoff.log");
    let h = with_a_worker(&site, &file);
    // Five a millisecond, for `ms`.
    let storm = |ms: u32| {
        for _ in 0..ms * 5 {
            h.signal(nix::sys::signal::Signal::SIGUSR1);
            std::thread::sleep(Duration::from_micros(200));
        }
    };
    // The pool starts its worker a moment after the address is printed.
    let mut worker = Vec::new();
    assert!(wait_until(Duration::from_secs(5), || {
        worker = children_of(h.pid() as i32);
        worker.len() == 1
            && std::fs::read_to_string(&file).is_ok_and(|l| l.contains("WebSocket worker ready"))
    }));
    // Killed: the pool starts another 100 ms later, inside the storm.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(worker[0]),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    storm(600);
    assert!(wait_until(Duration::from_secs(5), || {
        children_of(h.pid() as i32).len() == 1
            && tungstenite::connect(format!("ws://{}/ws", h.addr)).is_ok()
    }));
    let log = std::fs::read_to_string(&file).unwrap();
    assert_eq!(log.matches("WebSocket worker died").count(), 1, "{log}");
    assert_ne!(children_of(h.pid() as i32), worker);
}

#[test]
fn with_syslog_access_lines_go_to_syslog_as_info() {
    let site = site();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.sock");
    let syslog = UnixDatagram::bind(&path).unwrap();
    let h = Handoff::start_env(
        &[("HANDOFF_SYSLOG_SOCKET", path.to_str().unwrap())],
        &["--root", &root_arg(site.path()), "--syslog"],
    );
    assert_eq!(h.get("/a.txt").status, 200);
    let lines = collect(&syslog, |l| l.iter().any(|l| l.contains("/a.txt")));
    let line = lines
        .iter()
        .find(|l| l.contains("/a.txt"))
        .unwrap_or_else(|| panic!("{lines:#?}"));
    assert!(
        line.starts_with("<30>handoff[") && line.contains("]: 127.0.0.1 - - ["),
        "{line}"
    );
}
