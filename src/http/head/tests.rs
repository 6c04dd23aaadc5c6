//! The head parser on byte slices.

use super::*;

fn parse_all(s: &[u8]) -> Result<Head, Reject> {
    let mut h = Head::default();
    let mut scanned = 0;
    match parse(s, &mut scanned, &Limits::default(), &mut h)? {
        true => Ok(h),
        false => panic!("incomplete"),
    }
}

fn status(s: &[u8]) -> u16 {
    parse_all(s).map(|_| 200).unwrap_or_else(|r| r.status)
}

#[test]
fn accepts_a_plain_get_and_splits_path_and_query() {
    let buf = b"GET /a/b?x=1 HTTP/1.1\r\nHost: example.com\r\n\r\n";
    let h = parse_all(buf).unwrap();
    assert_eq!(h.path.get(buf), b"/a/b");
    assert_eq!(h.query.unwrap().get(buf), b"x=1");
    assert_eq!(h.host.unwrap().get(buf), b"example.com");
    assert!(h.keep_alive);
    assert_eq!(h.framing, Some(Framing::None));
}

#[test]
fn takes_the_host_from_an_absolute_form_target() {
    let buf = b"GET http://other.example:8080/p?q HTTP/1.1\r\nHost: example.com\r\n\r\n";
    let h = parse_all(buf).unwrap();
    assert_eq!(h.host.unwrap().get(buf), b"other.example:8080");
    assert_eq!(h.path.get(buf), b"/p");
}

#[test]
fn rejects_content_length_with_chunked() {
    assert_eq!(
        status(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"),
        400
    );
}

#[test]
fn rejects_differing_duplicate_content_lengths_but_not_identical_ones() {
    assert_eq!(
        status(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"),
        400
    );
    assert_eq!(
        status(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 4\r\n\r\n"),
        400
    );
    assert_eq!(
        status(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n"),
        200
    );
}

#[test]
fn rejects_signed_or_spaced_content_length() {
    for v in ["+3", "-3", "3 3", "0x3", "", "99999999999999999999"] {
        let req = format!("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {v}\r\n\r\n");
        assert_eq!(status(req.as_bytes()), 400, "{v}");
    }
}

#[test]
fn rejects_obs_fold_space_before_colon_and_bare_cr() {
    assert_eq!(
        status(b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n 2\r\n\r\n"),
        400
    );
    assert_eq!(status(b"GET / HTTP/1.1\r\nHost : a\r\n\r\n"), 400);
    assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n"), 400);
    assert_eq!(status(b"GET / HTTP/1.1\rHost: a\r\n\r\n"), 400);
}

#[test]
fn refuses_a_bare_lf_anywhere_in_the_head() {
    for req in [
        &b"GET / HTTP/1.1\r\nHost: x\nContent-Length: 5\r\n\r\n"[..],
        b"GET / HTTP/1.1\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n\n",
        b"GET / HTTP/1.1\n\n",
        b"\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        assert_eq!(status(req), 400, "{:?}", String::from_utf8_lossy(req));
    }
    // Refused as soon as the LF arrives, not when the head is complete.
    let mut scanned = 0;
    let mut h = Head::default();
    let r = parse(
        b"GET / HTTP/1.1\r\nA: b\n",
        &mut scanned,
        &Limits::default(),
        &mut h,
    );
    assert_eq!(r.map_err(|e| e.status), Err(400));
}

#[test]
fn answers_unknown_transfer_codings_with_501_and_misplaced_chunked_with_400() {
    assert_eq!(
        status(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
        501
    );
    assert_eq!(
        status(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"),
        400
    );
    assert_eq!(
        status(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"),
        400
    );
    assert_eq!(
        status(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
        400
    );
    assert_eq!(
        status(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n"),
        200
    );
}

#[test]
fn answers_other_versions_with_505_and_garbage_with_400() {
    assert_eq!(status(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), 505);
    assert_eq!(status(b"GET / HTTP/1.2\r\nHost: a\r\n\r\n"), 505);
    assert_eq!(status(b"GET / HTTP/x\r\nHost: a\r\n\r\n"), 400);
    assert_eq!(status(b"GET /\r\n\r\n"), 400);
}

#[test]
fn checks_host() {
    assert_eq!(status(b"GET / HTTP/1.1\r\n\r\n"), 400);
    assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400);
    assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n"), 400);
    assert_eq!(status(b"GET / HTTP/1.0\r\n\r\n"), 200);
}

#[test]
fn allows_asterisk_form_only_for_options() {
    assert_eq!(status(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"), 200);
    assert_eq!(status(b"GET * HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_eq!(
        status(b"GET example.com:80 HTTP/1.1\r\nHost: a\r\n\r\n"),
        400
    );
}

#[test]
fn maps_sizes_to_414_and_431() {
    let long = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(9000));
    assert_eq!(status(long.as_bytes()), 414);
    let big = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
        "a".repeat(40000)
    );
    assert_eq!(status(big.as_bytes()), 431);
    let mut many = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
    for i in 0..120 {
        many.push_str(&format!("X{i}: y\r\n"));
    }
    many.push_str("\r\n");
    assert_eq!(status(many.as_bytes()), 431);
}

#[test]
fn refuses_a_long_request_line_before_its_end_arrives() {
    let mut h = Head::default();
    let mut scanned = 0;
    let part = format!("GET /{}", "a".repeat(9000));
    assert_eq!(
        parse(part.as_bytes(), &mut scanned, &Limits::default(), &mut h)
            .unwrap_err()
            .status,
        414
    );
}

#[test]
fn http10_keeps_alive_only_when_asked() {
    assert!(!parse_all(b"GET / HTTP/1.0\r\n\r\n").unwrap().keep_alive);
    assert!(
        parse_all(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
            .unwrap()
            .keep_alive
    );
    assert!(
        !parse_all(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            .unwrap()
            .keep_alive
    );
}

#[test]
fn refuses_a_tls_client_hello_on_a_plain_listener_at_once() {
    let mut h = Head::default();
    let mut scanned = 0;
    let hello = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01];
    let r = parse(&hello, &mut scanned, &Limits::default(), &mut h).unwrap_err();
    assert_eq!(r.status, 400);
    assert!(r.reason.contains("TLS"));
}

#[test]
fn answers_an_unknown_expectation_with_417() {
    assert_eq!(
        status(b"POST / HTTP/1.1\r\nHost: a\r\nExpect: something\r\n\r\n"),
        417
    );
}

#[test]
fn next_lf_finds_the_first_line_feed_as_a_byte_loop_would() {
    // Bytes a word-at-a-time search could mistake for LF (0x0a): its
    // neighbours, the same with the high bit set, and a 0x0b just after
    // an LF (where a borrow flags a byte above a true match).
    let others = [0x00, 0x09, 0x0b, 0x0d, 0x8a, 0x0a ^ 0xff, b'a', 0xff];
    for len in 0..40 {
        for lf in (0..len).map(Some).chain([None]) {
            for (k, &other) in others.iter().enumerate() {
                let mut buf: Vec<u8> = (0..len).map(|i| others[(i + k) % others.len()]).collect();
                buf.iter_mut().for_each(|b| {
                    if *b == b'\n' {
                        *b = other;
                    }
                });
                if let Some(at) = lf {
                    buf[at] = b'\n';
                    if at + 1 < len {
                        buf[at + 1] = 0x0b;
                    }
                }
                for from in 0..=len {
                    let want = buf[from..]
                        .iter()
                        .position(|&b| b == b'\n')
                        .map(|p| p + from);
                    assert_eq!(next_lf(&buf, from), want, "{buf:?} from {from}");
                }
            }
        }
    }
}
