//! One HTTP/2 connection's protocol state (RFC 9113), sans-I/O: bytes from
//! the client in, frames for it out, and new requests handed to the
//! engine (`mod.rs`), whose streams then take their bodies and send their
//! responses through the methods here.
//!
//! What it keeps: both sides' settings, the four kinds of flow-control
//! window (ours and the peer's, per connection and per stream), each open
//! stream's state (§5.1), the HPACK decoder, a header block being
//! gathered, the graceful GOAWAY's two steps, and the flood counters.
//! Every MUST of §4–§8 a server can be held to is here, each error with
//! the code the RFC gives it: a connection error ends the connection with
//! GOAWAY (`fail`), a stream error resets only the stream (`reset`).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::PREFACE;
use super::fields::RequestHead;
use super::frame::{self, Head};
use super::frame::{
    ACK, CONTINUATION, DATA, DEFAULT_WINDOW, END_HEADERS, END_STREAM, ENHANCE_YOUR_CALM,
    FLOW_CONTROL_ERROR, FRAME_SIZE_ERROR, GOAWAY, HEADERS, MAX_FRAME, MAX_WINDOW, NO_ERROR, PADDED,
    PING, PRIORITY, PRIORITY_FLAG, PROTOCOL_ERROR, PUSH_PROMISE, REFUSED_STREAM, RST_STREAM,
    SETTINGS, STREAM_CLOSED, WINDOW_UPDATE,
};
use super::hpack::{self, Reader};

/// CONTINUATION frames one header block may take; a block that needs more
/// is a flood (CVE-2024-27316: a legitimate one fits in a few).
const MAX_CONTINUATIONS: u32 = 32;
/// How long the flood counters count before they start again.
const RATE_WINDOW: Duration = Duration::from_secs(1);
/// Streams closed lately, remembered to tell a frame on a stream that was
/// (`STREAM_CLOSED`, or ignored after our reset) from one on a stream
/// that never was (`PROTOCOL_ERROR`).
const RECENT: usize = 32;
/// The version of what `Session::park` writes.
const PARKED: u8 = 1;
/// The PING of the graceful GOAWAY's first step.
const GOAWAY_PING: [u8; 8] = *b"handoff!";

/// Why the connection must end: the GOAWAY's code, and words for the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Violation {
    pub code: u32,
    pub why: &'static str,
}

/// The flood limits (`Limits::max_control_frames_per_second`,
/// `max_resets_per_second`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rates {
    pub control: u32,
    pub resets: u32,
}

/// What the session is given.
pub(super) struct Config {
    pub max_streams: u32,
    /// `SETTINGS_MAX_HEADER_LIST_SIZE`: `max_header_bytes`, as HTTP/1.1's.
    pub max_header_list: usize,
    pub rates: Rates,
}

impl Config {
    /// The settings we announce: `(max_streams, max_header_list)`.
    fn announced(&self) -> (u32, u32) {
        let list = u32::try_from(self.max_header_list).unwrap_or(u32::MAX);
        (self.max_streams, list)
    }
}

/// `SETTINGS_MAX_FRAME_SIZE`'s allowed values (§6.5.2).
const FRAME_SIZES: std::ops::RangeInclusive<u32> = 16_384..=16_777_215;

/// The stream a priority (HEADERS' or PRIORITY's first 4 bytes) depends
/// on, the exclusive bit dropped.
fn dependency(p: &[u8]) -> u32 {
    u32::from_be_bytes([p[0], p[1], p[2], p[3]]) & 0x7fff_ffff
}

/// A request whose head came: the engine's to answer.
pub(super) struct Opened {
    pub id: u32,
    /// The head as HTTP/1.1 text (the one parser reads it).
    pub head: Vec<u8>,
    /// END_STREAM came with it: no body.
    pub end: bool,
    /// The field list was over `max_header_bytes`: answer 431.
    pub oversized: bool,
}

/// How the client's side of the connection stands.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Reading {
    /// This many bytes of the preface matched so far.
    Preface(usize),
    /// The preface came; its second half, SETTINGS, must come next.
    Settings,
    Frames,
}

/// The graceful GOAWAY (§6.8), in two steps as nghttp2 and hyper do it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Going {
    No,
    /// GOAWAY with 2^31−1 and a PING sent: streams already in flight
    /// towards us are still taken.
    First,
    /// The real last stream sent after the PING came back.
    Final(u32),
}

/// How a stream we no longer keep was closed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Closed {
    /// We reset it: what still comes for it is ignored (§5.4.2).
    ByUs,
    /// Ended both ways, or reset by the client: more is `STREAM_CLOSED`.
    Done,
}

struct St {
    id: u32,
    /// The client may still send (no END_STREAM yet).
    remote_open: bool,
    /// We may still send.
    local_open: bool,
    send_window: i64,
    /// What the client may still send on it before we give more.
    recv_window: i64,
    /// Body bytes received and not yet taken.
    inbox: Vec<u8>,
    /// Taken and not yet given back (a handler's buffered body).
    held: u32,
    /// Given back, not yet told to the client.
    unacked: u32,
    content_length: Option<u64>,
    received: u64,
    trailers: Vec<u8>,
    /// Nobody will read the rest of its body (the handler said so, or
    /// the response went): what comes is dropped and its window given back
    /// at once.
    discard: bool,
}

/// A header block being gathered (HEADERS, then CONTINUATIONs).
struct Block {
    stream: u32,
    end_stream: bool,
    bytes: Vec<u8>,
    continuations: u32,
    /// Its priority made the stream depend on itself (§5.3.1).
    self_dependent: bool,
}

pub(super) struct Session {
    cfg: Config,
    reading: Reading,
    /// Received bytes not yet a whole frame.
    inbuf: Vec<u8>,
    /// Frames for the client, for the engine to queue.
    pub(super) out: Vec<u8>,
    decoder: hpack::Decoder,
    block: Option<Block>,
    /// The client's settings that bind what we send.
    peer_initial_window: i64,
    peer_max_frame: usize,
    send_window: i64,
    recv_window: i64,
    /// Connection-level bytes taken and not yet told to the client.
    recv_unacked: u32,
    streams: Vec<St>,
    recent: VecDeque<(u32, Closed)>,
    /// The highest stream the client opened (GOAWAY's last stream).
    pub(super) highest: u32,
    going: Going,
    /// The client sent GOAWAY: no new streams; the end once ours finish.
    peer_going: bool,
    /// A connection error: the GOAWAY went; nothing more is read.
    pub(super) failed: Option<Violation>,
    /// The client closed its side.
    eof: bool,
    since: Instant,
    control: u32,
    resets: u32,
    /// Bytes `out` may still take before streams wait for the socket.
    budget: usize,
}

/// What a frame did wrong, found while reading it.
enum Wrong {
    /// Ends the connection.
    Connection(u32, &'static str),
    /// Resets one stream.
    Stream(u32, u32),
}

fn conn(code: u32, why: &'static str) -> Wrong {
    Wrong::Connection(code, why)
}

impl Session {
    /// A new connection: our SETTINGS go out at once (§3.4).
    pub(super) fn new(cfg: Config, now: Instant) -> Session {
        let mut out = Vec::with_capacity(64);
        let (streams, list) = cfg.announced();
        frame::settings(
            &mut out,
            &[
                (frame::MAX_CONCURRENT_STREAMS, streams),
                (frame::MAX_HEADER_LIST_SIZE, list),
            ],
        );
        Session {
            cfg,
            reading: Reading::Preface(0),
            inbuf: Vec::new(),
            out,
            decoder: hpack::Decoder::new(),
            block: None,
            peer_initial_window: DEFAULT_WINDOW,
            peer_max_frame: MAX_FRAME,
            send_window: DEFAULT_WINDOW,
            recv_window: DEFAULT_WINDOW,
            recv_unacked: 0,
            streams: Vec::new(),
            recent: VecDeque::new(),
            highest: 0,
            going: Going::No,
            peer_going: false,
            failed: None,
            eof: false,
            since: now,
            control: 0,
            resets: 0,
            budget: usize::MAX,
        }
    }

