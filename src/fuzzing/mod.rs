//! Entry points for the fuzz targets in `fuzz/` (built by cargo-fuzz with
//! `--cfg fuzzing`) and for the unit test that replays their corpus. Each
//! takes arbitrary bytes, drives one parser, and panics only where an
//! invariant breaks: never on bad input, which must come back as an error.
//! Not part of the API: the parsers stay `pub(crate)`, and this module is
//! compiled only for fuzzing and tests.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::api::Malformed;
use crate::api::multipart::{self, PartMeta, PartSink};
use crate::handoff::wire::{self, Message};
use crate::http::chunked::Chunked;
use crate::http::conn::{Conn, Ctx, Next, Spare};
use crate::http::head::{self, Head};
use crate::http::limits::{Limits, Timeouts};
use crate::http::pool::BufPool;
use crate::http::{BodyPlan, BodySink, Handler, Request, Response, SinkError};
use crate::proxy::{self, Parsed, ProxyMode};
use crate::sys::Addr;

/// Small limits, so inputs of a few KiB reach every one of them.
fn small_limits() -> Limits {
    Limits {
        max_request_line: 200,
        max_header_bytes: 600,
        max_headers: 12,
        max_body: 300,
        max_streamed_body: 2000,
        max_discarded_body: 200,
        max_input_chunk: 16,
        min_output_chunk: 0,
        max_pipelined: 4,
        max_output_buffer: 2048,
        max_concurrent_streams: 4,
        max_control_frames_per_second: 20,
        max_resets_per_second: 10,
    }
}

/// What an engine borrows from its loop, for a target that runs one.
struct Env {
    limits: Limits,
    timeouts: Timeouts,
    pool: BufPool,
    scratch: Vec<u8>,
    spare: Spare,
    deaf: crate::http::events::Deaf,
    heads: crate::http::blocks::Blocks,
}

impl Default for Env {
    fn default() -> Env {
        Env {
            limits: small_limits(),
            timeouts: Timeouts::default(),
            pool: BufPool::default(),
            scratch: Vec::new(),
            spare: Vec::new(),
            deaf: crate::http::events::Deaf,
            heads: Default::default(),
        }
    }
}

impl Env {
    fn ctx<'a>(&'a mut self, handler: &'a dyn Handler) -> Ctx<'a> {
        Ctx {
            handler,
            limits: &self.limits,
            timeouts: &self.timeouts,
            date: b"Sun, 22 Nov 2026 00:00:00 GMT",
            pool: &mut self.pool,
            scratch: &mut self.scratch,
            draining: false,
            static_headers: b"",
            replies: None,
            spare: &mut self.spare,
            observer: &mut self.deaf,
            heads: &mut self.heads,
        }
    }
}

/// Splits `data` into a control prefix and the rest: the first byte says
/// how many control bytes follow (at most 32).
fn control(data: &[u8]) -> (&[u8], &[u8]) {
    let Some((&n, rest)) = data.split_first() else {
        return (&[], &[]);
    };
    rest.split_at((n as usize % 33).min(rest.len()))
}

/// Cuts `data` into pieces whose lengths the control bytes give (1 to 64
/// each, in turn, then one piece for the rest).
fn pieces<'a>(ctl: &[u8], mut data: &'a [u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    for &c in ctl {
        if data.is_empty() {
            break;
        }
        let n = (usize::from(c & 63) + 1).min(data.len());
        out.push(&data[..n]);
        data = &data[n..];
    }
    if !data.is_empty() {
        out.push(data);
    }
    out
}

// ---- the request head ----

/// The head parser: whole, and a byte at a time as a slow client sends it
/// (the `scanned` resume point), must agree on where a valid head ends.
pub fn head(data: &[u8]) {
    // The field lines split by hand agree with httparse, wherever they
    // begin (the input may start with a request line or not).
    head::fields_agree_with_httparse(data);
    if let Some(i) = data.windows(2).position(|w| w == b"\r\n") {
        head::fields_agree_with_httparse(&data[i + 2..]);
    }
    for limits in [Limits::default(), small_limits()] {
        let mut h = Head::default();
        let mut scanned = 0;
        let whole = head::parse(data, &mut scanned, &limits, &mut h);
        let whole_len = h.len;
        let mut h = Head::default();
        let mut scanned = 0;
        let mut step = None;
        for i in 1..=data.len() {
            match head::parse(&data[..i], &mut scanned, &limits, &mut h) {
                Ok(false) => continue,
                Ok(true) => step = Some(Ok(h.len)),
                Err(r) => step = Some(Err(r.status)),
            }
            break;
        }
        if let Ok(true) = whole {
            assert_eq!(step, Some(Ok(whole_len)), "byte by byte disagrees");
            assert!(whole_len <= data.len());
        }
        if let Some(Ok(len)) = step {
            assert!(len <= data.len());
        }
    }
}

