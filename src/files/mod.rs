//! Static files as users expect them: Content-Type from the extension,
//! ETag and Last-Modified with 304, one Range with 206/416, index.html for
//! folders, HEAD, and no way out of the root.
//!
//! Paths are opened with `openat2(RESOLVE_BENEATH)` relative to the root
//! directory fd: the kernel refuses any resolution that leaves the root,
//! `..` or a symlink pointing out alike, in one syscall and with no window
//! between a check and the open. Where the kernel lacks openat2 (before
//! 5.6) we fall back to canonicalising and comparing prefixes.
//!
//! What a path opened to is kept in the open-file cache (`cache.rs`) and
//! trusted for a second; small files are answered from memory.

mod cache;
mod coding;

use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::http::{BodyPlan, Handler, Request, Response};
pub use cache::FileCache;
use cache::{Cached, Found, OpenFiles};
use coding::Coding;

pub(crate) struct StaticFiles {
    root: OwnedFd,
    root_path: PathBuf,
    cache: OpenFiles,
    /// Content types by lowercase extension, before mime_guess's table.
    types: Vec<(String, String)>,
    /// Pages of the site's own for error statuses (`--error-page`): the
    /// status and the page's URL path.
    error_pages: Vec<(u16, String)>,
}

const ALLOW: &str = "GET, HEAD, OPTIONS";

enum Opened {
    /// The file, its metadata, its path beneath the root, and whether it
    /// is a folder's index.html (whose type is not to be guessed from the
    /// URL). Boxed: the metadata is most of its size.
    File(File, Box<std::fs::Metadata>, String, bool),
    /// A folder asked for without its trailing slash.
    Redirect,
    Status(u16),
}

impl StaticFiles {
    pub(crate) fn new(root: &Path, cache: FileCache) -> io::Result<StaticFiles> {
        let root_path = root.canonicalize()?;
        let dir = File::open(&root_path)?;
        if !dir.metadata()?.is_dir() {
            // The caller names the path (`root PATH: not a folder`).
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a folder"));
        }
        Ok(StaticFiles {
            root: OwnedFd::from(dir),
            root_path,
            cache: OpenFiles::new(cache),
            types: Vec::new(),
            error_pages: Vec::new(),
        })
    }

    /// Pages of the site's own answering these statuses (400 to 599, as
    /// `app::parse_error_page` checks), each a file beneath the root
    /// (`errors/404.html`). A page that does not open now is refused,
    /// naming it; one that goes away later gives the plain answer back.
    pub(crate) fn with_error_pages(mut self, pages: &[(u16, String)]) -> io::Result<StaticFiles> {
        for (status, file) in pages {
            let path = format!("/{}", file.trim_start_matches('/'));
            if !matches!(self.open(&path), Opened::File(..)) {
                return Err(io::Error::other(format!(
                    "error page {status}={file}: no such file beneath the root"
                )));
            }
            self.error_pages.push((*status, path));
        }
        Ok(self)
    }

    /// What `path` resolves to: the cached entry, or the answer when it
    /// is not a file.
    fn lookup(&self, path: &str, now: std::time::Instant) -> Result<Arc<Cached>, Opened> {
        if let Some(f) = self.cache.fresh(path, now) {
            return Ok(f);
        }
        match self.open(path) {
            Opened::File(file, meta, rel, index) => {
                // A folder's index.html is typed as HTML, not by the URL.
                let type_from = Path::new(if index { "index.html" } else { path });
                let types = &self.types;
                let found = Found {
                    file,
                    meta: *meta,
                    siblings: self.siblings(&rel),
                };
                Ok(self
                    .cache
                    .opened(path, found, || content_type(type_from, types), now))
            }
            other => {
                self.cache.forget(path);
                Err(other)
            }
        }
    }

    /// An error answer: the site's page for `status` (`--error-page`),
    /// status kept, else `text`.
    fn fail(&self, req: &Request<'_>, res: &mut Response<'_>, status: u16, text: &'static str) {
        let page = self
            .error_pages
            .iter()
            .find(|(s, _)| *s == status)
            .and_then(|(_, path)| self.lookup(path, req.now()).ok());
        let Some(page) = page else {
            res.plain(status, text);
            return;
        };
        res.status(status)
            .checked_headers(page.type_line())
            .body(page.body(0, page.len));
    }