    /// The preface and the client's SETTINGS came (the setup deadline
    /// no longer applies).
    pub(super) fn set_up(&self) -> bool {
        self.reading == Reading::Frames
    }

    /// Nothing more will be read or sent but what `out` holds.
    pub(super) fn is_over(&self) -> bool {
        self.failed.is_some()
            || (self.streams.is_empty()
                && (self.eof || self.peer_going || matches!(self.going, Going::Final(_))))
    }

    pub(super) fn wants_input(&self) -> bool {
        !self.eof && self.failed.is_none()
    }

    /// Bytes received and not yet a whole frame.
    pub(super) fn unread(&self) -> usize {
        self.inbuf.len()
    }

    pub(super) fn on_eof(&mut self) {
        self.eof = true;
        self.block = None;
    }

    /// Bytes `out` may still take this turn (the engine's bound on what
    /// waits for the socket); DATA waits past it.
    pub(super) fn set_budget(&mut self, n: usize) {
        self.budget = n;
    }

    /// Gives back the memory of emptied buffers (an idle connection should
    /// cost little).
    pub(super) fn shrink(&mut self) {
        if self.inbuf.is_empty() && self.inbuf.capacity() > 0 {
            self.inbuf = Vec::new();
        }
        if self.streams.is_empty() {
            self.streams = Vec::new();
            self.decoder.shrink();
        }
        for s in &mut self.streams {
            if s.inbox.is_empty() && s.inbox.capacity() > 0 {
                s.inbox = Vec::new();
            }
        }
    }

    // ---- moving to a new process ----

    /// Between requests with nothing in flight either way, nothing owed,
    /// no end under way: the connection could move to a new process with
    /// what `park` writes.
    pub(super) fn movable(&self) -> bool {
        self.reading == Reading::Frames
            && self.streams.is_empty()
            && self.block.is_none()
            && self.inbuf.is_empty()
            && self.out.is_empty()
            && self.going == Going::No
            && !self.peer_going
            && self.failed.is_none()
            && !self.eof
    }

    /// What a new process needs to go on with the connection: the last
    /// stream, the settings both ways, the four windows, the streams
    /// closed lately and the HPACK table (`docs/upgrade.md`). Our encoder
    /// keeps no table, so there is nothing of its to carry.
    pub(super) fn park(&self) -> Vec<u8> {
        let mut b = vec![PARKED];
        let (streams, list) = self.cfg.announced();
        for v in [self.highest, streams, list] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        b.extend_from_slice(&self.peer_initial_window.to_be_bytes());
        b.extend_from_slice(&(self.peer_max_frame as u32).to_be_bytes());
        b.extend_from_slice(&self.send_window.to_be_bytes());
        b.extend_from_slice(&self.recv_window.to_be_bytes());
        b.extend_from_slice(&self.recv_unacked.to_be_bytes());
        b.extend_from_slice(&(self.recent.len() as u32).to_be_bytes());
        for &(id, how) in &self.recent {
            b.extend_from_slice(&id.to_be_bytes());
            b.push(u8::from(how == Closed::ByUs));
        }
        self.decoder.park(&mut b);
        b
    }

    /// A connection another process parked (`park`), checked. If our
    /// settings differ from those it announced, new SETTINGS go out.
    pub(super) fn resume(cfg: Config, state: &[u8], now: Instant) -> Result<Session, &'static str> {
        let mut r = Reader(state);
        if r.u8()? != PARKED {
            return Err("an HTTP/2 state of another version");
        }
        let window = |v: i64| (0..=MAX_WINDOW).contains(&v);
        let highest = r.u32()?;
        let (streams_said, list_said) = (r.u32()?, r.u32()?);
        let peer_initial_window = r.i64()?;
        let peer_max_frame = r.u32()?;
        let send_window = r.i64()?;
        let recv_window = r.i64()?;
        let recv_unacked = r.u32()?;
        if i64::from(highest) > MAX_WINDOW
            || !window(peer_initial_window)
            || !FRAME_SIZES.contains(&peer_max_frame)
            || !window(send_window)
            || !window(recv_window)
            || i64::from(recv_unacked) > MAX_WINDOW
        {
            return Err("an HTTP/2 state out of range");
        }
        let n = r.u32()? as usize;
        if n > RECENT {
            return Err("an HTTP/2 state out of range");
        }
        let mut recent = VecDeque::with_capacity(n);
        for _ in 0..n {
            let id = r.u32()?;
            let how = if r.u8()? == 1 {
                Closed::ByUs
            } else {
                Closed::Done
            };
            recent.push_back((id, how));
        }
        let decoder = hpack::Decoder::resume(&mut r)?;
        if !r.0.is_empty() {
            return Err("bytes after the HTTP/2 state");
        }
        let changed = cfg.announced() != (streams_said, list_said);
        let mut s = Session::new(cfg, now);
        if !changed {
            s.out.clear();
        }
        s.reading = Reading::Frames;
        s.highest = highest;
        s.peer_initial_window = peer_initial_window;
        s.peer_max_frame = peer_max_frame as usize;
        s.send_window = send_window;
        s.recv_window = recv_window;
        s.recv_unacked = recv_unacked;
        s.recent = recent;
        s.decoder = decoder;
        Ok(s)
    }

    /// A graceful end was asked for or the client said GOAWAY.
    pub(super) fn going_away(&self) -> bool {
        self.going != Going::No || self.peer_going
    }

    // ---- reading ----

    /// Takes bytes from the client; requests whose head came are added to
    /// `opened`.
    pub(super) fn take_in(&mut self, bytes: &[u8], now: Instant, opened: &mut Vec<Opened>) {
        if !self.wants_input() {
            return;
        }
        if self.inbuf.is_empty() {
            let used = self.frames(bytes, now, opened);
            if self.failed.is_none() {
                self.inbuf.extend_from_slice(&bytes[used..]);
            }
        } else {
            self.inbuf.extend_from_slice(bytes);
            let buf = std::mem::take(&mut self.inbuf);
            let used = self.frames(&buf, now, opened);
            self.inbuf = buf;
            if self.failed.is_some() {
                self.inbuf.clear();
            } else {
                self.inbuf.drain(..used);
            }
        }
    }

    /// Handles the whole frames at the start of `b`; returns the bytes used.
    fn frames(&mut self, b: &[u8], now: Instant, opened: &mut Vec<Opened>) -> usize {
        let mut i = 0;
        if let Reading::Preface(n) = self.reading {
            let take = (PREFACE.len() - n).min(b.len());
            if b[..take] != PREFACE[n..n + take] {
                self.fail(PROTOCOL_ERROR, "not the HTTP/2 preface");
                return b.len();
            }
            i = take;
            self.reading = if n + take == PREFACE.len() {
                Reading::Settings
            } else {
                Reading::Preface(n + take)
            };
        }
        while self.failed.is_none() && b.len() - i >= 9 {
            let h = Head::parse(b[i..i + 9].try_into().unwrap_or(&[0; 9]));
            if h.len > MAX_FRAME {
                self.fail(FRAME_SIZE_ERROR, "a frame over SETTINGS_MAX_FRAME_SIZE");
                break;
            }
            if b.len() - i - 9 < h.len {
                break;
            }
            let payload = &b[i + 9..i + 9 + h.len];
            i += 9 + h.len;
            match self.frame(h, payload, now, opened) {
                Ok(()) => {}
                Err(Wrong::Connection(code, why)) => self.fail(code, why),
                Err(Wrong::Stream(id, code)) => self.reset(id, code),
            }
        }
        i
    }

