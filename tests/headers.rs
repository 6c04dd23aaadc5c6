//! What an operator adds to responses without writing Rust: header fields
//! (`--header`, with or without a path prefix), content types (`--mime`),
//! error pages (`--error-page`), redirects (`--redirect`) and virtual
//! hosts (`--vhost`).

mod common;
use common::*;
use std::io::Write;
use std::process::Command;

const HSTS: &str = "Strict-Transport-Security:max-age=63072000; includeSubDomains";
const CACHE: &str = "/sub/Cache-Control:max-age=31536000, immutable";

#[test]
fn a_header_without_a_prefix_is_on_every_response_errors_too() {
    let site = site();
    let h = Handoff::start(&["--root", &root_arg(site.path()), "--header", HSTS]);
    for (path, status) in [("/a.txt", 200), ("/missing", 404), ("/sub", 301)] {
        let r = h.get_with(path, "");
        assert_eq!(r.status, status, "{path}");
        assert_eq!(
            r.header("strict-transport-security"),
            Some("max-age=63072000; includeSubDomains"),
            "{path}"
        );
    }
}

#[test]
fn a_header_with_a_prefix_is_on_the_2xx_and_3xx_answers_under_it_only() {
    let site = site();
    std::fs::write(site.path().join("sub/app.js"), "let x = 1;\n").unwrap();
    let h = Handoff::start(&["--root", &root_arg(site.path()), "--header", CACHE]);
    let cached = Some("max-age=31536000, immutable");
    let r = h.get_with("/sub/app.js", "");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("cache-control"), cached);
    let tag = r.header("etag").unwrap().to_string();
    let r = h.get_with("/sub/app.js", &format!("If-None-Match: {tag}\r\n"));
    assert_eq!(r.status, 304);
    assert_eq!(r.header("cache-control"), cached, "a 304 too");
    // A missing asset is not to be cached for a year; other paths not at all.
    assert_eq!(
        h.get_with("/sub/missing.js", "").header("cache-control"),
        None
    );
    assert_eq!(h.get_with("/a.txt", "").header("cache-control"), None);
    // `/sub` is not under `/sub/` (its 301 points there).
    assert_eq!(h.get_with("/sub", "").header("cache-control"), None);
}

#[test]
fn a_header_rule_that_would_break_responses_stops_the_start_and_says_why() {
    let site = site();
    for (rule, says) in [
        ("Content-Length:5", "Content-Length is the server's to send"),
        ("Bad Name:x", "is not a field name"),
        ("assets/X-A:y", "a path prefix begins with /"),
    ] {
        let err = refused_start(&["--root", &root_arg(site.path()), "--header", rule]);
        assert!(err.contains(says), "{rule}: {err}");
    }
}

#[test]
fn mime_types_come_before_the_built_in_table() {
    let site = site();
    std::fs::write(site.path().join("notes.md"), "# notes\n").unwrap();
    std::fs::write(site.path().join("data.blob"), "x").unwrap();
    std::fs::write(site.path().join("page.HTML"), "<p>\n").unwrap();
    let h = Handoff::start(&[
        "--root",
        &root_arg(site.path()),
        "--mime",
        "md=text/markdown",
        "--mime",
        ".blob=application/x-blob; v=2",
        "--mime",
        "html=application/xhtml+xml",
    ]);
    let ty = |p: &str| h.get_with(p, "").header("content-type").map(String::from);
    assert_eq!(
        ty("/notes.md").as_deref(),
        Some("text/markdown; charset=utf-8")
    );
    assert_eq!(ty("/data.blob").as_deref(), Some("application/x-blob; v=2"));
    assert_eq!(ty("/page.HTML").as_deref(), Some("application/xhtml+xml"));
    // Others keep the table's.
    assert_eq!(ty("/a.txt").as_deref(), Some("text/plain; charset=utf-8"));
}

