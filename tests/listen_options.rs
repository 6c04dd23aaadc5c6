//! How the sockets we bind are set up: `reuseport` and `v6only` on TCP,
//! `mode`, `owner` and `group` on a Unix socket.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::time::Duration;

fn answers(mut s: impl Read + Write) -> bool {
    s.write_all(b"GET /a.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .is_ok()
        && {
            let mut got = String::new();
            let _ = s.read_to_string(&mut got);
            got.starts_with("HTTP/1.1 200 ") && got.ends_with("alpha\n")
        }
}

#[test]
fn two_processes_share_a_port_with_reuseport_and_a_third_without_it_is_refused() {
    let site = site();
    let root = root_arg(site.path());
    let port = free_port();
    let shared = format!("127.0.0.1:{port},reuseport");
    let a = Handoff::start(&["--root", &root, "--listen", &shared]);
    let b = Handoff::start(&["--root", &root, "--listen", &shared]);
    for _ in 0..4 {
        assert!(answers(TcpStream::connect(("127.0.0.1", port)).unwrap()));
    }
    let err = refused_start(&["--root", &root, "--listen", &format!("127.0.0.1:{port}")]);
    assert!(err.contains("in use"), "{err}");
    drop((a, b));
}

#[test]
fn v6only_keeps_ipv4_clients_off_an_ipv6_listener_and_off_lets_them_on() {
    let site = site();
    let root = root_arg(site.path());
    let (only, both) = (free_port(), free_port());
    let _h = Handoff::start(&[
        "--root",
        &root,
        "--listen",
        &format!("[::]:{only},v6only"),
        "--listen",
        &format!("[::]:{both},v6only=off"),
    ]);
    let timeout = Duration::from_secs(2);
    let v4 = |port| TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), timeout);
    let v6 =
        |port| TcpStream::connect_timeout(&(std::net::Ipv6Addr::LOCALHOST, port).into(), timeout);
    assert!(v4(only).is_err(), "an IPv4 client on a v6only listener");
    assert!(answers(v6(only).unwrap()));
    assert!(answers(v4(both).unwrap()));
    assert!(answers(v6(both).unwrap()));
}

#[test]
fn a_unix_listener_has_its_mode_and_group_from_the_start() {
    let site = site();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.sock");
    let gid = nix::unistd::getgid().as_raw();
    let spec = format!("{},mode=0640,group={gid}", path.display());
    let _h = Handoff::start(&["--root", &root_arg(site.path()), "--listen", &spec]);
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o640);
    assert_eq!(meta.gid(), gid);
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names,
        ["h.sock"],
        "nothing left of the name it was bound under"
    );
    assert!(answers(UnixStream::connect(&path).unwrap()));
}

#[test]
fn a_unix_listener_for_an_unknown_owner_stops_the_start_and_leaves_nothing() {
    let site = site();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.sock");
    let spec = format!("{},owner=no-such-user-here", path.display());
    let err = refused_start(&["--root", &root_arg(site.path()), "--listen", &spec]);
    assert!(
        err.contains("owner=no-such-user-here: no such user"),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
