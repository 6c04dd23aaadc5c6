//! The library's composition: a router with path parameters, 404 and 405;
//! a middleware around a streamed upload; the engine's refusals and a
//! field handler's failure as the application wants them said.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use handoff::api::router::{PathParams, Router};
use handoff::api::{Middleware, Wrap};
use handoff::{Answer, BodyPlan, BodySink, Handler, Options, Request, Response, Server, SinkError};

mod common;

/// What the server thread logged, through a subscriber of the test's own
/// (as a program on the library has).
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl Write for Log {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Log {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Serves what `make` builds on a thread of its own (a handler need not
/// be `Send`), logging into the returned `Log`.
fn serve<H: Handler + 'static>(make: impl FnOnce() -> H + Send + 'static) -> (SocketAddr, Log) {
    let (tx, rx) = mpsc::channel();
    let log = Log::default();
    let theirs = log.clone();
    std::thread::spawn(move || {
        let sub = tracing_subscriber::fmt()
            .with_writer(move || theirs.clone())
            .with_ansi(false)
            .finish();
        let _guard = tracing::subscriber::set_default(sub);
        let mut s = Server::new(Options::default(), make()).unwrap();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        tx.send(l.local_addr().unwrap()).unwrap();
        s.add_socket(OwnedFd::from(l)).unwrap();
        loop {
            s.step(Some(Duration::from_millis(50))).unwrap();
        }
    });
    (rx.recv().unwrap(), log)
}

fn ask(addr: SocketAddr, request: &[u8]) -> common::Response {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(request).unwrap();
    common::read_response(&mut c).unwrap()
}

fn items() -> Router {
    let mut r = Router::new();
    r.get(
        "/items/{id}",
        |_: &Request<'_>, res: &mut Response<'_>, p: &PathParams<'_>| {
            res.body(format!("item {}", p.get("id").unwrap_or("?")));
        },
    )
    .delete(
        "/items/{id}",
        |_: &Request<'_>, res: &mut Response<'_>, _: &PathParams<'_>| {
            res.status(204);
        },
    );
    r
}

