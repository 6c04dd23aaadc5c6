//! CGI routes (`--cgi PATH_PREFIX=DIR`, RFC 3875): the executable the path
//! names below the prefix answers, on a thread of its own
//! (`run`), its body streamed to the client through the deferred reply
//! (`pipe`, `Writer::stream`). `docs/apps.md` says who owns what at each
//! step and what each failure gets.

mod head;
mod pipe;
mod run;

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

use crate::http::{BodyPlan, Request, Response, Version};
use crate::sys::Addr;

/// `--cgi PATH_PREFIX=DIR`.
#[derive(Clone, Debug)]
pub struct CgiRule {
    /// The URL path prefix (`/cgi-bin`), matched by whole segments.
    pub prefix: String,
    /// The folder whose executables answer below it.
    pub dir: PathBuf,
}

impl CgiRule {
    /// `PATH_PREFIX=DIR`, as `--cgi` takes it.
    pub fn parse(s: &str) -> Result<CgiRule, String> {
        match s.split_once('=') {
            Some((p, d)) if p.starts_with('/') && !d.is_empty() => Ok(CgiRule {
                prefix: p.to_string(),
                dir: PathBuf::from(d),
            }),
            _ => Err(format!(
                "{s:?}: PATH_PREFIX=DIR (/cgi-bin=/usr/lib/cgi-bin)"
            )),
        }
    }
}

/// The CGI settings of `serve`.
#[derive(Clone, Debug)]
pub struct CgiConfig {
    /// `--cgi` routes.
    pub rules: Vec<CgiRule>,
    /// Scripts running at once, over every loop (`--cgi-max`).
    pub max: usize,
    /// How long a script may take, from its start to its last byte
    /// (`--cgi-timeout`).
    pub timeout: Duration,
    /// Variables of the server's environment passed on (`--cgi-passenv`).
    pub passenv: Vec<String>,
    /// The largest request body a script is given (`--max-body`).
    pub max_body: u64,
}

struct Route {
    /// The prefix as segments (`/cgi-bin` → `["cgi-bin"]`).
    prefix: Vec<String>,
    dir: OwnedFd,
    dir_path: PathBuf,
}

/// Every `--cgi` route, shared by the loops (one count of running scripts).
pub(super) struct Cgi {
    routes: Vec<Route>,
    cfg: CgiConfig,
    running: Arc<AtomicUsize>,
}

/// The script a path names.
struct Script {
    path: PathBuf,
    dir: PathBuf,
    /// `SCRIPT_NAME`: the prefix and the segments down to the script.
    name: String,
    /// What follows the script's name (`/a/b`), or empty.
    path_info: String,
    root: PathBuf,
}

