//! HTTP/2: the server held to RFC 9113's MUSTs frame by frame (a client by
//! hand, `common::h2raw`: what a broken or hostile peer would send, and the
//! error code that must come back), and real clients we did not write
//! (curl, nghttp, h2load, Python's h2 and httpx) on h2c and TLS listeners,
//! beside HTTP/1.1 clients on the same listeners.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::h2raw::*;
use common::*;

fn server() -> (Handoff, tempfile::TempDir) {
    serve_site(&["--max-body", "1000"])
}

/// Connects, lets `send` send what it will, and returns the code of the
/// GOAWAY the server answers with.
fn goaway_after(send: impl FnOnce(&mut H2)) -> u32 {
    let (h, _site) = server();
    let mut c = H2::connect(h.addr);
    send(&mut c);
    c.goaway()
}

// ---- the connection (§3, §4, §6.5, §6.7, §6.9) ----

#[test]
fn serves_a_get_with_prior_knowledge_and_http11_on_the_same_listener() {
    let (h, _site) = server();
    let mut c = H2::connect(h.addr);
    c.get(1, "/a.txt");
    let (status, body) = c.response(1);
    assert_eq!(status, 0x88, "an indexed :status 200");
    assert_eq!(body, b"alpha\n");
    c.get(3, "/nothing-here");
    assert_eq!(c.response(3).0, 0x8d, "an indexed :status 404");
    // HTTP/1.1 on the same listener, as before.
    assert_eq!(h.get("/b.txt").body, b"bravo\n");
}

