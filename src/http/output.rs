//! The queue of bytes a connection owes its peer, in order: response heads
//! and small bodies copied into one buffer (so a batch of pipelined
//! responses goes out in one `writev`), large bodies by reference, files as
//! `sendfile` ranges, and streamed bodies pulled as the socket takes them.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, IoSlice};
use std::ops::Range;
use std::sync::Arc;

use super::body::{Body, BodyStream};
use super::pool::BufPool;

/// Bodies up to this size are copied next to their head; larger ones are
/// queued by reference and gathered by `writev`.
const COPY_LIMIT: usize = 8 * 1024;
/// How much a streamed body is asked for at a time.
const STREAM_PULL: usize = 16 * 1024;
/// How much of one file one `sendfile` call may send.
pub(crate) const SENDFILE_MAX: usize = 1 << 20;

/// What is queued, in order. Plain bytes and ends of responses are
/// `Copy`, so a queue of only them (heads and small bodies, the usual
/// queue) is cleared without a walk over its items; what owns something
/// waits in `Output::held`, in the same order.
#[derive(Clone, Copy)]
enum Item {
    /// This many bytes of `Output::buf`, in order.
    Mem(usize),
    /// The front of `Output::held`.
    Held,
    /// The end of one response.
    End,
}

enum Held {
    Owned(Vec<u8>, usize),
    Static(&'static [u8], usize),
    /// The part of shared bytes still to send.
    Shared(Arc<[u8]>, Range<usize>),
    File {
        file: Arc<File>,
        offset: u64,
        left: u64,
    },
    Stream {
        s: Box<dyn BodyStream>,
        chunk: Vec<u8>,
        pos: usize,
        chunked: bool,
        ended: bool,
    },
}

#[derive(Default)]
pub(crate) struct Output {
    buf: Vec<u8>,
    pos: usize,
    items: VecDeque<Item>,
    held: VecDeque<Held>,
    responses: usize,
    bytes: usize,
}

/// What follows the bytes `Output::gather` gathered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Then {
    /// Nothing: they are the whole queue.
    Nothing,
    /// A file range.
    File,
    /// More that did not fit, or a stream that goes on.
    More,
}

/// A file range at the front of the queue, for the I/O layer to `sendfile`.
pub(crate) struct FileSlice<'a> {
    pub file: &'a File,
    pub offset: &'a mut u64,
    pub left: u64,
}

