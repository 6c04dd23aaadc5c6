//! SIGUSR2: the running process starts the binary again, hands it its
//! listeners and drains once the new one is ready (docs/upgrade.md, steps
//! 1 to 4). No connection attempt is refused across the change; a new
//! binary that fails leaves the old one serving.

mod common;
use common::*;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Requests on new connections, one after another, until told to stop:
/// (answered, failed).
fn keep_asking(addr: SocketAddr, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<(usize, usize)> {
    std::thread::spawn(move || {
        let (mut ok, mut failed) = (0, 0);
        while !stop.load(Ordering::Relaxed) {
            let answer = TcpStream::connect(addr).and_then(|mut s| {
                s.set_read_timeout(Some(Duration::from_secs(5)))?;
                s.write_all(b"GET /a.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")?;
                Ok(read_to_close(&mut s))
            });
            match answer {
                Ok(a) if a.ends_with("alpha\n") => ok += 1,
                other => {
                    eprintln!("request failed: {other:?}");
                    failed += 1
                }
            }
        }
        (ok, failed)
    })
}

/// The PID the old process logged for the new one.
fn new_pid(log: &str) -> Option<i32> {
    new_pids(log).first().copied()
}

#[test]
fn sigusr2_hands_the_listener_to_a_new_process_and_no_connection_is_refused() {
    let site = site();
    let mut h = Handoff::start(&["--root", &root_arg(site.path())]);
    let stop = Arc::new(AtomicBool::new(false));
    let client = keep_asking(h.addr, stop.clone());
    std::thread::sleep(Duration::from_millis(300));
    h.signal(Signal::SIGUSR2);
    let status = h
        .wait_exit(Duration::from_secs(10))
        .expect("the old process exited");
    assert!(status.success());
    let log = h.log();
    let pid = new_pid(&log).expect("the new process's pid in the log");
    assert_ne!(pid as u32, h.pid());
    // The new process serves the same port after the old one is gone.
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let (ok, failed) = client.join().unwrap();
    let gone = TcpStream::connect(h.addr).and_then(|mut s| {
        s.write_all(b"GET /b.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")?;
        Ok(read_to_close(&mut s))
    });
    let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    assert_eq!(failed, 0, "{ok} answered, {failed} failed\n{log}");
    assert!(ok > 10, "{ok} answered");
    assert!(gone.unwrap().ends_with("bravo\n"), "the new process serves");
    assert!(
        log.contains("upgrade: serving; the old process hands its connections over"),
        "{log}"
    );
}

/// A client that pinned the self-signed certificate's fingerprint keeps
/// working after `systemctl reload`: the old process hands the
/// certificate and its key to the new one.
#[test]
#[ignore = "full tier (scripts/test.sh): needs openssl"]
fn a_self_signed_certificate_is_the_same_after_an_upgrade() {
    let site = site();
    let mut h = Handoff::start(&[
        "--root",
        &root_arg(site.path()),
        "--listen",
        "127.0.0.1:0,tls=on",
    ]);
    let a = h.addr_of("https");
    let printed = h.printed_fingerprint();
    let before = served_fingerprint(a);
    assert!(before.ends_with(&printed), "{before} / {printed}");
    h.signal(Signal::SIGUSR2);
    assert!(
        h.wait_exit(Duration::from_secs(10))
            .expect("the old process exited")
            .success()
    );
    let log = h.log();
    let pid = new_pid(&log).expect("the new process's pid in the log");
    let after = served_fingerprint(a);
    let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    assert_eq!(after, before, "{log}");
    // The new process says the same fingerprint it serves.
    assert_eq!(
        log.matches(&format!("fingerprint={printed}")).count(),
        2,
        "{log}"
    );
}

#[test]
fn a_new_binary_that_exits_at_once_leaves_the_old_one_serving() {
    let site = site();
    let h = Handoff::start_env(
        &[("HANDOFF_UPGRADE_EXE", "/bin/false")],
        &["--root", &root_arg(site.path())],
    );
    let before = h.settled_fds();
    let stop = Arc::new(AtomicBool::new(false));
    let client = keep_asking(h.addr, stop.clone());
    h.signal(Signal::SIGUSR2);
    assert!(
        wait_until(Duration::from_secs(5), || h
            .log()
            .contains("upgrade failed")),
        "{}",
        h.log()
    );
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let (ok, failed) = client.join().unwrap();
    assert_eq!(failed, 0, "{ok} answered");
    assert!(
        h.log()
            .contains("the new process ended before it was ready"),
        "{}",
        h.log()
    );
    assert_eq!(
        h.get("/a.txt").text(),
        "alpha\n",
        "the old process serves on"
    );
    assert!(
        wait_until(Duration::from_secs(3), || h.fds() == before),
        "fds {before} → {}",
        h.fds()
    );
}

/// A "new binary" that starts and never says READY (`HANDOFF_UPGRADE_EXE`),
/// in a folder that lives as long as the first value.
fn never_ready_binary() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("hangs");
    std::fs::write(&script, "#!/bin/sh\nexec sleep 60\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    (dir, script)
}

#[test]
fn a_new_binary_that_never_becomes_ready_is_killed_at_the_deadline() {
    let site = site();
    let (_dir, script) = never_ready_binary();
    let h = Handoff::start_env(
        &[("HANDOFF_UPGRADE_EXE", script.to_str().unwrap())],
        &["--root", &root_arg(site.path()), "--upgrade-timeout", "1"],
    );
    let served = Arc::new(AtomicUsize::new(0));
    h.signal(Signal::SIGUSR2);
    let t = std::time::Instant::now();
    assert!(
        wait_until(Duration::from_secs(5), || {
            if h.get("/a.txt").status == 200 {
                served.fetch_add(1, Ordering::Relaxed);
            }
            h.log().contains("was not ready within")
        }),
        "{}",
        h.log()
    );
    assert!(t.elapsed() >= Duration::from_millis(900));
    assert!(served.load(Ordering::Relaxed) > 0, "served while waiting");
    // The hung process was killed and collected: no child is left.
    let children = std::fs::read_dir(format!("/proc/{}/task", h.pid()))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("children")).ok())
        .collect::<String>();
    assert!(
        wait_until(Duration::from_secs(2), || {
            std::fs::read_dir(format!("/proc/{}/task", h.pid()))
                .unwrap()
                .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("children")).ok())
                .all(|c| c.trim().is_empty())
        }),
        "children left: {children}"
    );
    assert_eq!(h.get("/b.txt").text(), "bravo\n");
}

