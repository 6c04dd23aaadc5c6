//! Limits per client (`--max-conns-per-ip`, `--rate-per-ip`): keyed by the
//! PROXY header's address when there is one, IPv6 by /64; and a flood of
//! 100,000 distinct addresses that leaves memory bounded and a probe
//! answered.

mod common;
use common::*;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// A keep-alive GET on `s`, its status and Retry-After.
fn get(s: &mut TcpStream) -> (u16, Option<String>) {
    s.write_all(b"GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let r = read_response(s).unwrap();
    (r.status, r.header("retry-after").map(str::to_string))
}

/// Was `s` closed by the server without an answer to a request?
fn closed_unanswered(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(b"GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    let mut buf = [0u8; 64];
    matches!(s.read(&mut buf), Ok(0) | Err(_))
}

#[test]
fn max_conns_per_ip_closes_a_clients_next_connection_before_reading_it() {
    let site = site();
    let h = Handoff::start(&[
        "--root",
        &root_arg(site.path()),
        "--listen",
        "127.0.0.1:0,proxy=v1",
        "--max-conns-per-ip",
        "2",
    ]);
    // Straight: the socket's peer, 127.0.0.1.
    let mut a = h.connect();
    let mut b = h.connect();
    assert_eq!(get(&mut a).0, 200);
    assert_eq!(get(&mut b).0, 200);
    assert!(closed_unanswered(&mut h.connect()));
    drop(a);
    // Its count goes down when one closes.
    assert!(wait_until(Duration::from_secs(5), || {
        let mut c = h.connect();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.write_all(b"GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n")
            .is_ok()
            && read_response(&mut c).is_ok_and(|r| r.status == 200)
    }));
    // Behind PROXY, the named client counts, IPv6 by its /64.
    let proxied = h.nth_addr(1);
    let mut held = Vec::new();
    for client in ["2001:db8:0:1::1", "2001:db8:0:1::2"] {
        let mut s = via_proxy(proxied, client);
        assert_eq!(get(&mut s).0, 200, "{client}");
        held.push(s);
    }
    assert!(closed_unanswered(&mut via_proxy(
        proxied,
        "2001:db8:0:1::3"
    )));
    let mut other = via_proxy(proxied, "2001:db8:0:2::1");
    assert_eq!(get(&mut other).0, 200, "another /64");
    assert!(
        h.log()
            .contains("refused: the client has its most connections open")
    );
    drop(b);
}

#[test]
fn rate_per_ip_answers_429_with_retry_after_past_the_burst() {
    let site = site();
    let h = Handoff::start(&[
        "--root",
        &root_arg(site.path()),
        "--listen",
        "127.0.0.1:0,proxy=v1",
        "--rate-per-ip",
        "1/s,burst=3",
    ]);
    let proxied = h.nth_addr(1);
    let mut s = via_proxy(proxied, "203.0.113.5");
    for _ in 0..3 {
        assert_eq!(get(&mut s).0, 200);
    }
    let (status, retry) = get(&mut s);
    assert_eq!((status, retry.as_deref()), (429, Some("1")));
    // The connection stays; another client has its own allowance, and a
    // new connection from the same one does not reset it.
    let mut t = via_proxy(proxied, "203.0.113.6");
    assert_eq!(get(&mut t).0, 200);
    assert_eq!(get(&mut via_proxy(proxied, "203.0.113.5")).0, 429);
    // A second later, one more.
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(get(&mut s).0, 200);
    assert_eq!(get(&mut s).0, 429);
    // A refused upload is not read for the handler: 429 all the same.
    write!(
        s,
        "POST /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello"
    )
    .unwrap();
    assert_eq!(read_response(&mut s).unwrap().status, 429);
    for bad in ["0/s", "5/h", "5/s,burst=0"] {
        let err = refused_start(&["--root", &root_arg(site.path()), "--rate-per-ip", bad]);
        assert!(err.contains("--rate-per-ip"), "{bad}: {err}");
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap()
}

#[test]
#[ignore = "full tier (scripts/test.sh): 100,000 connections"]
fn a_flood_of_100000_proxy_addresses_keeps_memory_bounded_and_a_probe_answered() {
    let site = site();
    let h = Handoff::start_env(
        &[("RUST_LOG", "warn")],
        &[
            "--root",
            &root_arg(site.path()),
            "--listen",
            "127.0.0.1:0,proxy=v2",
            "--rate-per-ip",
            "1/s,burst=2",
            "--max-conns-per-ip",
            "4",
            "--access-log-format",
            "off",
        ],
    );
    let proxied = h.nth_addr(1);
    // Warm: the file cache, the tables, the buffers.
    let mut probe = h.connect();
    assert_eq!(get(&mut probe).0, 200);
    let before = rss_kib(h.pid());
    const TOTAL: u32 = 100_000;
    const THREADS: u32 = 4;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let flood: Vec<_> = (0..THREADS)
        .map(|t| {
            let answered = answered.clone();
            std::thread::spawn(move || {
                let mut statuses = [0u32; 2];
                for i in (t..TOTAL).step_by(THREADS as usize) {
                    // 10.x.y.z: each connection a new client.
                    let src = (0x0a00_0000u32 + i).to_be_bytes();
                    let mut s = TcpStream::connect(proxied).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                    let mut req = v2_header(src, 40000);
                    req.extend_from_slice(
                        b"GET /a.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                    );
                    s.write_all(&req).unwrap();
                    let r = read_response(&mut s).unwrap();
                    statuses[usize::from(r.status != 200)] += 1;
                    answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                statuses
            })
        })
        .collect();
    // The probe asks throughout, as the same client: one request each
    // 1.05 s stays under its 1/s (the warm-up took one of its burst of 2).
    let mut worst = Duration::ZERO;
    let mut peak = before;
    let prober = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut worst = Duration::ZERO;
            let mut asked = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let t = Instant::now();
                assert_eq!(get(&mut probe).0, 200);
                worst = worst.max(t.elapsed());
                asked += 1;
                std::thread::sleep(Duration::from_millis(1050));
            }
            (worst, asked)
        })
    };
    let mut ok = 0;
    let mut halfway = None;
    for f in flood {
        while !f.is_finished() {
            let rss = rss_kib(h.pid());
            peak = peak.max(rss);
            if halfway.is_none() && answered.load(std::sync::atomic::Ordering::Relaxed) >= TOTAL / 2
            {
                halfway = Some(rss);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let [good, bad] = f.join().unwrap();
        assert_eq!(bad, 0, "a new client's first request passes");
        ok += good;
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let (probe_worst, asked) = prober.join().unwrap();
    worst = worst.max(probe_worst);
    assert_eq!(ok, TOTAL);
    let after = rss_kib(h.pid());
    let halfway = halfway.expect("sampled at half the flood");
    eprintln!(
        "RSS before {before} KiB, at 50,000 addresses {halfway} KiB, peak {peak} KiB, after {after} KiB; probe asked {asked} times, slowest {worst:?}"
    );
    // The rate table is fixed (1.5 MiB, allocated at start); connection
    // counts hold only open connections.
    assert!(
        peak < before + 8 * 1024,
        "RSS grew from {before} to {peak} KiB"
    );
    // Past 64 Ki addresses the table is full and only replaces: the
    // second 50,000 addresses cost nothing more (a map of every address
    // would grow by megabytes here).
    assert!(
        peak < halfway + 512,
        "RSS grew from {halfway} to {peak} KiB in the second half"
    );
    assert!(
        worst < Duration::from_millis(100),
        "the probe waited {worst:?}"
    );
    assert!(
        asked >= 3,
        "the flood ended before the probe asked: {asked}"
    );
}