    fn frame(
        &mut self,
        h: Head,
        p: &[u8],
        now: Instant,
        opened: &mut Vec<Opened>,
    ) -> Result<(), Wrong> {
        if self.reading == Reading::Settings {
            if h.ty != SETTINGS || h.flags & ACK != 0 {
                return Err(conn(PROTOCOL_ERROR, "the preface not followed by SETTINGS"));
            }
            self.reading = Reading::Frames;
        }
        if now.saturating_duration_since(self.since) >= RATE_WINDOW {
            self.since = now;
            self.control = 0;
            self.resets = 0;
        }
        if let Some(b) = &self.block {
            // §4.3, §6.10: a header block is contiguous.
            if h.ty != CONTINUATION || h.stream != b.stream {
                return Err(conn(PROTOCOL_ERROR, "a header block interrupted"));
            }
            return self.continuation(h, p, opened);
        }
        match h.ty {
            DATA => self.data(h, p),
            HEADERS => self.headers(h, p, opened),
            PRIORITY => self.priority(h, p),
            RST_STREAM => self.rst_stream(h, p),
            SETTINGS => self.settings(h, p),
            PUSH_PROMISE => Err(conn(PROTOCOL_ERROR, "a PUSH_PROMISE from a client")),
            PING => self.ping(h, p),
            GOAWAY => self.goaway(h, p),
            WINDOW_UPDATE => self.window_update(h, p),
            CONTINUATION => Err(conn(PROTOCOL_ERROR, "a CONTINUATION without HEADERS")),
            // §4.1, §5.5: unknown types are ignored.
            _ => Ok(()),
        }
    }

    fn count_control(&mut self) -> Result<(), Wrong> {
        self.control += 1;
        if self.control > self.cfg.rates.control {
            return Err(conn(
                ENHANCE_YOUR_CALM,
                "too many SETTINGS, PING, PRIORITY or empty DATA frames",
            ));
        }
        Ok(())
    }

    fn find(&self, id: u32) -> Option<usize> {
        self.streams.iter().position(|s| s.id == id)
    }

    fn recently(&self, id: u32) -> Option<Closed> {
        self.recent.iter().find(|(i, _)| *i == id).map(|&(_, c)| c)
    }

    /// The payload without its padding (§6.1, §6.2).
    fn unpad(h: Head, p: &[u8]) -> Result<&[u8], Wrong> {
        if h.flags & PADDED == 0 {
            return Ok(p);
        }
        let Some((&pad, rest)) = p.split_first() else {
            return Err(conn(
                FRAME_SIZE_ERROR,
                "a padded frame without its pad length",
            ));
        };
        if pad as usize >= p.len() {
            return Err(conn(PROTOCOL_ERROR, "padding as long as the payload"));
        }
        Ok(&rest[..rest.len() - pad as usize])
    }

    fn data(&mut self, h: Head, p: &[u8]) -> Result<(), Wrong> {
        if h.stream == 0 {
            return Err(conn(PROTOCOL_ERROR, "DATA on stream 0"));
        }
        if h.stream > self.highest {
            return Err(conn(PROTOCOL_ERROR, "DATA on an idle stream"));
        }
        // The whole frame counts against the connection's window, padding
        // included, whatever becomes of the stream (§6.9).
        let n = h.len as i64;
        if n > self.recv_window {
            return Err(conn(
                FLOW_CONTROL_ERROR,
                "DATA beyond the connection's window",
            ));
        }
        self.recv_window -= n;
        let body = Self::unpad(h, p)?;
        if body.is_empty() && h.flags & END_STREAM == 0 {
            self.count_control()?;
        }
        let Some(i) = self.find(h.stream) else {
            self.give_back(h.len as u32);
            return match self.recently(h.stream) {
                Some(Closed::ByUs) => Ok(()),
                _ => Err(Wrong::Stream(h.stream, STREAM_CLOSED)),
            };
        };
        let s = &mut self.streams[i];
        if !s.remote_open {
            self.give_back(h.len as u32);
            return Err(Wrong::Stream(h.stream, STREAM_CLOSED));
        }
        if n > s.recv_window {
            self.give_back(h.len as u32);
            return Err(Wrong::Stream(h.stream, FLOW_CONTROL_ERROR));
        }
        s.recv_window -= n;
        s.received += body.len() as u64;
        let end = h.flags & END_STREAM != 0;
        let cl_wrong = s
            .content_length
            .is_some_and(|cl| s.received > cl || (end && s.received != cl));
        if cl_wrong {
            self.give_back(h.len as u32);
            return Err(Wrong::Stream(h.stream, PROTOCOL_ERROR));
        }
        let padding = (h.len - body.len()) as u32;
        let dropped = if s.discard {
            body.len() as u32
        } else {
            s.inbox.extend_from_slice(body);
            0
        };
        if end {
            s.remote_open = false;
        }
        // Padding is spent on arrival, and so is a body nobody will read
        // (the response already went): their window goes back now.
        if padding + dropped > 0 {
            self.stream_give_back(i, padding + dropped);
        }
        self.reap(h.stream);
        Ok(())
    }

    fn headers(&mut self, h: Head, p: &[u8], opened: &mut Vec<Opened>) -> Result<(), Wrong> {
        if h.stream == 0 {
            return Err(conn(PROTOCOL_ERROR, "HEADERS on stream 0"));
        }
        if h.stream.is_multiple_of(2) {
            return Err(conn(PROTOCOL_ERROR, "a client stream with an even id"));
        }
        let mut frag = Self::unpad(h, p)?;
        let mut self_dependent = false;
        if h.flags & PRIORITY_FLAG != 0 {
            if frag.len() < 5 {
                return Err(conn(FRAME_SIZE_ERROR, "HEADERS too short for its priority"));
            }
            self_dependent = dependency(frag) == h.stream;
            frag = &frag[5..];
        }
        if h.stream <= self.highest && self.find(h.stream).is_none() {
            return Err(match self.recently(h.stream) {
                Some(_) => conn(STREAM_CLOSED, "HEADERS on a closed stream"),
                None => conn(PROTOCOL_ERROR, "a stream id lower than one already used"),
            });
        }
        let block = Block {
            stream: h.stream,
            end_stream: h.flags & END_STREAM != 0,
            bytes: frag.to_vec(),
            continuations: 0,
            self_dependent,
        };
        if h.flags & END_HEADERS == 0 {
            self.block = Some(block);
            return Ok(());
        }
        self.header_block(block, opened)
    }