#[test]
fn takes_the_preface_in_pieces() {
    let (h, _site) = server();
    let mut c = H2::open(h.addr);
    for piece in PREFACE.chunks(5) {
        c.s.write_all(piece).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    c.send(SETTINGS, 0, 0, &[]);
    let f = c.next().expect("SETTINGS");
    assert_eq!(f.ty, SETTINGS);
    c.send(SETTINGS, ACK, 0, &[]);
    c.get(1, "/c.txt");
    assert_eq!(c.response(1).1, b"charlie\n");
}

#[test]
fn acknowledges_settings_and_answers_ping_with_the_same_payload() {
    let (h, _site) = server();
    let mut c = H2::connect(h.addr);
    // SETTINGS_HEADER_TABLE_SIZE = 4096 (§6.5.3: acknowledged).
    c.send(SETTINGS, 0, 0, &[0, 1, 0, 0, 0x10, 0]);
    // One ACK for each of our two SETTINGS, each empty.
    for _ in 0..2 {
        let ack = c.until(SETTINGS, None).unwrap();
        assert_eq!(ack.flags & ACK, ACK);
        assert!(ack.payload.is_empty());
    }
    c.send(PING, 0, 0, b"8 bytes!");
    let pong = c.until(PING, None).unwrap();
    assert_eq!(
        (pong.flags, pong.payload.as_slice()),
        (ACK, &b"8 bytes!"[..])
    );
}

#[test]
fn ignores_frames_of_unknown_type() {
    let (h, _site) = server();
    let mut c = H2::connect(h.addr);
    c.send(0xbe, 0, 0, b"whatever");
    c.get(1, "/a.txt");
    assert_eq!(c.response(1).1, b"alpha\n");
}

#[test]
fn refuses_a_preface_that_is_not_followed_by_settings() {
    let (h, _site) = server();
    let mut c = H2::open(h.addr);
    c.s.write_all(PREFACE).unwrap();
    c.send(PING, 0, 0, b"12345678");
    assert_eq!(c.goaway(), PROTOCOL_ERROR);
}

// ---- frame sizes and shapes (§4.2, §6) ----

#[test]
fn a_frame_larger_than_max_frame_size_is_a_frame_size_error() {
    let code = goaway_after(|c| {
        // 16 384 is SETTINGS_MAX_FRAME_SIZE's initial value.
        c.send(PING, 0, 0, &vec![0u8; 16_385]);
    });
    assert_eq!(code, FRAME_SIZE_ERROR);
}

#[test]
fn a_settings_ack_with_a_payload_is_a_frame_size_error() {
    let code = goaway_after(|c| {
        c.send(SETTINGS, ACK, 0, &[0, 1, 0, 0, 0x10, 0]);
    });
    assert_eq!(code, FRAME_SIZE_ERROR);
}

#[test]
fn settings_whose_length_is_not_a_multiple_of_six_is_a_frame_size_error() {
    let code = goaway_after(|c| {
        c.send(SETTINGS, 0, 0, &[0, 1, 0, 0, 0x10]);
    });
    assert_eq!(code, FRAME_SIZE_ERROR);
}

#[test]
fn settings_on_a_stream_is_a_protocol_error() {
    let code = goaway_after(|c| {
        c.send(SETTINGS, 0, 1, &[]);
    });
    assert_eq!(code, PROTOCOL_ERROR);
}

#[test]
fn a_ping_of_other_than_eight_bytes_is_a_frame_size_error() {
    let code = goaway_after(|c| {
        c.send(PING, 0, 0, b"seven!!");
    });
    assert_eq!(code, FRAME_SIZE_ERROR);
}

#[test]
fn a_ping_on_a_stream_is_a_protocol_error() {
    let code = goaway_after(|c| {
        c.send(PING, 0, 1, b"8 bytes!");
    });
    assert_eq!(code, PROTOCOL_ERROR);
}

#[test]
fn data_on_stream_zero_is_a_protocol_error() {
    let code = goaway_after(|c| {
        c.send(DATA, 0, 0, b"x");
    });
    assert_eq!(code, PROTOCOL_ERROR);
}

#[test]
fn headers_on_stream_zero_is_a_protocol_error() {
    let code = goaway_after(|c| {
        c.get(0, "/a.txt");
    });
    assert_eq!(code, PROTOCOL_ERROR);
}

#[test]
fn a_client_stream_with_an_even_id_is_a_protocol_error() {
    let code = goaway_after(|c| {
        c.get(2, "/a.txt");
    });
    assert_eq!(code, PROTOCOL_ERROR);
}

#[test]
fn a_stream_id_lower_than_one_already_used_is_a_protocol_error() {
    let code = goaway_after(|c| {
        c.get(5, "/a.txt");
        c.response(5);
        c.get(3, "/a.txt");
    });
    assert_eq!(code, PROTOCOL_ERROR);
}

#[test]
fn a_push_promise_from_a_client_is_a_protocol_error() {
    let code = goaway_after(|c| {
        c.send(PUSH_PROMISE, END_HEADERS, 1, &[0, 0, 0, 2]);
    });
    assert_eq!(code, PROTOCOL_ERROR);
}

#[test]
fn a_rst_stream_on_an_idle_stream_is_a_protocol_error() {
    let code = goaway_after(|c| {
        c.send(RST_STREAM, 0, 1, &[0, 0, 0, 8]);
    });
    assert_eq!(code, PROTOCOL_ERROR);
}

#[test]
fn a_rst_stream_of_other_than_four_bytes_is_a_frame_size_error() {
    let code = goaway_after(|c| {
        c.get_with(1, "/a.txt", &[], false);
        c.send(RST_STREAM, 0, 1, &[0, 0, 8]);
    });
    assert_eq!(code, FRAME_SIZE_ERROR);
}

#[test]
fn a_priority_frame_of_other_than_five_bytes_is_a_stream_frame_size_error() {
    let (h, _site) = server();
    let mut c = H2::connect(h.addr);
    c.send(PRIORITY, 0, 1, &[0, 0, 0, 0]);
    match c.reset(1) {
        Ok(code) | Err(code) => assert_eq!(code, FRAME_SIZE_ERROR),
    }
}

#[test]
fn a_continuation_without_headers_before_it_is_a_protocol_error() {
    let code = goaway_after(|c| {
        c.send(CONTINUATION, END_HEADERS, 1, &block(&[("x", "y")]));
    });
    assert_eq!(code, PROTOCOL_ERROR);
}

#[test]
fn another_frame_inside_a_header_block_is_a_protocol_error() {
    let code = goaway_after(|c| {
        let f = get_fields("/a.txt");
        let f: Vec<(&str, &str)> = f.iter().map(|(n, v)| (*n, v.as_str())).collect();
        // HEADERS without END_HEADERS, then a PING before its CONTINUATION.
        c.send(HEADERS, END_STREAM, 1, &block(&f));
        c.send(PING, 0, 0, b"8 bytes!");
    });
    assert_eq!(code, PROTOCOL_ERROR);
}

// ---- flow control (§6.9) ----

#[test]
fn a_window_update_of_zero_on_the_connection_is_a_protocol_error() {
    let code = goaway_after(|c| {
        c.send(WINDOW_UPDATE, 0, 0, &[0, 0, 0, 0]);
    });
    assert_eq!(code, PROTOCOL_ERROR);
}

#[test]
fn a_window_over_two_to_the_31_is_a_flow_control_error() {
    let code = goaway_after(|c| {
        c.send(WINDOW_UPDATE, 0, 0, &0x7fff_ffffu32.to_be_bytes());
    });
    assert_eq!(code, FLOW_CONTROL_ERROR);
}

#[test]
fn an_initial_window_size_over_two_to_the_31_is_a_flow_control_error() {
    let code = goaway_after(|c| {
        // SETTINGS_INITIAL_WINDOW_SIZE (4) = 2^31.
        c.send(SETTINGS, 0, 0, &[0, 4, 0x80, 0, 0, 0]);
    });
    assert_eq!(code, FLOW_CONTROL_ERROR);
}

#[test]
fn enable_push_other_than_zero_or_one_is_a_protocol_error() {
    let code = goaway_after(|c| {
        c.send(SETTINGS, 0, 0, &[0, 2, 0, 0, 0, 2]);
    });
    assert_eq!(code, PROTOCOL_ERROR);
}

#[test]
fn a_max_frame_size_outside_its_range_is_a_protocol_error() {
    let code = goaway_after(|c| {
        // SETTINGS_MAX_FRAME_SIZE (5) = 16 383, under the minimum.
        c.send(SETTINGS, 0, 0, &[0, 5, 0, 0, 0x3f, 0xff]);
    });
    assert_eq!(code, PROTOCOL_ERROR);
}

#[test]
fn a_response_larger_than_the_clients_window_waits_for_window_updates() {
    let site = site_with_big_file();
    let root = root_arg(site.path());
    let h = Handoff::start(&["--root", &root]);
    let mut c = stream_held_by_its_window(&h);
    let mut got = 1000;
    c.s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    loop {
        let mut h = [0u8; 9];
        if std::io::Read::read_exact(&mut c.s, &mut h).is_err() {
            break;
        }
        let len = u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize;
        let mut p = vec![0u8; len];
        std::io::Read::read_exact(&mut c.s, &mut p).unwrap();
        if h[3] == DATA {
            got += len;
        }
    }
    assert_eq!(got, 1000, "no more DATA than the stream's window");
    c.s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.send(WINDOW_UPDATE, 0, 1, &200_000u32.to_be_bytes());
    c.send(WINDOW_UPDATE, 0, 0, &200_000u32.to_be_bytes());
    while got < 100_000 {
        let f = c.next().expect("the rest of the body");
        if f.ty == DATA {
            got += f.payload.len();
        }
    }
    assert_eq!(got, 100_000);
}

// ---- requests (§8) ----

#[test]
fn a_request_without_method_is_a_stream_protocol_error() {
    let (h, _site) = server();
    let mut c = H2::connect(h.addr);
    c.headers(1, &[(":scheme", "http"), (":path", "/a.txt")], true);
    assert_eq!(c.reset(1), Ok(PROTOCOL_ERROR));
}

#[test]
fn an_uppercase_field_name_is_a_stream_protocol_error() {
    let (h, _site) = server();
    let mut c = H2::connect(h.addr);
    c.get_with(1, "/a.txt", &[("X-Upper", "1")], true);
    assert_eq!(c.reset(1), Ok(PROTOCOL_ERROR));
}

#[test]
fn a_connection_specific_field_is_a_stream_protocol_error() {
    let (h, _site) = server();
    let mut c = H2::connect(h.addr);
    c.get_with(1, "/a.txt", &[("connection", "keep-alive")], true);
    assert_eq!(c.reset(1), Ok(PROTOCOL_ERROR));
}

#[test]
fn te_other_than_trailers_is_a_stream_protocol_error() {
    let (h, _site) = server();
    let mut c = H2::connect(h.addr);
    c.get_with(1, "/a.txt", &[("te", "gzip")], true);
    assert_eq!(c.reset(1), Ok(PROTOCOL_ERROR));
}

#[test]
fn a_pseudo_field_after_a_regular_one_is_a_stream_protocol_error() {
    let (h, _site) = server();
    let mut c = H2::connect(h.addr);
    c.headers(
        1,
        &[
            (":method", "GET"),
            ("x-a", "1"),
            (":scheme", "http"),
            (":path", "/a.txt"),
        ],
        true,
    );
    assert_eq!(c.reset(1), Ok(PROTOCOL_ERROR));
}

#[test]
fn a_content_length_that_the_data_does_not_match_is_a_stream_protocol_error() {
    let (h, _site) = server();
    let mut c = H2::connect(h.addr);
    c.headers(
        1,
        &[
            (":method", "POST"),
            (":scheme", "http"),
            (":authority", "t"),
            (":path", "/a.txt"),
            ("content-length", "10"),
        ],
        false,
    );
    c.send(DATA, END_STREAM, 1, b"four");
    assert_eq!(c.reset(1), Ok(PROTOCOL_ERROR));
}

#[test]
fn an_hpack_decoding_error_ends_the_connection_with_compression_error() {
    let (h, _site) = server();
    let mut c = H2::connect(h.addr);
    // Indexed field 126: the static table has 61, the dynamic none.
    c.send(HEADERS, END_HEADERS | END_STREAM, 1, &[0xfe]);
    assert_eq!(c.goaway(), COMPRESSION_ERROR);
}

#[test]
fn data_on_a_stream_the_client_ended_is_a_stream_closed_error() {
    let (h, _site) = server();
    let mut c = H2::connect(h.addr);
    c.get_with(1, "/a.txt", &[], false);
    c.send(DATA, END_STREAM, 1, b"");
    c.send(DATA, 0, 1, b"late");
    assert_eq!(c.reset(1), Ok(STREAM_CLOSED));
    // The connection serves on.
    c.get(3, "/a.txt");
    assert_eq!(c.response(3).1, b"alpha\n");
}

/// A POST whose body is still to come: stream `id` stays open on the
/// client's side.
fn open_post(c: &mut H2, id: u32) {
    c.headers(
        id,
        &[
            (":method", "POST"),
            (":scheme", "http"),
            (":authority", "t"),
            (":path", "/a.txt"),
        ],
        false,
    );
}

/// The rest of RFC 9113 §5–§8's and RFC 7541's MUSTs, case by case on
/// one server: what the client sends, and the RST_STREAM (`Ok`) or GOAWAY
/// (`Err`) code that must come back.
#[test]
fn each_remaining_wrong_frame_or_field_gets_the_code_the_rfcs_give_it() {
    let (h, _site) = server();
    let get = get_block("/a.txt");
    type Case = (&'static str, Box<dyn Fn(&mut H2)>, u32, Result<u32, u32>);
    let cases: Vec<Case> = vec![
        (
            "HEADERS depending on its own stream (§5.3.1)",
            Box::new({
                let get = get.clone();
                move |c: &mut H2| {
                    let mut p = vec![0, 0, 0, 1, 16];
                    p.extend_from_slice(&get);
                    c.send(HEADERS, END_HEADERS | END_STREAM | 0x20, 1, &p);
                }
            }),
            1,
            Ok(PROTOCOL_ERROR),
        ),
        (
            "PRIORITY depending on its own stream (§5.3.1)",
            Box::new(|c: &mut H2| {
                c.send(PRIORITY, 0, 3, &[0, 0, 0, 3, 16]);
            }),
            3,
            Ok(PROTOCOL_ERROR),
        ),
        (
            "DATA whose padding is as long as its payload (§6.1)",
            Box::new(|c: &mut H2| {
                open_post(c, 1);
                c.send(DATA, 0x8, 1, &[5, b'a']);
            }),
            1,
            Err(PROTOCOL_ERROR),
        ),
        (
            "a WINDOW_UPDATE of 0 on a stream (§6.9)",
            Box::new(|c: &mut H2| {
                open_post(c, 1);
                c.send(WINDOW_UPDATE, 0, 1, &[0, 0, 0, 0]);
            }),
            1,
            Ok(PROTOCOL_ERROR),
        ),
        (
            "a stream's window over 2^31-1 (§6.9.1)",
            Box::new(|c: &mut H2| {
                open_post(c, 1);
                c.send(WINDOW_UPDATE, 0, 1, &0x7fff_ffffu32.to_be_bytes());
            }),
            1,
            Ok(FLOW_CONTROL_ERROR),
        ),
        (
            "WINDOW_UPDATE on an idle stream (§5.1)",
            Box::new(|c: &mut H2| {
                c.send(WINDOW_UPDATE, 0, 5, &[0, 0, 0, 1]);
            }),
            5,
            Err(PROTOCOL_ERROR),
        ),
        (
            "HEADERS on a closed stream (§5.1)",
            Box::new(|c: &mut H2| {
                c.get(1, "/a.txt");
                c.response(1);
                c.get(1, "/a.txt");
            }),
            1,
            Err(STREAM_CLOSED),
        ),
        (
            "a second HEADERS without END_STREAM (§8.1)",
            Box::new(|c: &mut H2| {
                open_post(c, 1);
                c.headers(1, &[("x-a", "1")], false);
            }),
            1,
            Ok(PROTOCOL_ERROR),
        ),
        (
            "a pseudo-field in trailers (§8.1)",
            Box::new(|c: &mut H2| {
                open_post(c, 1);
                c.headers(1, &[(":path", "/")], true);
            }),
            1,
            Ok(PROTOCOL_ERROR),
        ),
        (
            "`:path` twice (§8.3.1)",
            Box::new(|c: &mut H2| {
                c.get_with(1, "/a.txt", &[(":path", "/b.txt")], true);
            }),
            1,
            Ok(PROTOCOL_ERROR),
        ),
        (
            "an empty `:path` (§8.3.1)",
            Box::new(|c: &mut H2| {
                c.get(1, "");
            }),
            1,
            Ok(PROTOCOL_ERROR),
        ),
        (
            "`:status` in a request (§8.3)",
            Box::new(|c: &mut H2| {
                c.headers(
                    1,
                    &[
                        (":status", "200"),
                        (":method", "GET"),
                        (":scheme", "http"),
                        (":path", "/"),
                    ],
                    true,
                );
            }),
            1,
            Ok(PROTOCOL_ERROR),
        ),
        (
            "an unknown frame inside a header block (§4.3, §5.5)",
            Box::new({
                let get = get.clone();
                move |c: &mut H2| {
                    c.send(HEADERS, END_STREAM, 1, &get);
                    c.send(0xbe, 0, 1, b"?");
                }
            }),
            1,
            Err(PROTOCOL_ERROR),
        ),
        (
            "EOS in a Huffman string (RFC 7541 §5.2)",
            Box::new(|c: &mut H2| {
                c.send(
                    HEADERS,
                    END_HEADERS | END_STREAM,
                    1,
                    &[0x00, 0x81, 0x61, 0x84, 0xff, 0xff, 0xff, 0xff],
                );
            }),
            1,
            Err(COMPRESSION_ERROR),
        ),
        (
            "a table size update after a field (RFC 7541 §4.2)",
            Box::new(|c: &mut H2| {
                c.send(HEADERS, END_HEADERS | END_STREAM, 1, &[0x82, 0x20]);
            }),
            1,
            Err(COMPRESSION_ERROR),
        ),
        (
            "index 0 (RFC 7541 §6.1)",
            Box::new(|c: &mut H2| {
                c.send(HEADERS, END_HEADERS | END_STREAM, 1, &[0x80]);
            }),
            1,
            Err(COMPRESSION_ERROR),
        ),
    ];
    for (what, send, stream, want) in cases {
        let mut c = H2::connect(h.addr);
        send(&mut c);
        assert_eq!(c.reset(stream), want, "{what}");
    }
}

#[test]
fn a_window_of_one_byte_gets_one_byte_and_undefined_flags_and_codes_change_nothing() {
    let (h, _site) = server();
    let mut c = H2::open(h.addr);
    c.s.write_all(PREFACE).unwrap();
    // SETTINGS_INITIAL_WINDOW_SIZE = 1 (RFC 9113 §6.9.1).
    c.send(SETTINGS, 0, 0, &[0, 4, 0, 0, 0, 1]);
    c.until(SETTINGS, None).unwrap();
    c.send(SETTINGS, ACK, 0, &[]);
    c.get(1, "/a.txt");
    let d = c.until(DATA, Some(1)).expect("DATA");
    assert_eq!(d.payload, b"a");
    // A PING with undefined flags and the reserved bit set (§4.1), and
    // RST_STREAM and GOAWAY codes nobody defined (§7): no error.
    c.send(PING, 0xf0, 0x8000_0000, b"8 bytes!");
    assert_eq!(c.until(PING, None).unwrap().payload, b"8 bytes!");
    c.send(RST_STREAM, 0, 1, &[0, 0, 0xbe, 0xef]);
    c.get(3, "/b.txt");
    // Its window is one byte too: opened here for the rest.
    c.send(WINDOW_UPDATE, 0, 3, &[0, 0, 1, 0]);
    c.send(WINDOW_UPDATE, 0, 0, &[0, 0, 1, 0]);
    assert_eq!(c.response(3).1, b"bravo\n");
}

#[test]
fn a_body_over_max_body_is_answered_413_and_the_rest_is_not_kept() {
    let (h, _site) = server();
    let mut c = H2::connect(h.addr);
    open_post(&mut c, 1);
    // --max-body 1000.
    c.send(DATA, 0, 1, &[b'x'; 1001]);
    let h1 = c.until(HEADERS, Some(1)).expect("an answer");
    // 413 is not in the static table: a literal ":status" (index 8).
    assert_ne!(h1.payload[0], 0x88);
    // The connection serves on.
    c.get(3, "/a.txt");
    assert_eq!(c.response(3).1, b"alpha\n");
}

#[test]
fn more_streams_than_max_concurrent_streams_are_refused() {
    let site = site();
    let root = root_arg(site.path());
    let h = Handoff::start(&["--root", &root, "--max-concurrent-streams", "2"]);
    let mut c = H2::connect(h.addr);
    // Three requests whose bodies never come: the third is one too many.
    for id in [1, 3, 5] {
        open_post(&mut c, id);
    }
    assert_eq!(c.reset(5), Ok(REFUSED_STREAM));
}

// ---- the end of a connection (§6.8) ----

/// Opens a connection whose window (1000 bytes) holds the response to a
/// GET of `/big.bin` (100 000 bytes) back: a stream in flight for as long
/// as the test likes.
fn stream_held_by_its_window(h: &Handoff) -> H2 {
    let mut c = H2::open(h.addr);
    c.s.write_all(PREFACE).unwrap();
    // SETTINGS_INITIAL_WINDOW_SIZE = 1000.
    c.send(SETTINGS, 0, 0, &[0, 4, 0, 0, 0x03, 0xe8]);
    c.until(SETTINGS, None).unwrap();
    c.send(SETTINGS, ACK, 0, &[]);
    c.get(1, "/big.bin");
    c.until(HEADERS, Some(1)).unwrap();
    let mut got = 0;
    while got < 1000 {
        got += c.until(DATA, Some(1)).expect("DATA").payload.len();
    }
    assert_eq!(got, 1000, "no more DATA than the stream's window");
    c
}

fn site_with_big_file() -> tempfile::TempDir {
    let site = site();
    std::fs::write(site.path().join("big.bin"), vec![b'z'; 100_000]).unwrap();
    site
}

#[test]
fn a_drain_sends_goaway_and_finishes_the_stream_in_flight() {
    let site = site_with_big_file();
    let root = root_arg(site.path());
    let h = Handoff::start(&["--root", &root]);
    let mut c = stream_held_by_its_window(&h);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(h.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    // The first of the graceful two: the last stream id is 2^31-1.
    let g = c.until(GOAWAY, None).expect("a GOAWAY");
    assert_eq!(g.error_code(), NO_ERROR);
    assert_eq!(&g.payload[..4], &[0x7f, 0xff, 0xff, 0xff]);
    // The stream in flight still gets all of its body.
    c.send(WINDOW_UPDATE, 0, 1, &200_000u32.to_be_bytes());
    c.send(WINDOW_UPDATE, 0, 0, &200_000u32.to_be_bytes());
    let mut got = 0;
    let mut ended = false;
    while let Some(f) = c.next() {
        if f.ty == DATA && f.stream == 1 {
            got += f.payload.len();
            ended |= f.flags & END_STREAM != 0;
        }
        if f.ty == PING && f.flags & ACK == 0 {
            c.send(PING, ACK, 0, &f.payload);
        }
    }
    assert!(ended);
    assert_eq!(got, 100_000 - 1000, "every byte of the body");
}

#[test]
fn an_idle_connection_is_sent_goaway_at_the_idle_deadline() {
    let site = site();
    let root = root_arg(site.path());
    let h = Handoff::start(&["--root", &root, "--idle-timeout", "1"]);
    let mut c = H2::connect(h.addr);
    let t = Instant::now();
    assert_eq!(c.goaway(), NO_ERROR);
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );
}

/// A client that opens no window for the response (its initial window 0)
/// is cut at the write deadline, counted from when the response began to
/// wait, not from the connection's last write long before.
#[test]
fn a_peer_that_never_opens_its_window_is_cut_at_the_write_deadline() {
    let site = site();
    let root = root_arg(site.path());
    let h = Handoff::start(&["--root", &root, "--write-timeout", "1"]);
    let mut c = H2::open(h.addr);
    c.s.write_all(PREFACE).unwrap();
    // SETTINGS_INITIAL_WINDOW_SIZE = 0.
    c.send(SETTINGS, 0, 0, &[0, 4, 0, 0, 0, 0]);
    c.until(SETTINGS, None).unwrap();
    c.send(SETTINGS, ACK, 0, &[]);
    // Quiet for longer than the write deadline first.
    std::thread::sleep(Duration::from_millis(1500));
    let asked = Instant::now();
    c.get(1, "/a.txt");
    c.until(HEADERS, Some(1)).expect("the response head");
    while let Some(f) = c.next() {
        assert_ne!(f.ty, DATA, "DATA beyond a window of 0");
    }
    let took = asked.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "cut after {took:?}"
    );
}

#[test]
fn a_preface_that_never_comes_is_cut_at_the_setup_deadline() {
    let site = site();
    let root = root_arg(site.path());
    let h = Handoff::start(&["--root", &root, "--setup-timeout", "1"]);
    let mut c = H2::open(h.addr);
    c.s.write_all(PREFACE).unwrap();
    // No SETTINGS.
    let t = Instant::now();
    while c.next().is_some() {}
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}

// ---- attacks: each ends its connection, and the server answers others ----

/// Runs `attack` on its own connection while another connection probes:
/// the median of five probes must come within 100 ms. Returns the
/// attack's result.
fn while_probing<T: Send + 'static>(
    h: &Handoff,
    attack: impl FnOnce(H2) -> T + Send + 'static,
) -> T {
    let c = H2::connect(h.addr);
    let t = std::thread::spawn(move || attack(c));
    let mut took = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        assert_eq!(h.get("/a.txt").body, b"alpha\n");
        took.push(start.elapsed());
    }
    took.sort();
    assert!(took[2] < Duration::from_millis(100), "probes took {took:?}");
    t.join().unwrap()
}

