//! The open-file cache: a hot file costs no `openat2`, `statx` or `close`
//! per request, and a small one is answered from memory, its head and body
//! in one `writev`.
//!
//! What a URL path resolved to (the fd, its metadata, the headers derived
//! from it, and for small files the bytes) is kept and trusted for `check`
//! (one second by default, as nginx's `open_file_cache_valid`); after that
//! the next request opens the path again beneath the root, with every rule
//! of a fresh open (no escape, FIFOs refused, 404 when gone), and keeps the
//! cached entry only if the file is the same one unchanged (device, inode,
//! size, mtime and ctime to the nanosecond). So a changed file is served
//! fresh, with a new `ETag`, within `check` of its change.
//!
//! The cache is bounded by entries (each holds at most one fd: a small file
//! kept in memory holds none, its fd closed once read): past `entries` an
//! arbitrary entry is dropped, so a scan over many distinct files keeps the
//! fd count flat. One cache per event loop, no lock: handlers run on their
//! loop's thread.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::{File, Metadata};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use super::coding::{self, Coding};
use crate::http::Body;

/// How the open-file cache is sized.
#[derive(Clone, Debug)]
pub struct FileCache {
    /// Most paths kept (each holds an open fd, unless it is kept in
    /// memory); 0 turns the cache off.
    pub entries: usize,
    /// How long an entry is trusted before the path is looked at again.
    pub check: Duration,
    /// Files up to this size are kept in memory too.
    pub in_memory: u64,
    /// Text files (`text/*`, JSON, JavaScript, SVG, XML) of 1 KiB to
    /// 2 MiB are compressed on the fly for clients that accept brotli or
    /// gzip, once per file, and the result kept with the entry (with the
    /// `compress` feature; without it, only precompressed siblings such as
    /// `style.css.br` are served, and those always are).
    pub compress: bool,
}

impl Default for FileCache {
    fn default() -> Self {
        FileCache {
            entries: 1024,
            check: Duration::from_secs(1),
            in_memory: 16 * 1024,
            compress: true,
        }
    }
}

/// Most bytes of on-the-fly compressed variants one loop's cache holds;
/// past it, files go out as they are until entries are dropped.
const CODED_BUDGET: usize = 64 << 20;

/// What a path resolved to, shared by every response that serves it; or
/// one coding of that (`Cached::coded`).
pub(crate) struct Cached {
    pub(crate) source: Source,
    pub(crate) len: u64,
    pub(crate) etag: String,
    /// The time `Last-Modified` says (whole seconds).
    pub(crate) modified: SystemTime,
    /// Its header lines, built and checked once per file: the validators
    /// (`ETag`, `Last-Modified`, and `Vary` where it has codings), then
    /// the representation's (`Content-Type`, and `Accept-Ranges` or
    /// `Content-Encoding`). One piece, so that a whole answer copies them
    /// once.
    fields: Box<[u8]>,
    /// Where the representation's lines begin in `fields`.
    validators_end: usize,
    /// The `Content-Type` value, which the representation's lines begin
    /// with.
    content_type: Box<str>,
    /// Its codings (`Coding::index`): a precompressed sibling found beside
    /// it, or made on the fly when a client first takes that coding.
    coded: [OnceLock<Option<Arc<Cached>>>; 3],
    /// Worth compressing on the fly (type and size, `FileCache::compress`).
    compressible: bool,
    /// What its bytes hold of the loop's budget for coded variants.
    /// Read by nothing: its `Drop` gives the bytes back.
    _held: Option<Held>,
}

/// Where a representation's bytes are.
pub(crate) enum Source {
    /// Small files, and what was compressed on the fly.
    Memory(Arc<[u8]>),
    File(Arc<File>),
}

