//! The command line as a new user meets it: `serve` is the default command,
//! and without `--root` the demo site is looked for beside the binary.

mod common;
use common::*;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_handoff");

/// Starts `exe ARGS`, returning the child and the address it printed.
fn start(exe: &Path, args: &[&str], log: &Path) -> (Child, Option<std::net::SocketAddr>) {
    let mut child = Command::new(exe)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let _ = BufReader::new(child.stdout.take().unwrap()).read_line(&mut line);
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .map(|a| a.parse().unwrap());
    (child, addr)
}

fn fetch(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    std::io::Write::write_all(
        &mut s,
        format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .unwrap();
    read_response(&mut s).unwrap().text()
}

#[test]
fn serve_options_work_without_the_serve_command() {
    let site = site();
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = start(
        Path::new(BIN),
        &["--root", &root_arg(site.path()), "--listen", "127.0.0.1:0"],
        &dir.path().join("log"),
    );
    let addr = addr.expect("no address printed");
    assert_eq!(fetch(addr, "/a.txt"), "alpha\n");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn without_root_an_installed_binary_serves_the_site_installed_beside_it() {
    let prefix = tempfile::tempdir().unwrap();
    let bin = prefix.path().join("bin");
    let share = prefix.path().join("share/handoff/site");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&share).unwrap();
    std::fs::write(share.join("index.html"), "installed site\n").unwrap();
    let exe = bin.join("handoff");
    std::fs::copy(BIN, &exe).unwrap();
    let log = prefix.path().join("log");
    let (mut child, addr) = start(&exe, &["--listen", "127.0.0.1:0"], &log);
    let addr = addr.expect("no address printed");
    assert_eq!(fetch(addr, "/"), "installed site\n");
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("installed beside the binary"), "{log}");

    // Elsewhere, with no site beside it, it says what it looked for.
    std::fs::remove_dir_all(prefix.path().join("share")).unwrap();
    let out = Command::new(&exe)
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no --root given"), "{err}");
}

#[test]
fn without_root_a_binary_run_from_the_repository_serves_its_demo_site() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let (mut child, addr) = start(Path::new(BIN), &["--listen", "127.0.0.1:0"], &log);
    let addr = addr.expect("no address printed");
    let index =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/site/index.html")).unwrap();
    assert_eq!(fetch(addr, "/"), index);
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("the repository's demo site")
    );
}