// ---- chunked bodies ----

/// What decoding a chunked body in `pieces` gave: body, trailers, what
/// followed; `Err` a refusal; `None` not finished.
type Decoded = Option<Result<(Vec<u8>, Vec<u8>, Vec<u8>), u16>>;

fn decode_chunked(pieces: &[&[u8]], limits: &Limits) -> Decoded {
    let mut c = Chunked::new(limits.max_body);
    let mut buf = Vec::new();
    for (i, p) in pieces.iter().enumerate() {
        buf.extend_from_slice(p);
        match c.decode(&mut buf, limits) {
            Err(r) => return Some(Err(r.status)),
            Ok(step) => {
                assert!(step.removed <= buf.len());
                buf.truncate(buf.len() - step.removed);
                if step.done {
                    let (b, t) = (c.body_len(), c.trailer_len());
                    assert!(b + t <= buf.len());
                    // What follows: the rest of this piece and the ones
                    // not fed.
                    let mut rest = buf[b + t..].to_vec();
                    pieces[i + 1..]
                        .iter()
                        .for_each(|p| rest.extend_from_slice(p));
                    return Some(Ok((buf[..b].to_vec(), buf[b..b + t].to_vec(), rest)));
                }
            }
        }
    }
    None
}

/// The chunked decoder: whole, a byte at a time and in the pieces the
/// input names must give the same body, trailers and remainder, or all
/// refuse.
pub fn chunked(data: &[u8]) {
    let (ctl, body) = control(data);
    let limits = small_limits();
    let whole = decode_chunked(&[body], &limits);
    let bytes: Vec<&[u8]> = body.chunks(1).collect();
    let split = pieces(ctl, body);
    for other in [
        decode_chunked(&bytes, &limits),
        decode_chunked(&split, &limits),
    ] {
        match (&whole, &other) {
            (Some(Ok(a)), Some(Ok(b))) => assert_eq!(a, b, "pieces decode differently"),
            (Some(Err(_)), Some(Err(_))) | (None, None) => {}
            (a, b) => panic!("whole: {a:?}, in pieces: {b:?}"),
        }
    }
}

// ---- multipart and urlencoded ----

#[derive(Default)]
struct Events(Vec<(PartMeta, Vec<u8>)>, bool);

impl PartSink for Events {
    fn start(&mut self, meta: &PartMeta) -> Result<(), Malformed> {
        assert!(!self.1, "a part began inside another");
        self.0.push((meta.clone(), Vec::new()));
        self.1 = true;
        Ok(())
    }
    fn data(&mut self, chunk: &[u8]) -> Result<(), Malformed> {
        assert!(self.1, "data outside a part");
        if let Some(last) = self.0.last_mut() {
            last.1.extend_from_slice(chunk);
        }
        Ok(())
    }
    fn end(&mut self) -> Result<(), Malformed> {
        assert!(self.1, "a part ended that had not begun");
        self.1 = false;
        Ok(())
    }
}

fn multipart_in(boundary: &str, pieces: &[&[u8]]) -> Result<Vec<(PartMeta, Vec<u8>)>, ()> {
    let mut p = multipart::Parser::new(boundary);
    let mut ev = Events::default();
    for piece in pieces {
        p.feed(piece, &mut ev).map_err(|_| ())?;
    }
    p.finish().map_err(|_| ())?;
    Ok(ev.0)
}

/// The multipart parser with the boundary `B`: whole and in pieces it must
/// find the same parts with the same data, or refuse both ways.
pub fn multipart(data: &[u8]) {
    let (ctl, body) = control(data);
    let whole = multipart_in("B", &[body]);
    let split = multipart_in("B", &pieces(ctl, body));
    let bytes: Vec<&[u8]> = body.chunks(1).collect();
    let by_byte = multipart_in("B", &bytes);
    assert_eq!(whole.is_ok(), split.is_ok(), "pieces disagree on validity");
    assert_eq!(whole.is_ok(), by_byte.is_ok(), "bytes disagree on validity");
    if let (Ok(a), Ok(b), Ok(c)) = (&whole, &split, &by_byte) {
        assert_eq!(a, b);
        assert_eq!(a, c);
    }
    let _ = multipart::boundary(&String::from_utf8_lossy(data));
}

