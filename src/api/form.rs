//! Form bodies: `application/x-www-form-urlencoded` and
//! `multipart/form-data`, read whole (`Request::post_params`) or streamed
//! field by field (`StreamForm`, Moonbridge's `stream_post_param` and
//! `stream_post_params`), so that a large upload goes to disk without
//! being held in memory.

use std::borrow::Cow;

use super::Malformed;
use super::multipart::{self, PartMeta, PartSink};
use super::urlencoded;
use crate::http::{BodySink, Request, Response, SinkError};

/// One form field: its value, and for a file its name and type.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Field {
    /// The field's name.
    pub name: String,
    /// Its value, as sent (a file's bytes for an upload).
    pub value: Vec<u8>,
    /// The `filename` of an uploaded file.
    pub file_name: Option<String>,
    /// The part's `Content-Type`, if it gave one.
    pub content_type: Option<String>,
}

/// A form's fields in order; names may repeat.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Form {
    /// The fields, in the order they came.
    pub fields: Vec<Field>,
    /// Where the files of fields streamed to disk went
    /// (`StreamForm::save_post_param`), in order.
    pub saved: Vec<std::path::PathBuf>,
}

impl Form {
    /// The first value of `name` (`post_params[name]`).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.metadata(name).map(|f| &f.value[..])
    }

    /// The first value of `name` as text, if it is UTF-8.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Every value of `name` (`post_params_list[name]`).
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.metadata_list(name).map(|f| &f.value[..])
    }

    /// The first field called `name`, with its file name and content type
    /// (`post_metadata[name]`).
    pub fn metadata(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// Every field called `name` (`post_metadata_list[name]`), for several
    /// files under one name.
    pub fn metadata_list<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Field> + 'a {
        self.fields.iter().filter(move |f| f.name == name)
    }
}

/// What kind of form a request carries.
enum Kind {
    UrlEncoded,
    Multipart(String),
}

fn kind(req: &Request<'_>) -> Result<Kind, Malformed> {
    let ct = req.header("content-type").unwrap_or("");
    let base = ct.split(';').next().unwrap_or("").trim();
    if base.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        Ok(Kind::UrlEncoded)
    } else if base.eq_ignore_ascii_case("multipart/form-data") {
        Ok(Kind::Multipart(multipart::boundary(ct)?))
    } else {
        Err(Malformed("not a form (urlencoded or multipart/form-data)"))
    }
}

/// Collects parts into fields, except those a route streams elsewhere.
struct Collector<'r> {
    form: Form,
    routes: &'r mut [Route],
    current: Current,
    collected: usize,
    limit: usize,
    /// A field's handler failed: a failure of ours, not the client's.
    failed: Option<std::io::Error>,
}

/// Why the parser stops when a field's handler failed (`Collector::failed`
/// holds the error itself).
const HANDLER_FAILED: Malformed = Malformed("the field's handler failed");

impl Collector<'_> {
    fn run(&mut self, i: usize, ev: Event<'_>) -> Result<(), Malformed> {
        (self.routes[i].sink)(ev).map_err(|e| {
            self.failed = Some(e);
            HANDLER_FAILED
        })
    }
}

enum Current {
    None,
    Collect,
    Route(usize),
}

impl PartSink for Collector<'_> {
    fn start(&mut self, meta: &PartMeta) -> Result<(), Malformed> {
        if let Some(i) = self.routes.iter().position(|r| (r.matches)(&meta.name)) {
            self.current = Current::Route(i);
            return self.run(i, Event::Start(meta));
        }
        self.form.fields.push(Field {
            name: meta.name.clone(),
            value: Vec::new(),
            file_name: meta.file_name.clone(),
            content_type: meta.content_type.clone(),
        });
        self.current = Current::Collect;
        Ok(())
    }

    fn data(&mut self, chunk: &[u8]) -> Result<(), Malformed> {
        match self.current {
            Current::Route(i) => self.run(i, Event::Data(chunk)),
            Current::Collect => {
                self.collected += chunk.len();
                if self.collected > self.limit {
                    return Err(Malformed("form fields too large to hold"));
                }
                if let Some(f) = self.form.fields.last_mut() {
                    f.value.extend_from_slice(chunk);
                }
                Ok(())
            }
            Current::None => Ok(()),
        }
    }

    fn end(&mut self) -> Result<(), Malformed> {
        let r = match self.current {
            Current::Route(i) => self.run(i, Event::End),
            _ => Ok(()),
        };
        self.current = Current::None;
        r
    }
}