/// A stop that comes while the new binary is starting: the old process
/// ends the upgrade first (the new process killed and collected), then
/// drains and exits. Before, it exited at once and left the new process
/// running, re-parented to init, with nobody to kill it at its deadline.
#[test]
fn sigterm_while_an_upgrade_is_starting_leaves_no_process_behind() {
    let site = site();
    let (_dir, script) = never_ready_binary();
    let mut h = Handoff::start_env(
        &[("HANDOFF_UPGRADE_EXE", script.to_str().unwrap())],
        &["--root", &root_arg(site.path()), "--upgrade-timeout", "30"],
    );
    h.signal(Signal::SIGUSR2);
    let mut started = Vec::new();
    assert!(
        wait_until(Duration::from_secs(5), || {
            started = children_of(h.pid() as i32);
            !started.is_empty()
        }),
        "the new process never started: {}",
        h.log()
    );
    h.signal(Signal::SIGTERM);
    let status = h
        .wait_exit(Duration::from_secs(10))
        .expect("the old process exited");
    assert!(status.success(), "{}", h.log());
    for pid in started {
        assert!(
            wait_until(Duration::from_secs(2), || !alive(pid)),
            "the new process {pid} is still running\n{}",
            h.log()
        );
    }
    assert!(
        h.log().contains("ending the upgrade under way first"),
        "{}",
        h.log()
    );
}

/// Requests on one keep-alive connection, one after another, until told
/// to stop: (answered, failed). A close or a reset is a failure: the
/// connection is never opened again.
fn keep_alive_client(
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<(usize, usize, u16)> {
    std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let local_port = s.local_addr().unwrap().port();
        let (mut ok, mut failed) = (0, 0);
        while !stop.load(Ordering::Relaxed) && failed == 0 {
            if s.write_all(b"GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n")
                .is_err()
            {
                failed += 1;
                break;
            }
            // One answer: read until its body (the file) ends it.
            let mut got = Vec::new();
            let mut buf = [0u8; 1024];
            let whole = loop {
                match std::io::Read::read(&mut s, &mut buf) {
                    Ok(0) | Err(_) => break false,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
                if got.ends_with(b"\r\n\r\nalpha\n") {
                    break got.starts_with(b"HTTP/1.1 200 ");
                }
            };
            if whole {
                ok += 1;
            } else {
                failed += 1;
            }
        }
        (ok, failed, local_port)
    })
}

#[test]
fn keep_alive_connections_stay_the_same_across_ten_upgrades_in_a_row() {
    let site = site();
    let mut h = Handoff::start(&["--root", &root_arg(site.path())]);
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| keep_alive_client(h.addr, stop.clone()))
        .collect();
    let serving = upgrade_in_a_row(&mut h, 10, Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let results: Vec<_> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let _ = kill(Pid::from_raw(serving), Signal::SIGTERM);
    for (ok, failed, port) in &results {
        assert_eq!(
            *failed,
            0,
            "port {port}: {ok} answered, then a failure\n{}",
            h.log()
        );
    }
    assert!(results.iter().all(|r| r.0 > 20), "{results:?}");
}

#[test]
fn keep_alive_connections_move_to_the_new_process_without_a_close() {
    let site = site();
    let mut h = Handoff::start(&["--root", &root_arg(site.path())]);
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| keep_alive_client(h.addr, stop.clone()))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    h.signal(Signal::SIGUSR2);
    let status = h.wait_exit(Duration::from_secs(10));
    let log = h.log();
    let status = status.unwrap_or_else(|| panic!("the old process did not exit\n{log}"));
    assert!(status.success());
    let pid = new_pid(&log).expect("the new process's pid in the log");
    // The same connections go on, served by the new process alone.
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let results: Vec<_> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    for (ok, failed, port) in &results {
        assert_eq!(
            *failed, 0,
            "connection from port {port}: {ok} answered, then a failure\n{log}"
        );
        assert!(*ok > 10, "{results:?}");
    }
    assert!(log.contains("handing connections over"), "{log}");
}