#[test]
fn the_router_gives_path_parameters_and_answers_404_and_405_with_allow() {
    let (addr, _) = serve(items);
    let r = ask(addr, b"GET /items/42 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"item 42"[..]));
    let mut c = TcpStream::connect(addr).unwrap();
    c.write_all(b"HEAD /items/42 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let r = common::read_head(&mut c).unwrap();
    assert_eq!(
        (r.status, r.header("content-length")),
        (200, Some("7")),
        "HEAD follows GET"
    );
    let r = ask(
        addr,
        b"PUT /items/42 HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi",
    );
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("DELETE, GET, HEAD"));
    let r = ask(addr, b"GET /nothing HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.status, 404);
}

#[test]
fn a_refusal_hook_renders_the_engines_refusals_and_the_routers_in_json() {
    let (addr, _) = serve(|| {
        let mut r = items();
        r.on_refusal(|f| {
            let body = format!(r#"{{"error":"{}","status":{}}}"#, f.reason, f.status);
            Some(handoff::Rendered::new("application/json", body))
        });
        r
    });
    // Two Content-Lengths that differ: the engine refuses it (400).
    let r = ask(
        addr,
        b"POST /items/1 HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(String::from_utf8_lossy(&r.body).contains(r#""status":400"#));
    let r = ask(addr, b"GET /nothing HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(
        (r.status, r.header("content-type")),
        (404, Some("application/json"))
    );
}

/// Counts a streamed body's bytes and answers with the count.
struct Count(u64);

impl BodySink for Count {
    fn data(&mut self, chunk: &[u8]) -> Result<(), SinkError> {
        self.0 += chunk.len() as u64;
        Ok(())
    }
    fn finish(&mut self, _: &Request<'_>, res: &mut Response<'_>) {
        res.body(format!("{} bytes", self.0));
    }
}

struct Upload;

impl handoff::api::Route for Upload {
    fn handle(&self, _: &Request<'_>, res: &mut Response<'_>, _: &PathParams<'_>) {
        res.status(500).body("the body should have been streamed");
    }
    fn on_head(&self, _: &Request<'_>, _: &PathParams<'_>) -> BodyPlan {
        BodyPlan::Stream(Box::new(Count(0)))
    }
}

struct Bearer;

impl Middleware for Bearer {
    fn check(&self, req: &Request<'_>) -> Result<(), Answer> {
        match req.header("Authorization") {
            Some("Bearer secret") => Ok(()),
            _ => Err(Answer::new(401).body("no\n")),
        }
    }
    fn respond(&self, _: &Request<'_>, res: &mut Response<'_>) {
        res.header("X-Checked", "yes");
    }
}

#[test]
fn a_middleware_wraps_a_streamed_upload_without_turning_it_into_a_buffered_one() {
    let (addr, _) = serve(|| {
        let mut r = Router::new();
        r.post("/upload", Upload);
        Wrap::new(r, Bearer)
    });
    // Three times what a buffered body may hold (`Limits::max_body`).
    let size = 3 * 1024 * 1024;
    let mut req = format!(
        "POST /upload HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer secret\r\nContent-Length: {size}\r\n\r\n"
    )
    .into_bytes();
    req.resize(req.len() + size, b'x');
    let r = ask(addr, &req);
    assert_eq!((r.status, r.header("x-checked")), (200, Some("yes")));
    assert_eq!(String::from_utf8_lossy(&r.body), format!("{size} bytes"));
    let r = ask(
        addr,
        b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc",
    );
    assert_eq!(r.status, 401);
}

#[test]
fn a_failing_field_handler_is_a_500_with_its_cause_in_the_log() {
    struct Forms;
    impl Handler for Forms {
        fn handle(&self, _: &Request<'_>, res: &mut Response<'_>) {
            res.status(400);
        }
        fn on_head(&self, req: &Request<'_>) -> BodyPlan {
            let form = handoff::api::StreamForm::new(req, 1024).unwrap();
            BodyPlan::Stream(Box::new(form.stream_post_param("file", |_| {
                Err(std::io::Error::other("the disk is on fire"))
            })))
        }
    }
    let (addr, log) = serve(|| Forms);
    let body = "--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\n\r\nhello\r\n--b--\r\n";
    let req = format!(
        "POST /up HTTP/1.1\r\nHost: t\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let r = ask(addr, req.as_bytes());
    assert_eq!(r.status, 500, "a failure of ours, not the client's 400");
    assert!(
        !String::from_utf8_lossy(&r.body).contains("on fire"),
        "the cause stays in the log"
    );
    assert!(
        common::wait_until(Duration::from_secs(2), || log
            .text()
            .contains("the disk is on fire")),
        "log: {}",
        log.text()
    );
    assert!(
        log.text().contains("ERROR"),
        "logged as an error: {}",
        log.text()
    );
}

#[test]
fn json_bodies_are_read_as_types_and_the_wrong_ones_are_415_or_400() {
    use handoff::api::json::{RequestJson, ResponseJson};
    #[derive(serde::Deserialize, serde::Serialize)]
    struct Item {
        name: String,
    }
    let (addr, _) = serve(|| {
        |req: &Request<'_>, res: &mut Response<'_>| match req.json::<Item>() {
            Ok(item) => {
                res.status(201).json(&item);
            }
            Err(e) => {
                res.status(e.status)
                    .json(&serde_json::json!({ "error": e.message }));
            }
        }
    });
    let post = |ct: &str, body: &str| {
        let req = format!(
            "POST / HTTP/1.1\r\nHost: t\r\nContent-Type: {ct}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        ask(addr, req.as_bytes())
    };
    let r = post("application/json", r#"{"name":"pen"}"#);
    assert_eq!((r.status, r.text()), (201, r#"{"name":"pen"}"#.to_string()));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        post("application/problem+json; charset=utf-8", r#"{"name":"a"}"#).status,
        201
    );
    assert_eq!(post("text/plain", r#"{"name":"pen"}"#).status, 415);
    let r = post("application/json", r#"{"nom":"pen"}"#);
    assert_eq!(r.status, 400);
    assert!(r.text().contains("missing field"), "{}", r.text());
}