    fn continuation(&mut self, h: Head, p: &[u8], opened: &mut Vec<Opened>) -> Result<(), Wrong> {
        let Some(b) = &mut self.block else {
            return Err(conn(PROTOCOL_ERROR, "a CONTINUATION without HEADERS"));
        };
        b.continuations += 1;
        if b.continuations > MAX_CONTINUATIONS {
            return Err(conn(
                ENHANCE_YOUR_CALM,
                "a header block in too many CONTINUATION frames",
            ));
        }
        b.bytes.extend_from_slice(p);
        // Encoders use Huffman only where it is shorter, so a block is no
        // longer than the field list it carries: one twice the list's
        // limit is not a request to answer 431 but memory to refuse.
        if b.bytes.len() > 2 * self.cfg.max_header_list.max(MAX_FRAME) {
            return Err(conn(
                ENHANCE_YOUR_CALM,
                "a header block over twice the header list's limit",
            ));
        }
        if h.flags & END_HEADERS == 0 {
            return Ok(());
        }
        let Some(b) = self.block.take() else {
            return Ok(());
        };
        self.header_block(b, opened)
    }

    /// A whole header block: a new request, or a stream's trailers.
    fn header_block(&mut self, b: Block, opened: &mut Vec<Opened>) -> Result<(), Wrong> {
        let existing = self.find(b.stream);
        let limit = self.cfg.max_header_list;
        let mut fields = if existing.is_some() {
            RequestHead::trailers(limit)
        } else {
            RequestHead::new(limit)
        };
        // Decoded to its end whatever becomes of the stream: the HPACK
        // table must stay in step with the client's.
        if self
            .decoder
            .decode(&b.bytes, |n, v| fields.field(n, v))
            .is_err()
        {
            return Err(conn(
                frame::COMPRESSION_ERROR,
                "a header block HPACK cannot decode",
            ));
        }
        if let Some(i) = existing {
            let s = &mut self.streams[i];
            if !s.remote_open {
                return Err(Wrong::Stream(b.stream, STREAM_CLOSED));
            }
            // Trailers: they end the stream (§8.1).
            if !b.end_stream {
                return Err(Wrong::Stream(b.stream, PROTOCOL_ERROR));
            }
            let lines = fields
                .finish_trailers()
                .map_err(|_| Wrong::Stream(b.stream, PROTOCOL_ERROR))?;
            if s.content_length.is_some_and(|cl| cl != s.received) {
                return Err(Wrong::Stream(b.stream, PROTOCOL_ERROR));
            }
            s.trailers = lines;
            s.remote_open = false;
            self.reap(b.stream);
            return Ok(());
        }
        // A new stream.
        self.highest = b.stream;
        if b.self_dependent {
            return Err(Wrong::Stream(b.stream, PROTOCOL_ERROR));
        }
        let refused = match self.going {
            Going::Final(last) => b.stream > last,
            _ => self.peer_going,
        };
        if refused {
            // After our last GOAWAY: ignored (§6.8).
            self.forget(b.stream, Closed::ByUs);
            return Ok(());
        }
        if self.streams.len() >= self.cfg.max_streams as usize {
            return Err(Wrong::Stream(b.stream, REFUSED_STREAM));
        }
        let oversized = fields.oversized;
        let content_length = fields.content_length;
        let head = if oversized {
            Vec::new()
        } else {
            fields
                .finish()
                .map_err(|_| Wrong::Stream(b.stream, PROTOCOL_ERROR))?
        };
        if b.end_stream && content_length.is_some_and(|cl| cl != 0) {
            return Err(Wrong::Stream(b.stream, PROTOCOL_ERROR));
        }
        self.streams.push(St {
            id: b.stream,
            remote_open: !b.end_stream,
            local_open: true,
            send_window: self.peer_initial_window,
            recv_window: DEFAULT_WINDOW,
            inbox: Vec::new(),
            held: 0,
            unacked: 0,
            content_length,
            received: 0,
            trailers: Vec::new(),
            discard: false,
        });
        opened.push(Opened {
            id: b.stream,
            head,
            end: b.end_stream,
            oversized,
        });
        Ok(())
    }

    fn priority(&mut self, h: Head, p: &[u8]) -> Result<(), Wrong> {
        if h.stream == 0 {
            return Err(conn(PROTOCOL_ERROR, "PRIORITY on stream 0"));
        }
        if p.len() != 5 {
            return Err(Wrong::Stream(h.stream, FRAME_SIZE_ERROR));
        }
        self.count_control()?;
        if dependency(p) == h.stream {
            return Err(Wrong::Stream(h.stream, PROTOCOL_ERROR));
        }
        // Priorities are a hint (§5.3, deprecated); we answer in order.
        Ok(())
    }

    fn rst_stream(&mut self, h: Head, p: &[u8]) -> Result<(), Wrong> {
        if h.stream == 0 {
            return Err(conn(PROTOCOL_ERROR, "RST_STREAM on stream 0"));
        }
        if p.len() != 4 {
            return Err(conn(
                FRAME_SIZE_ERROR,
                "an RST_STREAM frame not 4 bytes long",
            ));
        }
        if h.stream > self.highest {
            return Err(conn(PROTOCOL_ERROR, "RST_STREAM on an idle stream"));
        }
        self.resets += 1;
        if self.resets > self.cfg.rates.resets {
            return Err(conn(
                ENHANCE_YOUR_CALM,
                "too many streams reset (rapid reset)",
            ));
        }
        if let Some(i) = self.find(h.stream) {
            self.remove(i, Closed::Done);
        }
        Ok(())
    }

    fn settings(&mut self, h: Head, p: &[u8]) -> Result<(), Wrong> {
        if h.stream != 0 {
            return Err(conn(PROTOCOL_ERROR, "a SETTINGS frame on a stream"));
        }
        if h.flags & ACK != 0 {
            if !p.is_empty() {
                return Err(conn(
                    FRAME_SIZE_ERROR,
                    "a SETTINGS acknowledgement with a payload",
                ));
            }
            return Ok(());
        }
        if !p.len().is_multiple_of(6) {
            return Err(conn(
                FRAME_SIZE_ERROR,
                "a SETTINGS frame whose length is not a multiple of 6",
            ));
        }
        self.count_control()?;
        for s in p.chunks_exact(6) {
            let id = u16::from_be_bytes([s[0], s[1]]);
            let v = u32::from_be_bytes([s[2], s[3], s[4], s[5]]);
            match id {
                frame::ENABLE_PUSH if v > 1 => {
                    return Err(conn(
                        PROTOCOL_ERROR,
                        "SETTINGS_ENABLE_PUSH other than 0 or 1",
                    ));
                }
                frame::INITIAL_WINDOW_SIZE => {
                    let v = i64::from(v);
                    if v > MAX_WINDOW {
                        return Err(conn(
                            FLOW_CONTROL_ERROR,
                            "SETTINGS_INITIAL_WINDOW_SIZE over 2^31-1",
                        ));
                    }
                    // §6.9.2: every stream's window moves by the change.
                    let delta = v - self.peer_initial_window;
                    self.peer_initial_window = v;
                    for s in &mut self.streams {
                        s.send_window += delta;
                        if s.send_window > MAX_WINDOW {
                            return Err(conn(
                                FLOW_CONTROL_ERROR,
                                "a stream's window over 2^31-1 after SETTINGS",
                            ));
                        }
                    }
                }
                frame::MAX_FRAME_SIZE => {
                    if !FRAME_SIZES.contains(&v) {
                        return Err(conn(
                            PROTOCOL_ERROR,
                            "SETTINGS_MAX_FRAME_SIZE out of its range",
                        ));
                    }
                    self.peer_max_frame = v as usize;
                }
                // The table size binds our encoder, which keeps no table;
                // we push nothing, so the client's stream limit binds
                // nothing; the header list size is advice.
                frame::HEADER_TABLE_SIZE
                | frame::MAX_CONCURRENT_STREAMS
                | frame::MAX_HEADER_LIST_SIZE => {}
                // Unknown settings are ignored (§6.5.2).
                _ => {}
            }
        }
        frame::settings_ack(&mut self.out);
        Ok(())
    }

