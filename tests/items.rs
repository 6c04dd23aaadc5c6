//! `examples/items.rs`, the JSON service written on the library, tested
//! like the binary: under systemd-socket-activate, each route with curl, a
//! live upgrade (SIGUSR2) under keep-alive requests with no failure, and a
//! SIGTERM during a Server-Sent Events stream that lets it finish.

mod common;
use common::*;

use std::io::Write;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The example, built by `cargo test` beside the tests.
fn example() -> PathBuf {
    let deps = std::env::current_exe().unwrap();
    let path = deps
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples/items");
    assert!(path.exists(), "{} is built by cargo test", path.display());
    path
}

struct Service {
    child: Child,
    port: u16,
    uploads: tempfile::TempDir,
    /// systemd-socket-activate's stderr.
    _log: tempfile::TempDir,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The process that replaced it, if any.
        for pid in serving(&self.uploads) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// Without `-a`, systemd-socket-activate binds the port and execs the
/// service with it as `LISTEN_FDS=1`: the child is the service itself.
/// `flags`: systemd-socket-activate's own, before `-l`.
fn start(flags: &[String]) -> Service {
    let uploads = tempfile::tempdir().unwrap();
    let log = tempfile::tempdir().unwrap();
    let (child, ports) = socket_activate(1, &log.path().join("stderr"), |p| {
        let mut args = flags.to_vec();
        args.extend([
            "-l".to_string(),
            format!("127.0.0.1:{}", p[0]),
            example().display().to_string(),
            uploads.path().display().to_string(),
        ]);
        args
    });
    wait_for_port(ports[0]);
    Service {
        child,
        port: ports[0],
        uploads,
        _log: log,
    }
}

/// The PIDs of the example serving `uploads` (its command line names it;
/// under `-a`, systemd-socket-activate's own does too, so the process's
/// name must be the example's).
fn serving(uploads: &tempfile::TempDir) -> Vec<i32> {
    let dir = uploads.path().to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "items")
        })
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                let c = String::from_utf8_lossy(&c);
                c.contains("examples/items") && c.contains(&dir)
            })
        })
        .collect()
}