    /// Content types by extension (`md`, `text/markdown`) that come before
    /// the built-in table.
    pub(crate) fn with_types(mut self, types: &[(String, String)]) -> StaticFiles {
        self.types = types.to_vec();
        self
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root_path
    }

    fn open_beneath(&self, rel: &str) -> io::Result<File> {
        crate::sys::fs::open_beneath(&self.root, &self.root_path, rel)
    }

    fn open(&self, url_path: &str) -> Opened {
        let Some(rel) = relative_path(url_path) else {
            return Opened::Status(400);
        };
        let Some(rel) = rel else {
            return Opened::Status(404);
        };
        let target = if rel.is_empty() { "." } else { rel.as_str() };
        let file = match self.open_beneath(target) {
            Ok(f) => f,
            Err(e) => return Opened::Status(status_of(&e)),
        };
        let Ok(meta) = file.metadata() else {
            return Opened::Status(500);
        };
        if meta.is_dir() {
            if !url_path.ends_with('/') {
                return Opened::Redirect;
            }
            let index = if rel.is_empty() {
                "index.html".to_string()
            } else {
                format!("{rel}/index.html")
            };
            return match self.open_beneath(&index) {
                Ok(f) => match f.metadata() {
                    Ok(m) if m.is_file() => Opened::File(f, Box::new(m), index, true),
                    _ => Opened::Status(404),
                },
                Err(e) => Opened::Status(status_of(&e)),
            };
        }
        if !meta.is_file() {
            return Opened::Status(404);
        }
        Opened::File(file, Box::new(meta), rel, false)
    }

    /// The precompressed siblings of the file at `rel` (`style.css.br`,
    /// `.zst`, `.gz`) that open as regular files beneath the root.
    fn siblings(&self, rel: &str) -> [Option<(File, std::fs::Metadata)>; 3] {
        Coding::ALL.map(|c| {
            let f = self.open_beneath(&format!("{rel}{}", c.suffix())).ok()?;
            let m = f.metadata().ok()?;
            m.is_file().then_some((f, m))
        })
    }

    /// The representation to answer with: a coding the client accepts
    /// and the file has (a Range request gets the file as it is).
    fn representation(
        &self,
        file: Arc<Cached>,
        accept: Option<&[u8]>,
        ranged: bool,
    ) -> Arc<Cached> {
        let Some(accept) = accept else { return file };
        if ranged {
            return file;
        }
        let Some(c) = coding::choose(coding::weights(accept), |c| file.may_code(c)) else {
            return file;
        };
        file.coded(c, self.cache.coded_budget()).unwrap_or(file)
    }
}

fn status_of(e: &io::Error) -> u16 {
    match e.raw_os_error() {
        Some(libc::EACCES) | Some(libc::EPERM) => 403,
        // Out of fds or memory: the file may well exist; try again later.
        Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::ENOMEM) => 503,
        // EXDEV: the path would leave the root (a symlink out, `..`).
        _ => 404,
    }
}

/// Percent-decodes a URL path and turns it into a path relative to the
/// root. `None`: malformed (400). `Some(None)`: it tries to climb out with
/// `..` (refused as 404, which tells a prober nothing).
pub(crate) fn relative_path(url_path: &str) -> Option<Option<String>> {
    let decoded = crate::http::percent::decode(url_path.as_bytes(), false)?;
    if decoded.contains(&0) {
        return None;
    }
    let decoded = String::from_utf8(decoded).ok()?;
    let mut parts: Vec<&str> = Vec::new();
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => return Some(None),
            s => parts.push(s),
        }
    }
    Some(Some(parts.join("/")))
}

/// Does an If-None-Match / If-Match list contain our tag? `weak`: compare
/// ignoring `W/` (If-None-Match uses weak comparison, RFC 9110 §13.1.2).
fn etag_matches(list: &[u8], etag: &str, weak: bool) -> bool {
    let list = list.trim_ascii();
    if list == b"*" {
        return true;
    }
    list.split(|&b| b == b',').map(|t| t.trim_ascii()).any(|t| {
        let t = if weak {
            t.strip_prefix(b"W/").unwrap_or(t)
        } else {
            t
        };
        t == etag.as_bytes()
    })
}

enum RangeReq {
    None,
    One(u64, u64),
    Unsatisfiable,
}

