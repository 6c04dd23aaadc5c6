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
//! The cache is bounded by entries (each holds one fd): past `entries` an
//! arbitrary entry is dropped, so a scan over many distinct files keeps the
//! fd count flat. One cache per event loop, no lock: handlers run on their
//! loop's thread.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::{File, Metadata};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// How the open-file cache is sized.
#[derive(Clone, Debug)]
pub struct FileCache {
    /// Most paths kept (each holds an open fd); 0 turns the cache off.
    pub entries: usize,
    /// How long an entry is trusted before the path is looked at again.
    pub check: Duration,
    /// Files up to this size are kept in memory too.
    pub in_memory: u64,
}

impl Default for FileCache {
    fn default() -> Self {
        FileCache {
            entries: 1024,
            check: Duration::from_secs(1),
            in_memory: 16 * 1024,
        }
    }
}

/// What a path resolved to, shared by every response that serves it.
pub(crate) struct Cached {
    pub(crate) file: Arc<File>,
    pub(crate) len: u64,
    pub(crate) etag: String,
    /// The time `Last-Modified` says (whole seconds).
    pub(crate) modified: SystemTime,
    /// `ETag` and `Last-Modified` lines, and `Content-Type` and
    /// `Accept-Ranges` lines, built and checked once per file.
    pub(crate) validators: Vec<u8>,
    pub(crate) representation: Vec<u8>,
    /// The whole file, when it is small.
    pub(crate) bytes: Option<Arc<[u8]>>,
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
    id: Identity,
    /// When it is to be checked again (`None`: the check interval runs
    /// past what an `Instant` holds). A comparison per request, not a
    /// subtraction.
    until: Option<Instant>,
}

pub(crate) struct OpenFiles {
    cfg: FileCache,
    slots: RefCell<HashMap<Box<str>, Slot, Keyed>>,
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
        }
    }

    /// The entry for `key` if it was checked less than `check` ago.
    pub(crate) fn fresh(&self, key: &str, now: Instant) -> Option<Arc<Cached>> {
        let slots = self.slots.borrow();
        let s = slots.get(key)?;
        s.until.is_none_or(|u| now < u).then(|| s.cached.clone())
    }

    /// After a fresh open of `key`: the cached entry if it is the same file
    /// unchanged (the new fd is closed), else a new entry made from `file`.
    /// `content_type` is asked only for a new entry.
    pub(crate) fn opened(
        &self,
        key: &str,
        file: File,
        meta: &Metadata,
        content_type: impl FnOnce() -> String,
        now: Instant,
    ) -> Arc<Cached> {
        let id = Identity::of(meta);
        let mut slots = self.slots.borrow_mut();
        if let Some(s) = slots.get_mut(key)
            && s.id == id
        {
            s.until = now.checked_add(self.cfg.check);
            return s.cached.clone();
        }
        let cached = Arc::new(self.make(file, meta, content_type()));
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

    /// Entries held (each with one open fd).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.slots.borrow().len()
    }

    fn make(&self, file: File, meta: &Metadata, content_type: String) -> Cached {
        let len = meta.len();
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .unwrap_or_default();
        let modified = SystemTime::UNIX_EPOCH + Duration::from_secs(mtime.as_secs());
        let bytes = (len <= self.cfg.in_memory)
            .then(|| read_whole(&file, len))
            .flatten();
        let etag = format!(
            "\"{:x}-{:x}-{len:x}\"",
            mtime.as_secs(),
            mtime.subsec_nanos()
        );
        let last_modified = httpdate::fmt_http_date(modified);
        // Every part is ours (hex digits, an IMF-fixdate, a MIME type from
        // mime_guess's table): no CR, LF or NUL can be in them.
        let validators = format!("ETag: {etag}\r\nLast-Modified: {last_modified}\r\n").into_bytes();
        let representation =
            format!("Content-Type: {content_type}\r\nAccept-Ranges: bytes\r\n").into_bytes();
        Cached {
            file: Arc::new(file),
            len,
            etag,
            modified,
            validators,
            representation,
            bytes,
        }
    }
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

    fn open(dir: &std::path::Path, name: &str) -> (File, Metadata) {
        let f = File::open(dir.join(name)).unwrap();
        let m = f.metadata().unwrap();
        (f, m)
    }

    fn cache(entries: usize) -> OpenFiles {
        OpenFiles::new(FileCache {
            entries,
            ..FileCache::default()
        })
    }

    #[test]
    fn keeps_the_entry_while_the_file_is_unchanged_and_replaces_it_when_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), b"one").unwrap();
        let c = cache(8);
        let now = Instant::now();
        let (f, m) = open(dir.path(), "a");
        let first = c.opened("/a", f, &m, || "text/plain".into(), now);
        assert_eq!(first.bytes.as_deref(), Some(&b"one"[..]));
        assert!(c.fresh("/a", now).is_some());
        assert!(
            c.fresh("/a", now + Duration::from_secs(1)).is_none(),
            "stale after check"
        );
        let (f, m) = open(dir.path(), "a");
        let again = c.opened("/a", f, &m, || unreachable!("same file"), now);
        assert!(Arc::ptr_eq(&first, &again));
        std::fs::write(dir.path().join("a"), b"two!").unwrap();
        let (f, m) = open(dir.path(), "a");
        let changed = c.opened("/a", f, &m, || "text/plain".into(), now);
        assert_eq!(changed.bytes.as_deref(), Some(&b"two!"[..]));
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
            let (f, m) = open(dir.path(), &name);
            c.opened(&format!("/{name}"), f, &m, String::new, now);
        }
        assert_eq!(c.len(), 16);
    }

    #[test]
    fn keeps_big_files_by_fd_only_and_nothing_when_off() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("big"), vec![7u8; 20 * 1024]).unwrap();
        let c = cache(0);
        let (f, m) = open(dir.path(), "big");
        let e = c.opened("/big", f, &m, String::new, Instant::now());
        assert!(e.bytes.is_none());
        assert_eq!(e.len, 20 * 1024);
        assert_eq!(c.len(), 0);
    }
}
