//! `--user`: root binds and reads the keys, then the server, its
//! WebSocket workers and their `exec:` children run as the user; a start
//! that cannot drop root does not serve.

mod common;
use common::*;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use tungstenite::Message;

/// The real, effective, saved and filesystem uids of a process.
fn ids(pid: i32, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .unwrap()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn must_be_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "--user tests run as root (scripts/test.sh runs them so)"
    );
}

#[test]
#[ignore = "full tier (scripts/test.sh): needs root, openssl"]
fn user_drops_root_after_binding_and_reading_a_root_only_key_and_workers_run_as_it() {
    must_be_root();
    let site = site();
    std::fs::set_permissions(site.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // Root's alone: served to nobody, it is refused.
    std::fs::write(site.path().join("secret.txt"), "root only\n").unwrap();
    std::fs::set_permissions(
        site.path().join("secret.txt"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let keys = tempfile::tempdir().unwrap();
    let (cert, key) = (keys.path().join("c.pem"), keys.path().join("k.pem"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl");
    assert!(out.status.success());
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let h = Handoff::start(&[
        "--root",
        &root_arg(site.path()),
        "--listen",
        "127.0.0.1:0,tls=on",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        "--ws",
        "/id=exec:echo $(id -u):$(id -g):$(id -G)",
        "--ws-workers",
        "1",
        "--user",
        "nobody",
    ]);
    let pid = h.pid() as i32;
    assert_eq!(ids(pid, "Uid:"), "65534 65534 65534 65534");
    assert_eq!(ids(pid, "Gid:"), "65534 65534 65534 65534");
    assert_eq!(ids(pid, "Groups:"), "65534");
    // Every thread, not only the one that called setuid.
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let status = std::fs::read_to_string(task.unwrap().path().join("status")).unwrap();
        assert!(
            status.contains("Uid:\t65534\t65534\t65534\t65534"),
            "{status}"
        );
    }
    assert!(h.log().contains("dropped root"));
    assert_eq!(h.get("/a.txt").status, 200);
    assert_eq!(h.get("/secret.txt").status, 403);
    // TLS works: the key was read as root.
    let https = h.addr_of("https");
    let out = Command::new("curl")
        .args(["-sSk", "-m", "5"])
        .arg(format!("https://{https}/a.txt"))
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "alpha\n");
    // The worker and its exec child.
    let mut workers = Vec::new();
    assert!(wait_until(Duration::from_secs(5), || {
        workers = children_of(pid);
        !workers.is_empty()
    }));
    assert_eq!(ids(workers[0], "Uid:"), "65534 65534 65534 65534");
    let (mut ws, _) =
        tungstenite::client(format!("ws://{}/id", h.addr), h.connect()).expect("handshake");
    let said = loop {
        match ws.read().expect("a message") {
            Message::Text(t) => break t.to_string(),
            _ => continue,
        }
    };
    assert_eq!(said.trim(), "65534:65534:65534");
}

#[test]
#[ignore = "full tier (scripts/test.sh): needs root, setpriv"]
fn user_stops_the_start_when_it_cannot_drop_root_or_find_the_user() {
    must_be_root();
    let err = refused_start(&["--listen", "127.0.0.1:0", "--user", "no-such-user-here"]);
    assert!(err.contains("no such user"), "{err}");
    let err = refused_start(&["--listen", "127.0.0.1:0", "--user", "root"]);
    assert!(err.contains("that is root"), "{err}");
    // Started as another user, it cannot become this one.
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_handoff"))
        .args(["--listen", "127.0.0.1:0", "--user", "daemon"])
        .output()
        .expect("setpriv (util-linux)");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs root; running as uid 65534"), "{err}");
    // Already the user: nothing to drop, it serves.
    let mut child = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_handoff"))
        .args(["--listen", "127.0.0.1:0", "--user", "nobody:nogroup"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let addr = announced_addr(&mut child);
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    std::io::Write::write_all(
        &mut s,
        b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert!(read_response(&mut s).is_ok());
    let _ = child.kill();
    let _ = child.wait();
}