    fn ping(&mut self, h: Head, p: &[u8]) -> Result<(), Wrong> {
        if h.stream != 0 {
            return Err(conn(PROTOCOL_ERROR, "a PING frame on a stream"));
        }
        let Ok(payload) = <[u8; 8]>::try_from(p) else {
            return Err(conn(FRAME_SIZE_ERROR, "a PING frame not 8 bytes long"));
        };
        if h.flags & ACK != 0 {
            if payload == GOAWAY_PING && self.going == Going::First {
                frame::goaway(&mut self.out, self.highest, NO_ERROR);
                self.going = Going::Final(self.highest);
            }
            return Ok(());
        }
        self.count_control()?;
        frame::ping(&mut self.out, ACK, &payload);
        Ok(())
    }

    fn goaway(&mut self, h: Head, p: &[u8]) -> Result<(), Wrong> {
        if h.stream != 0 {
            return Err(conn(PROTOCOL_ERROR, "a GOAWAY frame on a stream"));
        }
        if p.len() < 8 {
            return Err(conn(FRAME_SIZE_ERROR, "a GOAWAY frame under 8 bytes"));
        }
        self.peer_going = true;
        Ok(())
    }

    fn window_update(&mut self, h: Head, p: &[u8]) -> Result<(), Wrong> {
        let Ok(b) = <[u8; 4]>::try_from(p) else {
            return Err(conn(
                FRAME_SIZE_ERROR,
                "a WINDOW_UPDATE frame not 4 bytes long",
            ));
        };
        let inc = i64::from(u32::from_be_bytes(b) & 0x7fff_ffff);
        if h.stream == 0 {
            if inc == 0 {
                return Err(conn(
                    PROTOCOL_ERROR,
                    "a WINDOW_UPDATE of 0 on the connection",
                ));
            }
            self.send_window += inc;
            if self.send_window > MAX_WINDOW {
                return Err(conn(
                    FLOW_CONTROL_ERROR,
                    "the connection's window over 2^31-1",
                ));
            }
            return Ok(());
        }
        if h.stream > self.highest {
            return Err(conn(PROTOCOL_ERROR, "WINDOW_UPDATE on an idle stream"));
        }
        let Some(i) = self.find(h.stream) else {
            // A closed stream's: it may cross our END_STREAM (§5.1).
            return Ok(());
        };
        if inc == 0 {
            return Err(Wrong::Stream(h.stream, PROTOCOL_ERROR));
        }
        let s = &mut self.streams[i];
        s.send_window += inc;
        if s.send_window > MAX_WINDOW {
            return Err(Wrong::Stream(h.stream, FLOW_CONTROL_ERROR));
        }
        Ok(())
    }

    // ---- the connection's end ----

    /// A connection error: GOAWAY with the code, and nothing more read.
    pub(super) fn fail(&mut self, code: u32, why: &'static str) {
        if self.failed.is_some() {
            return;
        }
        frame::goaway(&mut self.out, self.highest, code);
        self.failed = Some(Violation { code, why });
        self.streams.clear();
        self.block = None;
    }

    /// Asks for a graceful end (§6.8): GOAWAY with 2^31−1 and a PING; when
    /// the PING comes back, GOAWAY with the last stream taken; the open
    /// streams finish. `false` if it was asked for before.
    pub(super) fn go_away(&mut self) -> bool {
        if self.going != Going::No || self.failed.is_some() {
            return false;
        }
        frame::goaway(&mut self.out, MAX_WINDOW as u32, NO_ERROR);
        frame::ping(&mut self.out, 0, &GOAWAY_PING);
        self.going = Going::First;
        true
    }

    /// Ends now with GOAWAY `NO_ERROR` and the last stream taken (the
    /// idle deadline; a stalled body): what is in flight is dropped.
    pub(super) fn end_now(&mut self) {
        if !matches!(self.going, Going::Final(_)) && self.failed.is_none() {
            frame::goaway(&mut self.out, self.highest, NO_ERROR);
            self.going = Going::Final(self.highest);
        }
        self.streams.clear();
        self.block = None;
    }

    // ---- streams, for the engine ----

    /// Takes the body bytes that came for `id`. `None`: the stream is
    /// gone (reset, or the connection ended).
    pub(super) fn take_data(&mut self, id: u32) -> Option<Vec<u8>> {
        let i = self.find(id)?;
        let s = &mut self.streams[i];
        s.held += s.inbox.len() as u32;
        Some(std::mem::take(&mut s.inbox))
    }

    /// Whether the client ended its side of `id` (its body is all here).
    /// `None`: the stream is gone.
    pub(super) fn remote_ended(&self, id: u32) -> Option<bool> {
        self.find(id).map(|i| !self.streams[i].remote_open)
    }

    /// The trailer section `id` ended with, if any.
    pub(super) fn take_trailers(&mut self, id: u32) -> Vec<u8> {
        match self.find(id) {
            Some(i) => std::mem::take(&mut self.streams[i].trailers),
            None => Vec::new(),
        }
    }

    /// Nobody will read the rest of `id`'s body: what it holds and what
    /// comes goes back to the client's windows.
    pub(super) fn discard_body(&mut self, id: u32) {
        if let Some(i) = self.find(id) {
            self.discard(i);
        }
    }

    /// Stream `i`'s body is read no further: what it holds goes back to
    /// the windows now, and what still comes as it arrives.
    fn discard(&mut self, i: usize) {
        let s = &mut self.streams[i];
        if s.discard {
            return;
        }
        s.discard = true;
        let n = s.inbox.len() as u32 + s.held;
        s.inbox = Vec::new();
        s.held = 0;
        if n > 0 {
            self.stream_give_back(i, n);
        }
    }

    /// Gives `n` taken body bytes of `id` back to the client's windows.
    pub(super) fn release(&mut self, id: u32, n: usize) {
        if let Some(i) = self.find(id) {
            let s = &mut self.streams[i];
            let n = (n as u32).min(s.held);
            s.held -= n;
            self.stream_give_back(i, n);
        }
    }

    fn stream_give_back(&mut self, i: usize, n: u32) {
        let s = &mut self.streams[i];
        if s.remote_open {
            s.unacked += n;
            // Told in halves of the window, not byte by byte.
            if i64::from(s.unacked) >= DEFAULT_WINDOW / 2 {
                frame::window_update(&mut self.out, s.id, s.unacked);
                s.recv_window += i64::from(s.unacked);
                s.unacked = 0;
            }
        }
        self.give_back(n);
    }

    fn give_back(&mut self, n: u32) {
        self.recv_unacked += n;
        if i64::from(self.recv_unacked) >= DEFAULT_WINDOW / 2 {
            frame::window_update(&mut self.out, 0, self.recv_unacked);
            self.recv_window += i64::from(self.recv_unacked);
            self.recv_unacked = 0;
        }
    }

    /// Bytes of DATA `id` may send now: the smaller window, within the
    /// turn's budget. `None`: the stream is gone or its side has ended.
    pub(super) fn capacity(&self, id: u32) -> Option<usize> {
        let s = &self.streams[self.find(id)?];
        if !s.local_open {
            return None;
        }
        let w = s.send_window.min(self.send_window).max(0) as usize;
        Some(w.min(self.budget))
    }

