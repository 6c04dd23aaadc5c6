//! The real binary, spoken to in raw bytes: keep-alive, pipelining, the
//! strict parsing rules and the size limits.

mod common;
use common::*;
use std::io::Write;

/// Files answer a request with a body at once and drop the body
/// (`BodyPlan::Discard`); a WebSocket route reads it whole first, so the
/// body rules are checked on `/ws`.
fn server() -> (Handoff, tempfile::TempDir) {
    serve_site(&["--max-body", "1000", "--ws", "/ws=echo"])
}

fn status_of(resp: &str) -> &str {
    resp.get(9..12).unwrap_or("")
}

#[test]
fn serves_several_requests_on_one_keep_alive_connection() {
    let (h, _site) = server();
    let mut s = h.connect();
    for path in ["/a.txt", "/b.txt", "/c.txt"] {
        write!(s, "GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let r = read_response(&mut s).unwrap();
        assert_eq!(r.status, 200);
        assert!(r.header("date").is_some());
        assert!(r.header("connection").is_none());
    }
}

#[test]
fn answers_pipelined_requests_in_order() {
    let (h, _site) = server();
    let mut s = h.connect();
    s.write_all(
        b"GET /c.txt HTTP/1.1\r\nHost: t\r\n\r\nGET /a.txt HTTP/1.1\r\nHost: t\r\n\r\nHEAD /b.txt HTTP/1.1\r\nHost: t\r\n\r\nGET /b.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let all = read_to_close(&mut s);
    let c = all.find("charlie").unwrap();
    let a = all.find("alpha").unwrap();
    let b = all.find("bravo").unwrap();
    assert!(c < a && a < b, "{all}");
    assert_eq!(all.matches("HTTP/1.1 200 OK").count(), 4);
    assert_eq!(
        all.matches("bravo").count(),
        1,
        "HEAD must not carry a body"
    );
}

#[test]
fn answers_many_pipelined_requests_past_the_queue_bound() {
    let (h, _site) = server();
    let mut s = h.connect();
    let mut req = b"GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n".repeat(199);
    req.extend_from_slice(b"GET /c.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    s.write_all(&req).unwrap();
    let all = read_to_close(&mut s);
    assert_eq!(all.matches("HTTP/1.1 200 OK").count(), 200);
    assert!(all.ends_with("charlie\n"));
}

#[test]
fn refuses_each_smuggling_attempt_with_400_and_closes() {
    let (h, _site) = server();
    let cases: &[&str] = &[
        "POST /ws HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "POST /ws HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        "POST /ws HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
        "POST /ws HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5x\r\nhello\r\n0\r\n\r\n",
        "POST /ws HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: t\r\nX-Folded: a\r\n  b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: t\r\nX-Space : a\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: t\r\nX: a\rb\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: t\r\nHost: u\r\n\r\n",
        "GET / HTTP/1.1\r\n\r\n",
    ];
    for case in cases {
        let resp = h.exchange(format!("{case}GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        assert_eq!(status_of(&resp), "400", "{case:?} → {resp}");
        assert!(resp.contains("Connection: close"), "{case:?}");
        assert!(
            !resp.contains("alpha"),
            "a request after a refused one was served: {case:?}"
        );
    }
}

#[test]
fn maps_each_size_limit_to_its_status() {
    let (h, _site) = server();
    let long_line = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "x".repeat(10_000));
    assert_eq!(status_of(&h.exchange(long_line.as_bytes())), "414");
    let big_head = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX: {}\r\n\r\n",
        "x".repeat(40_000)
    );
    assert_eq!(status_of(&h.exchange(big_head.as_bytes())), "431");
    let many: String = (0..150).map(|i| format!("X-{i}: v\r\n")).collect();
    assert_eq!(
        status_of(&h.exchange(format!("GET / HTTP/1.1\r\nHost: t\r\n{many}\r\n").as_bytes())),
        "431"
    );
    assert_eq!(
        status_of(&h.exchange(b"POST /ws HTTP/1.1\r\nHost: t\r\nContent-Length: 1001\r\n\r\n")),
        "413"
    );
    let chunked_over = format!(
        "POST /ws HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3e9\r\n{}\r\n0\r\n\r\n",
        "x".repeat(1001)
    );
    assert_eq!(status_of(&h.exchange(chunked_over.as_bytes())), "413");
}

/// The HTTP/2 preface on a plain listener is HTTP/2 with prior knowledge
/// (the server's SETTINGS comes first); with `--http2 off` it is a version
/// this server does not speak.
#[test]
fn answers_the_http2_preface_with_settings_or_with_505_when_http2_is_off() {
    use std::io::{Read, Write};
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let (h, _site) = server();
    let mut s = h.connect();
    s.write_all(preface).unwrap();
    let mut frame = [0u8; 9];
    s.read_exact(&mut frame).unwrap();
    // A frame header: 24-bit length, type 4 (SETTINGS), flags 0, stream 0.
    assert_eq!((frame[3], frame[4]), (4, 0), "{frame:?}");
    assert_eq!(&frame[5..9], &[0, 0, 0, 0]);

    let (h, _site) = serve_site(&["--http2", "off"]);
    assert_eq!(status_of(&h.exchange(preface)), "505");

    // Off on one listener only: the other still speaks HTTP/2.
    // (The harness adds a listener of its own, with HTTP/2.)
    let (h, _site) = serve_site(&["--listen", "127.0.0.1:0,http2=off"]);
    let plain: Vec<std::net::SocketAddr> = h
        .lines
        .iter()
        .filter_map(|l| l.strip_prefix("listening on http://"))
        .map(|a| a.parse().unwrap())
        .collect();
    assert_eq!(plain.len(), 2, "{:?}", h.lines);
    let mut answers = Vec::new();
    for a in plain {
        let mut s = std::net::TcpStream::connect(a).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        s.write_all(preface).unwrap();
        // A SETTINGS frame is at least 9 bytes; the 505's status line more.
        let mut first = [0u8; 9];
        s.read_exact(&mut first).unwrap();
        answers.push(first.starts_with(b"HTTP/1.1 "));
    }
    answers.sort();
    assert_eq!(answers, [false, true], "one 505, one SETTINGS");
}

#[test]
fn answers_unknown_codings_with_501_and_other_versions_with_505() {
    let (h, _site) = server();
    assert_eq!(
        status_of(
            &h.exchange(
                b"POST /ws HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
            )
        ),
        "501"
    );
    assert_eq!(
        status_of(&h.exchange(b"GET / HTTP/3.0\r\nHost: t\r\n\r\n")),
        "505"
    );
}

#[test]
fn sends_100_continue_before_reading_a_body_that_is_wanted() {
    let (h, _site) = server();
    let mut s = h.connect();
    s.write_all(
        b"POST /ws HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
    )
    .unwrap();
    let interim = read_head(&mut s).unwrap();
    assert_eq!(interim.status, 100);
    s.write_all(b"hello").unwrap();
    let r = read_response(&mut s).unwrap();
    assert_eq!(r.status, 426, "a plain request on a WebSocket route");
    // The body was consumed, so the connection is still in step.
    s.write_all(b"GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut s).unwrap().text(), "alpha\n");
}

#[test]
fn answers_a_post_to_a_file_at_once_and_drops_its_body_in_step() {
    let (h, _site) = server();
    let mut s = h.connect();
    // The answer comes before any of the body is sent.
    s.write_all(b"POST /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n")
        .unwrap();
    let r = read_response(&mut s).unwrap();
    assert_eq!(r.status, 405, "the file handler takes no POST");
    assert_eq!(r.header("allow"), Some("GET, HEAD, OPTIONS"));
    assert_eq!(r.header("connection"), None, "kept alive");
    s.write_all(&[b'z'; 5000]).unwrap();
    s.write_all(b"GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut s).unwrap().text(), "alpha\n");
    // A client waiting for 100 Continue gets the answer and a close: it
    // may or may not send the body after it.
    let mut s = h.connect();
    s.write_all(
        b"POST /a.txt HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
    )
    .unwrap();
    let all = read_to_close(&mut s);
    assert!(all.starts_with("HTTP/1.1 405 "), "{all}");
    assert!(!all.contains("100 Continue") && all.contains("Connection: close"));
    // Larger than --max-body is no matter for a body that is dropped; over
    // the discard limit (1 MiB), the answer closes.
    let mut s = h.connect();
    s.write_all(b"POST /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 2000000\r\n\r\n")
        .unwrap();
    let all = read_to_close(&mut s);
    assert!(all.starts_with("HTTP/1.1 405 "), "{all}");
    assert!(all.contains("Connection: close"), "{all}");
}

#[test]
fn reads_a_chunked_body_with_trailers_and_stays_in_step() {
    let (h, _site) = server();
    let mut s = h.connect();
    s.write_all(b"POST /a.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\nGET /b.txt HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut s).unwrap().status, 405);
    assert_eq!(read_response(&mut s).unwrap().text(), "bravo\n");
}

#[test]
fn handles_head_options_asterisk_and_absolute_form() {
    let (h, _site) = server();
    let mut s = h.connect();
    s.write_all(b"HEAD /a.txt HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let r = read_head(&mut s).unwrap();
    assert_eq!(r.header("content-length"), Some("6"));
    s.write_all(b"OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let r = read_response(&mut s).unwrap();
    assert_eq!(r.status, 204);
    assert_eq!(r.header("allow"), Some("GET, HEAD, OPTIONS"));
    s.write_all(b"GET http://t/b.txt HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut s).unwrap().text(), "bravo\n");
}

#[test]
fn keeps_http10_alive_only_when_asked() {
    let (h, _site) = server();
    let mut s = h.connect();
    s.write_all(b"GET /a.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .unwrap();
    let r = read_response(&mut s).unwrap();
    assert_eq!(r.header("connection"), Some("keep-alive"));
    s.write_all(b"GET /b.txt HTTP/1.0\r\n\r\n").unwrap();
    let rest = read_to_close(&mut s);
    assert!(
        rest.contains("Connection: close") && rest.ends_with("bravo\n"),
        "{rest}"
    );
}

#[test]
fn serves_a_request_sent_one_byte_at_a_time() {
    let (h, _site) = server();
    let mut s = h.connect();
    s.set_nodelay(true).unwrap();
    for b in b"GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n" {
        s.write_all(std::slice::from_ref(b)).unwrap();
    }
    assert_eq!(read_response(&mut s).unwrap().text(), "alpha\n");
}