impl<'a> Request<'a> {
    /// The form in the body, read whole (`post_params`, `post_params_list`,
    /// `post_metadata`, `post_metadata_list`): urlencoded or multipart. The
    /// body is limited by `Limits::max_body`; use `StreamForm` for uploads.
    pub fn post_params(&self) -> Result<Form, Malformed> {
        if self.body().is_empty() {
            return Ok(Form::default());
        }
        match kind(self)? {
            Kind::UrlEncoded => {
                let p = urlencoded::parse(self.body())?;
                Ok(Form {
                    saved: Vec::new(),
                    fields: p
                        .iter()
                        .map(|(n, v)| Field {
                            name: n.into(),
                            value: v.as_bytes().to_vec(),
                            ..Field::default()
                        })
                        .collect(),
                })
            }
            Kind::Multipart(b) => {
                let mut p = multipart::Parser::new(&b);
                let mut c = Collector {
                    form: Form::default(),
                    routes: &mut [],
                    current: Current::None,
                    collected: 0,
                    limit: usize::MAX,
                    failed: None,
                };
                p.feed(self.body(), &mut c)?;
                p.finish()?;
                Ok(c.form)
            }
        }
    }
}

/// What a streamed field's callback receives: `Start` (with the field's
/// name, file name and type), then `Data` pieces (never empty), then
/// `End`, as in Moonbridge's `stream_post_param` (an empty file is `Start`
/// then `End`).
pub enum Event<'a> {
    /// A part begins: its name, file name and type.
    Start(&'a PartMeta),
    /// Some of the part's bytes.
    Data(&'a [u8]),
    /// The part is complete.
    End,
}

type FieldCallback = Box<dyn FnMut(Event<'_>) -> std::io::Result<()>>;
type Finish = Box<dyn FnMut(&Request<'_>, &Form, &mut Response<'_>)>;

struct Route {
    matches: Box<dyn Fn(&str) -> bool>,
    sink: FieldCallback,
}

/// A form body streamed as it arrives: fields chosen by name or pattern go
/// to their callbacks piece by piece; the others are collected (up to a
/// limit) and given, with the request, to `finish` to answer.
///
/// ```no_run
/// use std::io::Write;
/// use handoff::api::{StreamForm, form::Event};
/// use handoff::http::{BodyPlan, Request, Response};
///
/// fn on_head(req: &Request<'_>) -> BodyPlan {
///     let mut file: Option<std::fs::File> = None;
///     match StreamForm::new(req, 64 * 1024) {
///         Ok(form) => BodyPlan::Stream(Box::new(
///             form.stream_post_param("upload", move |ev| match ev {
///                 Event::Start(_) => {
///                     file = Some(std::fs::File::create("/tmp/upload")?);
///                     Ok(())
///                 }
///                 Event::Data(d) => file.as_mut().map_or(Ok(()), |f| f.write_all(d)),
///                 Event::End => {
///                     file = None;
///                     Ok(())
///                 }
///             })
///             .finish(|_req, form, res| {
///                 res.body(format!("stored; title={:?}\n", form.get_str("title")));
///             }),
///         )),
///         Err(_) => BodyPlan::Buffer, // not a form: let `handle` say so
///     }
/// }
/// ```
pub struct StreamForm {
    /// Files saved by `save_post_param` (given to the form at the end).
    saved: std::rc::Rc<std::cell::RefCell<Vec<std::path::PathBuf>>>,
    kind: KindState,
    routes: Vec<Route>,
    form: Form,
    collected: usize,
    limit: usize,
    finish: Option<Finish>,
}

enum KindState {
    UrlEncoded(Vec<u8>),
    Multipart(multipart::Parser),
}

impl StreamForm {
    /// A streamed form for `req`; fields not streamed may hold at most
    /// `collect_limit` bytes in all. An error if the body is not a form.
    pub fn new(req: &Request<'_>, collect_limit: usize) -> Result<StreamForm, Malformed> {
        let kind = match kind(req)? {
            Kind::UrlEncoded => KindState::UrlEncoded(Vec::new()),
            Kind::Multipart(b) => KindState::Multipart(multipart::Parser::new(&b)),
        };
        Ok(StreamForm {
            saved: Default::default(),
            kind,
            routes: Vec::new(),
            form: Form::default(),
            collected: 0,
            limit: collect_limit,
            finish: None,
        })
    }

    /// Streams the field called `name` to `callback`.
    pub fn stream_post_param(
        self,
        name: &str,
        callback: impl FnMut(Event<'_>) -> std::io::Result<()> + 'static,
    ) -> Self {
        let name = name.to_string();
        self.stream_post_params(move |n| n == name, callback)
    }

    /// Streams every field whose name `matches` (Moonbridge's pattern).
    pub fn stream_post_params(
        mut self,
        matches: impl Fn(&str) -> bool + 'static,
        callback: impl FnMut(Event<'_>) -> std::io::Result<()> + 'static,
    ) -> Self {
        self.routes.push(Route {
            matches: Box::new(matches),
            sink: Box::new(callback),
        });
        self
    }

    /// Saves the file of each field called `name` in `dir`, under the last
    /// component of the name the client gave it (`upload` if that is
    /// empty, starts with a dot or holds a control character), replacing
    /// a file of that name. The paths are in `Form::saved`. A file that
    /// cannot be written fails the request with a 500, its cause logged.
    pub fn save_post_param(self, name: &str, dir: impl Into<std::path::PathBuf>) -> Self {
        let dir = dir.into();
        let saved = self.saved.clone();
        let mut file: Option<std::fs::File> = None;
        self.stream_post_param(name, move |ev| match ev {
            Event::Start(meta) => {
                let path = dir.join(safe_file_name(meta.file_name.as_deref()));
                file = Some(std::fs::File::create(&path)?);
                saved.borrow_mut().push(path);
                Ok(())
            }
            Event::Data(d) => file
                .as_mut()
                .map_or(Ok(()), |f| std::io::Write::write_all(f, d)),
            Event::End => {
                file = None;
                Ok(())
            }
        })
    }

    /// Answers the request once the whole body has been through.
    pub fn finish(
        mut self,
        f: impl FnMut(&Request<'_>, &Form, &mut Response<'_>) + 'static,
    ) -> Self {
        self.finish = Some(Box::new(f));
        self
    }
}

fn bad(m: Malformed) -> SinkError {
    // Only fields too large to hold are a size problem; a malformed body
    // (a part header over its limit included) is a 400.
    let status = if m.0 == "form fields too large to hold" {
        413
    } else {
        400
    };
    SinkError::new(status, Cow::Borrowed(m.0))
}

impl BodySink for StreamForm {
    fn data(&mut self, chunk: &[u8]) -> Result<(), SinkError> {
        match &mut self.kind {
            KindState::UrlEncoded(buf) => {
                if buf.len() + chunk.len() > self.limit {
                    return Err(SinkError::new(413, "form too large to hold"));
                }
                buf.extend_from_slice(chunk);
                Ok(())
            }
            KindState::Multipart(p) => {
                let mut c = Collector {
                    form: std::mem::take(&mut self.form),
                    routes: &mut self.routes,
                    current: Current::None,
                    collected: self.collected,
                    limit: self.limit,
                    failed: None,
                };
                // The parser's part state lives in the parser; the
                // collector's "current" is restored from the form.
                c.current = current_of(p, &c);
                let r = p.feed(chunk, &mut c);
                self.collected = c.collected;
                self.form = c.form;
                match (r, c.failed) {
                    // The cause goes to the log; the client hears a 500.
                    (Err(_), Some(e)) => Err(SinkError::new(500, HANDLER_FAILED.0).because(e)),
                    (r, _) => r.map_err(bad),
                }
            }
        }
    }

    fn finish(&mut self, req: &Request<'_>, res: &mut Response<'_>) {
        let done = match &mut self.kind {
            KindState::UrlEncoded(buf) => urlencoded::parse(buf).map(|p| {
                self.form.fields = p
                    .iter()
                    .map(|(n, v)| Field {
                        name: n.into(),
                        value: v.as_bytes().to_vec(),
                        ..Field::default()
                    })
                    .collect();
            }),
            KindState::Multipart(p) => p.finish(),
        };
        if let Err(e) = done {
            res.plain(400, format!("400 Bad Request: {e}\n"));
            res.close();
            return;
        }
        self.form.saved = std::mem::take(&mut *self.saved.borrow_mut());
        match self.finish.as_mut() {
            Some(f) => f(req, &self.form, res),
            None => {
                res.status(204);
            }
        }
    }
}

/// A file name a client gave, safe to join to a folder: its last
/// component, or `upload` when that is empty, `.`-led (`..`, hidden
/// files) or holds a control character.
fn safe_file_name(given: Option<&str>) -> &str {
    let base = given.unwrap_or("").rsplit(['/', '\\']).next().unwrap_or("");
    if base.is_empty() || base.starts_with('.') || base.chars().any(char::is_control) {
        "upload"
    } else {
        base
    }
}

/// Which route (or collection) the parser's current part belongs to.
fn current_of(p: &multipart::Parser, c: &Collector<'_>) -> Current {
    match p.current_part() {
        None => Current::None,
        Some(name) => match c.routes.iter().position(|r| (r.matches)(name)) {
            Some(i) => Current::Route(i),
            None => Current::Collect,
        },
    }
}
