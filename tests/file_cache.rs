//! The open-file cache: hot files are kept open (small ones in memory) and
//! trusted for `--file-cache-check`; after that a changed, deleted or
//! replaced file is seen, and the fds it holds stay bounded.

mod common;
use common::*;
use std::io::Write;
use std::time::Duration;

fn etag(h: &Handoff, path: &str) -> (u16, String, Option<String>) {
    let r = h.get(path);
    let tag = r.header("etag").map(str::to_string);
    (r.status, r.text(), tag)
}

#[test]
fn a_changed_file_is_served_fresh_with_a_new_etag_within_the_default_second() {
    let site = site();
    let h = Handoff::start(&["--root", &root_arg(site.path())]);
    let (_, body, old_tag) = etag(&h, "/a.txt");
    assert_eq!(body, "alpha\n");
    std::fs::write(site.path().join("a.txt"), "alpha, rewritten\n").unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    let (status, body, new_tag) = etag(&h, "/a.txt");
    assert_eq!((status, body.as_str()), (200, "alpha, rewritten\n"));
    assert_ne!(old_tag, new_tag);
}

#[test]
fn a_file_changed_in_place_with_the_same_size_gets_a_new_etag() {
    let site = site();
    let h = Handoff::start(&[
        "--root",
        &root_arg(site.path()),
        "--file-cache-check",
        "0.2",
    ]);
    let (_, _, old_tag) = etag(&h, "/a.txt");
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(site.path().join("a.txt"), "ALPHA\n").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let (_, body, new_tag) = etag(&h, "/a.txt");
    assert_eq!(body, "ALPHA\n");
    assert_ne!(old_tag, new_tag);
}

#[test]
fn a_deleted_file_is_404_once_the_check_has_passed() {
    let site = site();
    let h = Handoff::start(&[
        "--root",
        &root_arg(site.path()),
        "--file-cache-check",
        "0.2",
    ]);
    assert_eq!(h.get("/b.txt").status, 200);
    std::fs::remove_file(site.path().join("b.txt")).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(h.get("/b.txt").status, 404);
    std::fs::write(site.path().join("b.txt"), "back\n").unwrap();
    assert_eq!(h.get("/b.txt").text(), "back\n", "a 404 is not cached");
}

#[test]
fn a_file_replaced_by_a_fifo_is_refused_and_the_loop_goes_on() {
    let site = site();
    let h = Handoff::start(&[
        "--root",
        &root_arg(site.path()),
        "--file-cache-check",
        "0.2",
    ]);
    assert_eq!(h.get("/c.txt").status, 200);
    let path = site.path().join("c.txt");
    std::fs::remove_file(&path).unwrap();
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(h.get("/c.txt").status, 404);
    assert_eq!(h.get("/a.txt").text(), "alpha\n");
}

#[test]
fn ranges_and_304_are_answered_from_a_cached_file() {
    let site = site();
    let h = Handoff::start(&["--root", &root_arg(site.path())]);
    let (_, _, tag) = etag(&h, "/ten.bin");
    let tag = tag.unwrap();
    let r = h.exchange(
        b"GET /ten.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=2-4\r\nConnection: close\r\n\r\n",
    );
    assert!(
        r.starts_with("HTTP/1.1 206 ") && r.ends_with("\r\n\r\n234"),
        "{r}"
    );
    let r = h.exchange(
        format!(
            "GET /ten.bin HTTP/1.1\r\nHost: t\r\nIf-None-Match: {tag}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    );
    assert!(r.starts_with("HTTP/1.1 304 "), "{r}");
}

#[test]
fn holds_a_bounded_number_of_fds_over_ten_thousand_distinct_files() {
    let site = site();
    let many = site.path().join("many");
    std::fs::create_dir(&many).unwrap();
    // 20 KiB each, past what is kept in memory (an entry in memory holds
    // no fd), and sparse: no disk spent on the zeros after the number.
    const SIZE: u64 = 20 * 1024;
    for i in 0..10_000 {
        let path = many.join(format!("{i}.txt"));
        std::fs::write(&path, format!("{i}\n")).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(SIZE)
            .unwrap();
    }
    // One loop: the bound is per loop.
    let h = Handoff::start(&[
        "--root",
        &root_arg(site.path()),
        "--file-cache",
        "64",
        "--threads",
        "1",
    ]);
    h.settled_fds();
    let before = h.all_fds();
    let mut s = h.connect();
    // Pipelined in batches of 100 on one connection.
    for batch in 0..100 {
        let mut reqs = String::new();
        for i in batch * 100..(batch + 1) * 100 {
            reqs.push_str(&format!("GET /many/{i}.txt HTTP/1.1\r\nHost: t\r\n\r\n"));
        }
        s.write_all(reqs.as_bytes()).unwrap();
        for i in batch * 100..(batch + 1) * 100 {
            let r = read_response(&mut s).unwrap();
            assert_eq!(r.status, 200, "{i}");
            assert_eq!(r.body.len() as u64, SIZE);
            assert!(r.body.starts_with(format!("{i}\n").as_bytes()), "{i}");
        }
    }
    let after = h.all_fds();
    assert!(
        after <= before + 64 + 1,
        "fds {before} before, {after} after"
    );
    assert!(
        after >= before + 60,
        "the cache held too little: {before} → {after}"
    );
}
