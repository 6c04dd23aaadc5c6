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
    // A line that ends badly, a space in the target.
    for line in [
        &b"GET / HTTP/1.1 "[..],
        b"GET / HTTP/1.1\rX",
        b"GET /a b HTTP/1.1",
    ] {
        assert_eq!(status(&[line, b"\r\nHost: a\r\n\r\n"].concat()), 400);
    }
}

#[test]
fn checks_host() {
    assert_eq!(status(b"GET / HTTP/1.1\r\n\r\n"), 400);
    assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400);
    assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n"), 400);
    assert_eq!(status(b"GET / HTTP/1.0\r\n\r\n"), 200);
}

#[test]
fn takes_in_a_host_the_bytes_of_a_reg_name_an_ip_literal_and_a_port_only() {
    // RFC 3986: unreserved, sub-delims, pct-encoded's `%`, `:` and the
    // brackets of an IP literal.
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%:[]".contains(&b);
    for b in 0..=255u8 {
        assert_eq!(valid_host(&[b'a', b]), allowed(b), "{b:#x}");
    }
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

/// httparse's reading of a request line, with the target rules `check`
/// adds (ASCII, no fragment): what the request line took before it was
/// parsed by hand. `None`: refused.
fn httparse_line(head: &[u8]) -> Option<(String, String, u8)> {
    let mut fields = [httparse::EMPTY_HEADER; 8];
    let mut req = httparse::Request::new(&mut fields);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return None,
    }
    let target = req.path?;
    if !target.is_ascii() || target.contains('#') {
        return None;
    }
    Some((req.method?.to_string(), target.to_string(), req.version?))
}

fn our_line(head: &[u8]) -> Option<(String, String, u8)> {
    let line = request_line(head, None).ok()??;
    let target = line.target.get(head);
    scan_target(target).ok()?;
    let text = |s: Span| String::from_utf8(s.get(head).to_vec()).unwrap();
    Some((text(line.method), text(line.target), line.minor))
}

fn agree(head: &[u8]) {
    let shown = String::from_utf8_lossy(head);
    assert_eq!(our_line(head), httparse_line(head), "{shown:?}");
}

#[test]
fn agrees_with_httparse_on_request_lines() {
    let methods: [&[u8]; 8] = [
        b"GET",
        b"M-SEARCH",
        b"get",
        b"",
        b"G T",
        b"G\x00T",
        b"G\xc3\xa9T",
        b"PRI",
    ];
    let gaps: [&[u8]; 3] = [b" ", b"  ", b"\t"];
    let targets: [&[u8]; 12] = [
        b"/",
        b"/a?b?c",
        b"*",
        b"http://a/b",
        b"/a b",
        b"/a\x7f",
        b"/\x01",
        b"",
        b"/\xc3\xa9",
        b"/a#f",
        b"/long/enough/for/two/words?x=1",
        b"/a\rb",
    ];
    let versions: [&[u8]; 8] = [
        b"HTTP/1.1",
        b"HTTP/1.0",
        b"HTTP/2.0",
        b"HTTP/1.2",
        b"http/1.1",
        b"HTTP/1.1 ",
        b"HTTP/11",
        b"",
    ];
    let mut cases = 0;
    for lead in [&b""[..], b"\r\n", b"\r\n\r\n"] {
        for m in methods {
            for g in gaps {
                for t in targets {
                    for v in versions {
                        let head = [lead, m, g, t, b" ", v, b"\r\nHost: a\r\n\r\n"].concat();
                        agree(&head);
                        cases += 1;
                    }
                }
            }
        }
    }
    // Lines of bytes the request line is made of, at random.
    let alphabet = b" \t\rGET/HPT1.0?#*\x7f\xc3\xa9a";
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..20_000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let len = (seed % 24) as usize;
        let mut head: Vec<u8> = (0..len)
            .map(|i| alphabet[((seed >> (i % 8 * 8)) as usize + i) % alphabet.len()])
            .collect();
        if seed & 1 == 0 {
            head = [b"GET /".as_slice(), &head, b" HTTP/1.1"].concat();
        }
        head.extend_from_slice(b"\r\nHost: a\r\n\r\n");
        agree(&head);
        cases += 1;
    }
    assert!(cases > 20_000);
}