/// The urlencoded decoder: never a panic; what it decodes, encoded again
/// by hand, decodes the same.
pub fn urlencoded(data: &[u8]) {
    let _ = crate::api::urlencoded::decode(data);
    let Ok(params) = crate::api::urlencoded::parse(data) else {
        return;
    };
    let enc = |s: &str| -> String { s.bytes().map(|b| format!("%{b:02X}")).collect() };
    let again: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect();
    let Ok(back) = crate::api::urlencoded::parse(again.join("&").as_bytes()) else {
        panic!("re-encoded pairs do not parse: {again:?}");
    };
    let a: Vec<_> = params.iter().collect();
    let b: Vec<_> = back.iter().collect();
    assert_eq!(a, b);
}

// ---- the hand-off wire format ----

/// A record from a peer: refused with a reason or decoded; a decoded
/// message of a known kind encodes to a record that decodes to itself.
pub fn wire(data: &[u8]) {
    let _ = wire::read_backlog(data);
    let Ok(m) = Message::decode(data) else {
        return;
    };
    if m.kind.is_none() {
        return;
    }
    let rec = m.encode();
    match Message::decode(&rec) {
        Ok(again) => assert_eq!(again, m, "a message changed on the way round"),
        Err(e) => panic!("our own encoding was refused: {e:?}"),
    }
}

// ---- the PROXY header ----

/// The PROXY header parser in each mode: a header found whole is found in
/// every prefix as "read more", and never reaches past the input.
pub fn proxy(data: &[u8]) {
    for mode in [ProxyMode::V1, ProxyMode::V2, ProxyMode::Any] {
        let whole = proxy::parse(mode, data);
        if let Parsed::Done { len, .. } = &whole {
            let len = *len;
            assert!(len <= data.len() && len > 0);
            assert_eq!(proxy::parse(mode, &data[..len]), whole);
            for i in 0..len {
                assert_eq!(
                    proxy::parse(mode, &data[..i]),
                    Parsed::Partial,
                    "a prefix of {i} bytes"
                );
            }
        }
    }
}

// ---- the engine ----

/// Counts answered requests; each answer carries its number, so the output
/// shows whether answers came in order.
struct Numbered {
    seq: Rc<Cell<u64>>,
    input: Rc<RefCell<Vec<u8>>>,
    /// A broken invariant seen inside the handler (where a panic would be
    /// caught by the engine and answered 500).
    broken: Rc<Cell<bool>>,
}

struct Collect {
    got: usize,
}

impl BodySink for Collect {
    fn data(&mut self, chunk: &[u8]) -> Result<(), SinkError> {
        assert!(!chunk.is_empty());
        self.got += chunk.len();
        if chunk.contains(&b'!') {
            return Err(SinkError::new(422, "a sink refusal"));
        }
        Ok(())
    }
    fn finish(&mut self, _: &Request<'_>, res: &mut Response<'_>) {
        res.body(format!("streamed {}", self.got));
    }
}

impl Handler for Numbered {
    fn on_head(&self, req: &Request<'_>) -> BodyPlan {
        match req.path() {
            "/s" => BodyPlan::Stream(Box::new(Collect { got: 0 })),
            "/k" => BodyPlan::Skip,
            "/d" => BodyPlan::Discard,
            _ => BodyPlan::Buffer,
        }
    }

    fn handle(&self, req: &Request<'_>, res: &mut Response<'_>) {
        if req.path() == "/h" {
            res.hand_off();
            return;
        }
        let n = self.seq.get() + 1;
        self.seq.set(n);
        // What the engine hands over was given to it.
        let input = self.input.borrow();
        let body = req.body();
        if !body.is_empty()
            && req.header("transfer-encoding").is_none()
            && !input.windows(body.len()).any(|w| w == body)
        {
            self.broken.set(true);
        }
        res.header("X-Seq", n.to_string());
        if req.path() == "/close" {
            res.close();
        }
        res.body(format!("{} {}", req.method(), body.len()));
    }
}

/// Takes all queued output through the same `drain_into` the I/O layer
/// uses, into memory (also the engine tests' harness).
pub(crate) fn drain(conn: &mut impl crate::http::EngineIo) -> std::io::Result<Vec<u8>> {
    conn.output().take_all()
}