fn curl(args: &[&str]) -> Output {
    Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl must be installed (scripts/test.sh installs it)")
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

const TOKEN: &str = "Authorization: Bearer secret";

#[test]
#[ignore = "full tier (scripts/test.sh): needs systemd-socket-activate and curl"]
fn every_route_answers_under_systemd_socket_activation() {
    let s = start(&[]);
    let url = |p: &str| format!("http://127.0.0.1:{}{p}", s.port);
    let code = |o: &Output| text(o).lines().last().unwrap_or("").to_string();
    let home = curl(&[&url("/")]);
    assert!(text(&home).contains(r#""items""#), "{}", text(&home));
    let missing = curl(&["-w", "\n%{http_code}", &url("/api/items/1")]);
    assert_eq!(code(&missing), "404");
    assert!(text(&missing).contains(r#"{"error":"no such item"}"#));
    let item = r#"{"name":"pen"}"#;
    let json = "Content-Type: application/json";
    let no_token = curl(&[
        "-w",
        "\n%{http_code}",
        "-H",
        json,
        "-d",
        item,
        &url("/api/items"),
    ]);
    assert_eq!(code(&no_token), "401");
    assert!(
        text(&no_token).starts_with(r#"{"error":"#),
        "{}",
        text(&no_token)
    );
    let created = curl(&[
        "-i",
        "-H",
        TOKEN,
        "-H",
        json,
        "-d",
        item,
        &url("/api/items"),
    ]);
    let created = text(&created);
    assert!(created.starts_with("HTTP/1.1 201"), "{created}");
    assert!(created.contains("Location: /api/items/1\r\n"), "{created}");
    let got = curl(&[&url("/api/items/1")]);
    assert_eq!(text(&got), r#"{"id":1,"name":"pen"}"#);
    let file = s
        .uploads
        .path()
        .join("..")
        .join(format!("items-upload-{}", s.port));
    std::fs::write(&file, b"the file's bytes\n").unwrap();
    let form = format!("file=@{};filename=notes.txt", file.display());
    let up = curl(&[
        "-w",
        "\n%{http_code}",
        "-H",
        TOKEN,
        "-F",
        &form,
        &url("/upload"),
    ]);
    std::fs::remove_file(&file).unwrap();
    assert_eq!(code(&up), "201", "{}", text(&up));
    let saved = std::fs::read(s.uploads.path().join("notes.txt")).unwrap();
    assert_eq!(saved, b"the file's bytes\n");
    let began = Instant::now();
    let events = curl(&["-N", &url("/events")]);
    let took = began.elapsed();
    assert_eq!(
        text(&events).matches("data: tick").count(),
        6,
        "{}",
        text(&events)
    );
    assert!(
        took >= Duration::from_millis(2900),
        "6 ticks over 3 s, not {took:?}"
    );
}

#[test]
#[ignore = "full tier (scripts/test.sh): needs systemd-socket-activate and curl"]
fn under_accept_yes_each_connection_gets_a_process_that_exits_when_it_closes() {
    // Here the child is systemd-socket-activate, which spawns the service
    // per connection.
    let s = start(&["-a".into()]);
    let home = curl(&[&format!("http://127.0.0.1:{}/", s.port)]);
    assert!(text(&home).contains(r#""items""#), "{}", text(&home));
    // The connection is closed: its process has nothing left and exits.
    let gone = wait_until(Duration::from_secs(5), || serving(&s.uploads).is_empty());
    assert!(
        gone,
        "the Accept=yes process exits once its connection has closed"
    );
}

/// Requests on one keep-alive connection until told to stop: (answered,
/// failed). A close or a reset is a failure: it is never opened again.
fn keep_alive_client(port: u16, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<(usize, usize)> {
    std::thread::spawn(move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let (mut ok, mut failed) = (0, 0);
        while !stop.load(Ordering::Relaxed) && failed == 0 {
            let answered = s
                .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
                .and_then(|()| read_response(&mut s));
            match answered {
                Ok(r) if r.status == 200 && r.text().contains("items") => ok += 1,
                _ => failed += 1,
            }
        }
        (ok, failed)
    })
}

#[test]
#[ignore = "full tier (scripts/test.sh): needs systemd-socket-activate and curl"]
fn sigusr2_upgrades_under_keep_alive_requests_and_sigterm_lets_a_stream_finish() {
    let notify_dir = tempfile::tempdir().unwrap();
    let notify_path = notify_dir.path().join("notify");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let said = || {
        let mut buf = [0u8; 4096];
        let n = notify.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    // It gives the service only the variables it is told to.
    let mut s = start(&[format!("--setenv=NOTIFY_SOCKET={}", notify_path.display())]);
    let first = s.child.id() as i32;
    assert!(said().contains("READY=1"));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| keep_alive_client(s.port, stop.clone()))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    kill(Pid::from_raw(first), Signal::SIGUSR2).unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || s
            .child
            .try_wait()
            .unwrap()
            .is_some()),
        "the old process did not hand over and exit"
    );
    assert!(s.child.try_wait().unwrap().is_some_and(|st| st.success()));
    let new = serving(&s.uploads);
    assert_eq!(new.len(), 1, "one process serves now: {new:?}");
    assert_ne!(new[0], first);
    // The old process says it reloads; the new one, that it is the main
    // process now, and ready.
    let mut heard = Vec::new();
    while !heard.iter().any(|m: &String| m.contains("READY=1")) {
        heard.push(said());
    }
    assert!(heard.iter().any(|m| m.contains("RELOADING=1")), "{heard:?}");
    let ready = heard.last().unwrap();
    assert!(ready.contains(&format!("MAINPID={}", new[0])), "{heard:?}");
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for (ok, failed) in clients.into_iter().map(|c| c.join().unwrap()) {
        assert_eq!(failed, 0, "{ok} answered, then a failure");
        assert!(ok > 10, "{ok} answered");
    }

    // A stream under way when SIGTERM comes is let finish; new connections
    // are not taken meanwhile.
    let port = s.port;
    let events = std::thread::spawn(move || {
        let began = Instant::now();
        let o = curl(&["-N", &format!("http://127.0.0.1:{port}/events")]);
        (o, began.elapsed())
    });
    std::thread::sleep(Duration::from_millis(1000));
    kill(Pid::from_raw(new[0]), Signal::SIGTERM).unwrap();
    assert!(
        std::iter::repeat_with(said)
            .take(5)
            .any(|m| m.contains("STOPPING=1")),
        "STOPPING=1 on SIGTERM"
    );
    std::thread::sleep(Duration::from_millis(200));
    let refused = curl(&["--max-time", "1", &format!("http://127.0.0.1:{port}/")]);
    assert!(
        !refused.status.success(),
        "a new request after SIGTERM: {}",
        text(&refused)
    );
    let (o, took) = events.join().unwrap();
    assert!(o.status.success(), "{o:?}");
    assert_eq!(text(&o).matches("data: tick").count(), 6, "{}", text(&o));
    assert!(took >= Duration::from_millis(2900), "{took:?}");
    assert!(
        wait_until(Duration::from_secs(3), || serving(&s.uploads).is_empty()),
        "the drained process exits"
    );
}