#[test]
fn reads_a_request_line_after_empty_lines() {
    // The empty lines' CRLF CRLF looks like an end: not yet a head, and
    // the next call, scanning on, finds the request's.
    let buf = b"\r\n\r\nGET /x HTTP/1.0\r\n\r\n";
    let (mut h, mut scanned) = (Head::default(), 0);
    let limits = Limits::default();
    assert_eq!(parse(buf, &mut scanned, &limits, &mut h), Ok(false));
    assert_eq!(parse(buf, &mut scanned, &limits, &mut h), Ok(true));
    assert_eq!(
        (h.minor, h.target.get(buf), h.len),
        (0, &b"/x"[..], buf.len())
    );
}

/// Both ways through the field lines: by hand (plain values) and by
/// httparse (a value with obs-text, which the hand path leaves to it).
const VALUES: [&str; 2] = ["v", "v\u{e9}"];

#[test]
fn takes_more_fields_than_the_usual_slots_hold_up_to_the_limit() {
    for value in VALUES {
        let fields = |n: usize| -> Vec<u8> {
            let mut b = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
            for i in 1..n {
                b.extend_from_slice(format!("X-{i}: {value}\r\n").as_bytes());
            }
            b.extend_from_slice(b"\r\n");
            b
        };
        let limit = Limits::default().max_headers;
        assert!(limit > FEW_FIELDS);
        let h = parse_all(&fields(FEW_FIELDS + 1)).unwrap();
        assert_eq!(h.headers.len(), FEW_FIELDS + 1);
        let h = parse_all(&fields(limit)).unwrap();
        assert_eq!(h.headers.len(), limit);
        let buf = fields(limit);
        assert_eq!(h.headers[1].1.get(&buf), value.as_bytes());
        assert_eq!(status(&fields(limit + 1)), 431, "{value}");
    }
}

#[test]
fn fields_as_short_as_a_field_can_be_all_find_a_slot() {
    // `a:` CRLF is the shortest field line: as many slots as the bound.
    for value in ["", "\u{e9}"] {
        for n in [1, 4, 5, FEW_FIELDS, FEW_FIELDS + 3] {
            let mut b = b"GET / HTTP/1.0\r\n".to_vec();
            for _ in 0..n {
                b.extend_from_slice(format!("a:{value}\r\n").as_bytes());
            }
            b.extend_from_slice(b"\r\n");
            assert_eq!(parse_all(&b).unwrap().headers.len(), n, "{n}");
        }
    }
    assert!(
        parse_all(b"GET / HTTP/1.0\r\n\r\n")
            .unwrap()
            .headers
            .is_empty()
    );
}

#[test]
fn tells_the_fields_it_reads_from_every_other_token_as_ignoring_case_would() {
    use crate::http::token::is_tchar;
    let known = [
        ("host", Field::Host),
        ("expect", Field::Expect),
        ("connection", Field::Connection),
        ("content-length", Field::ContentLength),
        ("transfer-encoding", Field::TransferEncoding),
    ];
    let tchars: Vec<u8> = (0..=255u8).filter(|&b| is_tchar(b)).collect();
    let expect = |name: &[u8]| {
        known
            .iter()
            .find(|(k, _)| name.eq_ignore_ascii_case(k.as_bytes()))
            .map_or(Field::Other, |&(_, f)| f)
    };
    let mut tried = 0;
    for (k, _) in known {
        let lower = k.as_bytes();
        let upper = k.to_ascii_uppercase().into_bytes();
        // Each byte in either case, and each byte replaced by every token
        // byte in turn: one name differing from `k` at one place.
        for at in 0..lower.len() {
            for base in [lower, &upper[..]] {
                for &b in &tchars {
                    let mut name = base.to_vec();
                    name[at] = b;
                    assert!(Field::of(&name) == expect(&name), "{:?}", name);
                    tried += 1;
                }
            }
        }
        // Longer and shorter by a byte.
        for name in [
            &lower[1..],
            &lower[..lower.len() - 1],
            &[lower, b"s"].concat(),
        ] {
            assert!(Field::of(name) == Field::Other, "{name:?}");
        }
    }
    assert!(tried > 3000);
}