impl Cgi {
    pub(super) fn new(cfg: &CgiConfig) -> io::Result<Cgi> {
        let mut routes = Vec::new();
        for r in &cfg.rules {
            let named = |e: io::Error| {
                io::Error::new(
                    e.kind(),
                    format!("--cgi {}={}: {e}", r.prefix, r.dir.display()),
                )
            };
            let dir_path = r.dir.canonicalize().map_err(named)?;
            let dir = std::fs::File::open(&dir_path).map_err(named)?;
            if !dir.metadata().map_err(named)?.is_dir() {
                return Err(named(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "not a folder",
                )));
            }
            routes.push(Route {
                prefix: super::access::segments(&r.prefix),
                dir: OwnedFd::from(dir),
                dir_path,
            });
        }
        // The longest prefix first: `/cgi-bin/admin` before `/cgi-bin`.
        routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        Ok(Cgi {
            routes,
            cfg: cfg.clone(),
            running: Arc::new(AtomicUsize::new(0)),
        })
    }

    pub(super) fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The script for this path: `None` if no route covers it, else the
    /// script or the status a path under a route gets.
    fn find(&self, req: &Request<'_>) -> Option<Result<Script, u16>> {
        let decoded = crate::files::relative_path(req.path()).flatten()?;
        let segments: Vec<&str> = decoded.split('/').filter(|s| !s.is_empty()).collect();
        let route = self.routes.iter().find(|r| {
            segments.len() >= r.prefix.len() && r.prefix.iter().zip(&segments).all(|(a, b)| a == b)
        })?;
        let rest = &segments[route.prefix.len()..];
        for k in 1..=rest.len() {
            let rel = rest[..k].join("/");
            let meta = crate::sys::fs::open_beneath(&route.dir, &route.dir_path, &rel)
                .and_then(|f| f.metadata());
            let meta = match meta {
                Ok(m) => m,
                Err(e) if e.raw_os_error() == Some(libc::EACCES) => return Some(Err(403)),
                Err(_) => return Some(Err(404)),
            };
            if meta.is_dir() {
                continue;
            }
            if !meta.is_file() {
                return Some(Err(404));
            }
            if meta.permissions().mode() & 0o111 == 0 {
                return Some(Err(403));
            }
            let path = route.dir_path.join(&rel);
            let dir = path.parent().unwrap_or(&route.dir_path).to_path_buf();
            let mut name = String::new();
            for s in route
                .prefix
                .iter()
                .map(String::as_str)
                .chain(rest[..k].iter().copied())
            {
                name.push('/');
                name.push_str(s);
            }
            let path_info: String = rest[k..].iter().flat_map(|s| ["/", s]).collect();
            return Some(Ok(Script {
                path,
                dir,
                name,
                path_info,
                root: route.dir_path.clone(),
            }));
        }
        Some(Err(404))
    }

    /// For a request with a body under a CGI route (`None`: not one): a
    /// declared length within `--max-body` is streamed to a script started
    /// now; one without a length (chunked, HTTP/2) is read whole first, so
    /// that `CONTENT_LENGTH` can be given; anything refused is answered by
    /// `handle` with the body discarded.
    pub(super) fn on_head(&self, req: &Request<'_>) -> Option<BodyPlan> {
        let found = self.find(req)?;
        let Ok(script) = found else {
            return Some(BodyPlan::Discard);
        };
        let Some(length) = content_length(req) else {
            return Some(BodyPlan::Buffer);
        };
        if length > self.cfg.max_body {
            return Some(BodyPlan::Discard);
        }
        let Some(slot) = run::Slot::take(&self.running, self.cfg.max) else {
            return Some(BodyPlan::Discard);
        };
        let job = self.job(req, script, slot, Some(length), None, true);
        match run::start(job) {
            Ok(shared) => Some(BodyPlan::Stream(Box::new(pipe::Inbox {
                shared,
                within: self.within(),
                finished: false,
            }))),
            Err(e) => {
                tracing::error!("CGI: no thread for a script: {e}");
                Some(BodyPlan::Discard)
            }
        }
    }

    /// Answers a request under a CGI route; `false`: not one.
    pub(super) fn handle(&self, req: &Request<'_>, res: &mut Response<'_>) -> bool {
        let Some(found) = self.find(req) else {
            return false;
        };
        let script = match found {
            Ok(s) => s,
            Err(403) => {
                res.plain(403, "403 Forbidden\n");
                return true;
            }
            Err(status) => {
                res.plain(status, format!("{status} Not Found\n"));
                return true;
            }
        };
        let declared = content_length(req);
        let body = req.body();
        if let Some(n) = declared.filter(|&n| n > 0 && body.is_empty()) {
            // `on_head` discarded the body: it was too large, or no script
            // could start.
            if n > self.cfg.max_body {
                res.plain(413, "413 Content Too Large\n");
            } else {
                self.busy(res);
            }
            return true;
        }
        let Some(slot) = run::Slot::take(&self.running, self.cfg.max) else {
            self.busy(res);
            return true;
        };
        let length = (declared.is_some() || !body.is_empty()).then_some(body.len() as u64);
        let job = self.job(req, script, slot, length, Some(body.to_vec()), false);
        match run::start(job) {
            Ok(shared) => shared.answer_later(res, self.within()),
            Err(e) => {
                tracing::error!("CGI: no thread for a script: {e}");
                self.busy(res);
            }
        }
        true
    }

    fn busy(&self, res: &mut Response<'_>) {
        res.header("Retry-After", "1").plain(
            503,
            "503 Service Unavailable: too many CGI scripts running\n",
        );
    }

    /// The reply's own deadline: past ours and its grace, so that our 504
    /// comes first.
    fn within(&self) -> Duration {
        self.cfg.timeout + run::GRACE + Duration::from_secs(1)
    }

    fn job(
        &self,
        req: &Request<'_>,
        script: Script,
        slot: run::Slot,
        length: Option<u64>,
        body: Option<Vec<u8>>,
        streamed: bool,
    ) -> run::Job {
        let env = environment(req, &script, length, &self.cfg.passenv);
        let mut fields = Vec::new();
        for (name, value) in req.headers() {
            // The body's fields went with the body; the connection's are
            // not the made-up request's.
            const BODY: [&str; 3] = ["content-length", "content-type", "expect"];
            if !crate::http::token::hop_by_hop(name)
                && !BODY.iter().any(|n| name.eq_ignore_ascii_case(n))
            {
                fields.extend_from_slice(name.as_bytes());
                fields.extend_from_slice(b": ");
                fields.extend_from_slice(value);
                fields.extend_from_slice(b"\r\n");
            }
        }
        let redo = run::Redo {
            head_only: req.method() == "HEAD",
            minor: u8::from(req.version() != crate::http::Version::Http10),
            fields,
        };
        run::Job {
            script: script.path,
            dir: script.dir,
            name: script.name,
            env,
            body: body.filter(|b| !b.is_empty()),
            streamed,
            deadline: Instant::now() + self.cfg.timeout,
            redo,
            _slot: slot,
        }
    }
}

