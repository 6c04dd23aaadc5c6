//! A small JSON service on the library: items in memory, an upload saved
//! to disk, Server-Sent Events, a bearer token on writes. Served from
//! systemd's sockets when socket activated, else from the addresses given;
//! SIGTERM drains, SIGUSR2 replaces the binary without dropping a
//! connection (a live upgrade: the items start empty in the new process).
//!
//!     cargo run --example items --features json -- /tmp/uploads 127.0.0.1:8080
//!     systemd-socket-activate -l 127.0.0.1:8080 target/debug/examples/items /tmp/uploads
//!     curl -H 'Authorization: Bearer secret' -H 'Content-Type: application/json' \
//!          -d '{"name":"pen"}' http://127.0.0.1:8080/api/items

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use handoff::api::json::{self, RequestJson, ResponseJson};
use handoff::api::router::{PathParams, Router, streamed};
use handoff::api::{Middleware, StreamForm, Wrap};
use handoff::service::Service;
use handoff::{Answer, BodyPlan, Options, Request, Response};
use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize)]
struct Item {
    #[serde(default)]
    id: u64,
    name: String,
}

type Items = Rc<RefCell<Vec<Item>>>;

/// Writes need `Authorization: Bearer secret`.
struct Bearer;

impl Middleware for Bearer {
    fn check(&self, req: &Request<'_>) -> Result<(), Answer> {
        if req.method() != "POST" || req.header("Authorization") == Some("Bearer secret") {
            return Ok(());
        }
        Err(json::error_answer(401, "a bearer token is needed")
            .header("WWW-Authenticate", "Bearer"))
    }
}

fn get_item(items: &Items, res: &mut Response<'_>, p: &PathParams<'_>) {
    let id = p.get("id").and_then(|id| id.parse::<u64>().ok());
    match items.borrow().iter().find(|i| Some(i.id) == id) {
        Some(item) => res.json(item),
        None => res
            .status(404)
            .json(&serde_json::json!({ "error": "no such item" })),
    };
}

fn add_item(items: &Items, req: &Request<'_>, res: &mut Response<'_>) {
    let mut item: Item = match req.json() {
        Ok(item) => item,
        Err(e) => {
            res.status(e.status)
                .json(&serde_json::json!({ "error": e.message }));
            return;
        }
    };
    let mut items = items.borrow_mut();
    item.id = items.len() as u64 + 1;
    res.status(201)
        .header("Location", format!("/api/items/{}", item.id))
        .json(&item);
    items.push(item);
}

fn upload(dir: &PathBuf, req: &Request<'_>) -> BodyPlan {
    let Ok(form) = StreamForm::new(req, 64 * 1024) else {
        return BodyPlan::Skip; // not a form: answered 400 without reading it
    };
    let form = form.save_post_param("file", dir).finish(|_, form, res| {
        let saved: Vec<_> = form.saved.iter().map(|p| p.display().to_string()).collect();
        res.status(201).json(&serde_json::json!({ "saved": saved }));
    });
    BodyPlan::Stream(Box::new(form))
}

/// Six events, one every half second, from a thread: it stops early if
/// the client leaves (`send` says so).
fn events(res: &mut Response<'_>) {
    let reply = res.defer_within(Duration::from_secs(10));
    std::thread::spawn(move || {
        let _ = reply.send(|w| {
            let _ = w.header("Content-Type", "text/event-stream");
            let _ = w.finish_headers();
        });
        for tick in 1..=6 {
            std::thread::sleep(Duration::from_millis(500));
            let sent = reply.send(move |w| {
                let _ = w.write(format!("data: tick {tick}\n\n").as_bytes());
                w.flush();
                if tick == 6 {
                    let _ = w.finish();
                }
            });
            if sent.is_err() {
                break;
            }
        }
    });
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().unwrap_or_else(|| "/tmp".into()));
    let addrs: Vec<String> = args.collect();
    let addrs: Vec<&str> = match addrs.is_empty() {
        true => vec!["127.0.0.1:8080"],
        false => addrs.iter().map(String::as_str).collect(),
    };
    let items: Items = Rc::default();
    let (a, b) = (items.clone(), items);
    let mut app = Router::new();
    app.get(
        "/",
        |_: &Request<'_>, res: &mut Response<'_>, _: &PathParams<'_>| {
            res.json(&serde_json::json!({ "items": "/api/items/{id}", "events": "/events" }));
        },
    )
    .get(
        "/api/items/{id}",
        move |_: &Request<'_>, res: &mut Response<'_>, p: &PathParams<'_>| get_item(&a, res, p),
    )
    .post(
        "/api/items",
        move |req: &Request<'_>, res: &mut Response<'_>, _: &PathParams<'_>| add_item(&b, req, res),
    )
    .post("/upload", streamed(move |req, _| upload(&dir, req)))
    .get(
        "/events",
        |_: &Request<'_>, res: &mut Response<'_>, _: &PathParams<'_>| events(res),
    )
    .on_refusal(|r| Some(json::error(r.reason)));

    let mut service = Service::new(Options::default(), Wrap::new(app, Bearer))?;
    for addr in service.take_sockets(&addrs)? {
        println!("listening on http://{addr}");
    }
    service.run()
}