/// Bytes counted against `CODED_BUDGET`, given back when dropped.
struct Held {
    budget: Arc<AtomicUsize>,
    bytes: usize,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.budget.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// `fields` and `validators_end` for a `Cached`.
fn join_fields(validators: Vec<u8>, representation: String) -> (Box<[u8]>, usize) {
    let end = validators.len();
    let mut all = validators;
    all.extend_from_slice(representation.as_bytes());
    (all.into_boxed_slice(), end)
}

impl Cached {
    /// The validators' lines, for a 304 (or ahead of a `Content-Range`).
    pub(crate) fn validators(&self) -> &[u8] {
        &self.fields[..self.validators_end]
    }

    /// The representation's lines.
    pub(crate) fn representation(&self) -> &[u8] {
        &self.fields[self.validators_end..]
    }

    /// Both, for a whole answer.
    pub(crate) fn fields(&self) -> &[u8] {
        &self.fields
    }

    /// Its `Content-Type` line alone (the first of its representation's).
    pub(crate) fn type_line(&self) -> &[u8] {
        &self.representation()[..TYPE_FIELD.len() + self.content_type.len() + 2]
    }

    /// A response body of `len` bytes of it from `offset`.
    pub(crate) fn body(&self, offset: u64, len: u64) -> Body {
        match &self.source {
            Source::Memory(bytes) => Body::Shared {
                bytes: bytes.clone(),
                start: offset as usize,
                len: len as usize,
            },
            Source::File(f) => Body::File {
                file: f.clone(),
                offset,
                len,
            },
        }
    }

    /// Has it a coding other than identity (and so `Vary`)?
    pub(crate) fn may_code(&self, c: Coding) -> bool {
        match self.coded[c.index()].get() {
            Some(v) => v.is_some(),
            None => self.compressible && coding::can_compress(c),
        }
    }

    /// Its `c` coding: the sibling, or compressed now and kept. `None`
    /// when it has none (not smaller, or the budget spent).
    pub(crate) fn coded(&self, c: Coding, budget: &Arc<AtomicUsize>) -> Option<Arc<Cached>> {
        self.coded[c.index()]
            .get_or_init(|| self.compress(c, budget).map(Arc::new))
            .clone()
    }

    fn compress(&self, c: Coding, budget: &Arc<AtomicUsize>) -> Option<Cached> {
        if !self.compressible {
            return None;
        }
        let bytes = match &self.source {
            Source::Memory(b) => coding::compress(c, b)?,
            Source::File(f) => coding::compress(c, &read_whole(f, self.len)?)?,
        };
        let n = bytes.len();
        if budget.fetch_add(n, Ordering::Relaxed) + n > CODED_BUDGET {
            budget.fetch_sub(n, Ordering::Relaxed);
            return None;
        }
        let held = Held {
            budget: budget.clone(),
            bytes: n,
        };
        let etag = format!("{}-{}\"", self.etag.trim_end_matches('"'), c.token());
        Some(coded_entry(
            Source::Memory(bytes.into()),
            n as u64,
            etag,
            self.modified,
            &self.content_type,
            c,
            Some(held),
        ))
    }
}

const TYPE_FIELD: &str = "Content-Type: ";

/// The `ETag` and `Last-Modified` lines, and `Vary` for a file with
/// codings. Every part is ours (hex digits, an IMF-fixdate): no CR, LF or
/// NUL can be in them.
fn validators(etag: &str, modified: SystemTime, vary: bool) -> Vec<u8> {
    let vary = if vary {
        "Vary: Accept-Encoding\r\n"
    } else {
        ""
    };
    let last_modified = httpdate::fmt_http_date(modified);
    format!("ETag: {etag}\r\nLast-Modified: {last_modified}\r\n{vary}").into_bytes()
}

/// A coded representation's entry: its own tag and bytes, the file's
/// type, `Content-Encoding` and `Vary`.
fn coded_entry(
    source: Source,
    len: u64,
    etag: String,
    modified: SystemTime,
    content_type: &str,
    c: Coding,
    held: Option<Held>,
) -> Cached {
    let (fields, validators_end) = join_fields(
        validators(&etag, modified, true),
        format!(
            "{TYPE_FIELD}{content_type}\r\nContent-Encoding: {}\r\n",
            c.token()
        ),
    );
    Cached {
        source,
        len,
        fields,
        validators_end,
        content_type: content_type.into(),
        etag,
        modified,
        coded: Default::default(),
        compressible: false,
        _held: held,
    }
}

/// What makes two opens the same file unchanged.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Identity {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Identity {
    fn of(m: &Metadata) -> Identity {
        Identity {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }
}

struct Slot {
    cached: Arc<Cached>,
    /// The file's, and each precompressed sibling's.
    id: (Identity, [Option<Identity>; 3]),
    /// When it is to be checked again (`None`: the check interval runs
    /// past what an `Instant` holds). A comparison per request, not a
    /// subtraction.
    until: Option<Instant>,
}

/// A file opened for a path, and its precompressed siblings (`Coding::index`).
pub(crate) struct Found {
    pub(crate) file: File,
    pub(crate) meta: Metadata,
    pub(crate) siblings: [Option<(File, Metadata)>; 3],
}

pub(crate) struct OpenFiles {
    cfg: FileCache,
    slots: RefCell<HashMap<Box<str>, Slot, Keyed>>,
    /// Bytes of on-the-fly coded variants held (`CODED_BUDGET`).
    coded: Arc<AtomicUsize>,
}

/// The table's hash: foldhash, seeded per process, instead of SipHash
/// (callgrind: about 190 instructions a request for the path, against
/// about 30). SipHash guards a table whose keys an attacker picks; here
/// only paths of files that opened become keys, so a client cannot fill
/// the table with colliding ones, and a lookup of any other path costs
/// one probe.
type Keyed = foldhash::quality::RandomState;

impl OpenFiles {
    pub(crate) fn new(cfg: FileCache) -> OpenFiles {
        OpenFiles {
            cfg,
            slots: RefCell::new(HashMap::with_hasher(Keyed::default())),
            coded: Arc::default(),
        }
    }