fn content_length(req: &Request<'_>) -> Option<u64> {
    req.header("content-length")?.trim().parse().ok()
}

fn socket_addr(a: &Addr) -> Option<std::net::SocketAddr> {
    match a {
        Addr::Inet(a) => Some(*a),
        _ => None,
    }
}

/// The script's environment, built from scratch (RFC 3875 §4.1): the
/// request's variables (shared with WebSocket `exec:` commands), the
/// connection's, `CONTENT_*`, and what PHP and others look for
/// (`SCRIPT_FILENAME`, `DOCUMENT_ROOT`, `REDIRECT_STATUS`).
fn environment(
    req: &Request<'_>,
    script: &Script,
    length: Option<u64>,
    passenv: &[String],
) -> Vec<(String, String)> {
    let mut env = crate::ws::exec::request_environment(
        req.method(),
        req.target(),
        &script.name,
        req.headers(),
    );
    let protocol = match req.version() {
        Version::Http10 => "HTTP/1.0",
        Version::Http11 => "HTTP/1.1",
        Version::Http2 => "HTTP/2",
    };
    // The request's own fields stand in CONTENT_* (§4.1.2, §4.1.3), not
    // HTTP_*; a header that names the host on HTTP/2 is its :authority.
    env.retain(|(k, _)| {
        !matches!(
            k.as_str(),
            "PATH_INFO" | "SERVER_PROTOCOL" | "HTTP_CONTENT_LENGTH" | "HTTP_CONTENT_TYPE"
        )
    });
    if !env.iter().any(|(k, _)| k == "HTTP_HOST")
        && let Some(h) = req.host()
    {
        env.push(("HTTP_HOST".into(), h.into()));
    }
    env.push(("SERVER_PROTOCOL".into(), protocol.into()));
    env.push(("PATH_INFO".into(), script.path_info.clone()));
    if !script.path_info.is_empty() {
        let translated = Path::new(&script.root).join(script.path_info.trim_start_matches('/'));
        env.push((
            "PATH_TRANSLATED".into(),
            translated.to_string_lossy().into_owned(),
        ));
    }
    if let Some(n) = length {
        env.push(("CONTENT_LENGTH".into(), n.to_string()));
    }
    if let Some(t) = req.header("content-type") {
        env.push(("CONTENT_TYPE".into(), t.into()));
    }
    env.push((
        "SCRIPT_FILENAME".into(),
        script.path.to_string_lossy().into_owned(),
    ));
    env.push((
        "DOCUMENT_ROOT".into(),
        script.root.to_string_lossy().into_owned(),
    ));
    env.push(("REDIRECT_STATUS".into(), "200".into()));
    let local = socket_addr(&req.local_addr());
    if let Some(a) = local {
        env.push(("SERVER_ADDR".into(), a.ip().to_string()));
    }
    crate::ws::exec::complete_environment(
        &mut env,
        &crate::ws::exec::Connection {
            peer: socket_addr(req.peer_addr()),
            local,
            secure: req.is_tls(),
            passenv,
        },
    );
    env
}
