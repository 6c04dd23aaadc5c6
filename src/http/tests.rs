//! The connection state machine driven on byte slices.

use std::io::IoSlice;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use super::deferred::{self, Writer};
use super::*;
use crate::sys::Addr;

struct Env {
    pool: BufPool,
    scratch: Vec<u8>,
    limits: Limits,
    timeouts: Timeouts,
    handler: Box<dyn Handler>,
    now: Instant,
}

impl Env {
    fn ctx(&mut self) -> Ctx<'_> {
        Ctx {
            handler: &*self.handler,
            limits: &self.limits,
            timeouts: &self.timeouts,
            date: b"Sat, 21 Nov 2026 00:00:00 GMT",
            pool: &mut self.pool,
            scratch: &mut self.scratch,
            draining: false,
            static_headers: b"Server: test\r\n",
            replies: None,
        }
    }
}

struct Harness {
    conn: Conn,
    env: Env,
}

fn echo_path(req: &Request<'_>, res: &mut Response<'_>) {
    let mut body = format!("{} {}", req.method(), req.path());
    if !req.body().is_empty() {
        body.push_str(" body=");
        body.push_str(&String::from_utf8_lossy(req.body()));
    }
    for (n, v) in req.trailers() {
        body.push_str(&format!(" trailer {n}={}", String::from_utf8_lossy(v)));
    }
    res.header("Content-Type", "text/plain").body(body);
}

impl Harness {
    fn new(handler: impl Handler + 'static) -> Self {
        Self::with_limits(handler, Limits::default())
    }

    fn with_limits(handler: impl Handler + 'static, limits: Limits) -> Self {
        let now = Instant::now();
        Harness {
            conn: Conn::new(Addr::Unknown, now),
            env: Env {
                pool: BufPool::default(),
                scratch: Vec::new(),
                limits,
                timeouts: Timeouts::default(),
                handler: Box::new(handler),
                now,
            },
        }
    }

    fn now(&self) -> Instant {
        self.env.now
    }

    fn feed(&mut self, bytes: &[u8]) {
        let now = self.now();
        self.conn.feed(bytes, &mut self.env.pool, now);
        self.conn.advance(now, &mut self.env.ctx());
    }

    fn timeout(&mut self, at: Instant) -> Option<Expired> {
        self.conn.on_timeout(at, &mut self.env.ctx())
    }

    fn deadline(&self) -> Instant {
        self.conn.deadline(&self.env.timeouts).unwrap()
    }

    /// Takes everything queued, files included, as the I/O layer would.
    fn take(&mut self) -> String {
        let mut all = Vec::new();
        loop {
            let out = self.conn.output();
            out.prepare().unwrap();
            let mut iov = [IoSlice::new(&[]); 16];
            let n = out.gather(&mut iov);
            if n > 0 {
                let total: usize = iov[..n].iter().map(|s| s.len()).sum();
                for s in &iov[..n] {
                    all.extend_from_slice(s);
                }
                out.advance(total);
                continue;
            }
            if let Some(f) = out.front_file() {
                let mut buf = vec![0; f.left as usize];
                f.file.read_exact_at(&mut buf, *f.offset).unwrap();
                all.extend_from_slice(&buf);
                let left = f.left;
                out.advance_file(left);
                continue;
            }
            break;
        }
        // Draining output may unblock pipelined requests.
        let now = self.now();
        self.conn.advance(now, &mut self.env.ctx());
        String::from_utf8_lossy(&all).into_owned()
    }

    fn next(&mut self) -> Next {
        let now = self.now();
        self.conn.next(now, &self.env.timeouts, false)
    }
}

fn statuses(s: &str) -> Vec<&str> {
    s.match_indices("HTTP/1.1 ")
        .map(|(i, _)| &s[i + 9..i + 12])
        .collect()
}

const GET: &[u8] = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";

#[test]
fn answers_a_get_with_date_length_and_keep_alive() {
    let mut h = Harness::new(echo_path);
    h.feed(GET);
    let out = h.take();
    assert!(
        out.starts_with("HTTP/1.1 200 OK\r\nDate: Sat, 21 Nov 2026 00:00:00 GMT\r\n"),
        "{out}"
    );
    assert!(out.contains("Content-Length: 6\r\n"));
    assert!(!out.contains("Connection: close"));
    assert!(out.ends_with("\r\n\r\nGET /a"));
    assert_eq!(h.next(), Next::Continue);
}

