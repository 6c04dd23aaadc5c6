//! Bodies streamed to a handler's sink.

use super::*;

/// Collects a streamed body; answers with how it arrived.
struct Collect {
    got: std::rc::Rc<std::cell::RefCell<Vec<Vec<u8>>>>,
    fail_after: Option<usize>,
}

impl BodySink for Collect {
    fn data(&mut self, chunk: &[u8]) -> Result<(), SinkError> {
        assert!(!chunk.is_empty());
        let mut g = self.got.borrow_mut();
        g.push(chunk.to_vec());
        if self.fail_after.is_some_and(|n| g.len() > n) {
            return Err(SinkError::new(400, "the sink refused"));
        }
        Ok(())
    }
    fn finish(&mut self, req: &Request<'_>, res: &mut Response<'_>) {
        let all: Vec<u8> = self.got.borrow().concat();
        let trailers: Vec<String> = req
            .trailers()
            .iter()
            .map(|(n, v)| format!("{n}={}", String::from_utf8_lossy(v)))
            .collect();
        res.body(format!(
            "streamed {} bytes: {} trailers: {}",
            all.len(),
            String::from_utf8_lossy(&all),
            trailers.join(",")
        ));
    }
}

struct Streaming {
    got: std::rc::Rc<std::cell::RefCell<Vec<Vec<u8>>>>,
    fail_after: Option<usize>,
}

impl Handler for Streaming {
    fn on_head(&self, req: &Request<'_>) -> BodyPlan {
        match req.path() {
            "/skip" => BodyPlan::Skip,
            "/discard" => BodyPlan::Discard,
            "/buffer" => BodyPlan::Buffer,
            _ => BodyPlan::Stream(Box::new(Collect {
                got: self.got.clone(),
                fail_after: self.fail_after,
            })),
        }
    }
    fn handle(&self, req: &Request<'_>, res: &mut Response<'_>) {
        let status = match req.path() {
            "/skip" => 403,
            "/discard" => 405,
            _ => 200,
        };
        res.status(status)
            .body(format!("handled {} body={}", req.path(), req.body().len()));
    }
}

fn streaming(
    fail_after: Option<usize>,
) -> (Harness, std::rc::Rc<std::cell::RefCell<Vec<Vec<u8>>>>) {
    streaming_with(fail_after, Limits::default())
}

fn streaming_with(
    fail_after: Option<usize>,
    limits: Limits,
) -> (Harness, std::rc::Rc<std::cell::RefCell<Vec<Vec<u8>>>>) {
    let got = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    (
        Harness::with_limits(
            Streaming {
                got: got.clone(),
                fail_after,
            },
            limits,
        ),
        got,
    )
}

#[test]
fn streams_a_sized_body_to_the_sink_in_order_whole_or_byte_by_byte_and_keeps_alive() {
    let input = b"POST /s HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello worldGET /buffer HTTP/1.1\r\nHost: x\r\n\r\n";
    for step in [1, 3, input.len()] {
        let (mut h, got) = streaming(None);
        for piece in input.chunks(step) {
            h.feed(piece);
        }
        let out = h.take();
        assert!(out.contains("streamed 11 bytes: hello world"), "{out}");
        assert!(
            out.ends_with("handled /buffer body=0"),
            "the next request was not parsed in step: {out}"
        );
        assert_eq!(got.borrow().concat(), b"hello world");
    }
}

#[test]
fn streams_a_chunked_body_with_its_trailers() {
    let (mut h, _) = streaming(None);
    h.feed(b"POST /s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 42\r\n\r\n");
    let out = h.take();
    assert!(
        out.ends_with("streamed 11 bytes: hello world trailers: X-Sum=42"),
        "{out}"
    );
}

