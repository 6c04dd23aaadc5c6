//! Deferred responses and streams as a program on the library uses them:
//! a producer hears its client left, a route sets its own deadline, a
//! streamed body is woken rather than polled, and futures complete
//! replies, polled on the loop or on a tokio runtime.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use handoff::{Answer, Body, BodyStream, Options};

mod common;

use common::serve_in_background as serve;

fn get(addr: SocketAddr, path: &str) -> TcpStream {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(c, "GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    c
}

#[test]
fn send_says_gone_once_the_client_has_left_so_the_producer_stops() {
    let (said, heard) = mpsc::channel();
    let said = Mutex::new(said);
    let addr = serve(Options::default(), move |_req, res| {
        let reply = res.defer();
        let said = said.lock().unwrap().clone();
        std::thread::spawn(move || {
            let began = Instant::now();
            let mut sent = 0;
            // An endless stream, one event every 10 ms, until `send` fails.
            while reply
                .send(|w| {
                    let _ = w.header("Content-Type", "text/event-stream");
                    let _ = w.write(b"data: tick\n\n");
                    w.flush();
                })
                .is_ok()
            {
                sent += 1;
                std::thread::sleep(Duration::from_millis(10));
                if began.elapsed() > Duration::from_secs(10) {
                    break;
                }
            }
            said.send((reply.is_gone(), sent, began.elapsed())).unwrap();
        });
    });
    let mut c = get(addr, "/events");
    let mut first = [0u8; 64];
    let n = c.read(&mut first).unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));
    drop(c);
    let (gone, sent, took) = heard.recv_timeout(Duration::from_secs(15)).unwrap();
    assert!(gone, "the producer stopped because the reply was gone");
    assert!(
        took < Duration::from_secs(5),
        "it stopped within {took:?} ({sent} events)"
    );
}

#[test]
fn a_route_sets_its_own_deadline_and_another_keeps_the_servers() {
    let opts = Options {
        timeouts: handoff::Timeouts {
            response: Duration::from_secs(5),
            ..Default::default()
        },
        ..Options::default()
    };
    let addr = serve(opts, |req, res| {
        let reply = match req.path() {
            "/short" => res.defer_within(Duration::from_millis(200)),
            _ => res.defer(),
        };
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(600));
            let _ = reply.answer(Answer::new(200).body("late but in time\n"));
        });
    });
    let began = Instant::now();
    let mut short = get(addr, "/short");
    let r = common::read_response(&mut short).unwrap();
    assert!(
        r.status >= 500,
        "the short route's deadline answered {}",
        r.status
    );
    assert!(
        began.elapsed() < Duration::from_millis(550),
        "{:?}",
        began.elapsed()
    );
    let mut long = get(addr, "/long");
    let r = common::read_response(&mut long).unwrap();
    assert_eq!(
        (r.status, r.body.as_slice()),
        (200, &b"late but in time\n"[..])
    );
}

/// Gives the counter's values as they are set, ending at 3; nothing in
/// between (it is asked again only when woken).
struct Ticks(Arc<AtomicUsize>, usize);

impl BodyStream for Ticks {
    fn read_into(&mut self, buf: &mut Vec<u8>, _max: usize) -> std::io::Result<bool> {
        let now = self.0.load(Ordering::Acquire);
        while self.1 < now {
            self.1 += 1;
            buf.extend_from_slice(format!("tick {}\n", self.1).as_bytes());
        }
        Ok(self.1 < 3)
    }
}

/// A `Ticks` body, and a thread that moves its counter three times, 100 ms
/// apart, calling `wake` after each.
fn ticking(res: &mut handoff::Response<'_>, wake: impl Fn() + Send + 'static) {
    let count = Arc::new(AtomicUsize::new(0));
    let moved = count.clone();
    std::thread::spawn(move || {
        for _ in 0..3 {
            std::thread::sleep(Duration::from_millis(100));
            moved.fetch_add(1, Ordering::AcqRel);
            wake();
        }
    });
    res.body(Body::Stream(Box::new(Ticks(count, 0))));
}

#[test]
fn a_streamed_body_that_had_nothing_is_asked_again_when_woken() {
    let addr = serve(Options::default(), |_req, res| {
        let waker = res.stream_waker();
        ticking(res, move || waker.wake());
    });
    let began = Instant::now();
    let mut c = get(addr, "/ticks");
    let r = common::read_response(&mut c).unwrap();
    assert_eq!(String::from_utf8_lossy(&r.body), "tick 1\ntick 2\ntick 3\n");
    // Nothing else drives this connection: without the wake-ups the body
    // would wait for the read timeout.
    assert!(
        began.elapsed() < Duration::from_secs(2),
        "{:?}",
        began.elapsed()
    );
}

/// A one-shot channel with no runtime behind it: the value, and the waker
/// of whoever waits.
type Slot = Arc<Mutex<(Option<String>, Option<Waker>)>>;

#[test]
fn a_future_completes_a_deferred_response_polled_on_the_loop() {
    let addr = serve(Options::default(), |req, res| {
        let slot: Slot = Arc::default();
        let fill = slot.clone();
        let name = req.path().trim_start_matches('/').to_string();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            let mut s = fill.lock().unwrap();
            s.0 = Some(format!("hello, {name}\n"));
            if let Some(w) = s.1.take() {
                w.wake();
            }
        });
        res.defer().spawn(async move {
            let text = std::future::poll_fn(|cx| {
                let mut s = slot.lock().unwrap();
                match s.0.take() {
                    Some(t) => Poll::Ready(t),
                    None => {
                        s.1 = Some(cx.waker().clone());
                        Poll::Pending
                    }
                }
            })
            .await;
            Answer::new(201)
                .header("Content-Type", "text/plain")
                .body(text)
        });
    });
    let mut c = get(addr, "/loop");
    let r = common::read_response(&mut c).unwrap();
    assert_eq!((r.status, r.body.as_slice()), (201, &b"hello, loop\n"[..]));
}