    /// The loop's budget for coded variants, for `Cached::coded`.
    pub(crate) fn coded_budget(&self) -> &Arc<AtomicUsize> {
        &self.coded
    }

    /// The entry for `key` if it was checked less than `check` ago.
    pub(crate) fn fresh(&self, key: &str, now: Instant) -> Option<Arc<Cached>> {
        let slots = self.slots.borrow();
        let s = slots.get(key)?;
        s.until.is_none_or(|u| now < u).then(|| s.cached.clone())
    }

    /// After a fresh open of `key`: the cached entry if it is the same file
    /// unchanged, siblings too (the new fds are closed), else a new entry
    /// made from `found`. `content_type` is asked only for a new entry.
    pub(crate) fn opened(
        &self,
        key: &str,
        found: Found,
        content_type: impl FnOnce() -> String,
        now: Instant,
    ) -> Arc<Cached> {
        let id = (
            Identity::of(&found.meta),
            found
                .siblings
                .each_ref()
                .map(|s| s.as_ref().map(|(_, m)| Identity::of(m))),
        );
        let mut slots = self.slots.borrow_mut();
        if let Some(s) = slots.get_mut(key)
            && s.id == id
        {
            s.until = now.checked_add(self.cfg.check);
            return s.cached.clone();
        }
        let cached = Arc::new(self.make(found, content_type()));
        if self.cfg.entries == 0 {
            return cached;
        }
        if slots.len() >= self.cfg.entries
            && !slots.contains_key(key)
            && let Some(victim) = slots.keys().next().cloned()
        {
            slots.remove(&victim);
        }
        slots.insert(
            key.into(),
            Slot {
                cached: cached.clone(),
                id,
                until: now.checked_add(self.cfg.check),
            },
        );
        cached
    }

    /// `key` no longer resolves to a file: forget it.
    pub(crate) fn forget(&self, key: &str) {
        self.slots.borrow_mut().remove(key);
    }

    /// Entries held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.slots.borrow().len()
    }