    /// HEADERS (and CONTINUATIONs) for `id` with the block `encode`
    /// writes; END_STREAM when `end`. `false`: the stream is gone.
    pub(super) fn send_headers(
        &mut self,
        id: u32,
        end: bool,
        encode: impl FnOnce(&mut Vec<u8>),
    ) -> bool {
        let Some(i) = self.find(id) else {
            return false;
        };
        if !self.streams[i].local_open {
            return false;
        }
        self.room_for(1024);
        // Encoded in place after room for the frame head, which is filled
        // in once the length is known (a block that needs CONTINUATIONs
        // is taken out and split).
        let start = self.out.len();
        self.out.extend_from_slice(&[0; 9]);
        encode(&mut self.out);
        let len = self.out.len() - start - 9;
        if len <= self.peer_max_frame {
            let flags = END_HEADERS | if end { END_STREAM } else { 0 };
            self.patch_head(start, len, HEADERS, flags, id);
        } else {
            let block = self.out.split_off(start + 9);
            self.out.truncate(start);
            frame::header_block(&mut self.out, id, &block, end, self.peer_max_frame);
        }
        if end {
            self.end_local(i);
        }
        true
    }

    /// `out` is a new buffer each turn (the engine takes it whole, without
    /// a copy): sized once for what comes, not grown push by push (one
    /// allocation a turn instead of several: callgrind counted about
    /// 1,000 instructions a request in reallocation with one request a
    /// turn).
    fn room_for(&mut self, n: usize) {
        if self.out.capacity() == 0 {
            self.out.reserve(n);
        }
    }

    fn patch_head(&mut self, at: usize, len: usize, ty: u8, flags: u8, stream: u32) {
        self.out[at..at + 9].copy_from_slice(&frame::head_bytes(len, ty, flags, stream));
    }

    /// One DATA frame for `id`, its payload appended by `fill` (at most
    /// `max` bytes, at most `capacity`; `fill` says whether they are the
    /// last). Returns how many went and whether they were the last.
    pub(super) fn send_data_with(
        &mut self,
        id: u32,
        max: usize,
        fill: impl FnOnce(&mut Vec<u8>, usize) -> std::io::Result<bool>,
    ) -> std::io::Result<(usize, bool)> {
        let Some(i) = self.find(id) else {
            return Ok((0, false));
        };
        if !self.streams[i].local_open {
            return Ok((0, false));
        }
        let max = max.min(self.peer_max_frame);
        self.room_for(1024);
        let start = self.out.len();
        self.out.extend_from_slice(&[0; 9]);
        let last = match fill(&mut self.out, max) {
            Ok(last) => last,
            Err(e) => {
                self.out.truncate(start);
                return Err(e);
            }
        };
        let n = self.out.len() - start - 9;
        if n == 0 && !last {
            self.out.truncate(start);
            return Ok((0, false));
        }
        self.patch_head(start, n, DATA, if last { END_STREAM } else { 0 }, id);
        let s = &mut self.streams[i];
        s.send_window -= n as i64;
        self.send_window -= n as i64;
        self.budget = self.budget.saturating_sub(n);
        if last {
            self.end_local(i);
        }
        Ok((n, last))
    }

    /// DATA for `id` (at most `capacity` bytes); END_STREAM when `end`.
    #[cfg(test)]
    pub(super) fn send_data(&mut self, id: u32, data: &[u8], end: bool) {
        let mut left = data;
        loop {
            let k = left.len().min(self.peer_max_frame);
            let (chunk, rest) = left.split_at(k);
            let last = end && rest.is_empty();
            let r = self.send_data_with(id, k, |out, _| {
                out.extend_from_slice(chunk);
                Ok(last)
            });
            left = rest;
            if r.is_err() || left.is_empty() {
                return;
            }
        }
    }

    /// Our side of stream `i` has ended.
    fn end_local(&mut self, i: usize) {
        self.streams[i].local_open = false;
        // A body still coming is not read now: the response went.
        self.discard(i);
        let id = self.streams[i].id;
        self.reap(id);
    }

    /// A stream error: RST_STREAM, and the stream is forgotten (§5.4.2).
    pub(super) fn reset(&mut self, id: u32, code: u32) {
        frame::rst_stream(&mut self.out, id, code);
        match self.find(id) {
            Some(i) => self.remove(i, Closed::ByUs),
            None => self.forget(id, Closed::ByUs),
        }
    }

    /// Forgets a stream ended both ways.
    fn reap(&mut self, id: u32) {
        if let Some(i) = self.find(id) {
            let s = &self.streams[i];
            if !s.remote_open && !s.local_open {
                self.remove(i, Closed::Done);
            }
        }
    }

    /// Takes stream `i` out: what it held no longer counts against the
    /// connection's window, and it is remembered as closed `how`.
    fn remove(&mut self, i: usize, how: Closed) {
        let s = self.streams.swap_remove(i);
        self.give_back(s.inbox.len() as u32 + s.held);
        self.forget(s.id, how);
    }

