//! The connection state machine driven on byte slices.

use std::time::{Duration, Instant};

use super::deferred::Writer;
use super::*;
use crate::http::events::{Event, Observer, Seen, Wants};
use crate::sys::Addr;

struct Env {
    pool: BufPool,
    scratch: Vec<u8>,
    limits: Limits,
    timeouts: Timeouts,
    handler: Box<dyn Handler>,
    now: Instant,
    spare: Spare,
    events: Recorder,
    heads: crate::http::blocks::Blocks,
}

/// Writes down every event the engine gives, one line each.
#[derive(Default)]
struct Recorder(Vec<String>);

impl Observer for Recorder {
    fn wants(&self) -> Wants {
        Wants::LineAndClient
    }
    fn event(&mut self, e: Event<'_>) {
        let seen = |r: Option<Seen<'_>>| {
            r.map_or("-".to_string(), |r| {
                let agent = r.agent.map_or("-".into(), String::from_utf8_lossy);
                format!("\"{}\" agent={agent}", r.line)
            })
        };
        self.0.push(match e {
            Event::Answered {
                request,
                status,
                sent,
                note,
                ..
            } => format!("answered {} {status} {sent} {note}", seen(request)),
            Event::HandedOff { .. } => "handed off".to_string(),
            Event::Refused { status, reason, .. } => format!("refused {status} {reason}"),
            Event::GoAway { code, why, .. } => format!("goaway {code} {why}"),
            Event::Trouble { severity, what, .. } => format!("{severity:?}: {what}"),
        });
    }
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
            spare: &mut self.spare,
            observer: &mut self.events,
            heads: &mut self.heads,
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
                spare: Vec::new(),
                events: Recorder::default(),
                heads: Default::default(),
            },
        }
    }

    fn now(&self) -> Instant {
        self.env.now
    }

    fn feed(&mut self, bytes: &[u8]) {
        let now = self.now();
        self.conn.feed(bytes, &mut self.env.pool, now);
        self.conn
            .advance(now, &mut self.env.ctx(), Default::default());
    }

    fn timeout(&mut self, at: Instant) -> Option<Expired> {
        self.conn.on_timeout(at, &mut self.env.ctx())
    }

    fn deadline(&self) -> Instant {
        self.conn.deadline(&self.env.timeouts).unwrap()
    }

    /// Takes everything queued, files included, as the I/O layer would.
    fn take(&mut self) -> String {
        let all = crate::fuzzing::drain(&mut self.conn).unwrap();
        // Draining output may unblock pipelined requests.
        let now = self.now();
        self.conn
            .advance(now, &mut self.env.ctx(), Default::default());
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
fn tells_its_observer_each_outcome_and_logs_nothing_itself() {
    let mut h = Harness::new(
        |req: &Request<'_>, res: &mut Response<'_>| match req.path() {
            "/panic" => panic!("on purpose"),
            "/away" => {
                res.hand_off();
            }
            _ => {
                res.body("ok");
            }
        },
    );
    h.feed(b"GET /a HTTP/1.1\r\nHost: x\r\nUser-Agent: t/1\r\n\r\n");
    h.take();
    h.feed(b"GET /panic HTTP/1.1\r\nHost: x\r\n\r\n");
    h.take();
    let mut away = Harness::new(|_: &Request<'_>, res: &mut Response<'_>| {
        res.hand_off();
    });
    away.feed(b"GET /away HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut bad = Harness::new(echo_path);
    bad.feed(
        b"GET /a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    bad.take();
    assert_eq!(
        h.env.events.0,
        [
            "answered \"GET /a HTTP/1.1\" agent=t/1 200 2 ",
            "Error: handler panicked; answered 500",
            "answered \"GET /panic HTTP/1.1\" agent=- 500 26 handler panicked",
        ]
    );
    assert_eq!(away.env.events.0, ["handed off"]);
    assert_eq!(bad.env.events.0.len(), 1, "{:?}", bad.env.events.0);
    assert!(
        bad.env.events.0[0].starts_with("refused 400 "),
        "{:?}",
        bad.env.events.0
    );
}

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
fn a_pipelined_response_waits_behind_a_streamed_body_until_the_stream_ends() {
    let mut h = Harness::new(|req: &Request<'_>, res: &mut Response<'_>| {
        if req.path() == "/stream" {
            res.body(Body::Stream(Box::new(Three(3))));
        } else {
            res.body(Body::Static(b"after"));
        }
    });
    h.feed(b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\nGET /next HTTP/1.1\r\nHost: t\r\n\r\n");
    let out = h.take();
    let stream_end = out.find("0\r\n\r\n").expect("the stream ends");
    let next = out.rfind("HTTP/1.1 200").unwrap();
    assert!(
        next > stream_end,
        "the second response follows the stream: {out:?}"
    );
    assert_eq!(out.matches("part").count(), 3);
    assert!(out.ends_with("\r\n\r\nafter"), "{out:?}");
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

mod deferred_responses;
mod streamed_bodies;

#[test]
fn an_idle_connection_parks_small_and_resumes_where_it_was() {
    let mut h = Harness::new(echo_path);
    h.feed(b"GET /a HTT");
    h.conn.release_buffers(&mut h.env.pool);
    assert!(h.conn.parked().is_none(), "mid-head: not idle");
    h.feed(b"P/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(statuses(&h.take()), ["200"]);
    assert!(h.conn.parked().is_none(), "buffers not yet given back");
    h.conn.release_buffers(&mut h.env.pool);
    let deadline = h.deadline();
    let p = h.conn.parked().expect("idle between requests");
    assert!(
        std::mem::size_of_val(&p) <= 128,
        "{}",
        std::mem::size_of_val(&p)
    );
    assert_eq!(
        p.deadline(&h.env.timeouts),
        deadline,
        "the same idle deadline"
    );
    let mut woken = Conn::new(Addr::Unknown, h.now());
    woken.resume(p);
    h.conn = woken;
    assert_eq!(h.deadline(), deadline);
    h.feed(GET);
    assert_eq!(statuses(&h.take()), ["200"]);
}

/// Hands off every request, its body unread (`BodyPlan::Skip`).
struct HandsOffUnread;

impl Handler for HandsOffUnread {
    fn on_head(&self, _: &Request<'_>) -> BodyPlan {
        BodyPlan::Skip
    }
    fn handle(&self, _: &Request<'_>, res: &mut Response<'_>) {
        res.hand_off();
    }
}

#[test]
fn a_hand_off_before_the_body_is_read_takes_the_body_bytes_read_so_far() {
    let mut h = Harness::new(HandsOffUnread);
    h.feed(b"POST /api HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhello");
    assert_eq!(h.take(), "", "no answer: the connection is handed off");
    let taken = h.conn.take_hand_off().expect("handed off");
    assert!(taken.head.starts_with(b"POST /api HTTP/1.1\r\n"));
    assert_eq!(taken.rest, b"hello", "the next owner reads the other 5");
}