/// One connection fed arbitrary bytes in arbitrary pieces, as the I/O
/// layer feeds it (into the slice `read_buf` lends; a control byte's
/// 0x40 lets a deadline pass first, 0x80 drains the output first), then
/// the end of input and every deadline. It must not panic, must answer
/// the requests it dispatched in order and each once, and must not hand a
/// handler bytes it was not given.
pub fn engine(data: &[u8]) {
    let (ctl, input) = control(data);
    let seq = Rc::new(Cell::new(0));
    let given = Rc::new(RefCell::new(Vec::new()));
    let broken = Rc::new(Cell::new(false));
    let handler = Numbered {
        seq: seq.clone(),
        input: given.clone(),
        broken: broken.clone(),
    };
    let mut env = Env::default();
    let (limits, timeouts) = (env.limits.clone(), env.timeouts.clone());
    let mut now = Instant::now();
    let mut conn = Conn::new(Addr::Unknown, now);
    let mut out = Vec::new();
    macro_rules! ctx {
        () => {
            env.ctx(&handler)
        };
    }
    let mut left: Vec<&[u8]> = pieces(ctl, input);
    let mut turns = 0;
    let mut handed_off = false;
    'feed: for (i, piece) in left.drain(..).enumerate() {
        let c = ctl.get(i).copied().unwrap_or(0);
        if c & 0x80 != 0 {
            out.extend(drain(&mut conn).expect("no files are served here"));
            conn.advance(now, &mut ctx!(), Default::default());
        }
        if c & 0x40 != 0 {
            out.extend(drain(&mut conn).expect("no files are served here"));
            if let Some(d) = conn.deadline(&timeouts) {
                now = now.max(d);
                conn.on_timeout(now, &mut ctx!());
            }
        }
        let mut piece = piece;
        while !piece.is_empty() {
            turns += 1;
            if turns > 10_000 {
                break 'feed;
            }
            let Some(buf) = conn.read_buf(&mut env.pool, &limits) else {
                // Not reading: output may be what holds it up.
                out.extend(drain(&mut conn).expect("no files are served here"));
                conn.advance(now, &mut ctx!(), Default::default());
                match conn.next(now, &timeouts, false) {
                    Next::HandOff => {
                        handed_off = true;
                        break 'feed;
                    }
                    Next::Close => break 'feed,
                    _ => {}
                }
                if conn.read_buf(&mut env.pool, &limits).is_none() {
                    break 'feed;
                }
                continue;
            };
            assert!(!buf.is_empty(), "read_buf lent an empty slice");
            let n = buf.len().min(piece.len());
            buf[..n].copy_from_slice(&piece[..n]);
            given.borrow_mut().extend_from_slice(&piece[..n]);
            conn.filled(n, now);
            piece = &piece[n..];
            conn.advance(now, &mut ctx!(), Default::default());
        }
    }
    if !handed_off {
        conn.on_eof();
        conn.advance(now, &mut ctx!(), Default::default());
        for _ in 0..8 {
            // Drained before any deadline passes: a write deadline would
            // rightly drop what the peer never read.
            out.extend(drain(&mut conn).expect("no files are served here"));
            conn.advance(now, &mut ctx!(), Default::default());
            out.extend(drain(&mut conn).expect("no files are served here"));
            match conn.next(now, &timeouts, false) {
                Next::Close | Next::HandOff => break,
                _ => {}
            }
            let Some(d) = conn.deadline(&timeouts) else {
                break;
            };
            now = now.max(d) + Duration::from_millis(1);
            conn.on_timeout(now, &mut ctx!());
        }
        out.extend(drain(&mut conn).expect("no files are served here"));
    }
    conn.release_buffers(&mut env.pool);
    assert!(
        !broken.get(),
        "a handler was given a body that was never sent"
    );
    // Every dispatched request was answered once, in order.
    let text = String::from_utf8_lossy(&out);
    let seen: Vec<u64> = text
        .match_indices("X-Seq: ")
        .filter_map(|(i, _)| {
            let rest = &text[i + 7..];
            rest[..rest.find('\r')?].parse().ok()
        })
        .collect();
    let want: Vec<u64> = (1..=seq.get()).collect();
    if !handed_off {
        assert_eq!(seen, want, "answers missing or out of order: {text}");
    } else {
        assert!(want.starts_with(&seen), "answers out of order");
    }
}

mod h2;
pub use h2::h2;

#[cfg(test)]
mod tests {
    /// The committed corpus (seeds and whatever fuzzing kept) goes through
    /// every entry point on each test run, so a crash once found stays
    /// fixed without a fuzzer.
    #[test]
    fn the_fuzz_corpus_replays_without_a_failure() {
        type Target = (&'static str, fn(&[u8]));
        let targets: [Target; 8] = [
            ("head", super::head),
            ("chunked", super::chunked),
            ("multipart", super::multipart),
            ("urlencoded", super::urlencoded),
            ("wire", super::wire),
            ("proxy", super::proxy),
            ("engine", super::engine),
            ("h2", super::h2),
        ];
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
        for (name, f) in targets {
            let dir = root.join(name);
            let entries = std::fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .map(|e| e.unwrap().path())
                .collect::<Vec<_>>();
            assert!(!entries.is_empty(), "no seeds for {name}");
            for p in entries {
                let data = std::fs::read(&p).unwrap();
                let r = std::panic::catch_unwind(|| f(&data));
                assert!(r.is_ok(), "{name}: {} fails", p.display());
            }
        }
    }
}