#[test]
fn answers_pipelined_requests_in_order_whole_or_byte_by_byte() {
    let input = b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nPOST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcPOST /3 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nde\r\n0\r\nT: v\r\n\r\nGET /4 HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut whole = Harness::new(echo_path);
    whole.feed(input);
    let a = whole.take();
    let mut bytewise = Harness::new(echo_path);
    for b in input {
        bytewise.feed(std::slice::from_ref(b));
    }
    let b = bytewise.take();
    assert_eq!(a, b);
    let bodies: Vec<&str> = a
        .split("\r\n\r\n")
        .skip(1)
        .map(|s| s.split("HTTP/1.1").next().unwrap())
        .collect();
    assert_eq!(
        bodies,
        [
            "GET /1",
            "POST /2 body=abc",
            "POST /3 body=de trailer T=v",
            "GET /4"
        ]
    );
}

#[test]
fn stops_parsing_while_the_pipeline_queue_is_full() {
    let limits = Limits {
        max_pipelined: 2,
        ..Limits::default()
    };
    let mut h = Harness::with_limits(echo_path, limits.clone());
    h.feed(&GET.repeat(5));
    assert_eq!(h.conn.output().responses(), 2);
    assert!(!h.conn.wants_read(&limits));
    let first = h.take();
    assert_eq!(statuses(&first).len(), 2);
    let rest = h.take() + &h.take();
    assert_eq!(statuses(&rest).len(), 3);
    assert!(h.conn.wants_read(&limits));
}