/// One `bytes=` range; several ranges, or a malformed header, are answered
/// with the whole file (RFC 9110 §14.2 lets a server ignore Range).
fn parse_range(v: &[u8], size: u64) -> RangeReq {
    let Some(spec) = v.trim_ascii().strip_prefix(b"bytes=") else {
        return RangeReq::None;
    };
    if spec.contains(&b',') {
        return RangeReq::None;
    }
    let Ok(spec) = std::str::from_utf8(spec) else {
        return RangeReq::None;
    };
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeReq::None;
    };
    let num = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (a.is_empty(), num(a), num(b)) {
        (true, _, Some(n)) => {
            if n == 0 || size == 0 {
                RangeReq::Unsatisfiable
            } else {
                RangeReq::One(size.saturating_sub(n), size - 1)
            }
        }
        (false, Some(start), end) if b.is_empty() || end.is_some() => {
            if start >= size {
                return RangeReq::Unsatisfiable;
            }
            let end = end.map_or(size - 1, |e| e.min(size - 1));
            if end < start {
                RangeReq::None
            } else {
                RangeReq::One(start, end)
            }
        }
        _ => RangeReq::None,
    }
}

fn content_type(path: &Path, types: &[(String, String)]) -> String {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let ours = types
        .iter()
        .find(|(e, _)| e.eq_ignore_ascii_case(ext))
        .map(|(_, t)| t.as_str());
    let mime = ours
        .or_else(|| mime_guess::from_path(path).first_raw())
        .unwrap_or("application/octet-stream");
    if mime.contains(';') {
        // Parameters of the operator's own: as given.
        return mime.to_string();
    }
    if mime.starts_with("text/")
        || mime == "application/javascript"
        || mime == "application/json"
        || mime == "image/svg+xml"
    {
        format!("{mime}; charset=utf-8")
    } else {
        mime.to_string()
    }
}

impl Handler for StaticFiles {
    /// Files take no body: a request with one is answered at once (405, or
    /// what the path gives) and its body dropped as it arrives.
    fn on_head(&self, _: &Request<'_>) -> BodyPlan {
        BodyPlan::Discard
    }

    fn handle(&self, req: &Request<'_>, res: &mut Response<'_>) {
        match req.method() {
            "GET" | "HEAD" => {}
            "OPTIONS" => {
                res.status(204).header("Allow", ALLOW);
                return;
            }
            _ => {
                res.header("Allow", ALLOW);
                return self.fail(req, res, 405, "405 Method Not Allowed\n");
            }
        }
        let file = match self.lookup(req.path(), req.now()) {
            Ok(f) => f,
            Err(other) => return self.refuse(other, req, res),
        };
        // The fields the coding, the preconditions and ranges read, in one
        // pass.
        let [
            accept,
            if_match,
            if_unmodified,
            if_none_match,
            if_modified,
            range,
            if_range,
        ] = req.headers_first([
            "accept-encoding",
            "if-match",
            "if-unmodified-since",
            "if-none-match",
            "if-modified-since",
            "range",
            "if-range",
        ]);
        let ranged = range.is_some() && req.method() == "GET";
        let file = self.representation(file, accept, ranged);
        let size = file.len;
        let etag = &file.etag[..];
        let modified = file.modified;
        let since = |v: Option<&[u8]>| {
            v.and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|v| httpdate::parse_http_date(v).ok())
        };

        // Preconditions in the order of RFC 9110 §13.2.2.
        if let Some(im) = if_match {
            if !etag_matches(im, etag, false) {
                return self.fail(req, res, 412, "412 Precondition Failed\n");
            }
        } else if let Some(t) = since(if_unmodified)
            && modified > t
        {
            return self.fail(req, res, 412, "412 Precondition Failed\n");
        }
        let not_modified = match if_none_match {
            Some(inm) => etag_matches(inm, etag, true),
            None => since(if_modified).is_some_and(|t| modified <= t),
        };
        if not_modified {
            res.checked_headers(file.validators()).status(304);
            return;
        }