/// Where queued output goes: straight to the socket (`writev`, `sendfile`)
/// or into a TLS session as plaintext. Each takes what it can; 0 means it
/// is full for now.
pub(crate) trait Sink {
    /// `file_next`: a file range follows these bytes in the queue.
    fn vectored(&mut self, iov: &[IoSlice<'_>], file_next: bool) -> io::Result<usize>;
    /// How much of a file it is offered at once; 0 when its share for now
    /// is spent (`drain_into` stops there, the socket not full).
    fn file_step(&mut self, left: u64) -> usize;
    /// Takes up to `file_step` bytes of the file from `*f.offset`,
    /// advancing the offset.
    fn file(&mut self, f: FileSlice<'_>) -> io::Result<usize>;
}

/// A sink that takes everything: output gathered in memory.
struct ToMemory(Vec<u8>);

impl Sink for ToMemory {
    fn vectored(&mut self, iov: &[IoSlice<'_>], _: bool) -> io::Result<usize> {
        let mut n = 0;
        for s in iov {
            self.0.extend_from_slice(s);
            n += s.len();
        }
        Ok(n)
    }
    fn file_step(&mut self, left: u64) -> usize {
        left as usize
    }
    fn file(&mut self, f: FileSlice<'_>) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let start = self.0.len();
        self.0.resize(start + f.left as usize, 0);
        f.file.read_exact_at(&mut self.0[start..], *f.offset)?;
        *f.offset += f.left;
        Ok(f.left as usize)
    }
}

/// A body's bytes if it is copied next to its head (`COPY_LIMIT`).
#[inline(always)]
fn small(body: &Body) -> Option<&[u8]> {
    match body {
        Body::Bytes(v) if v.len() <= COPY_LIMIT => Some(v),
        Body::Static(v) if v.len() <= COPY_LIMIT => Some(v),
        Body::Shared { bytes, start, len } if *len <= COPY_LIMIT => {
            Some(&bytes[*start..start + len])
        }
        _ => None,
    }
}

impl Output {
    /// Moves what the output queue holds into `sink` until the queue is empty
    /// or the sink takes less than it was offered. Returns whether anything
    /// moved and whether the sink is full.
    #[inline(always)]
    pub(crate) fn drain_into(&mut self, sink: &mut impl Sink) -> io::Result<(bool, bool)> {
        if self.held.is_empty() {
            return self.drain_mem_into(sink);
        }
        let mut moved = false;
        loop {
            self.prepare()?;
            let mut iov = [IoSlice::new(&[]); 32];
            let (n, then) = self.gather(&mut iov);
            let (offered, took) = if n > 0 {
                let offered: usize = iov[..n].iter().map(|s| s.len()).sum();
                let w = sink.vectored(&iov[..n], then == Then::File)?;
                if w == offered && then == Then::Nothing {
                    // All of it, the usual end of a turn: no walk item by
                    // item, no second look at an empty queue.
                    self.clear();
                    return Ok((true, false));
                }
                self.advance(w);
                (offered, w)
            } else {
                let Some(f) = self.front_file() else {
                    return Ok((moved, false));
                };
                let offered = sink.file_step(f.left);
                if offered == 0 {
                    // The sink's share for now is spent.
                    return Ok((moved, false));
                }
                let w = sink.file(f)?;
                self.advance_file(w as u64);
                (offered, w)
            };
            moved |= took > 0;
            if took < offered {
                return Ok((moved, true));
            }
        }
    }

    /// `drain_into` when nothing is held, the usual queue (heads and small
    /// bodies): every byte queued is then `buf[pos..]`, one slice, the end
    /// markers between responses taking no room in it. No walk of the
    /// items to gather them: 290 instructions a small response (callgrind).
    #[inline(always)]
    fn drain_mem_into(&mut self, sink: &mut impl Sink) -> io::Result<(bool, bool)> {
        let all = &self.buf[self.pos..];
        if all.is_empty() {
            // End markers only: those responses are all out.
            self.clear();
            return Ok((false, false));
        }
        let offered = all.len();
        let w = sink.vectored(&[IoSlice::new(all)], false)?;
        if w == offered {
            self.clear();
            return Ok((true, false));
        }
        self.advance(w);
        Ok((w > 0, true))
    }

    /// Everything queued, files read, as one buffer: what a deferred
    /// HTTP/2 response's jobs wrote, and the fuzz and engine tests'
    /// output.
    pub(crate) fn take_all(&mut self) -> io::Result<Vec<u8>> {
        let mut all = ToMemory(Vec::new());
        self.drain_into(&mut all)?;
        Ok(all.0)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Responses queued whose last byte has not been written.
    pub(crate) fn responses(&self) -> usize {
        self.responses
    }

    /// Bytes queued in memory (files and streams not counted).
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Appends bytes through `f` to the shared buffer, merged with the
    /// previous in-memory item when there is one.
    pub(crate) fn with_mem<R>(
        &mut self,
        pool: &mut BufPool,
        f: impl FnOnce(&mut Vec<u8>) -> R,
    ) -> R {
        if self.buf.capacity() == 0 {
            self.buf = pool.take();
        }
        let before = self.buf.len();
        let r = f(&mut self.buf);
        let added = self.buf.len() - before;
        if added > 0 {
            self.bytes += added;
            match self.items.back_mut() {
                Some(Item::Mem(n)) => *n += added,
                _ => self.items.push_back(Item::Mem(added)),
            }
        }
        r
    }

    /// Bytes another framing layer made (HTTP/2's frames), queued as
    /// they are: apart from `push_body`, whose one caller on HTTP/1.1's
    /// request path keeps it inlined there.
    pub(crate) fn push_owned(&mut self, bytes: Vec<u8>) {
        if !bytes.is_empty() {
            self.bytes += bytes.len();
            self.hold(Held::Owned(bytes, 0));
        }
    }

    fn hold(&mut self, h: Held) {
        self.items.push_back(Item::Held);
        self.held.push_back(h);
    }

    fn pop_held(&mut self) {
        self.items.pop_front();
        self.held.pop_front();
    }

    /// The held item at the front of the queue, when the front is one.
    fn front_held(&mut self) -> Option<&mut Held> {
        match self.items.front() {
            Some(Item::Held) => self.held.front_mut(),
            _ => None,
        }
    }

    /// A response's head, written by `head`, and its body. A body small
    /// enough to be copied goes into the buffer with the head, in one
    /// step (one less walk through `with_mem` and `push_body`).
    #[inline(always)]
    pub(crate) fn push_response(
        &mut self,
        pool: &mut BufPool,
        head: impl FnOnce(&mut Vec<u8>),
        body: Body,
        chunked: bool,
    ) {
        match small(&body) {
            Some(bytes) => self.with_mem(pool, |b| {
                head(b);
                b.extend_from_slice(bytes);
            }),
            None => {
                self.with_mem(pool, head);
                self.hold_body(body, chunked);
            }
        }
    }

    pub(crate) fn push_body(&mut self, pool: &mut BufPool, body: Body, chunked: bool) {
        match small(&body) {
            Some(bytes) => self.with_mem(pool, |b| b.extend_from_slice(bytes)),
            None => self.hold_body(body, chunked),
        }
    }

    /// Queues a body too large to copy (`small` said so) where it lies.
    fn hold_body(&mut self, body: Body, chunked: bool) {
        match body {
            Body::Empty => {}
            Body::Shared { bytes, start, len } => {
                self.bytes += len;
                self.hold(Held::Shared(bytes, start..start + len));
            }
            Body::Bytes(v) => {
                self.bytes += v.len();
                self.hold(Held::Owned(v, 0));
            }
            Body::Static(v) => {
                self.bytes += v.len();
                self.hold(Held::Static(v, 0));
            }
            Body::File { file, offset, len } => {
                if len > 0 {
                    self.hold(Held::File {
                        file,
                        offset,
                        left: len,
                    });
                }
            }
            Body::Stream(s) => self.hold(Held::Stream {
                s,
                chunk: Vec::new(),
                pos: 0,
                chunked,
                ended: false,
            }),
        }
    }

    pub(crate) fn end_response(&mut self) {
        self.responses += 1;
        self.items.push_back(Item::End);
    }

    /// Drops markers at the front and pulls a streamed body at the front for
    /// more data. Errors come from the stream and abort the connection.
    pub(crate) fn prepare(&mut self) -> io::Result<()> {
        loop {
            if let Some(Item::End) = self.items.front() {
                self.items.pop_front();
                self.responses -= 1;
                continue;
            }
            match self.front_held() {
                Some(Held::Stream {
                    s,
                    chunk,
                    pos,
                    chunked,
                    ended,
                }) if *pos == chunk.len() => {
                    if *ended {
                        self.pop_held();
                        continue;
                    }
                    chunk.clear();
                    *pos = 0;
                    if *chunked {
                        // A fixed-width size is filled in after the data:
                        // leading zeros are valid chunk-size digits.
                        chunk.extend_from_slice(b"00000000\r\n");
                    }
                    let more = s.read_into(chunk, STREAM_PULL)?;
                    let data = chunk.len() - if *chunked { 10 } else { 0 };
                    if *chunked {
                        if data > 0 {
                            let mut v = data;
                            for d in chunk[..8].iter_mut().rev() {
                                *d = b"0123456789abcdef"[v & 15];
                                v >>= 4;
                            }
                            chunk.extend_from_slice(b"\r\n");
                        } else {
                            chunk.clear();
                        }
                        if !more {
                            chunk.extend_from_slice(b"0\r\n\r\n");
                        }
                    }
                    *ended = !more;
                    if chunk.is_empty() && more {
                        // The stream had nothing this time; it will be asked
                        // again when the connection is next driven.
                        return Ok(());
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    /// Fills `iov` with the in-memory bytes at the front of the queue, up to
    /// the first file. Returns how many slices it filled, and what follows
    /// them.
    pub(crate) fn gather<'b>(&'b self, iov: &mut [IoSlice<'b>]) -> (usize, Then) {
        let mut n = 0;
        let mut mem_pos = self.pos;
        // Start of a run of in-memory items that are adjacent in `buf`
        // (only end markers between them): they go out as one slice.
        let mut run: Option<usize> = None;
        let mut held = self.held.iter();
        for item in &self.items {
            let slice: &[u8] = match item {
                Item::Mem(len) => {
                    let from = run.unwrap_or(mem_pos);
                    mem_pos += len;
                    if run.is_some() {
                        iov[n - 1] = IoSlice::new(&self.buf[from..mem_pos]);
                        continue;
                    }
                    if n == iov.len() {
                        return (n, Then::More);
                    }
                    run = Some(from);
                    iov[n] = IoSlice::new(&self.buf[from..mem_pos]);
                    n += 1;
                    continue;
                }
                Item::End => continue,
                // In step with `items`: never `None`.
                Item::Held => match held.next() {
                    None => break,
                    Some(Held::Owned(v, p)) => &v[*p..],
                    Some(Held::Static(v, p)) => &v[*p..],
                    Some(Held::Shared(v, r)) => &v[r.clone()],
                    Some(Held::Stream {
                        chunk, pos, ended, ..
                    }) => {
                        if *pos == chunk.len() {
                            return (n, Then::More);
                        }
                        if !*ended {
                            // What follows waits for the stream's next chunk.
                            if n < iov.len() {
                                iov[n] = IoSlice::new(&chunk[*pos..]);
                                n += 1;
                            }
                            return (n, Then::More);
                        }
                        &chunk[*pos..]
                    }
                    Some(Held::File { .. }) => return (n, Then::File),
                },
            };
            run = None;
            if n == iov.len() {
                return (n, Then::More);
            }
            iov[n] = IoSlice::new(slice);
            n += 1;
        }
        (n, Then::Nothing)
    }

    /// The file range at the front, once no memory bytes are ahead of it.
    pub(crate) fn front_file(&mut self) -> Option<FileSlice<'_>> {
        match self.front_held() {
            Some(Held::File { file, offset, left }) => Some(FileSlice {
                file,
                offset,
                left: *left,
            }),
            _ => None,
        }
    }

    /// Records that `sent` bytes of the front file went out.
    pub(crate) fn advance_file(&mut self, sent: u64) {
        if let Some(Held::File { left, .. }) = self.front_held() {
            *left -= sent.min(*left);
            if *left == 0 {
                self.pop_held();
            }
        }
    }

    /// Records that `n` bytes from `gather` went out.
    pub(crate) fn advance(&mut self, mut n: usize) {
        while n > 0 {
            match self.items.front_mut() {
                None => break,
                Some(Item::Mem(len)) => {
                    let k = n.min(*len);
                    *len -= k;
                    self.pos += k;
                    self.bytes -= k;
                    n -= k;
                    if *len == 0 {
                        self.items.pop_front();
                    }
                }
                Some(Item::End) => {
                    self.items.pop_front();
                    self.responses -= 1;
                }
                Some(Item::Held) => {
                    let (took, done) = match self.held.front_mut() {
                        None => break,
                        Some(Held::Owned(v, p)) => {
                            let k = n.min(v.len() - *p);
                            *p += k;
                            self.bytes -= k;
                            (k, *p == v.len())
                        }
                        Some(Held::Static(v, p)) => {
                            let k = n.min(v.len() - *p);
                            *p += k;
                            self.bytes -= k;
                            (k, *p == v.len())
                        }
                        Some(Held::Shared(_, r)) => {
                            let k = n.min(r.len());
                            r.start += k;
                            self.bytes -= k;
                            (k, r.start == r.end)
                        }
                        Some(Held::Stream {
                            chunk, pos, ended, ..
                        }) => {
                            let k = n.min(chunk.len() - *pos);
                            *pos += k;
                            (k, *pos == chunk.len() && *ended)
                        }
                        Some(Held::File { .. }) => break,
                    };
                    n -= took;
                    if done {
                        self.pop_held();
                    } else if took == 0 {
                        break;
                    }
                }
            }
        }
        // Drop end markers now at the front, so `responses` is exact.
        while let Some(Item::End) = self.items.front() {
            self.items.pop_front();
            self.responses -= 1;
        }
        if self.pos == self.buf.len() {
            self.pos = 0;
            self.buf.clear();
        }
    }

    /// Holds a buffer (from the pool).
    #[cfg(test)]
    pub(crate) fn holds_buffer(&self) -> bool {
        self.buf.capacity() > 0
    }

    /// Gives the buffer back to the pool when nothing is queued.
    pub(crate) fn release(&mut self, pool: &mut BufPool) {
        if self.items.is_empty() && self.buf.capacity() > 0 {
            self.pos = 0;
            pool.give(std::mem::take(&mut self.buf));
        }
    }

    /// Gives the held items' room back to the allocator when nothing is
    /// held: an idle HTTP/2 connection, whose frames all pass through
    /// `held`, would otherwise keep it (115 B of RSS per idle connection in
    /// `scripts/bench.sh`). HTTP/1.1 does not ask: its engine is parked
    /// when idle, and a small response never holds anything.
    pub(crate) fn shrink(&mut self) {
        if self.held.is_empty() && self.held.capacity() > 0 {
            self.held = VecDeque::new();
        }
    }

    /// Drops everything queued: all of it went out, or the connection is
    /// being aborted.
    #[inline]
    pub(crate) fn clear(&mut self) {
        self.items.clear();
        if !self.held.is_empty() {
            self.held.clear();
        }
        self.buf.clear();
        self.pos = 0;
        self.bytes = 0;
        self.responses = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(out: &mut Output) -> Vec<u8> {
        let mut all = Vec::new();
        loop {
            out.prepare().unwrap();
            let mut iov = [IoSlice::new(&[]); 8];
            let (n, _) = out.gather(&mut iov);
            if n == 0 {
                break;
            }
            let mut total = 0;
            for s in &iov[..n] {
                all.extend_from_slice(s);
                total += s.len();
            }
            out.advance(total);
        }
        all
    }

    struct Counter(u32);
    impl BodyStream for Counter {
        fn read_into(&mut self, buf: &mut Vec<u8>, _max: usize) -> io::Result<bool> {
            self.0 -= 1;
            buf.extend_from_slice(b"abc");
            Ok(self.0 > 0)
        }
    }

    #[test]
    fn merges_pipelined_heads_and_small_bodies_into_one_slice() {
        let mut pool = BufPool::default();
        let mut out = Output::default();
        for _ in 0..3 {
            out.with_mem(&mut pool, |b| b.extend_from_slice(b"HEAD"));
            out.push_body(&mut pool, Body::Static(b"body"), false);
            out.end_response();
        }
        let mut iov = [IoSlice::new(&[]); 8];
        assert_eq!(out.gather(&mut iov), (1, Then::Nothing));
        assert_eq!(out.responses(), 3);
        assert_eq!(drain(&mut out), b"HEADbodyHEADbodyHEADbody");
        assert_eq!(out.responses(), 0);
        assert!(out.is_empty());
    }

    #[test]
    fn a_small_shared_body_goes_out_with_its_head_in_one_slice_and_a_large_one_next_to_it() {
        let mut pool = BufPool::default();
        let mut out = Output::default();
        let small: Arc<[u8]> = Arc::from(&b"alpha\n"[..]);
        out.with_mem(&mut pool, |b| b.extend_from_slice(b"HEAD"));
        out.push_body(
            &mut pool,
            Body::Shared {
                bytes: small,
                start: 1,
                len: 4,
            },
            false,
        );
        out.end_response();
        let mut iov = [IoSlice::new(&[]); 8];
        assert_eq!(
            out.gather(&mut iov),
            (1, Then::Nothing),
            "head and body in one slice"
        );
        assert_eq!(&*iov[0], b"HEADlpha");
        let big: Arc<[u8]> = vec![b'z'; COPY_LIMIT + 1].into();
        out.with_mem(&mut pool, |b| b.extend_from_slice(b"HEAD"));
        out.push_body(
            &mut pool,
            Body::Shared {
                bytes: big.clone(),
                start: 0,
                len: big.len(),
            },
            false,
        );
        out.end_response();
        let mut iov = [IoSlice::new(&[]); 8];
        assert_eq!(
            out.gather(&mut iov),
            (2, Then::Nothing),
            "one writev, no file"
        );
        assert!(out.front_file().is_none());
        let all = drain(&mut out);
        assert_eq!(all.len(), 8 + 4 + big.len());
        assert!(out.is_empty());
    }

    #[test]
    fn a_queue_written_whole_at_once_is_empty_but_a_stream_in_it_is_read_to_its_end() {
        let mut pool = BufPool::default();
        let mut out = Output::default();
        for _ in 0..2 {
            out.with_mem(&mut pool, |b| b.extend_from_slice(b"HEAD"));
            out.end_response();
        }
        assert_eq!(out.take_all().unwrap(), b"HEADHEAD");
        assert!(out.is_empty());
        assert_eq!((out.responses(), out.bytes()), (0, 0));
        out.with_mem(&mut pool, |b| b.extend_from_slice(b"HEAD"));
        out.push_body(&mut pool, Body::Stream(Box::new(Counter(3))), false);
        out.end_response();
        out.with_mem(&mut pool, |b| b.extend_from_slice(b"NEXT"));
        out.end_response();
        assert_eq!(out.take_all().unwrap(), b"HEADabcabcabcNEXT");
        assert!(out.is_empty());
        assert_eq!(out.responses(), 0);
    }

    #[test]
    fn frames_a_streamed_body_in_chunks_and_ends_it() {
        let mut pool = BufPool::default();
        let mut out = Output::default();
        out.push_body(&mut pool, Body::Stream(Box::new(Counter(2))), true);
        out.end_response();
        assert_eq!(
            drain(&mut out),
            b"00000003\r\nabc\r\n00000003\r\nabc\r\n0\r\n\r\n"
        );
    }

    #[test]
    fn an_emptied_queue_gives_back_its_buffer_and_shrinks_to_give_back_the_room_of_what_it_held() {
        let mut pool = BufPool::default();
        let mut out = Output::default();
        out.with_mem(&mut pool, |b| b.extend_from_slice(b"HEAD"));
        out.push_owned(vec![b'x'; 10]);
        out.end_response();
        out.release(&mut pool);
        out.shrink();
        assert_eq!(pool.free_buffers(), 0, "nothing goes back while queued");
        assert!(out.held.capacity() > 0);
        assert_eq!(out.take_all().unwrap().len(), 14);
        assert!(out.held.capacity() > 0);
        out.release(&mut pool);
        out.shrink();
        assert_eq!(pool.free_buffers(), 1);
        assert_eq!((out.buf.capacity(), out.held.capacity()), (0, 0));
    }

    /// Takes at most `.0` bytes a call, keeping them: a socket that is
    /// full after a few bytes.
    struct Trickle(usize, Vec<u8>);
    impl Sink for Trickle {
        fn vectored(&mut self, iov: &[IoSlice<'_>], _: bool) -> io::Result<usize> {
            let all: Vec<u8> = iov.iter().flat_map(|s| s.iter().copied()).collect();
            let n = all.len().min(self.0);
            self.1.extend_from_slice(&all[..n]);
            Ok(n)
        }
        fn file_step(&mut self, left: u64) -> usize {
            (left as usize).min(self.0)
        }
        fn file(&mut self, _: FileSlice<'_>) -> io::Result<usize> {
            unreachable!("no file queued")
        }
    }

    #[test]
    fn a_queue_of_memory_only_written_a_little_at_a_time_counts_each_response_once_it_is_out() {
        let mut pool = BufPool::default();
        let mut out = Output::default();
        for head in [&b"AAAA"[..], b"BBBBBB", b"CC"] {
            out.with_mem(&mut pool, |b| b.extend_from_slice(head));
            out.end_response();
        }
        let mut sink = Trickle(5, Vec::new());
        let mut responses = vec![out.responses()];
        loop {
            let (moved, full) = out.drain_into(&mut sink).unwrap();
            responses.push(out.responses());
            if !full {
                assert!(moved, "the last part moved");
                break;
            }
            assert_eq!(out.bytes(), 12 - sink.1.len());
        }
        assert_eq!(sink.1, b"AAAABBBBBBCC");
        assert_eq!(responses, [3, 2, 1, 0]);
        assert!(out.is_empty());
        let (moved, full) = out.drain_into(&mut sink).unwrap();
        assert!(!moved && !full, "nothing queued, nothing moved");
    }

    #[test]
    fn counts_partial_writes_across_items() {
        let mut pool = BufPool::default();
        let mut out = Output::default();
        out.with_mem(&mut pool, |b| b.extend_from_slice(b"12345"));
        out.push_body(&mut pool, Body::Bytes(vec![b'x'; 10_000]), false);
        out.end_response();
        out.advance(7);
        let rest = drain(&mut out);
        assert_eq!(rest.len(), 10_000 - 2);
    }
}