#[test]
fn rapid_reset_is_told_to_calm_down() {
    let (h, _site) = server();
    let code = while_probing(&h, |mut c| {
        // Open and reset streams as fast as they go (CVE-2023-44487).
        for i in 0..2000u32 {
            let id = 2 * i + 1;
            c.get(id, "/a.txt");
            c.send(RST_STREAM, 0, id, &[0, 0, 0, 8]);
        }
        c.goaway()
    });
    assert_eq!(code, ENHANCE_YOUR_CALM);
}

#[test]
fn a_ping_flood_is_told_to_calm_down() {
    let (h, _site) = server();
    let code = while_probing(&h, |mut c| {
        for _ in 0..5000 {
            c.send(PING, 0, 0, b"8 bytes!");
        }
        c.goaway()
    });
    assert_eq!(code, ENHANCE_YOUR_CALM);
}

#[test]
fn a_settings_flood_is_told_to_calm_down() {
    let (h, _site) = server();
    let code = while_probing(&h, |mut c| {
        for _ in 0..5000 {
            c.send(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100]);
        }
        c.goaway()
    });
    assert_eq!(code, ENHANCE_YOUR_CALM);
}

#[test]
fn a_header_block_in_endless_continuations_is_told_to_calm_down() {
    let (h, _site) = server();
    let code = while_probing(&h, |mut c| {
        // CVE-2024-27316: a header block that never ends.
        c.send(HEADERS, 0, 1, &block(&[(":method", "GET")]));
        for _ in 0..10_000 {
            c.send(CONTINUATION, 0, 1, &block(&[("x-a", "b")]));
        }
        c.goaway()
    });
    assert_eq!(code, ENHANCE_YOUR_CALM);
}