        let mut range = match range {
            Some(r) if req.method() == "GET" => parse_range(r, size),
            _ => RangeReq::None,
        };
        if let Some(ir) = if_range {
            // A weak tag or another date means "the whole file".
            let fresh = if ir.starts_with(b"\"") {
                ir.trim_ascii() == etag.as_bytes()
            } else {
                std::str::from_utf8(ir)
                    .ok()
                    .and_then(|s| httpdate::parse_http_date(s).ok())
                    == Some(modified)
            };
            if !fresh {
                range = RangeReq::None;
            }
        }
        // Only an answer that carries the file (or a part of it) describes
        // it with the file's Content-Type and Accept-Ranges.
        let (offset, len) = match range {
            RangeReq::None => {
                res.checked_headers(file.fields());
                (0, size)
            }
            RangeReq::One(a, b) => {
                res.checked_headers(file.validators())
                    .status(206)
                    .header("Content-Range", format!("bytes {a}-{b}/{size}"))
                    .checked_headers(file.representation());
                (a, b - a + 1)
            }
            RangeReq::Unsatisfiable => {
                // The body is our text, not the file: the file's
                // Content-Type would name it twice (and wrongly).
                res.checked_headers(file.validators())
                    .header("Content-Range", format!("bytes */{size}"))
                    .header("Accept-Ranges", "bytes");
                return self.fail(req, res, 416, "416 Range Not Satisfiable\n");
            }
        };
        res.body(file.body(offset, len));
    }
}

impl StaticFiles {
    /// The answer when a path does not open to a file.
    fn refuse(&self, o: Opened, req: &Request<'_>, res: &mut Response<'_>) {
        match o {
            Opened::Redirect => {
                let mut loc = format!("{}/", req.path());
                if let Some(q) = req.query() {
                    loc.push('?');
                    loc.push_str(q);
                }
                res.header("Location", loc);
                res.plain(301, "301 Moved Permanently\n");
            }
            Opened::Status(400) => self.fail(req, res, 400, "400 Bad Request\n"),
            Opened::Status(403) => self.fail(req, res, 403, "403 Forbidden\n"),
            Opened::Status(500) => self.fail(req, res, 500, "500 Internal Server Error\n"),
            Opened::Status(503) => {
                res.header("Retry-After", "1");
                self.fail(req, res, 503, "503 Service Unavailable\n")
            }
            Opened::Status(_) | Opened::File(..) => self.fail(req, res, 404, "404 Not Found\n"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_to_climb_out_of_the_root_however_it_is_spelled() {
        assert_eq!(relative_path("/a/../b"), Some(None));
        assert_eq!(relative_path("/%2e%2e/etc/passwd"), Some(None));
        assert_eq!(relative_path("/%2E%2E%2fetc"), Some(None));
        assert_eq!(relative_path("/a%00b"), None);
        assert_eq!(relative_path("/a%zz"), None);
        assert_eq!(relative_path("/a%+f"), None, "a sign is no hex digit");
        assert_eq!(
            relative_path("/a+b"),
            Some(Some("a+b".into())),
            "+ is no space in a path"
        );
        assert_eq!(relative_path("/a/./b//c"), Some(Some("a/b/c".into())));
        assert_eq!(relative_path("/caf%C3%A9"), Some(Some("café".into())));
    }

    #[test]
    fn parses_single_ranges_and_ignores_multiple_ones() {
        assert!(matches!(
            parse_range(b"bytes=0-9", 100),
            RangeReq::One(0, 9)
        ));
        assert!(matches!(
            parse_range(b"bytes=90-", 100),
            RangeReq::One(90, 99)
        ));
        assert!(matches!(
            parse_range(b"bytes=-10", 100),
            RangeReq::One(90, 99)
        ));
        assert!(matches!(
            parse_range(b"bytes=50-500", 100),
            RangeReq::One(50, 99)
        ));
        assert!(matches!(
            parse_range(b"bytes=100-", 100),
            RangeReq::Unsatisfiable
        ));
        assert!(matches!(
            parse_range(b"bytes=-0", 100),
            RangeReq::Unsatisfiable
        ));
        assert!(matches!(parse_range(b"bytes=0-1,5-6", 100), RangeReq::None));
        assert!(matches!(parse_range(b"items=0-1", 100), RangeReq::None));
        assert!(matches!(parse_range(b"bytes=5-1", 100), RangeReq::None));
    }

    #[test]
    fn compares_etags_weakly_for_if_none_match() {
        assert!(etag_matches(b"W/\"x\", \"y\"", "\"x\"", true));
        assert!(!etag_matches(b"W/\"x\"", "\"x\"", false));
        assert!(etag_matches(b"*", "\"x\"", false));
    }
}
