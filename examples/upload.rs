//! An upload server on the request API: `POST /upload` streams the form's
//! `file` field to disk as it arrives (never held in memory); other fields
//! are collected; `GET /` shows the form.
//!
//!     cargo run --example upload -- 127.0.0.1:8081 /tmp/uploads
//!     curl -F title=hello -F file=@big.iso http://127.0.0.1:8081/upload

use std::io::Write;
use std::path::PathBuf;

use handoff::api::StreamForm;
use handoff::api::form::Event;
use handoff::{BodyPlan, Handler, Request, Response};
use handoff::{Options, Server};

struct Uploads {
    dir: PathBuf,
}

const FORM: &str = r#"<!doctype html><form method="post" action="/upload" enctype="multipart/form-data">
<input name="title"> <input type="file" name="file"> <button>Upload</button></form>"#;

impl Handler for Uploads {
    fn on_head(&self, req: &Request<'_>) -> BodyPlan {
        if req.path() != "/upload" {
            return BodyPlan::Buffer;
        }
        // Not a form: answer without reading the body.
        let Ok(form) = StreamForm::new(req, 64 * 1024) else {
            return BodyPlan::Skip;
        };
        let dir = self.dir.clone();
        let mut file: Option<std::fs::File> = None;
        let name = std::rc::Rc::new(std::cell::RefCell::new(String::new()));
        let seen = name.clone();
        BodyPlan::Stream(Box::new(
            form.stream_post_param("file", move |ev| match ev {
                Event::Start(meta) => {
                    // Keep only the last path component of what the client says.
                    let base = meta
                        .file_name
                        .as_deref()
                        .unwrap_or("upload")
                        .rsplit(['/', '\\'])
                        .next()
                        .unwrap_or("upload");
                    let stored = if base.is_empty() || base.starts_with('.') {
                        "upload"
                    } else {
                        base
                    };
                    *name.borrow_mut() = stored.to_string();
                    file = Some(std::fs::File::create(dir.join(stored))?);
                    Ok(())
                }
                Event::Data(d) => file.as_mut().map_or(Ok(()), |f| f.write_all(d)),
                Event::End => {
                    file = None;
                    Ok(())
                }
            })
            .finish(move |_req, form, res| {
                res.header("Content-Type", "text/plain; charset=utf-8")
                    .body(format!(
                        "stored {:?} (title: {:?})\n",
                        seen.borrow(),
                        form.get_str("title").unwrap_or("")
                    ));
            }),
        ))
    }

    fn handle(&self, req: &Request<'_>, res: &mut Response<'_>) {
        match req.path() {
            "/" => {
                res.header("Content-Type", "text/html; charset=utf-8")
                    .body(FORM);
            }
            "/upload" => {
                res.status(400)
                    .body("400 expected a multipart/form-data upload\n");
            }
            _ => {
                res.status(404).body("404\n");
            }
        }
    }
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:8081".into());
    let dir = PathBuf::from(args.next().unwrap_or_else(|| "/tmp".into()));
    let mut server = Server::new(Options::default(), Uploads { dir })?;
    server.add_socket(std::net::TcpListener::bind(&addr)?)?;
    println!("listening on http://{addr}");
    server.run()
}