#[test]
fn closes_after_connection_close_and_after_http10_without_keep_alive() {
    let mut h = Harness::new(echo_path);
    h.feed(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /ignored HTTP/1.1\r\nHost: x\r\n\r\n");
    let out = h.take();
    assert_eq!(statuses(&out), ["200"]);
    assert!(out.contains("Connection: close\r\n"));
    assert_eq!(h.next(), Next::ShutdownWrite);

    let mut h = Harness::new(echo_path);
    h.feed(b"GET / HTTP/1.0\r\n\r\n");
    assert!(h.take().contains("Connection: close\r\n"));
    assert_eq!(h.next(), Next::ShutdownWrite);

    let mut h = Harness::new(echo_path);
    h.feed(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert!(h.take().contains("Connection: keep-alive\r\n"));
    assert_eq!(h.next(), Next::Continue);
}

#[test]
fn sends_100_continue_only_when_the_client_waits_for_it() {
    let mut h = Harness::new(echo_path);
    h.feed(b"POST /u HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n");
    assert_eq!(h.take(), "HTTP/1.1 100 Continue\r\n\r\n");
    h.feed(b"hi");
    let out = h.take();
    assert!(out.starts_with("HTTP/1.1 200 OK"));
    assert!(out.ends_with("POST /u body=hi"));

    let mut h = Harness::new(echo_path);
    h.feed(b"POST /u HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi");
    assert_eq!(statuses(&h.take()), ["200"]);
}

#[test]
fn refuses_an_oversized_body_with_413_without_asking_for_it() {
    let mut h = Harness::new(echo_path);
    h.feed(
        b"POST /u HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 99999999\r\n\r\n",
    );
    let out = h.take();
    assert_eq!(statuses(&out), ["413"]);
    assert!(out.contains("Connection: close"));
}

#[test]
fn refuses_each_smuggling_attempt_with_400_and_parses_nothing_after_it() {
    let cases: &[&[u8]] = &[
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcd",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nz\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n0\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\rX: y\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
    ];
    for case in cases {
        let mut h = Harness::new(echo_path);
        let mut input = case.to_vec();
        input.extend_from_slice(b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n");
        h.feed(&input);
        let out = h.take();
        assert_eq!(statuses(&out), ["400"], "{}", String::from_utf8_lossy(case));
        assert!(out.contains("Connection: close"));
        assert!(!out.contains("smuggled"));
        assert_eq!(h.next(), Next::ShutdownWrite);
    }
}

#[test]
fn answers_head_with_the_length_but_no_body() {
    let mut h = Harness::new(echo_path);
    h.feed(b"HEAD /x HTTP/1.1\r\nHost: x\r\n\r\nGET /y HTTP/1.1\r\nHost: x\r\n\r\n");
    let out = h.take();
    assert!(out.starts_with("HTTP/1.1 200 OK"));
    assert!(
        out.contains("Content-Length: 7\r\n\r\nHTTP/1.1 200"),
        "{out}"
    );
    assert!(out.ends_with("GET /y"));
}

#[test]
fn hands_options_asterisk_to_the_handler() {
    let mut h = Harness::new(|req: &Request<'_>, res: &mut Response<'_>| {
        assert!(req.is_asterisk());
        res.status(204).header("Allow", "GET, HEAD, OPTIONS");
    });
    h.feed(b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n");
    let out = h.take();
    assert!(out.starts_with("HTTP/1.1 204 No Content\r\n"));
    assert!(!out.contains("Content-Length"));
}

#[test]
fn gives_500_and_closes_when_the_handler_panics() {
    let mut h = Harness::new(|_: &Request<'_>, _: &mut Response<'_>| panic!("boom"));
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    h.feed(GET);
    std::panic::set_hook(hook);
    let out = h.take();
    assert_eq!(statuses(&out), ["500"]);
    assert!(out.contains("Connection: close"));
}

#[test]
fn gives_500_when_the_handler_sets_a_framing_header_or_injects_crlf() {
    for bad in [("Content-Length", "5"), ("X", "a\r\nInjected: 1")] {
        let mut h = Harness::new(move |_: &Request<'_>, res: &mut Response<'_>| {
            res.header(bad.0, bad.1).body("hello");
        });
        h.feed(GET);
        let out = h.take();
        assert_eq!(statuses(&out), ["500"]);
        assert!(!out.contains("Injected"));
    }
}

struct Three(u8);
impl BodyStream for Three {
    fn read_into(&mut self, buf: &mut Vec<u8>, _: usize) -> std::io::Result<bool> {
        self.0 -= 1;
        buf.extend_from_slice(b"part");
        Ok(self.0 > 0)
    }
}

#[test]
fn streams_chunked_to_http11_and_close_delimited_to_http10() {
    let mut h = Harness::new(|_: &Request<'_>, res: &mut Response<'_>| {
        res.body(Body::Stream(Box::new(Three(3))));
    });
    h.feed(GET);
    let out = h.take();
    assert!(out.contains("Transfer-Encoding: chunked\r\n"));
    assert!(out.ends_with("00000004\r\npart\r\n00000004\r\npart\r\n00000004\r\npart\r\n0\r\n\r\n"));

    let mut h = Harness::new(|_: &Request<'_>, res: &mut Response<'_>| {
        res.body(Body::Stream(Box::new(Three(2))));
    });
    h.feed(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let out = h.take();
    assert!(out.contains("Connection: close\r\n"));
    assert!(out.ends_with("\r\n\r\npartpart"));
}

#[test]
fn sends_408_when_a_head_is_not_finished_before_the_setup_deadline() {
    let mut h = Harness::new(echo_path);
    h.feed(b"GET / HTTP/1.1\r\nHo");
    let d = h.deadline();
    assert_eq!(d, h.now() + h.env.timeouts.connection_setup);
    assert_eq!(h.timeout(h.now() + Duration::from_secs(1)), None);
    assert_eq!(h.timeout(d), Some(Expired::Request));
    assert_eq!(statuses(&h.take()), ["408"]);
}

#[test]
fn closes_an_idle_keep_alive_connection_quietly_after_the_intra_stream_timeout() {
    let mut h = Harness::new(echo_path);
    h.feed(GET);
    h.take();
    let d = h.deadline();
    assert_eq!(d, h.now() + h.env.timeouts.intra_stream);
    assert_eq!(h.timeout(d), Some(Expired::Idle));
    assert_eq!(h.take(), "");
    assert_eq!(h.next(), Next::ShutdownWrite);
}

#[test]
fn aborts_when_the_peer_stops_reading() {
    let mut h = Harness::new(echo_path);
    h.feed(GET);
    let d = h.deadline();
    assert_eq!(d, h.now() + h.env.timeouts.write_progress);
    assert_eq!(h.timeout(d), Some(Expired::Write));
}

#[test]
fn discards_an_incomplete_request_at_eof_but_answers_complete_ones() {
    let mut h = Harness::new(echo_path);
    let mut input = GET.repeat(2);
    input.extend_from_slice(b"GET /half HTTP/1.1\r\n");
    h.conn.on_eof();
    h.feed(&input);
    let out = h.take();
    assert_eq!(statuses(&out), ["200", "200"]);
    // Our side is shut down (a TLS peer gets close_notify), then closed at
    // once: the peer has nothing more to send.
    assert_eq!(h.next(), Next::ShutdownWrite);
    assert_eq!(h.next(), Next::Close);
}

#[test]
fn gives_buffers_back_when_idle() {
    let mut h = Harness::new(echo_path);
    h.feed(GET);
    h.take();
    assert!(h.conn.is_idle());
    h.conn.release_buffers(&mut h.env.pool);
    assert_eq!(h.env.pool.free_buffers(), 2);
}

#[test]
fn drops_leading_empty_lines_before_a_request() {
    let mut h = Harness::new(echo_path);
    h.feed(b"\r\n");
    h.feed(GET);
    assert_eq!(statuses(&h.take()), ["200"]);
}

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
            "/buffer" => BodyPlan::Buffer,
            _ => BodyPlan::Stream(Box::new(Collect {
                got: self.got.clone(),
                fail_after: self.fail_after,
            })),
        }
    }
    fn handle(&self, req: &Request<'_>, res: &mut Response<'_>) {
        res.status(if req.path() == "/skip" { 403 } else { 200 })
            .body(format!("handled {} body={}", req.path(), req.body().len()));
    }
}

fn streaming(
    fail_after: Option<usize>,
) -> (Harness, std::rc::Rc<std::cell::RefCell<Vec<Vec<u8>>>>) {
    let got = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    (
        Harness::new(Streaming {
            got: got.clone(),
            fail_after,
        }),
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
    let got = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let mut h = Harness::with_limits(
        Streaming {
            got: got.clone(),
            fail_after: None,
        },
        limits.clone(),
    );
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
        h.conn.advance(now, &mut h.env.ctx());
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
    let got = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let mut h = Harness::with_limits(
        Streaming {
            got,
            fail_after: None,
        },
        limits,
    );
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

/// A handler that defers; the test then writes the response in steps.
fn deferring(_: &Request<'_>, res: &mut Response<'_>) {
    let _reply = res.defer();
}

fn job(f: impl FnOnce(&mut Writer<'_>) + Send + 'static) -> deferred::Job {
    Box::new(f)
}

#[test]
fn writes_a_deferred_response_in_steps_and_keeps_pipelined_requests_waiting() {
    let mut h = Harness::new(deferring);
    h.feed(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(
        h.take(),
        "",
        "nothing before the deferred response is written"
    );
    let now = h.now();
    h.conn.write_deferred(
        1,
        job(|w| {
            assert_eq!(w.write_state(), WriteState::Empty);
            w.status(200).unwrap();
            w.header("X-Step", "1").unwrap();
            w.write(b"part one, ").unwrap();
            assert_eq!(w.write_state(), WriteState::MetadataIssued);
            assert_eq!(
                w.header("X-Late", "no").unwrap_err().0,
                "a header after the header section was sent"
            );
        }),
        now,
        &mut h.env.ctx(),
    );
    let first = h.take();
    assert!(
        first.contains("Transfer-Encoding: chunked\r\n") && first.ends_with("a\r\npart one, \r\n"),
        "{first}"
    );
    h.conn.write_deferred(
        1,
        job(|w| {
            w.write(b"two").unwrap();
            w.finish_with_trailers(&[("X-Done", b"yes")]).unwrap();
            assert_eq!(w.write_state(), WriteState::Finished);
        }),
        now,
        &mut h.env.ctx(),
    );
    let rest = h.take();
    assert!(
        rest.starts_with("3\r\ntwo\r\n0\r\nX-Done: yes\r\n\r\n"),
        "{rest}"
    );
    // The pipelined request is parsed only now, and deferred in its turn.
    h.conn.write_deferred(
        2,
        job(|w| {
            w.status(204).unwrap();
            w.finish().unwrap();
        }),
        now,
        &mut h.env.ctx(),
    );
    assert!(h.take().starts_with("HTTP/1.1 204 No Content\r\n"));
}

#[test]
fn answers_500_when_a_deferred_response_is_dropped_and_cuts_a_half_written_one() {
    let mut h = Harness::new(deferring);
    h.feed(GET);
    let now = h.now();
    h.conn.abandon(1, now, &mut h.env.ctx());
    let out = h.take();
    assert_eq!(statuses(&out), ["500"]);

    let mut h = Harness::new(deferring);
    h.feed(GET);
    h.conn.write_deferred(
        1,
        job(|w| {
            w.status(200).unwrap();
            w.write(b"half").unwrap();
        }),
        now,
        &mut h.env.ctx(),
    );
    h.conn.abandon(1, now, &mut h.env.ctx());
    h.take();
    assert_eq!(
        h.next(),
        Next::Close,
        "a half-written response must not end cleanly"
    );
}

#[test]
fn answers_504_when_a_deferred_response_is_late() {
    let mut h = Harness::new(deferring);
    h.feed(GET);
    let d = h.deadline();
    assert_eq!(d, h.now() + h.env.timeouts.response);
    assert_eq!(h.timeout(d), Some(Expired::Request));
    assert_eq!(statuses(&h.take()), ["504"]);
}

#[test]
fn a_handler_sees_the_read_state() {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    struct Probe(std::sync::Arc<std::sync::Mutex<Vec<ReadState>>>);
    impl Handler for Probe {
        fn on_head(&self, req: &Request<'_>) -> BodyPlan {
            self.0.lock().unwrap().push(req.read_state());
            BodyPlan::Buffer
        }
        fn handle(&self, req: &Request<'_>, _: &mut Response<'_>) {
            self.0.lock().unwrap().push(req.read_state());
        }
    }
    let mut h = Harness::new(Probe(seen.clone()));
    h.feed(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nz");
    assert_eq!(
        *seen.lock().unwrap(),
        [ReadState::MessageReady, ReadState::Finished]
    );
}