#[test]
fn a_future_on_a_tokio_runtime_completes_a_deferred_response() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let handle = rt.handle().clone();
    let addr = serve(Options::default(), move |_req, res| {
        res.defer().spawn_on(&handle, async {
            tokio::time::sleep(Duration::from_millis(30)).await;
            Answer::new(200).body("from tokio\n")
        });
    });
    let mut c = get(addr, "/");
    let r = common::read_response(&mut c).unwrap();
    assert_eq!((r.status, r.body.as_slice()), (200, &b"from tokio\n"[..]));
    drop(rt);
}

#[test]
fn a_streamed_body_on_an_http2_stream_is_asked_again_when_woken() {
    use common::h2raw::*;
    let addr = serve(Options::default(), |_req, res| {
        // Through a `std::task::Waker`, as a stream fed by a future would.
        let waker = res.stream_waker().waker();
        ticking(res, move || waker.wake_by_ref());
    });
    let began = Instant::now();
    let mut c = H2::connect(addr);
    c.get(1, "/ticks");
    c.until(HEADERS, Some(1)).expect("the response's head");
    let mut body = Vec::new();
    loop {
        let f = c.next().expect("more of the body");
        if f.ty == DATA && f.stream == 1 {
            body.extend_from_slice(&f.payload);
            if f.flags & END_STREAM != 0 {
                break;
            }
        }
    }
    assert_eq!(String::from_utf8_lossy(&body), "tick 1\ntick 2\ntick 3\n");
    assert!(
        began.elapsed() < Duration::from_secs(2),
        "{:?}",
        began.elapsed()
    );
}

/// A deferred response whose head is known later (on a thread), ending
/// with a `Ticks` stream the connection pulls as it is woken.
fn deferred_then_streamed(res: &mut handoff::Response<'_>) {
    let reply = res.defer();
    let waker = res.stream_waker();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(30));
        let count = Arc::new(AtomicUsize::new(0));
        let ticks = Ticks(count.clone(), 0);
        let sent = reply.send(move |w| {
            w.status(203).unwrap();
            w.header("X-Made", "later").unwrap();
            w.write(b"head\n").unwrap();
            w.stream(Box::new(ticks)).unwrap();
            assert_eq!(
                w.finish().unwrap_err().0,
                "the response is already finished"
            );
        });
        assert!(sent.is_ok());
        for _ in 0..3 {
            std::thread::sleep(Duration::from_millis(50));
            count.fetch_add(1, Ordering::AcqRel);
            waker.wake();
        }
    });
}

#[test]
fn a_deferred_response_ends_with_a_stream_and_the_connection_serves_the_next_request() {
    let addr = serve(Options::default(), |req, res| {
        if req.path() == "/next" {
            res.body("next\n");
        } else {
            deferred_then_streamed(res);
        }
    });
    let mut c = get(addr, "/late");
    let r = common::read_response(&mut c).unwrap();
    assert_eq!(r.status, 203);
    assert_eq!(r.header("x-made"), Some("later"));
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(
        String::from_utf8_lossy(&r.body),
        "head\ntick 1\ntick 2\ntick 3\n"
    );
    write!(c, "GET /next HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let r = common::read_response(&mut c).unwrap();
    assert_eq!((r.status, r.body.as_slice()), (200, &b"next\n"[..]));
}

#[test]
fn a_deferred_response_ends_with_a_stream_on_an_http2_stream() {
    use common::h2raw::*;
    let addr = serve(Options::default(), |_req, res| deferred_then_streamed(res));
    let mut c = H2::connect(addr);
    c.get(1, "/late");
    let head = c.until(HEADERS, Some(1)).expect("the response's head");
    assert_eq!(head.flags & END_STREAM, 0, "a body follows");
    let mut body = Vec::new();
    loop {
        let f = c.next().expect("more of the body");
        if f.ty == DATA && f.stream == 1 {
            body.extend_from_slice(&f.payload);
            if f.flags & END_STREAM != 0 {
                break;
            }
        }
    }
    assert_eq!(
        String::from_utf8_lossy(&body),
        "head\ntick 1\ntick 2\ntick 3\n"
    );
}

#[test]
fn the_gone_future_wakes_its_waiter_when_the_response_is_cut_at_its_deadline() {
    let (heard_tx, heard) = mpsc::channel();
    let heard_tx = Mutex::new(heard_tx);
    let addr = serve(Options::default(), move |_req, res| {
        let reply = res.defer_within(Duration::from_millis(200));
        let tx = heard_tx.lock().unwrap().clone();
        std::thread::spawn(move || {
            let began = Instant::now();
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            rt.block_on(reply.gone());
            tx.send(began.elapsed()).unwrap();
        });
    });
    let mut c = get(addr, "/never");
    let r = common::read_response(&mut c).unwrap();
    assert!(r.status >= 500, "{}", r.status);
    let took = heard
        .recv_timeout(Duration::from_secs(5))
        .expect("gone() woke its waiter");
    assert!(took < Duration::from_secs(2), "{took:?}");
}