    fn forget(&mut self, id: u32, how: Closed) {
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back((id, how));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(ty: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        frame::head(&mut f, payload.len(), ty, flags, stream);
        f.extend_from_slice(payload);
        f
    }

    fn session() -> Session {
        let mut s = Session::new(config(2), Instant::now());
        let mut first = PREFACE.to_vec();
        first.extend(frame(SETTINGS, 0, 0, &[]));
        let mut o = Vec::new();
        s.take_in(&first, Instant::now(), &mut o);
        assert!(s.set_up());
        s.out.clear();
        s
    }

    /// :method GET, :scheme http, :path /, :authority t.
    const GET: &[u8] = b"\x82\x86\x84\x41\x01t";

    fn frames(out: &[u8]) -> Vec<(u8, u8, u32, Vec<u8>)> {
        let mut v = Vec::new();
        let mut b = out;
        while b.len() >= 9 {
            let h = Head::parse(b[..9].try_into().unwrap());
            v.push((h.ty, h.flags, h.stream, b[9..9 + h.len].to_vec()));
            b = &b[9 + h.len..];
        }
        v
    }

    fn goaway_code(s: &Session) -> u32 {
        let f = frames(&s.out);
        let g = f.iter().find(|f| f.0 == GOAWAY).expect("a GOAWAY");
        u32::from_be_bytes(g.3[4..8].try_into().unwrap())
    }

    #[test]
    fn a_request_comes_out_as_http11_text_whatever_the_pieces() {
        let mut s = session();
        let f = frame(HEADERS, END_HEADERS | END_STREAM, 1, GET);
        let mut o = Vec::new();
        for piece in f.chunks(4) {
            s.take_in(piece, Instant::now(), &mut o);
        }
        assert_eq!(o.len(), 1);
        assert_eq!(o[0].head, b"GET / HTTP/1.1\r\nhost: t\r\n\r\n");
        assert!(o[0].end);
    }

    #[test]
    fn a_body_arrives_and_its_window_goes_back_in_halves() {
        let mut s = session();
        let mut o = Vec::new();
        s.take_in(&frame(HEADERS, END_HEADERS, 1, GET), Instant::now(), &mut o);
        s.take_in(&frame(DATA, 0, 1, &[7; 16_000]), Instant::now(), &mut o);
        s.take_in(&frame(DATA, 0, 1, &[7; 16_000]), Instant::now(), &mut o);
        assert_eq!(s.take_data(1).unwrap().len(), 32_000);
        s.release(1, 32_000);
        assert!(frames(&s.out).is_empty(), "under half: nothing told yet");
        s.take_in(
            &frame(DATA, END_STREAM, 1, &[7; 1000]),
            Instant::now(),
            &mut o,
        );
        assert_eq!(s.take_data(1).unwrap().len(), 1000);
        s.release(1, 1000);
        let f = frames(&s.out);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!((f[0].0, f[0].2), (WINDOW_UPDATE, 0));
        assert_eq!(s.remote_ended(1), Some(true));
    }

    #[test]
    fn data_beyond_the_windows_is_a_flow_control_error() {
        let mut s = session();
        let mut o = Vec::new();
        s.take_in(&frame(HEADERS, END_HEADERS, 1, GET), Instant::now(), &mut o);
        for _ in 0..4 {
            s.take_in(&frame(DATA, 0, 1, &[0; 16_000]), Instant::now(), &mut o);
        }
        assert!(s.failed.is_none());
        // Held, not given back: 64 000 of 65 535 are spent.
        s.take_in(&frame(DATA, 0, 1, &[0; 16_000]), Instant::now(), &mut o);
        assert_eq!(goaway_code(&s), FLOW_CONTROL_ERROR);
    }

    #[test]
    fn responses_wait_for_the_peers_windows() {
        let mut s = session();
        let mut o = Vec::new();
        s.take_in(
            &frame(HEADERS, END_HEADERS | END_STREAM, 1, GET),
            Instant::now(),
            &mut o,
        );
        assert_eq!(s.capacity(1), Some(65_535));
        s.send_data(1, &[0; 65_535], false);
        assert_eq!(s.capacity(1), Some(0));
        s.take_in(
            &frame(WINDOW_UPDATE, 0, 1, &10u32.to_be_bytes()),
            Instant::now(),
            &mut o,
        );
        assert_eq!(
            s.capacity(1),
            Some(0),
            "the connection's window is spent too"
        );
        s.take_in(
            &frame(WINDOW_UPDATE, 0, 0, &5u32.to_be_bytes()),
            Instant::now(),
            &mut o,
        );
        assert_eq!(s.capacity(1), Some(5));
        s.send_data(1, &[0; 5], true);
        assert_eq!(s.capacity(1), None, "ended");
        assert!(s.streams.is_empty());
    }

    #[test]
    fn a_changed_initial_window_moves_every_streams_window() {
        let mut s = session();
        let mut o = Vec::new();
        s.take_in(
            &frame(HEADERS, END_HEADERS | END_STREAM, 1, GET),
            Instant::now(),
            &mut o,
        );
        s.take_in(
            &frame(SETTINGS, 0, 0, &[0, 4, 0, 0, 0, 10]),
            Instant::now(),
            &mut o,
        );
        assert_eq!(s.capacity(1), Some(10));
    }

    #[test]
    fn gives_each_wrong_frame_the_code_the_rfc_gives_it() {
        let connection_errors: Vec<(Vec<u8>, u32)> = vec![
            (frame(PING, 0, 0, b"seven!!"), FRAME_SIZE_ERROR),
            (frame(PING, 0, 1, b"12345678"), PROTOCOL_ERROR),
            (frame(SETTINGS, ACK, 0, &[0; 6]), FRAME_SIZE_ERROR),
            (frame(SETTINGS, 0, 0, &[0; 5]), FRAME_SIZE_ERROR),
            (frame(SETTINGS, 0, 1, &[]), PROTOCOL_ERROR),
            (
                frame(SETTINGS, 0, 0, &[0, 4, 0x80, 0, 0, 0]),
                FLOW_CONTROL_ERROR,
            ),
            (frame(SETTINGS, 0, 0, &[0, 2, 0, 0, 0, 2]), PROTOCOL_ERROR),
            (
                frame(SETTINGS, 0, 0, &[0, 5, 0, 0, 0x3f, 0xff]),
                PROTOCOL_ERROR,
            ),
            (frame(RST_STREAM, 0, 1, &[0, 0, 0, 8]), PROTOCOL_ERROR),
            (frame(WINDOW_UPDATE, 0, 0, &[0, 0, 1]), FRAME_SIZE_ERROR),
            (frame(WINDOW_UPDATE, 0, 0, &[0, 0, 0, 0]), PROTOCOL_ERROR),
            (
                frame(WINDOW_UPDATE, 0, 0, &0x7fff_ffffu32.to_be_bytes()),
                FLOW_CONTROL_ERROR,
            ),
            (frame(GOAWAY, 0, 0, &[0; 7]), FRAME_SIZE_ERROR),
            (
                frame(PUSH_PROMISE, END_HEADERS, 1, &[0, 0, 0, 2]),
                PROTOCOL_ERROR,
            ),
            (frame(DATA, 0, 0, b"x"), PROTOCOL_ERROR),
            (frame(DATA, 0, 1, b"x"), PROTOCOL_ERROR),
            (frame(HEADERS, END_HEADERS, 0, GET), PROTOCOL_ERROR),
            (frame(HEADERS, END_HEADERS, 2, GET), PROTOCOL_ERROR),
            (frame(CONTINUATION, END_HEADERS, 1, GET), PROTOCOL_ERROR),
            (
                frame(HEADERS, END_HEADERS, 1, &[0xfe]),
                frame::COMPRESSION_ERROR,
            ),
            (frame(PING, 0, 0, &[0; MAX_FRAME + 1]), FRAME_SIZE_ERROR),
        ];
        for (f, code) in connection_errors {
            let mut s = session();
            s.take_in(&f, Instant::now(), &mut Vec::new());
            assert_eq!(goaway_code(&s), code, "{:?}", s.failed);
            assert!(s.is_over());
        }
    }

    #[test]
    fn a_stream_error_resets_the_stream_and_the_connection_serves_on() {
        let mut s = session();
        let mut o = Vec::new();
        // A malformed request (an uppercase name: literal, new name).
        let mut bad = GET.to_vec();
        bad.extend_from_slice(b"\x00\x01X\x011");
        s.take_in(
            &frame(HEADERS, END_HEADERS | END_STREAM, 1, &bad),
            Instant::now(),
            &mut o,
        );
        s.take_in(
            &frame(HEADERS, END_HEADERS | END_STREAM, 3, GET),
            Instant::now(),
            &mut o,
        );
        let f = frames(&s.out);
        assert_eq!((f[0].0, f[0].2), (RST_STREAM, 1));
        assert_eq!(o.iter().map(|o| o.id).collect::<Vec<_>>(), [3]);
        // DATA on the stream we reset is ignored; on one the client ended,
        // STREAM_CLOSED.
        s.out.clear();
        s.take_in(&frame(DATA, 0, 1, b"late"), Instant::now(), &mut o);
        assert!(frames(&s.out).is_empty());
        s.take_in(&frame(DATA, 0, 3, b"late"), Instant::now(), &mut o);
        let f = frames(&s.out);
        assert_eq!((f[0].0, f[0].2), (RST_STREAM, 3));
        assert_eq!(f[0].3, STREAM_CLOSED.to_be_bytes());
        assert!(!s.is_over());
    }

    #[test]
    fn more_streams_than_the_limit_are_refused() {
        let mut s = session();
        let mut o = Vec::new();
        for id in [1, 3, 5] {
            s.take_in(
                &frame(HEADERS, END_HEADERS, id, GET),
                Instant::now(),
                &mut o,
            );
        }
        assert_eq!(o.len(), 2);
        let f = frames(&s.out);
        assert_eq!((f[0].0, f[0].2), (RST_STREAM, 5));
        assert_eq!(f[0].3, REFUSED_STREAM.to_be_bytes());
    }

    #[test]
    fn a_header_block_in_continuations_is_one_request_and_endless_ones_a_flood() {
        let mut s = session();
        let mut o = Vec::new();
        s.take_in(
            &frame(HEADERS, END_STREAM, 1, &GET[..2]),
            Instant::now(),
            &mut o,
        );
        s.take_in(
            &frame(CONTINUATION, 0, 1, &GET[2..4]),
            Instant::now(),
            &mut o,
        );
        s.take_in(
            &frame(CONTINUATION, END_HEADERS, 1, &GET[4..]),
            Instant::now(),
            &mut o,
        );
        assert_eq!(o.len(), 1);
        let mut s = session();
        s.take_in(&frame(HEADERS, 0, 1, &GET[..2]), Instant::now(), &mut o);
        for _ in 0..MAX_CONTINUATIONS {
            s.take_in(&frame(CONTINUATION, 0, 1, &[]), Instant::now(), &mut o);
        }
        assert!(s.failed.is_none());
        s.take_in(&frame(CONTINUATION, 0, 1, &[]), Instant::now(), &mut o);
        assert_eq!(goaway_code(&s), ENHANCE_YOUR_CALM);
    }

    #[test]
    fn a_ping_flood_is_told_to_calm_down_and_the_count_starts_again_each_second() {
        let t = Instant::now();
        let mut s = session();
        // The first SETTINGS was the first of 10.
        for _ in 0..9 {
            s.take_in(&frame(PING, 0, 0, b"12345678"), t, &mut Vec::new());
        }
        assert!(s.failed.is_none());
        s.take_in(&frame(PING, 0, 0, b"12345678"), t, &mut Vec::new());
        assert_eq!(goaway_code(&s), ENHANCE_YOUR_CALM);
        let mut s = session();
        for _ in 0..9 {
            s.take_in(&frame(PING, 0, 0, b"12345678"), t, &mut Vec::new());
        }
        s.take_in(
            &frame(PING, 0, 0, b"12345678"),
            t + 2 * RATE_WINDOW,
            &mut Vec::new(),
        );
        assert!(s.failed.is_none());
    }

    #[test]
    fn a_graceful_goaway_takes_streams_until_the_ping_comes_back() {
        let mut s = session();
        let mut o = Vec::new();
        assert!(s.go_away());
        let f = frames(&s.out);
        assert_eq!(f[0].0, GOAWAY);
        assert_eq!(&f[0].3[..4], &[0x7f, 0xff, 0xff, 0xff]);
        assert_eq!(f[1].0, PING);
        s.out.clear();
        s.take_in(&frame(HEADERS, END_HEADERS, 1, GET), Instant::now(), &mut o);
        s.take_in(&frame(PING, ACK, 0, &GOAWAY_PING), Instant::now(), &mut o);
        let f = frames(&s.out);
        assert_eq!(f[0].0, GOAWAY);
        assert_eq!(&f[0].3[..4], &[0, 0, 0, 1]);
        s.take_in(
            &frame(HEADERS, END_HEADERS | END_STREAM, 3, GET),
            Instant::now(),
            &mut o,
        );
        assert_eq!(o.len(), 1, "stream 3 came after the last GOAWAY");
        assert!(!s.is_over(), "stream 1 is still open");
        s.reset(1, frame::INTERNAL_ERROR);
        assert!(s.is_over());
    }

    #[test]
    fn content_length_must_match_the_data() {
        let mut s = session();
        let mut o = Vec::new();
        let mut h = GET.to_vec();
        h.extend_from_slice(b"\x5c\x0210");
        s.take_in(&frame(HEADERS, END_HEADERS, 1, &h), Instant::now(), &mut o);
        s.take_in(&frame(DATA, END_STREAM, 1, b"four"), Instant::now(), &mut o);
        let f = frames(&s.out);
        assert_eq!((f[0].0, f[0].2), (RST_STREAM, 1));
        assert_eq!(f[0].3, PROTOCOL_ERROR.to_be_bytes());
    }

    fn config(max_streams: u32) -> Config {
        Config {
            max_streams,
            max_header_list: 16 * 1024,
            rates: Rates {
                control: 10,
                resets: 10,
            },
        }
    }

    #[test]
    fn a_parked_session_goes_on_in_another_with_its_hpack_table_and_windows() {
        let mut s = session();
        let mut o = Vec::new();
        // :path /b.txt with incremental indexing: entry 62 of the table.
        let mut h = b"\x82\x86\x41\x01t".to_vec();
        h.extend_from_slice(b"\x44\x06/b.txt");
        s.take_in(
            &frame(HEADERS, END_HEADERS | END_STREAM, 1, &h),
            Instant::now(),
            &mut o,
        );
        s.take_in(
            &frame(SETTINGS, 0, 0, &[0, 4, 0, 0, 0x10, 0]),
            Instant::now(),
            &mut o,
        );
        assert!(!s.movable(), "stream 1 is open");
        assert!(s.send_headers(1, true, |b| hpack::status(b, 200)));
        s.out.clear();
        assert!(s.movable());
        let state = s.park();
        let mut n = Session::resume(config(2), &state, Instant::now()).unwrap();
        assert!(n.set_up());
        assert!(n.out.is_empty(), "the same settings: nothing to announce");
        // Index 62 on the new side: the table came along.
        let mut o = Vec::new();
        n.take_in(
            &frame(
                HEADERS,
                END_HEADERS | END_STREAM,
                3,
                b"\x82\x86\xbe\x41\x01t",
            ),
            Instant::now(),
            &mut o,
        );
        assert_eq!(o[0].head, b"GET /b.txt HTTP/1.1\r\nhost: t\r\n\r\n");
        assert_eq!(
            n.capacity(3),
            Some(4096),
            "the client's initial window came along"
        );
        // A stream id at or under the last one is refused as before.
        n.take_in(
            &frame(HEADERS, END_HEADERS | END_STREAM, 1, GET),
            Instant::now(),
            &mut o,
        );
        assert_eq!(goaway_code(&n), STREAM_CLOSED);
    }

    #[test]
    fn a_resumed_session_announces_settings_that_changed_and_refuses_a_bad_state() {
        let s = session();
        let state = s.park();
        let n = Session::resume(config(5), &state, Instant::now()).unwrap();
        let f = frames(&n.out);
        assert_eq!(f[0].0, SETTINGS);
        assert_eq!(&f[0].3[..6], &[0, 3, 0, 0, 0, 5]);
        for cut in 0..state.len() {
            assert!(Session::resume(config(2), &state[..cut], Instant::now()).is_err());
        }
        let mut longer = state.clone();
        longer.push(0);
        assert!(Session::resume(config(2), &longer, Instant::now()).is_err());
        let mut other = state.clone();
        other[0] = 2;
        assert!(Session::resume(config(2), &other, Instant::now()).is_err());
    }

    #[test]
    fn a_header_block_larger_than_twice_the_list_limit_is_refused_before_it_ends() {
        let mut s = session();
        let mut o = Vec::new();
        s.take_in(&frame(HEADERS, 0, 1, &[0; 16_000]), Instant::now(), &mut o);
        s.take_in(
            &frame(CONTINUATION, 0, 1, &[0; 16_000]),
            Instant::now(),
            &mut o,
        );
        assert!(s.failed.is_none());
        s.take_in(
            &frame(CONTINUATION, 0, 1, &[0; 16_000]),
            Instant::now(),
            &mut o,
        );
        assert_eq!(s.failed.map(|v| v.code), Some(ENHANCE_YOUR_CALM));
    }
}