    fn make(&self, found: Found, content_type: String) -> Cached {
        let Found {
            file,
            meta,
            siblings,
        } = found;
        let (len, modified, tag) = stamp(&meta);
        let source = self.source(file, len);
        let compressible = self.cfg.compress
            && coding::compressible_type(&content_type)
            && (coding::COMPRESS_MIN..=coding::COMPRESS_MAX).contains(&len);
        let coded: [OnceLock<Option<Arc<Cached>>>; 3] = Default::default();
        for (c, sibling) in Coding::ALL.into_iter().zip(siblings) {
            if let Some((f, m)) = sibling {
                let (len, modified, tag) = stamp(&m);
                let etag = format!("\"{tag}-{}\"", c.token());
                let entry = coded_entry(
                    self.source(f, len),
                    len,
                    etag,
                    modified,
                    &content_type,
                    c,
                    None,
                );
                let _ = coded[c.index()].set(Some(Arc::new(entry)));
            }
        }
        let vary = compressible || coded.iter().any(|c| c.get().is_some());
        let etag = format!("\"{tag}\"");
        // A MIME type from mime_guess's table or a checked `--mime`: no CR,
        // LF or NUL in it.
        let (fields, validators_end) = join_fields(
            validators(&etag, modified, vary),
            format!("{TYPE_FIELD}{content_type}\r\nAccept-Ranges: bytes\r\n"),
        );
        Cached {
            source,
            len,
            fields,
            validators_end,
            etag,
            modified,
            content_type: content_type.into(),
            coded,
            compressible,
            _held: None,
        }
    }

    /// In memory when small (and read whole), else the fd.
    fn source(&self, file: File, len: u64) -> Source {
        match (len <= self.cfg.in_memory)
            .then(|| read_whole(&file, len))
            .flatten()
        {
            Some(bytes) => Source::Memory(bytes),
            None => Source::File(Arc::new(file)),
        }
    }
}

/// A file's length, `Last-Modified` time and the inside of its tag.
fn stamp(meta: &Metadata) -> (u64, SystemTime, String) {
    let len = meta.len();
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .unwrap_or_default();
    let modified = SystemTime::UNIX_EPOCH + Duration::from_secs(mtime.as_secs());
    let tag = format!("{:x}-{:x}-{len:x}", mtime.as_secs(), mtime.subsec_nanos());
    (len, modified, tag)
}