#[test]
fn an_hpack_bomb_is_answered_431_without_keeping_what_it_decodes() {
    let (h, _site) = server();
    let status = while_probing(&h, |mut c| {
        // One 100-byte field put in the dynamic table, then referred to
        // 10 000 times in one byte each: a megabyte from 10 kB.
        let mut b = get_block("/a.txt");
        b.push(0x40);
        b.push(5);
        b.extend_from_slice(b"x-big");
        b.push(100);
        b.extend_from_slice(&[b'v'; 100]);
        // Index 62: the newest entry of the dynamic table.
        b.extend(std::iter::repeat_n(0xbe, 10_000));
        let (first, rest) = b.split_at(b.len() / 2);
        c.send(HEADERS, END_STREAM, 1, first);
        c.send(CONTINUATION, END_HEADERS, 1, rest);
        let f = c.until(HEADERS, Some(1)).expect("an answer");
        // The connection, its HPACK table in step, serves on.
        c.get(3, "/a.txt");
        assert_eq!(c.response(3).1, b"alpha\n");
        f.payload
    });
    // `:status` 431 is not in the static table: a literal with the
    // indexed name `:status` (8), as HTTP/1.1's over-long head gets.
    assert_eq!(&status[..5], b"\x08\x03431");
}

/// A GET's header block with indexed fields from the static table.
fn get_block(path: &str) -> Vec<u8> {
    // :method GET (2), :scheme http (6), then :path (4) and :authority
    // (1) as literals with indexed names.
    let mut b = vec![0x82, 0x86, 0x04, path.len() as u8];
    b.extend_from_slice(path.as_bytes());
    b.extend_from_slice(&[0x01, 1, b't']);
    b
}

