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
        .env("HANDOFF_SYSLOG", syslog)
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
