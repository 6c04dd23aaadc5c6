//! Resources under abuse: no fd leak after a mixed run, no spinning when the
//! process runs out of fds, and max_concurrent on the binary.

mod common;
use common::*;
use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

#[test]
fn holds_the_same_fds_after_a_mixed_run_of_aborts_errors_and_timeouts() {
    let site = site();
    std::fs::write(site.path().join("big.bin"), vec![b'z'; 8 << 20]).unwrap();
    let h = Handoff::start(&[
        "--root",
        &root_arg(site.path()),
        "--setup-timeout",
        "1",
        "--write-timeout",
        "1",
    ]);
    assert_eq!(h.get("/a.txt").status, 200);
    h.warm(&["/a.txt", "/b.txt", "/big.bin"]);
    let before = h.settled_fds();

    let mut keep = Vec::new();
    for i in 0..20 {
        let mut s = h.connect();
        match i % 7 {
            0 => drop(s),                                                     // connect and leave
            1 => s.write_all(b"GET /a.txt HTTP/1.1\r\nHo").unwrap(), // half a head, then gone
            2 => s.write_all(b"GET / HTTP/1.1\r\nHost : x\r\n\r\n").unwrap(), // bad request
            3 => {
                // reset by the peer mid-response
                s.write_all(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
                    .unwrap();
                let sock = socket2_linger_zero(s);
                drop(sock);
                continue;
            }
            4 => keep.push(s), // idle: cut off by the setup deadline
            5 => {
                s.write_all(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
                    .unwrap();
                keep.push(s); // never reads: cut off by the write deadline
                continue;
            }
            _ => {
                s.write_all(b"GET /b.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                    .unwrap();
                assert!(read_to_close(&mut s).ends_with("bravo\n"));
            }
        }
    }
    assert!(
        wait_until(Duration::from_secs(8), || h.fds() == before),
        "fds before {before}, after {}\n{}",
        h.fds(),
        h.log()
    );
    assert_eq!(h.get("/a.txt").status, 200);
    drop(keep);
}

/// Sets SO_LINGER to zero so that closing sends a RST.
fn socket2_linger_zero(s: TcpStream) -> TcpStream {
    use nix::sys::socket::{setsockopt, sockopt::Linger};
    setsockopt(
        &s,
        Linger,
        &nix::libc::linger {
            l_onoff: 1,
            l_linger: 0,
        },
    )
    .unwrap();
    s
}

#[test]
#[ignore = "full tier (scripts/test.sh): needs prlimit"]
fn rests_instead_of_spinning_when_out_of_fds_and_recovers() {
    let site = site();
    // A low fd limit: the server runs out of fds long before the clients do.
    let h = Handoff::start_wrapped(
        &["prlimit", "--nofile=24:24"],
        &["--root", &root_arg(site.path())],
    );
    let mut clients: Vec<TcpStream> = (0..40).map(|_| h.connect()).collect();
    std::thread::sleep(Duration::from_millis(300));
    let cpu0 = h.cpu_time();
    std::thread::sleep(Duration::from_secs(2));
    let spent = h.cpu_time() - cpu0;
    assert!(
        spent < Duration::from_millis(500),
        "spent {spent:?} of CPU in 2 s while out of fds"
    );
    assert!(h.log().contains("pausing this listener"), "{}", h.log());
    // The accepted clients are still answered; with every fd in use the
    // file cannot be opened, which is a 503, not a 404.
    clients[0]
        .write_all(b"GET /a.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let resp = read_to_close(&mut clients[0]);
    assert!(
        resp.starts_with("HTTP/1.1 503 ") && resp.contains("Retry-After: 1"),
        "{resp}\n{}",
        h.log()
    );
    clients.clear();
    assert!(wait_until(Duration::from_secs(5), || {
        TcpStream::connect(h.addr)
            .and_then(|mut s| {
                s.set_read_timeout(Some(Duration::from_secs(2)))?;
                s.write_all(b"GET /b.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")?;
                Ok(read_to_close(&mut s).ends_with("bravo\n"))
            })
            .unwrap_or(false)
    }));
}

#[test]
fn the_binary_serves_at_most_max_concurrent_connections() {
    let site = site();
    let h = Handoff::start(&["--root", &root_arg(site.path()), "--max-concurrent", "2"]);
    let mut clients: Vec<TcpStream> = (0..4).map(|_| h.connect()).collect();
    for c in &mut clients {
        c.write_all(b"GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    let mut served = Vec::new();
    for c in &mut clients {
        c.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 1024];
        served.push(
            std::io::Read::read(c, &mut buf)
                .map(|n| n > 0)
                .unwrap_or(false),
        );
    }
    assert_eq!(served.iter().filter(|s| **s).count(), 2, "{served:?}");
    // Closing the served ones lets the waiting ones in.
    let mut waiting: Vec<TcpStream> = clients
        .into_iter()
        .zip(served)
        .filter(|(_, s)| !*s)
        .map(|(c, _)| c)
        .collect();
    for c in &mut waiting {
        c.set_nonblocking(false).unwrap();
        assert_eq!(read_response(c).unwrap().text(), "alpha\n");
    }
}