/// The file's `len` bytes, or `None` if it did not give exactly that many
/// (it changed while read: the fd and `sendfile` serve it instead).
fn read_whole(file: &File, len: u64) -> Option<Arc<[u8]>> {
    let mut buf = vec![0u8; len as usize];
    file.read_exact_at(&mut buf, 0).ok()?;
    let mut extra = [0u8; 1];
    if file.read_at(&mut extra, len).ok()? != 0 {
        return None;
    }
    Some(buf.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &std::path::Path, name: &str) -> Found {
        let f = File::open(dir.join(name)).unwrap();
        let m = f.metadata().unwrap();
        Found {
            file: f,
            meta: m,
            siblings: Default::default(),
        }
    }

    fn cache(entries: usize) -> OpenFiles {
        OpenFiles::new(FileCache {
            entries,
            ..FileCache::default()
        })
    }

    fn mem(c: &Cached) -> Option<&[u8]> {
        match &c.source {
            Source::Memory(b) => Some(b),
            Source::File(_) => None,
        }
    }

    #[test]
    fn keeps_the_entry_while_the_file_is_unchanged_and_replaces_it_when_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), b"one").unwrap();
        let c = cache(8);
        let now = Instant::now();
        let first = c.opened("/a", open(dir.path(), "a"), || "text/plain".into(), now);
        assert_eq!(mem(&first), Some(&b"one"[..]));
        assert!(c.fresh("/a", now).is_some());
        assert!(
            c.fresh("/a", now + Duration::from_secs(1)).is_none(),
            "stale after check"
        );
        let again = c.opened(
            "/a",
            open(dir.path(), "a"),
            || unreachable!("same file"),
            now,
        );
        assert!(Arc::ptr_eq(&first, &again));
        std::fs::write(dir.path().join("a"), b"two!").unwrap();
        let changed = c.opened("/a", open(dir.path(), "a"), || "text/plain".into(), now);
        assert_eq!(mem(&changed), Some(&b"two!"[..]));
        assert_ne!(changed.etag, first.etag);
    }

    #[test]
    fn holds_at_most_its_entries_however_many_files_pass_through() {
        let dir = tempfile::tempdir().unwrap();
        let c = cache(16);
        let now = Instant::now();
        for i in 0..200 {
            let name = format!("f{i}");
            std::fs::write(dir.path().join(&name), b"x").unwrap();
            c.opened(
                &format!("/{name}"),
                open(dir.path(), &name),
                String::new,
                now,
            );
        }
        assert_eq!(c.len(), 16);
    }

    #[test]
    fn keeps_big_files_by_fd_only_and_nothing_when_off() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("big"), vec![7u8; 20 * 1024]).unwrap();
        let c = cache(0);
        let e = c.opened("/big", open(dir.path(), "big"), String::new, Instant::now());
        assert!(mem(&e).is_none());
        assert_eq!(e.len, 20 * 1024);
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn a_sibling_that_appears_or_changes_makes_a_new_entry() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.css"), b"body{}").unwrap();
        let c = cache(8);
        let now = Instant::now();
        let ty = || "text/css".to_string();
        let first = c.opened("/a.css", open(dir.path(), "a.css"), ty, now);
        assert!(!first.may_code(Coding::Gzip), "1 KiB is the least worth it");
        assert!(!String::from_utf8_lossy(first.validators()).contains("Vary"));
        std::fs::write(dir.path().join("a.css.gz"), b"zipped").unwrap();
        let mut found = open(dir.path(), "a.css");
        found.siblings[Coding::Gzip.index()] = {
            let s = open(dir.path(), "a.css.gz");
            Some((s.file, s.meta))
        };
        let with = c.opened("/a.css", found, ty, now);
        assert!(!Arc::ptr_eq(&first, &with));
        assert!(with.may_code(Coding::Gzip));
        assert!(!with.may_code(Coding::Br));
        assert!(String::from_utf8_lossy(with.validators()).contains("Vary: Accept-Encoding\r\n"));
        let gz = with.coded(Coding::Gzip, c.coded_budget()).unwrap();
        assert_eq!(mem(&gz), Some(&b"zipped"[..]));
        assert!(gz.etag.ends_with("-gzip\""));
        let rep = String::from_utf8_lossy(gz.representation()).into_owned();
        assert_eq!(rep, "Content-Type: text/css\r\nContent-Encoding: gzip\r\n");
    }

    #[cfg(feature = "compress")]
    #[test]
    fn a_text_file_is_compressed_once_and_its_bytes_count_against_the_budget() {
        let dir = tempfile::tempdir().unwrap();
        let text = "p { margin: 0 }\n".repeat(400);
        std::fs::write(dir.path().join("a.css"), &text).unwrap();
        let c = cache(8);
        let now = Instant::now();
        let e = c.opened(
            "/a.css",
            open(dir.path(), "a.css"),
            || "text/css".into(),
            now,
        );
        assert!(e.may_code(Coding::Br) && e.may_code(Coding::Gzip));
        assert!(!e.may_code(Coding::Zstd), "zstd only from a sibling");
        let br = e.coded(Coding::Br, c.coded_budget()).unwrap();
        let again = e.coded(Coding::Br, c.coded_budget()).unwrap();
        assert!(Arc::ptr_eq(&br, &again), "compressed once");
        assert_eq!(c.coded_budget().load(Ordering::Relaxed), br.len as usize);
        assert_ne!(br.etag, e.etag);
        drop((br, again, e));
        // The entry is replaced when the file changes: its bytes go back.
        std::fs::write(dir.path().join("a.css"), "q{}\n".repeat(400)).unwrap();
        c.opened(
            "/a.css",
            open(dir.path(), "a.css"),
            || "text/css".into(),
            now,
        );
        assert_eq!(c.coded_budget().load(Ordering::Relaxed), 0);
    }
}