#[test]
fn an_error_page_of_the_sites_own_answers_with_the_status_kept() {
    let site = site();
    std::fs::create_dir(site.path().join("errors")).unwrap();
    let page = "<h1>Not here</h1>\n";
    std::fs::write(site.path().join("errors/404.html"), page).unwrap();
    std::fs::write(site.path().join("errors/405.txt"), "no such method\n").unwrap();
    let h = Handoff::start(&[
        "--root",
        &root_arg(site.path()),
        "--error-page",
        "404=errors/404.html",
        "--error-page",
        "405=/errors/405.txt",
    ]);
    let r = h.get_with("/missing", "");
    assert_eq!(r.status, 404);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(r.text(), page);
    assert_eq!(
        r.header("etag"),
        None,
        "the page's validators are not the error's"
    );
    let mut s = h.connect();
    write!(
        s,
        "HEAD /missing/too HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let head = read_to_close(&mut s);
    assert!(head.starts_with("HTTP/1.1 404 "), "{head}");
    assert!(
        head.contains(&format!("Content-Length: {}\r\n", page.len())),
        "{head}"
    );
    assert!(head.ends_with("\r\n\r\n"), "no body for HEAD: {head}");
    let mut s = h.connect();
    write!(
        s,
        "DELETE /a.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let r = read_response(&mut s).unwrap();
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD, OPTIONS"));
    assert_eq!(r.text(), "no such method\n");
    // Statuses without a page keep the plain answer.
    assert_eq!(h.get_with("/a.txt", "Range: bytes=99-\r\n").status, 416);
    // The page itself is served as a file, as any other.
    assert_eq!(h.get_with("/errors/404.html", "").status, 200);
}

#[test]
fn an_error_page_that_does_not_open_stops_the_start_naming_it() {
    let site = site();
    for (arg, says) in [
        (
            "404=errors/none.html",
            "error page 404=errors/none.html: no such file beneath the root",
        ),
        ("200=a.txt", "an error status is 400 to 599"),
        ("404=../outside.html", "no such file beneath the root"),
    ] {
        let err = refused_start(&["--root", &root_arg(site.path()), "--error-page", arg]);
        assert!(err.contains(says), "{arg}: {err}");
    }
}

#[test]
fn a_redirect_sends_one_path_elsewhere_with_its_query() {
    let site = site();
    let h = Handoff::start(&[
        "--root",
        &root_arg(site.path()),
        "--redirect",
        "/old=/a.txt",
        "--redirect",
        "/blog=https://blog.example.org/?from=us",
        "--header",
        HSTS,
    ]);
    let r = h.get("/old");
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("/a.txt"));
    assert!(
        r.header("strict-transport-security").is_some(),
        "headers for every response too"
    );
    assert_eq!(
        h.get("/old?x=1&y=2").header("location"),
        Some("/a.txt?x=1&y=2")
    );
    // The target's own query wins.
    assert_eq!(
        h.get("/blog?x=1").header("location"),
        Some("https://blog.example.org/?from=us")
    );
    // Exact paths: what is beneath is served as before.
    assert_eq!(h.get("/old/more").status, 404);
    // A body sent to a redirected path is read and dropped, not a 405.
    let mut s = h.connect();
    write!(
        s,
        "POST /old HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc"
    )
    .unwrap();
    assert_eq!(read_response(&mut s).unwrap().status, 301);
    let err = refused_start(&[
        "--root",
        &root_arg(site.path()),
        "--redirect",
        "/a=ftp://x/",
    ]);
    assert!(err.contains("TO is a path or an http(s):// URL"), "{err}");
}

/// A GET for `path` naming `host`.
fn get_host(h: &Handoff, host: &str, path: &str) -> Response {
    let mut s = h.connect();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    read_response(&mut s).unwrap()
}

/// Two sites beside the default root, each with its own `a.txt`.
fn vhost_sites() -> (tempfile::TempDir, tempfile::TempDir, tempfile::TempDir) {
    let (main, one, all) = (
        site(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    std::fs::write(one.path().join("a.txt"), "one\n").unwrap();
    std::fs::write(all.path().join("a.txt"), "all\n").unwrap();
    (main, one, all)
}

#[test]
fn the_host_picks_the_folder_exact_names_and_wildcards_others_get_the_root() {
    let (main, one, all) = vhost_sites();
    let h = Handoff::start(&[
        "--root",
        &root_arg(main.path()),
        "--vhost",
        &format!("one.example={}", root_arg(one.path())),
        "--vhost",
        &format!("*.example={}", root_arg(all.path())),
    ]);
    for (host, body) in [
        ("one.example", "one\n"),
        ("ONE.Example:8080", "one\n"),
        ("two.example", "all\n"),
        ("a.b.example", "all\n"),
        ("example", "alpha\n"),
        ("elsewhere.org", "alpha\n"),
    ] {
        let r = get_host(&h, host, "/a.txt");
        assert_eq!((r.status, r.text()), (200, body.to_string()), "{host}");
    }
    // An absolute-form target's authority names the host, as RFC 9112 says.
    let mut s = h.connect();
    write!(
        s,
        "GET http://one.example/a.txt HTTP/1.1\r\nHost: elsewhere.org\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    assert_eq!(read_response(&mut s).unwrap().text(), "one\n");
}

#[test]
fn an_unknown_host_gets_421_under_vhost_strict_and_a_missing_root_stops_the_start() {
    let (main, one, _all) = vhost_sites();
    let h = Handoff::start(&[
        "--root",
        &root_arg(main.path()),
        "--vhost",
        &format!("one.example={}", root_arg(one.path())),
        "--vhost-strict",
    ]);
    assert_eq!(get_host(&h, "one.example", "/a.txt").text(), "one\n");
    assert_eq!(get_host(&h, "other.example", "/a.txt").status, 421);
    let err = refused_start(&[
        "--root",
        &root_arg(main.path()),
        "--vhost",
        "one.example=/no/such/folder",
    ]);
    assert!(err.contains("vhost one.example=/no/such/folder"), "{err}");
}

#[test]
#[ignore = "full tier (scripts/test.sh): needs curl"]
fn curl_sees_the_added_fields_over_http2_as_over_http11() {
    let site = site();
    let h = Handoff::start(&[
        "--root",
        &root_arg(site.path()),
        "--header",
        HSTS,
        "--header",
        CACHE,
    ]);
    for version in ["--http1.1", "--http2-prior-knowledge"] {
        let out = Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "-D", "-", version])
            .arg(format!("http://{}/sub/", h.addr))
            .output()
            .expect("curl must be installed (scripts/test.sh installs it)");
        let head = String::from_utf8_lossy(&out.stdout).to_lowercase();
        assert!(
            head.contains("strict-transport-security: max-age=63072000; includesubdomains\r\n"),
            "{version}: {head}"
        );
        assert!(
            head.contains("cache-control: max-age=31536000, immutable\r\n"),
            "{version}: {head}"
        );
    }
}

#[test]
#[ignore = "full tier (scripts/test.sh): needs curl"]
fn curl_over_http2_reaches_the_virtual_host_its_authority_names() {
    let (main, one, _all) = vhost_sites();
    let h = Handoff::start(&[
        "--root",
        &root_arg(main.path()),
        "--vhost",
        &format!("one.example={}", root_arg(one.path())),
    ]);
    let port = h.addr.port();
    for (host, body) in [("one.example", "one\n"), ("two.example", "alpha\n")] {
        let out = Command::new("curl")
            .args(["-sS", "--http2-prior-knowledge", "--connect-to"])
            .arg(format!("{host}:{port}:127.0.0.1:{port}"))
            .arg(format!("http://{host}:{port}/a.txt"))
            .output()
            .expect("curl must be installed (scripts/test.sh installs it)");
        assert_eq!(String::from_utf8_lossy(&out.stdout), body, "{host}");
    }
}

/// A request on `h`'s plain listener, as raw HTTP/1.x.
fn plain_request(h: &Handoff, head: &str) -> Response {
    let mut s = h.connect();
    s.write_all(head.as_bytes()).unwrap();
    read_response(&mut s).unwrap()
}

#[test]
fn redirect_https_sends_plain_requests_to_the_tls_listener_with_path_and_query() {
    let site = site();
    let h = Handoff::start(&[
        "--root",
        &root_arg(site.path()),
        "--listen",
        "127.0.0.1:0,tls=on",
        "--redirect-https",
        "--header",
        HSTS,
    ]);
    let tls = h.addr_of("https").port();
    let r = plain_request(
        &h,
        "GET /a.txt?x=1 HTTP/1.1\r\nHost: site.test:8080\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 301);
    let want = format!("https://site.test:{tls}/a.txt?x=1");
    assert_eq!(r.header("location"), Some(&want[..]));
    assert!(r.header("strict-transport-security").is_some());
    // A POST stays a POST (308), its body read and dropped.
    let r = plain_request(
        &h,
        "POST /form HTTP/1.1\r\nHost: [::1]\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
    );
    assert_eq!(r.status, 308);
    let want = format!("https://[::1]:{tls}/form");
    assert_eq!(r.header("location"), Some(&want[..]));
    // HTTP/1.0 without Host: the address it came to.
    let r = plain_request(&h, "GET /a.txt HTTP/1.0\r\n\r\n");
    let want = format!("https://127.0.0.1:{tls}/a.txt");
    assert_eq!(r.header("location"), Some(&want[..]));
    // A Host that is not a name or an address is not echoed into Location.
    let r = plain_request(
        &h,
        "GET / HTTP/1.1\r\nHost: evil.org/x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.header("location"), None);
}

#[test]
fn redirect_https_uses_https_port_and_leaves_443_out_of_the_url() {
    let site = site();
    let h = Handoff::start(&[
        "--root",
        &root_arg(site.path()),
        "--redirect-https",
        "--https-port",
        "443",
    ]);
    let r = plain_request(
        &h,
        "GET /sub/ HTTP/1.1\r\nHost: example.org\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("https://example.org/sub/"));
    // Nowhere to send them: the start stops, saying so.
    let err = refused_start(&[
        "--root",
        &root_arg(site.path()),
        "--listen",
        "127.0.0.1:0",
        "--redirect-https",
    ]);
    assert!(err.contains("no TCP listener serves TLS"), "{err}");
    let err = refused_start(&["--root", &root_arg(site.path()), "--https-port", "8443"]);
    assert!(err.contains("--redirect-https"), "{err}");
}

#[test]
#[ignore = "full tier (scripts/test.sh): needs curl"]
fn curl_follows_redirect_https_to_the_file_over_tls() {
    let site = site();
    let h = Handoff::start(&[
        "--root",
        &root_arg(site.path()),
        "--listen",
        "127.0.0.1:0,tls=on",
        "--redirect-https",
    ]);
    let out = Command::new("curl")
        .args([
            "-sS",
            "-k",
            "-L",
            "-m",
            "5",
            "-w",
            "\n%{url_effective} %{http_code}",
        ])
        .arg(format!("http://127.0.0.1:{}/a.txt", h.addr.port()))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let tls = h.addr_of("https").port();
    assert!(out.status.success(), "{text}");
    assert!(
        text.ends_with(&format!("https://127.0.0.1:{tls}/a.txt 200")),
        "{text}"
    );
    assert!(text.starts_with(&std::fs::read_to_string(site.path().join("a.txt")).unwrap()));
}