fn upgrade_command(control: &std::path::Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_handoff"))
        .args(["upgrade", "--control"])
        .arg(control)
        .output()
        .unwrap()
}

#[test]
fn handoff_upgrade_says_the_new_pid_or_why_the_old_process_serves_on() {
    let site = site();
    let dir = tempfile::tempdir().unwrap();
    let control = dir.path().join("control.sock");
    // A failing new binary first: non-zero, with the reason.
    let h = Handoff::start_env(
        &[("HANDOFF_UPGRADE_EXE", "/bin/false")],
        &[
            "--root",
            &root_arg(site.path()),
            "--control",
            control.to_str().unwrap(),
        ],
    );
    let out = upgrade_command(&control);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the new process ended before it was ready"),
        "{err}"
    );
    assert_eq!(
        h.get("/a.txt").text(),
        "alpha\n",
        "the old process serves on"
    );
    drop(h);

    // Then a real one: the new PID, and the old process is gone.
    let control = dir.path().join("control2.sock");
    let mut h = Handoff::start(&[
        "--root",
        &root_arg(site.path()),
        "--control",
        control.to_str().unwrap(),
    ]);
    let out = upgrade_command(&control);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pid: i32 = text
        .trim()
        .rsplit(' ')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{text}"));
    assert_ne!(pid as u32, h.pid());
    assert!(
        h.wait_exit(Duration::from_secs(10))
            .is_some_and(|s| s.success())
    );
    let served = h.get("/b.txt").text();
    assert_eq!(served, "bravo\n");
    // The control socket went over with the listeners: the same path
    // reaches the new process, and upgrades it in turn.
    let out = upgrade_command(&control);
    let text = String::from_utf8_lossy(&out.stdout);
    let third: i32 = text
        .trim()
        .rsplit(' ')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{text} {}", String::from_utf8_lossy(&out.stderr)));
    assert!(third != pid && third as u32 != h.pid());
    assert!(wait_until(Duration::from_secs(10), || !alive(pid)));
    assert_eq!(h.get("/a.txt").text(), "alpha\n");
    let _ = kill(Pid::from_raw(third), Signal::SIGTERM);
}

#[test]
fn systemd_hears_reloading_then_the_new_main_pid_and_ready_and_no_stopping() {
    let site = site();
    let mut n = NotifySocket::new();
    let mut h = Handoff::start_env(&[n.env()], &["--root", &root_arg(site.path())]);
    assert!(
        n.wait_for("READY=1", Duration::from_secs(5)).is_some(),
        "{:?}",
        n.got
    );
    h.signal(Signal::SIGUSR2);
    assert!(
        h.wait_exit(Duration::from_secs(10))
            .is_some_and(|s| s.success())
    );
    let pid = new_pid(&h.log()).expect("a new process");
    let main = n.wait_for(&format!("MAINPID={pid}"), Duration::from_secs(5));
    let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    let got = &n.got;
    let main = main.unwrap_or_else(|| panic!("{got:?}"));
    assert!(
        got[main].contains("READY=1"),
        "MAINPID and READY in one message: {got:?}"
    );
    // The old process said RELOADING (the unit shows "reloading" until the
    // new one is ready), and no STOPPING: the service goes on.
    let reloading = n
        .position("RELOADING=1")
        .unwrap_or_else(|| panic!("{got:?}"));
    assert!(
        reloading < main
            && got[reloading].contains("MONOTONIC_USEC=")
            && got[reloading].contains("STATUS=reloading: upgrade"),
        "{got:?}"
    );
    assert!(
        !got[..main].iter().any(|x| x.contains("STOPPING=1")),
        "the old process said STOPPING during a hand-over: {got:?}"
    );
}

#[test]
fn a_failed_upgrade_says_ready_again_with_why_after_reloading() {
    let site = site();
    let mut n = NotifySocket::new();
    let h = Handoff::start_env(
        &[n.env(), ("HANDOFF_UPGRADE_EXE", "/bin/false")],
        &["--root", &root_arg(site.path())],
    );
    assert!(n.wait_for("READY=1", Duration::from_secs(5)).is_some());
    h.signal(Signal::SIGUSR2);
    let failed = n.wait_for("upgrade failed, serving on", Duration::from_secs(5));
    let got = &n.got;
    let failed = failed.unwrap_or_else(|| panic!("{got:?}"));
    let reloading = n
        .position("RELOADING=1")
        .unwrap_or_else(|| panic!("{got:?}"));
    assert!(
        reloading < failed && got[failed].contains("READY=1"),
        "{got:?}"
    );
    assert!(!got.iter().any(|x| x.contains("MAINPID=")), "{got:?}");
    assert_eq!(h.get("/a.txt").text(), "alpha\n");
}
