//! Static files as users expect them.

mod common;
use common::*;
use std::io::Write;

fn server() -> (Handoff, tempfile::TempDir, tempfile::TempDir) {
    let site = site();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), "secret\n").unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("secret.txt"),
        site.path().join("leak.txt"),
    )
    .unwrap();
    std::os::unix::fs::symlink(outside.path(), site.path().join("leakdir")).unwrap();
    std::os::unix::fs::symlink("a.txt", site.path().join("inside.txt")).unwrap();
    let h = Handoff::start(&["--root", &root_arg(site.path())]);
    (h, site, outside)
}

fn req(h: &Handoff, head: &str) -> Response {
    let mut s = h.connect();
    write!(s, "{head}Host: t\r\nConnection: close\r\n\r\n").unwrap();
    read_response(&mut s).unwrap()
}

#[test]
fn sets_content_type_from_the_extension() {
    let (h, _s, _o) = server();
    assert_eq!(
        h.get("/a.txt").header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(
        h.get("/data.json").header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(
        h.get("/").header("content-type"),
        Some("text/html; charset=utf-8")
    );
}

#[test]
fn serves_index_html_for_folders_and_redirects_without_the_slash() {
    let (h, _s, _o) = server();
    assert_eq!(h.get("/").text(), "<h1>home</h1>\n");
    assert_eq!(h.get("/sub/").text(), "<p>sub</p>\n");
    let r = h.get("/sub?x=1");
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("/sub/?x=1"));
}

#[test]
fn answers_conditional_requests_with_304() {
    let (h, _s, _o) = server();
    let r = h.get("/a.txt");
    let etag = r.header("etag").unwrap().to_string();
    let lm = r.header("last-modified").unwrap().to_string();
    let r = req(
        &h,
        &format!("GET /a.txt HTTP/1.1\r\nIf-None-Match: {etag}\r\n"),
    );
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    assert_eq!(
        req(
            &h,
            &format!("GET /a.txt HTTP/1.1\r\nIf-None-Match: W/{etag}\r\n")
        )
        .status,
        304
    );
    assert_eq!(
        req(
            &h,
            &format!("GET /a.txt HTTP/1.1\r\nIf-Modified-Since: {lm}\r\n")
        )
        .status,
        304
    );
    assert_eq!(
        req(&h, "GET /a.txt HTTP/1.1\r\nIf-None-Match: \"other\"\r\n").status,
        200
    );
    assert_eq!(
        req(
            &h,
            "GET /a.txt HTTP/1.1\r\nIf-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT\r\n"
        )
        .status,
        200
    );
    assert_eq!(
        req(&h, "GET /a.txt HTTP/1.1\r\nIf-Match: \"other\"\r\n").status,
        412
    );
}

#[test]
fn answers_ranges_with_206_and_416() {
    let (h, _s, _o) = server();
    let r = req(&h, "GET /ten.bin HTTP/1.1\r\nRange: bytes=2-4\r\n");
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-range"), Some("bytes 2-4/10"));
    assert_eq!(r.body, b"234");
    assert_eq!(
        req(&h, "GET /ten.bin HTTP/1.1\r\nRange: bytes=-3\r\n").body,
        b"789"
    );
    let r = req(&h, "GET /ten.bin HTTP/1.1\r\nRange: bytes=10-\r\n");
    assert_eq!(r.status, 416);
    assert_eq!(r.header("content-range"), Some("bytes */10"));
    let r = req(&h, "GET /ten.bin HTTP/1.1\r\nRange: bytes=0-1,4-5\r\n");
    assert_eq!((r.status, r.body.len()), (200, 10));
    let r = req(
        &h,
        "GET /ten.bin HTTP/1.1\r\nRange: bytes=2-4\r\nIf-Range: \"stale\"\r\n",
    );
    assert_eq!(r.status, 200);
}

/// Every status a file path can answer with, first from a fresh open and
/// then from the open-file cache: no header is sent twice (a 416 once
/// carried the file's `text/css` beside its own `text/plain`).
#[test]
fn no_answer_a_file_gives_repeats_a_header_fresh_or_cached() {
    let (h, _s, _o) = server();
    let etag = h.get("/a.txt").header("etag").unwrap().to_string();
    let cases = [
        ("GET /a.txt HTTP/1.1\r\n".to_string(), 200),
        ("GET /ten.bin HTTP/1.1\r\nRange: bytes=2-4\r\n".into(), 206),
        (
            "GET /ten.bin HTTP/1.1\r\nRange: bytes=5000-\r\n".into(),
            416,
        ),
        (
            format!("GET /a.txt HTTP/1.1\r\nIf-None-Match: {etag}\r\n"),
            304,
        ),
        ("GET /a.txt HTTP/1.1\r\nIf-Match: \"other\"\r\n".into(), 412),
        ("GET /sub HTTP/1.1\r\n".into(), 301),
        ("GET /nothing HTTP/1.1\r\n".into(), 404),
        ("DELETE /a.txt HTTP/1.1\r\n".into(), 405),
    ];
    for round in ["fresh", "cached"] {
        for (head, status) in &cases {
            let r = req(&h, head);
            assert_eq!(r.status, *status, "{round}: {head}");
            let mut names: Vec<String> = r
                .headers
                .iter()
                .map(|(n, _)| n.to_ascii_lowercase())
                .collect();
            names.sort();
            let before = names.len();
            names.dedup();
            assert_eq!(before, names.len(), "{round} {status}: {:?}", r.headers);
        }
    }
    let r = req(&h, "GET /ten.bin HTTP/1.1\r\nRange: bytes=5000-\r\n");
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(r.header("accept-ranges"), Some("bytes"));
}

#[test]
fn refuses_every_way_out_of_the_root() {
    let (h, _s, _o) = server();
    for path in [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/sub/%2E%2E/%2e%2e/secret.txt",
        "/..%2fsecret.txt",
        "/leak.txt",
        "/leakdir/secret.txt",
        "/a.txt%00.html",
    ] {
        let r = h.get(path);
        assert!(r.status == 404 || r.status == 400, "{path} → {}", r.status);
        assert!(!r.text().contains("secret"), "{path} leaked");
    }
    assert_eq!(
        h.get("/inside.txt").text(),
        "alpha\n",
        "a symlink inside the root is fine"
    );
}

#[test]
fn answers_head_without_a_body_and_refuses_other_methods() {
    let (h, _s, _o) = server();
    let mut s = h.connect();
    s.write_all(b"HEAD /a.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let all = read_to_close(&mut s);
    assert!(all.contains("Content-Length: 6\r\n"));
    assert!(all.ends_with("\r\n\r\n"), "{all}");
    let r = req(&h, "DELETE /a.txt HTTP/1.1\r\n");
    assert_eq!(r.status, 405);
    assert_eq!(h.get("/missing").status, 404);
}

#[test]
fn a_fifo_in_the_root_is_refused_without_blocking_the_server() {
    let (h, site, _o) = server();
    let fifo = site.path().join("pipe");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    let t = std::time::Instant::now();
    let mut s = h.connect();
    s.set_read_timeout(Some(std::time::Duration::from_secs(3)))
        .unwrap();
    s.write_all(b"GET /pipe HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let r = read_response(&mut s).expect("an answer, not a hang");
    assert_eq!(r.status, 404);
    assert!(t.elapsed() < std::time::Duration::from_secs(2));
    assert_eq!(h.get("/a.txt").text(), "alpha\n");
}
