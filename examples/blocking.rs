//! Blocking work without blocking the event loop: `GET /primes/N` counts
//! the primes below N on a thread pool; the deferred response is written,
//! in steps, when the work is done. Other requests are served meanwhile.
//!
//!     cargo run --example blocking -- 127.0.0.1:8082
//!     curl http://127.0.0.1:8082/primes/5000000

use std::sync::Arc;

use handoff::blocking::ThreadPool;
use handoff::{Answer, Options, Request, Response, Server};

fn count_primes(n: u64) -> u64 {
    (2..n)
        .filter(|&k| (2..).take_while(|d| d * d <= k).all(|d| k % d != 0))
        .count() as u64
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8082".into());
    let pool = Arc::new(ThreadPool::new(4, 256)?);
    let mut server = Server::new(
        Options::default(),
        move |req: &Request<'_>, res: &mut Response<'_>| {
            let Some(n) = req
                .path()
                .strip_prefix("/primes/")
                .and_then(|n| n.parse::<u64>().ok())
            else {
                res.body("try /primes/1000000\n");
                return;
            };
            let reply = res.defer();
            let queued = pool.execute(move || {
                let count = count_primes(n);
                let answer = Answer::new(200)
                    .header("Content-Type", "text/plain")
                    .body(format!("{count} primes below {n}\n"));
                // Gone: the client left while we counted; nobody to tell.
                let _ = reply.answer(answer);
            });
            if queued.is_err() {
                // The pool is full: the dropped reply answers 500.
                eprintln!("pool busy");
            }
        },
    )?;
    server.add_socket(std::net::TcpListener::bind(&addr)?)?;
    println!("listening on http://{addr}");
    server.run()
}
