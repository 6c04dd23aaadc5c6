//! A small application on the request API, served in-process for the form
//! and upload tests.
#![allow(dead_code)]

use std::cell::Cell;
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use handoff::api::StreamForm;
use handoff::api::form::Event;
use handoff::api::headers::HeaderValue;
use handoff::{BodyPlan, Handler, Request, Response};
use handoff::{Options, Server};

pub struct App {
    pub dir: PathBuf,
}

fn text(v: &[u8]) -> String {
    String::from_utf8_lossy(v).into_owned()
}

impl Handler for App {
    fn on_head(&self, req: &Request<'_>) -> BodyPlan {
        match req.path() {
            "/upload" => {
                // Not a form we can parse: answer without reading it.
                let Ok(form) = StreamForm::new(req, 64 * 1024) else {
                    return BodyPlan::Skip;
                };
                let dir = self.dir.clone();
                let bytes = Rc::new(Cell::new(0u64));
                let seen = bytes.clone();
                let mut file: Option<std::fs::File> = None;
                BodyPlan::Stream(Box::new(
                    form.stream_post_params(
                        |name| name.starts_with("upload"),
                        move |ev| match ev {
                            Event::Start(meta) => {
                                file = Some(std::fs::File::create(dir.join(&meta.name))?);
                                Ok(())
                            }
                            Event::Data(d) => {
                                bytes.set(bytes.get() + d.len() as u64);
                                file.as_mut().map_or(Ok(()), |f| f.write_all(d))
                            }
                            Event::End => {
                                file = None;
                                Ok(())
                            }
                        },
                    )
                    .finish(move |_req, form, res| {
                        res.body(format!(
                            "stored {} bytes; title={}\n",
                            seen.get(),
                            form.get_str("title").unwrap_or("-")
                        ));
                    }),
                ))
            }
            "/early" => BodyPlan::Skip,
            _ => BodyPlan::Buffer,
        }
    }

    fn handle(&self, req: &Request<'_>, res: &mut Response<'_>) {
        let mut out = String::new();
        match req.path() {
            "/form" => match req.post_params() {
                Ok(form) => {
                    for f in &form.fields {
                        out.push_str(&format!(
                            "{}={} file={:?} type={:?}\n",
                            f.name,
                            text(&f.value),
                            f.file_name,
                            f.content_type
                        ));
                    }
                    let tags: Vec<String> = form.get_all("tag").map(text).collect();
                    out.push_str(&format!("tags={}\n", tags.join(",")));
                }
                Err(e) => {
                    res.status(400).body(format!("400 {e}\n"));
                    return;
                }
            },
            "/query" => match req.get_params() {
                Ok(p) => {
                    for (n, v) in p.iter() {
                        out.push_str(&format!("{n}={v}\n"));
                    }
                }
                Err(e) => {
                    res.status(400).body(format!("400 {e}\n"));
                    return;
                }
            },
            "/headers" => {
                let c = req.cookies();
                out.push_str(&format!("cookie a={:?} b={:?}\n", c.get("a"), c.get("b")));
                out.push_str(&format!(
                    "value={} several={}\n",
                    matches!(req.headers_value("x-one"), HeaderValue::One(b"1")),
                    matches!(req.headers_value("x-list"), HeaderValue::Several)
                ));
                out.push_str(&format!("csv={:?}\n", req.headers_csv_string("x-list")));
                let table: Vec<String> = req
                    .headers_csv_table("x-list")
                    .into_iter()
                    .map(text)
                    .collect();
                out.push_str(&format!("table={}\n", table.join("|")));
                out.push_str(&format!(
                    "flag={} {:?}\n",
                    req.headers_flag("x-list", "B"),
                    req.headers_flags("x-list")
                ));
            }
            "/early" => {
                res.status(403).body("no uploads here\n");
                return;
            }
            "/upload" => {
                res.status(400).body("400 not a form\n");
                return;
            }
            _ => {
                res.status(404);
                return;
            }
        }
        res.header("Content-Type", "text/plain; charset=utf-8")
            .body(out);
    }
}

/// Serves `App` on a thread; returns its address.
pub fn serve(dir: PathBuf, opts: Options) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut s = Server::new(opts, App { dir }).unwrap();
        s.add_socket(l).unwrap();
        loop {
            s.step(Some(Duration::from_millis(100))).unwrap();
        }
    });
    addr
}
