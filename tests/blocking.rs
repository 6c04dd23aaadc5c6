//! Blocking work on a thread pool while the event loop serves others;
//! deferred responses keep pipelined requests in order.

mod common;
use common::*;

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use handoff::blocking::ThreadPool;
use handoff::{Options, Request, Server};

fn serve() -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        let pool = Arc::new(ThreadPool::new(2, 16).unwrap());
        let opts = Options {
            static_headers: vec![("Server".into(), "handoff-test".into())],
            ..Options::default()
        };
        let mut s = Server::new(
            opts,
            move |req: &Request<'_>, res: &mut handoff::Response<'_>| {
                if let Some(ms) = req.path().strip_prefix("/slow/") {
                    let ms: u64 = ms.parse().unwrap_or(0);
                    let path = req.path().to_string();
                    let reply = res.defer();
                    let _ = pool.execute(move || {
                        std::thread::sleep(Duration::from_millis(ms)); // blocking, off the loop
                        reply
                            .send(move |w| {
                                w.status(200).unwrap();
                                w.header("Content-Length", path.len().to_string()).unwrap();
                                w.write(path.as_bytes()).unwrap();
                                w.finish().unwrap();
                            })
                            .unwrap();
                    });
                } else {
                    res.body(req.path().to_string());
                }
            },
        )
        .unwrap();
        s.add_socket(l).unwrap();
        loop {
            s.step(Some(Duration::from_millis(100))).unwrap();
        }
    });
    addr
}

fn get(addr: std::net::SocketAddr, path: &str) -> common::Response {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    read_response(&mut s).unwrap()
}

#[test]
fn serves_others_while_blocking_work_runs_on_the_pool() {
    let addr = serve();
    let slow = std::thread::spawn(move || {
        let t = Instant::now();
        let r = get(addr, "/slow/600");
        (r, t.elapsed())
    });
    std::thread::sleep(Duration::from_millis(50));
    for _ in 0..5 {
        let t = Instant::now();
        assert_eq!(get(addr, "/fast").text(), "/fast");
        assert!(
            t.elapsed() < Duration::from_millis(300),
            "the loop was blocked: {:?}",
            t.elapsed()
        );
    }
    let (r, took) = slow.join().unwrap();
    assert_eq!((r.status, r.text()), (200, "/slow/600".to_string()));
    assert_eq!(
        r.header("server"),
        Some("handoff-test"),
        "static_headers on a deferred response"
    );
    assert!(took >= Duration::from_millis(600));
}

#[test]
fn answers_pipelined_requests_in_order_behind_a_deferred_one() {
    let addr = serve();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /slow/300 HTTP/1.1\r\nHost: t\r\n\r\nGET /second HTTP/1.1\r\nHost: t\r\n\r\nGET /slow/10 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").unwrap();
    let all = read_to_close(&mut s);
    let (a, b, c) = (
        all.find("/slow/300").unwrap(),
        all.find("/second").unwrap(),
        all.find("/slow/10").unwrap(),
    );
    assert!(a < b && b < c, "{all}");
    assert_eq!(all.matches("Server: handoff-test").count(), 3);
}