#[test]
fn gives_the_sink_no_piece_larger_than_the_input_chunk_limit() {
    let limits = Limits {
        max_input_chunk: 1000,
        ..Limits::default()
    };
    let (mut h, got) = streaming_with(None, limits.clone());
    let body = vec![b'z'; 50_000];
    let mut req = format!(
        "POST /s HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(&body);
    // As the I/O layer reads: into what read_buf offers.
    let mut fed = 0;
    while fed < req.len() {
        let now = h.now();
        let Some(buf) = h.conn.read_buf(&mut h.env.pool, &limits) else {
            break;
        };
        let n = buf.len().min(req.len() - fed);
        buf[..n].copy_from_slice(&req[fed..fed + n]);
        h.conn.filled(n, now);
        fed += n;
        h.conn.advance(now, &mut h.env.ctx(), Default::default());
    }
    assert!(h.take().contains("streamed 50000 bytes"));
    assert!(
        got.borrow().iter().all(|c| c.len() <= 1000),
        "a piece exceeded the limit"
    );
}

#[test]
fn answers_a_refusing_sink_with_its_status_and_closes() {
    let (mut h, _) = streaming(Some(0));
    h.feed(b"POST /s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n1\r\nb\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n");
    let out = h.take();
    assert_eq!(statuses(&out), ["400"]);
    assert!(out.contains("the sink refused") && out.contains("Connection: close"));
    assert!(!out.contains("smuggled"));
}

#[test]
fn a_skipped_body_gets_no_100_continue_and_is_never_parsed_as_a_request() {
    let (mut h, _) = streaming(None);
    h.feed(b"POST /skip HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 40\r\n\r\n");
    h.feed(b"GET /hidden HTTP/1.1\r\nHost: x\r\n\r\n......");
    let out = h.take();
    assert_eq!(statuses(&out), ["403"], "{out}");
    assert!(!out.contains("100 Continue"));
    assert!(out.contains("Connection: close"));
    assert!(!out.contains("hidden"));
    assert_eq!(h.next(), Next::ShutdownWrite);
}

#[test]
fn sends_100_continue_when_the_handler_streams_and_allows_more_than_max_body() {
    let limits = Limits {
        max_body: 10,
        ..Limits::default()
    };
    let (mut h, _) = streaming_with(None, limits);
    h.feed(b"POST /s HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 20\r\n\r\n");
    assert_eq!(h.take(), "HTTP/1.1 100 Continue\r\n\r\n");
    h.feed(b"01234567890123456789");
    assert!(h.take().contains("streamed 20 bytes"));
    // Buffered, the same size is too large.
    h.feed(b"POST /buffer HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n\r\n");
    assert_eq!(statuses(&h.take()), ["413"]);
}

#[test]
fn adds_static_headers_to_every_response() {
    let mut h = Harness::new(echo_path);
    h.feed(GET);
    h.feed(b"GET /nope HTTP/1.1\r\nHost: x\r\nContent-Length: x\r\n\r\n");
    let out = h.take();
    assert_eq!(out.matches("Server: test\r\n").count(), 2, "{out}");
}

#[test]
fn a_discarded_body_is_answered_before_it_arrives_then_dropped_in_step() {
    let bodies: [&[u8]; 2] = [
        b"Content-Length: 11\r\n\r\nhello world",
        b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-T: 1\r\n\r\n",
    ];
    for body in bodies {
        let split = body.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        for step in [1, 3, 1000] {
            let (mut h, got) = streaming(None);
            h.feed(b"POST /discard HTTP/1.1\r\nHost: x\r\n");
            h.feed(&body[..split]);
            let out = h.take();
            assert_eq!(statuses(&out), ["405"], "answered before the body: {out}");
            assert!(out.ends_with("handled /discard body=0"), "{out}");
            assert!(!out.contains("Connection: close"), "{out}");
            let mut rest = body[split..].to_vec();
            rest.extend_from_slice(b"GET /buffer HTTP/1.1\r\nHost: x\r\n\r\n");
            for piece in rest.chunks(step) {
                h.feed(piece);
            }
            let out = h.take();
            assert_eq!(statuses(&out), ["200"], "{out}");
            assert!(out.ends_with("handled /buffer body=0"), "{out}");
            assert!(got.borrow().is_empty(), "no sink saw the body");
            assert_eq!(h.next(), Next::Continue);
        }
    }
}

#[test]
fn a_discarded_body_over_the_limit_ends_the_connection_after_the_answer() {
    let limits = Limits {
        max_discarded_body: 10,
        ..Limits::default()
    };
    let mk = || streaming_with(None, limits.clone()).0;
    // Declared too large: answered with a close, the body never read.
    let mut h = mk();
    h.feed(b"POST /discard HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nGET /hidden HTTP/1.1\r\nHost: x\r\n\r\n");
    let out = h.take();
    assert_eq!(statuses(&out), ["405"], "{out}");
    assert!(out.contains("Connection: close") && !out.contains("hidden"));
    assert_eq!(h.next(), Next::ShutdownWrite);
    // Chunked, growing past it: the answer stands, the connection ends.
    let mut h = mk();
    h.feed(
        b"POST /discard HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
    );
    assert_eq!(statuses(&h.take()), ["405"]);
    assert_eq!(h.next(), Next::Continue);
    h.feed(b"6\r\n world\r\n0\r\n\r\nGET /hidden HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(h.take(), "", "no second answer, nothing parsed after");
    assert_eq!(h.next(), Next::ShutdownWrite);
}

#[test]
fn a_discarded_body_with_bad_framing_ends_the_connection_without_a_second_answer() {
    let (mut h, _) = streaming(None);
    h.feed(b"POST /discard HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert_eq!(statuses(&h.take()), ["405"]);
    h.feed(b"5x\r\nhello\r\n0\r\n\r\nGET /hidden HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(h.take(), "");
    assert_eq!(h.next(), Next::ShutdownWrite);
}

#[test]
fn a_client_waiting_for_100_continue_gets_the_early_answer_and_a_close() {
    let (mut h, _) = streaming(None);
    h.feed(
        b"POST /discard HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
    );
    let out = h.take();
    assert_eq!(statuses(&out), ["405"], "{out}");
    assert!(!out.contains("100 Continue") && out.contains("Connection: close"));
    h.feed(b"helloGET /hidden HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(h.take(), "");
    assert_eq!(h.next(), Next::ShutdownWrite);
}

#[test]
fn a_discarded_body_that_stalls_past_the_linger_is_closed_without_a_408() {
    let (mut h, _) = streaming(None);
    h.feed(b"POST /discard HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nsome");
    assert_eq!(statuses(&h.take()), ["405"]);
    let d = h.deadline();
    assert_eq!(d, h.now() + h.env.timeouts.linger);
    assert_eq!(h.timeout(d - Duration::from_millis(1)), None);
    assert_eq!(h.timeout(d), Some(Expired::Idle));
    assert_eq!(h.take(), "", "the request had its answer");
    assert_eq!(h.next(), Next::ShutdownWrite);
}

#[test]
fn a_discarded_body_trickled_in_is_cut_at_the_body_deadline_in_all() {
    let (mut h, _) = streaming(None);
    h.feed(b"POST /discard HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n");
    assert_eq!(statuses(&h.take()), ["405"]);
    let start = h.now();
    // A byte every second: each gap is under the linger.
    for _ in 0..h.env.timeouts.body_progress.as_secs() {
        h.env.now += Duration::from_secs(1);
        h.feed(b"x");
    }
    assert_eq!(h.deadline(), start + h.env.timeouts.body_progress);
    assert_eq!(h.timeout(h.deadline()), Some(Expired::Idle));
    assert_eq!(h.take(), "");
}
