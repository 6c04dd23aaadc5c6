//! `service::Service` driven by real signals: SIGHUP runs the program's
//! reload hook, SIGTERM drains and closes what is left at the drain
//! timeout. The service runs in a child process (this test binary again,
//! with `SERVICE_CHILD` set), so its signals reach no other test.

mod common;

use std::cell::Cell;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use handoff::service::Service;
use handoff::{Options, Request, Response};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const CHILD: &str = "SERVICE_CHILD";

/// The service itself; a no-op unless started by the test below.
#[test]
fn child_serves_until_a_signal_ends_it() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let reloads = Rc::new(Cell::new(0u32));
    let seen = reloads.clone();
    let mut service = Service::new(
        Options::default(),
        move |req: &Request<'_>, res: &mut Response<'_>| match req.path() {
            "/stuck" => std::mem::forget(res.defer_within(Duration::from_secs(60))),
            _ => {
                res.body(format!("reloads={}", seen.get()));
            }
        },
    )
    .unwrap();
    service
        .drain_timeout(Duration::from_millis(500))
        .on_reload(move |_| reloads.set(reloads.get() + 1));
    for addr in service.take_sockets(&["127.0.0.1:0"]).unwrap() {
        println!("listening on http://{addr}");
    }
    service.run().unwrap();
    println!("the service returned");
}

fn get(addr: SocketAddr, path: &str) -> String {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        c,
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    common::read_to_close(&mut c)
}

#[test]
fn sighup_runs_the_reload_hook_and_sigterm_closes_what_is_left_at_the_drain_timeout() {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "child_serves_until_a_signal_ends_it",
            "--exact",
            "--nocapture",
        ])
        .env(CHILD, "1")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = Pid::from_raw(child.id() as i32);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let addr: SocketAddr = loop {
        let mut line = String::new();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "the child said nothing"
        );
        if let Some(a) = line.trim().strip_prefix("listening on http://") {
            break a.parse().unwrap();
        }
    };
    assert!(get(addr, "/").ends_with("reloads=0"));
    kill(pid, Signal::SIGHUP).unwrap();
    assert!(
        common::wait_until(Duration::from_secs(2), || get(addr, "/")
            .ends_with("reloads=1")),
        "SIGHUP ran the hook"
    );

    let mut stuck = TcpStream::connect(addr).unwrap();
    stuck
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stuck
        .write_all(b"GET /stuck HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let began = Instant::now();
    kill(pid, Signal::SIGTERM).unwrap();
    let answer = common::read_to_close(&mut stuck);
    let took = began.elapsed();
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(3),
        "closed at the drain timeout (500 ms), not after {took:?}"
    );
    assert!(!answer.contains("200 OK"), "{answer}");
    assert!(
        common::wait_until(Duration::from_secs(3), || child
            .try_wait()
            .unwrap()
            .is_some()),
        "the service exits after the drain timeout"
    );
    assert!(child.wait().unwrap().success());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    assert!(rest.contains("the service returned"), "{rest}");
}