// ---- real clients we did not write ----

/// A site, and a server on one plain and one TLS (self-signed) listener.
fn h2c_and_tls() -> (Handoff, tempfile::TempDir, std::net::SocketAddr) {
    let site = site_with_big_file();
    let root = root_arg(site.path());
    let h = Handoff::start(&[
        "--root",
        &root,
        "--listen",
        "127.0.0.1:0",
        "--listen",
        "127.0.0.1:0,tls=on",
    ]);
    let tls = h
        .lines
        .iter()
        .find_map(|l| l.strip_prefix("listening on https://"))
        .expect("a TLS listener")
        .parse()
        .unwrap();
    (h, site, tls)
}

fn run(cmd: &mut std::process::Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// curl ends an h2 session over TLS with close_notify and its FIN at
/// once: the server must see the end in the same readiness (no new edge
/// comes for a FIN that came with data) and close, not sit in CLOSE-WAIT
/// until the idle deadline (a metrics test caught one in three runs).
#[test]
#[ignore = "full tier (scripts/test.sh): needs curl"]
fn connections_curl_closes_over_tls_are_closed_at_once_not_left_in_close_wait() {
    let (h, _site, tls) = h2c_and_tls();
    let before = h.settled_fds();
    for version in ["--http2", "--http1.1"] {
        for _ in 0..25 {
            run(std::process::Command::new("curl").args([
                "-sSk",
                version,
                "-o",
                "/dev/null",
                &format!("https://{tls}/a.txt"),
            ]));
        }
    }
    assert!(
        wait_until(Duration::from_secs(2), || h.fds() == before),
        "{} fds, {before} before: connections left open",
        h.fds()
    );
}

#[test]
#[ignore = "full tier (scripts/test.sh): needs curl"]
fn curl_gets_h2_with_prior_knowledge_and_over_tls_by_alpn_and_http11_still_works() {
    let (h, _site, tls) = h2c_and_tls();
    let plain = format!("http://{}/a.txt", h.addr);
    let secure = format!("https://{tls}/a.txt");
    let fmt = "%{http_version} %{response_code} ";
    for (args, url, want) in [
        (vec!["--http2-prior-knowledge"], &plain, "2 200 alpha\n"),
        (vec!["--http2", "-k"], &secure, "2 200 alpha\n"),
        (vec!["--http1.1"], &plain, "1.1 200 alpha\n"),
        (vec!["--http1.1", "-k"], &secure, "1.1 200 alpha\n"),
    ] {
        let mut cmd = std::process::Command::new("curl");
        cmd.args(["-sS", "-w", fmt, "-o", "/dev/stderr"])
            .args(&args)
            .arg(url);
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{cmd:?}");
        let got = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(got, want, "{args:?} {url}");
    }
    // A large body, a range, a HEAD, a 404 and a 405 with Allow, over h2.
    let big = run(std::process::Command::new("curl").args([
        "-sS",
        "--http2-prior-knowledge",
        &format!("http://{}/big.bin", h.addr),
    ]));
    assert_eq!(big.len(), 100_000);
    let range = run(std::process::Command::new("curl").args([
        "-sS",
        "--http2-prior-knowledge",
        "-D",
        "-",
        "-r",
        "2-5",
        &format!("http://{}/ten.bin", h.addr),
    ]));
    assert!(range.starts_with("HTTP/2 206"), "{range}");
    assert!(range.contains("content-range: bytes 2-5/10"), "{range}");
    assert!(range.ends_with("\r\n\r\n2345"), "{range}");
    let head = run(std::process::Command::new("curl").args([
        "-sSI",
        "--http2-prior-knowledge",
        &format!("http://{}/ten.bin", h.addr),
    ]));
    assert!(head.starts_with("HTTP/2 200"), "{head}");
    assert!(head.contains("content-length: 10"), "{head}");
    let post = run(std::process::Command::new("curl").args([
        "-sS",
        "--http2-prior-knowledge",
        "-D",
        "-",
        "-o",
        "/dev/null",
        "-d",
        "x=1",
        &format!("http://{}/a.txt", h.addr),
    ]));
    assert!(post.starts_with("HTTP/2 405"), "{post}");
    assert!(post.contains("allow: GET, HEAD"), "{post}");
    let log = h.log();
    assert!(log.contains("\"GET /a.txt HTTP/2.0\" 200 6"), "{log}");
}

#[test]
#[ignore = "full tier (scripts/test.sh): needs nghttp"]
fn nghttp_gets_several_streams_on_one_connection() {
    let (h, _site, tls) = h2c_and_tls();
    for base in [format!("http://{}", h.addr), format!("https://{tls}")] {
        let out = run(std::process::Command::new("nghttp").args([
            "-nv",
            &format!("{base}/a.txt"),
            &format!("{base}/b.txt"),
            &format!("{base}/big.bin"),
        ]));
        assert_eq!(out.matches(":status: 200").count(), 3, "{out}");
        assert!(out.contains("recv SETTINGS frame"), "{out}");
    }
}

#[test]
#[ignore = "full tier (scripts/test.sh): needs h2load"]
fn h2load_gets_every_request_answered_on_h2c_and_tls() {
    let (h, _site, tls) = h2c_and_tls();
    for url in [
        format!("http://{}/a.txt", h.addr),
        format!("https://{tls}/a.txt"),
    ] {
        let out =
            run(std::process::Command::new("h2load")
                .args(["-n", "5000", "-c", "10", "-m", "10", &url]));
        assert!(
            out.contains("5000 succeeded, 0 failed, 0 errored, 0 timeout"),
            "{out}"
        );
        assert!(out.contains("status codes: 5000 2xx"), "{out}");
    }
}

#[test]
#[ignore = "full tier (scripts/test.sh): needs python3, .venv-py"]
fn python_h2_and_httpx_speak_http2_to_it() {
    let (h, _site, tls) = h2c_and_tls();
    let python = concat!(env!("CARGO_MANIFEST_DIR"), "/.venv-py/bin/python");
    let script = r#"
import socket, sys, ssl
import h2.connection, h2.events, httpx
host, port = sys.argv[1].rsplit(':', 1)
# python-hyper's h2, driven by hand over a plain socket (prior knowledge).
s = socket.create_connection((host, int(port)))
c = h2.connection.H2Connection()
c.initiate_connection()
c.send_headers(1, [(':method', 'GET'), (':path', '/b.txt'), (':scheme', 'http'), (':authority', 't')], end_stream=True)
s.sendall(c.data_to_send())
body, status, done = b'', None, False
while not done:
    data = s.recv(65536)
    if not data:
        break
    for e in c.receive_data(data):
        if isinstance(e, h2.events.ResponseReceived):
            status = dict(e.headers)[b':status']
        elif isinstance(e, h2.events.DataReceived):
            body += e.data
            c.acknowledge_received_data(len(e.data), e.stream_id)
        elif isinstance(e, h2.events.StreamEnded):
            done = True
    s.sendall(c.data_to_send())
print(status.decode(), body.decode().strip())
# httpx over TLS, HTTP/2 by ALPN.
with httpx.Client(http2=True, verify=False) as client:
    r = client.get('https://' + sys.argv[2] + '/c.txt')
    print(r.http_version, r.status_code, r.text.strip())
"#;
    let out = run(std::process::Command::new(python).args([
        "-c",
        script,
        &h.addr.to_string(),
        &tls.to_string(),
    ]));
    assert_eq!(out, "200 bravo\nHTTP/2 200 charlie\n");
}

/// In an upgrade an idle h2c connection moves to the new process with its
/// state: the client's next request, whose `:path` is an index into the
/// HPACK table its earlier request filled, is answered there, with no
/// GOAWAY, and the old process has exited.
#[test]
fn an_idle_h2c_connection_moves_to_the_new_process_with_its_hpack_table() {
    let site = site();
    let mut h = Handoff::start(&["--root", &root_arg(site.path())]);
    let mut c = H2::connect(h.addr);
    // :method GET, :scheme http, :authority t, then `:path /b.txt` as a
    // literal with incremental indexing: entry 62 of the server's table.
    let mut first = vec![0x82, 0x86, 0x41, 1, b't', 0x44, 6];
    first.extend_from_slice(b"/b.txt");
    c.send(HEADERS, END_HEADERS | END_STREAM, 1, &first);
    assert_eq!(c.response(1).1, b"bravo\n");
    let old = h.child.id() as i32;
    let serving = upgrade_in_a_row(&mut h, 1, Duration::from_millis(300));
    // The new process is not the test's child: it is ended here.
    let stop = Stopper(serving);
    assert!(!alive(old), "the old process held on\n{}", h.log());
    // Indexes 62 (`:path /b.txt`, the newest entry) and 63 (`:authority
    // t`): only a table carried over can read them.
    c.send(
        HEADERS,
        END_HEADERS | END_STREAM,
        3,
        &[0x82, 0x86, 0xbe, 0xbf],
    );
    let h3 = c.next().expect("an answer on the moved connection");
    assert_eq!((h3.ty, h3.stream), (HEADERS, 3), "{h3:?}\n{}", h.log());
    let d = c.until(DATA, Some(3)).expect("its body");
    assert_eq!(d.payload, b"bravo\n");
    drop(stop);
}

/// Ends a process (SIGTERM) when dropped, the test passing or not.
struct Stopper(i32);

impl Drop for Stopper {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
}

/// h2load, which never opens a new connection after a GOAWAY, under
/// three upgrades in a row: its h2c connections move between requests,
/// so none of its requests fails.
#[test]
#[ignore = "full tier (scripts/test.sh): needs h2load"]
fn three_upgrades_in_a_row_under_h2load_lose_no_request_as_h2c_connections_move() {
    let site = site();
    let mut h = Handoff::start(&["--root", &root_arg(site.path())]);
    let url = format!("http://{}/a.txt", h.addr);
    let load = std::thread::spawn(move || {
        run(std::process::Command::new("h2load").args(["-c", "10", "-m", "10", "-D", "5", &url]))
    });
    let serving = upgrade_in_a_row(&mut h, 3, Duration::from_millis(800));
    let _stop = Stopper(serving);
    let out = load.join().unwrap();
    let line = out
        .lines()
        .find(|l| l.starts_with("requests:"))
        .unwrap_or_else(|| panic!("{out}"));
    let n = |what: &str| -> u64 {
        let at = line.find(what).unwrap_or_else(|| panic!("{line}"));
        line[..at]
            .trim_end()
            .rsplit([' ', ','])
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!((n(" failed"), n(" errored")), (0, 0), "{out}\n{}", h.log());
    assert!(n(" succeeded") > 1000, "{out}");
    assert!(out.contains(" 0 4xx, 0 5xx"), "{out}");
    eprintln!("{line}");
}

/// An HTTP/2 connection over TLS cannot move (its TLS session cannot):
/// in an upgrade the old process tells each one to go away gracefully
/// (GOAWAY with 2^31-1, a PING, GOAWAY with the last stream; its streams
/// finished) and the client opens its next connection to the new process,
/// as browsers and curl do. Three upgrades in a row under four clients
/// asking all the time: no request fails. (h2load would fail here: it does
/// not open a new connection after a GOAWAY. Python's h2 4.2.0, under
/// httpx, fails the request in flight when the PING of the two-step
/// GOAWAY comes: it takes the first GOAWAY for the end of the connection.
/// The README says so, and which of the issue's routes this proves: the
/// GOAWAY one.)
#[test]
#[ignore = "full tier (scripts/test.sh): needs curl"]
fn three_upgrades_in_a_row_lose_no_request_of_a_client_that_reconnects_after_goaway() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let site = site();
    let mut h = Handoff::start(&[
        "--root",
        &root_arg(site.path()),
        "--listen",
        "127.0.0.1:0,tls=on",
    ]);
    let tls = h
        .lines
        .iter()
        .find_map(|l| l.strip_prefix("listening on https://"))
        .expect("a TLS listener")
        .to_string();
    let dir = tempfile::tempdir().unwrap();
    let stop = dir.path().join("stop");
    // Each client: curl, 100 requests a run on one connection (a new one
    // after a GOAWAY), run after run until told to stop; one line per
    // request: its status and HTTP version. Over TLS (h2 by ALPN): Debian
    // 12's curl 7.88.1 cannot reuse a prior-knowledge h2c connection
    // (error 16 on its second request, against lighttpd too).
    let script = format!(
        "while [ ! -e {stop} ]; do curl -sSk --http2 -w '%{{http_code}} %{{http_version}}\\n' $(for i in $(seq 100); do printf -- '-o /dev/null https://%s/a.txt ' {tls}; done) || echo \"curl exit $?\"; done",
        stop = stop.display(),
    );
    let clients: Vec<_> = (0..4)
        .map(|_| {
            std::process::Command::new("bash")
                .args(["-c", &script])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let serving = upgrade_in_a_row(&mut h, 3, Duration::from_millis(500));
    std::fs::write(&stop, b"").unwrap();
    let mut ok = 0;
    let mut bad = Vec::new();
    for c in clients {
        let out = c.wait_with_output().unwrap();
        for line in String::from_utf8_lossy(&out.stderr).lines() {
            bad.push(line.to_string());
        }
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if line == "200 2" {
                ok += 1;
            } else {
                bad.push(line.to_string());
            }
        }
    }
    let _ = kill(Pid::from_raw(serving), Signal::SIGTERM);
    assert!(
        bad.is_empty(),
        "{ok} answered; not: {:?}\n{}",
        &bad[..bad.len().min(5)],
        h.log()
    );
    assert!(ok > 200, "{ok}");
    // The route taken over TLS: connections told to go away, not moved.
    assert!(
        h.log()
            .contains("handing over: GOAWAY to an HTTP/2 connection"),
        "{}",
        h.log()
    );
}

#[test]
fn metrics_count_http2_connections_requests_and_goaways_by_reason() {
    let site = site();
    let root = root_arg(site.path());
    let h = Handoff::start(&["--root", &root, "--metrics", "127.0.0.1:0"]);
    let metrics: std::net::SocketAddr = h
        .lines
        .iter()
        .find_map(|l| l.strip_prefix("metrics on http://"))
        .and_then(|l| l.strip_suffix("/metrics"))
        .expect("the metrics address")
        .parse()
        .unwrap();
    let mut c = H2::connect(h.addr);
    for id in [1, 3, 5] {
        c.get(id, "/a.txt");
        c.response(id);
    }
    let mut flood = H2::connect(h.addr);
    for _ in 0..1000 {
        flood.send(PING, 0, 0, b"8 bytes!");
    }
    assert_eq!(flood.goaway(), ENHANCE_YOUR_CALM);
    let mut bad = H2::connect(h.addr);
    bad.send(PING, 0, 0, b"short");
    assert_eq!(bad.goaway(), FRAME_SIZE_ERROR);
    let mut s = std::net::TcpStream::connect(metrics).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n")
        .unwrap();
    let text = read_to_close(&mut s);
    for want in [
        "handoff_http2_connections_total 3",
        "handoff_http2_requests_total 3",
        "handoff_http2_goaways_total{reason=\"calm\"} 1",
        "handoff_http2_goaways_total{reason=\"protocol\"} 1",
    ] {
        assert!(text.contains(want), "{want}\n{text}");
    }
}
