//! permessage-deflate (RFC 7692) beneath tungstenite, which has no
//! extensions and refuses a frame with RSV1 set. Written here, on frames,
//! because no maintained crate adds it to tungstenite and replacing
//! tungstenite (sections 1 to 10 of Autobahn pass on it) for this would
//! cost more than it saves; the compression itself is flate2's (zlib-rs).
//!
//! Inbound, a compressed message's frames are unmasked and inflated, and
//! given to tungstenite as plain frames (masked with a zero key, as a
//! client's must be) of at most `max_frame` bytes; what tungstenite then
//! checks (UTF-8, control frames, fragment order, sizes) it checks on the
//! inflated message. Anything else (control frames, uncompressed
//! messages, frames that break the rules) goes through untouched, for
//! tungstenite to judge. A message inflates to at most `max_message` + 1
//! bytes: past it inflating stops and tungstenite closes with 1009.
//!
//! Outbound, tungstenite's frames are read back and each whole data
//! message compressed (a `Sync` flush, its `00 00 ff ff` tail taken off,
//! RSV1 set), small ones too: RFC 7692 would let one that does not shrink
//! go as it was, but clients take compressed messages most surely (so do
//! Python's websockets and Chromium), and a few bytes is all it costs. No
//! context is kept from message to message (both ways agreed
//! in the handshake), so the compressors are the worker's, one per window
//! size, reset for each message.

use std::cell::RefCell;
use std::io;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::frame::{Header, header};

/// Inflated bytes per frame given to tungstenite, at most.
const FRAME: usize = 1 << 20;
/// The empty stored block a sync flush ends with (RFC 7692 §7.2.1).
const TAIL: [u8; 4] = [0, 0, 0xff, 0xff];

/// Where the client's stream stands.
enum Message {
    /// Between messages.
    None,
    /// Inside an uncompressed fragmented message.
    Plain,
    /// Inside a compressed one: its opcode until its first frame is given,
    /// and how much it has inflated to.
    Compressed {
        inflate: Box<Decompress>,
        opcode: Option<u8>,
        total: usize,
    },
}

pub(crate) struct Deflate {
    window_bits: u8,
    max_frame: usize,
    max_message: usize,
    /// Client bytes not yet a whole frame.
    raw: Vec<u8>,
    message: Message,
    /// A frame too large to hold: from there on everything goes to
    /// tungstenite as it came, and it closes the connection.
    passthrough: bool,
    /// Our bytes not yet a whole frame.
    out_raw: Vec<u8>,
    /// Inside an outgoing fragmented message (sent as it is).
    out_fragmented: bool,
}

/// Appends a frame: FIN, RSV1, the opcode, the length, and a zero mask
/// key when `masked` (a client's frame, as tungstenite wants one).
fn frame(out: &mut Vec<u8>, fin: bool, rsv1: bool, opcode: u8, masked: bool, payload: &[u8]) {
    out.push((u8::from(fin) << 7) | (u8::from(rsv1) << 6) | opcode);
    let m = if masked { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(m | n as u8),
        n if n < 65536 => {
            out.push(m | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(m | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if masked {
        out.extend_from_slice(&[0; 4]);
    }
    out.extend_from_slice(payload);
}

/// `bytes` with the client's mask taken off, eight bytes at a time: a
/// byte loop was a third of an echo worker's time in the debug build the
/// tests run (where nothing is vectorised).
fn unmasked(bytes: &[u8], key: [u8; 4]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let [a, b, c, d] = key;
    let wide = [a, b, c, d, a, b, c, d];
    let word = u64::from_ne_bytes(wide);
    let mut words = out.chunks_exact_mut(8);
    for w in &mut words {
        let x = u64::from_ne_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]) ^ word;
        w.copy_from_slice(&x.to_ne_bytes());
    }
    for (b, k) in words.into_remainder().iter_mut().zip(wide) {
        *b ^= k;
    }
    out
}

thread_local! {
    /// The worker's compressors, by window size (9 to 15 bits).
    static COMPRESSORS: RefCell<[Option<Compress>; 7]> = const { RefCell::new([None, None, None, None, None, None, None]) };
}

/// `payload` compressed as one message, its tail off.
fn compress(payload: &[u8], window_bits: u8) -> Option<Vec<u8>> {
    COMPRESSORS.with_borrow_mut(|all| {
        let slot = &mut all[usize::from(window_bits.clamp(9, 15) - 9)];
        let c = slot.get_or_insert_with(|| {
            Compress::new_with_window_bits(Compression::fast(), false, window_bits.clamp(9, 15))
        });
        c.reset();
        let mut out = Vec::with_capacity(payload.len() / 2 + 64);
        loop {
            let done = c.total_in() as usize;
            if out.len() == out.capacity() {
                out.reserve(out.capacity().max(64));
            }
            c.compress_vec(&payload[done..], &mut out, FlushCompress::Sync)
                .ok()?;
            if c.total_in() as usize == payload.len() && out.len() < out.capacity() {
                break;
            }
        }
        if !out.ends_with(&TAIL) {
            return None;
        }
        out.truncate(out.len() - TAIL.len());
        Some(out)
    })
}

impl Deflate {
    pub(crate) fn new(window_bits: u8, max_frame: usize, max_message: usize) -> Deflate {
        Deflate {
            window_bits,
            max_frame: max_frame.clamp(1, FRAME),
            max_message,
            raw: Vec::new(),
            message: Message::None,
            passthrough: false,
            out_raw: Vec::new(),
            out_fragmented: false,
        }
    }

    /// Takes client bytes; appends what tungstenite is to read to `out`.
    pub(crate) fn inbound(&mut self, bytes: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        if self.passthrough {
            out.extend_from_slice(bytes);
            return Ok(());
        }
        self.raw.extend_from_slice(bytes);
        let mut at = 0;
        while let Some(h) = header(&self.raw[at..]) {
            if h.payload > self.max_frame as u64 {
                // tungstenite refuses it (1009) from its header.
                self.passthrough = true;
                out.extend_from_slice(&self.raw[at..]);
                self.raw.clear();
                return Ok(());
            }
            let end = at + h.header + h.payload as usize;
            if self.raw.len() < end {
                break;
            }
            let whole = at..end;
            at = end;
            self.one_inbound(&h, whole, out)?;
        }
        self.raw.drain(..at);
        Ok(())
    }

    fn one_inbound(
        &mut self,
        h: &Header,
        whole: std::ops::Range<usize>,
        out: &mut Vec<u8>,
    ) -> io::Result<()> {
        let raw = &self.raw[whole.clone()];
        let ours = h.opcode < 8 && !h.rsv23 && h.mask.is_some();
        match (&mut self.message, h.opcode, h.rsv1) {
            (Message::None, 1 | 2, true) if ours => {
                self.message = Message::Compressed {
                    inflate: Box::new(Decompress::new(false)),
                    opcode: Some(h.opcode),
                    total: 0,
                };
            }
            (Message::Compressed { .. }, 0, false) if ours => {}
            (Message::None, 1 | 2, false) if ours => {
                if !h.fin {
                    self.message = Message::Plain;
                }
                out.extend_from_slice(raw);
                return Ok(());
            }
            (Message::Plain, 0, false) if ours => {
                if h.fin {
                    self.message = Message::None;
                }
                out.extend_from_slice(raw);
                return Ok(());
            }
            // Control frames, and whatever breaks the rules: tungstenite's.
            _ => {
                out.extend_from_slice(raw);
                return Ok(());
            }
        }
        let mut payload = unmasked(&raw[h.header..], h.mask.unwrap_or_default());
        if h.fin {
            payload.extend_from_slice(&TAIL);
        }
        let Message::Compressed {
            inflate,
            opcode,
            total,
        } = &mut self.message
        else {
            return Ok(());
        };
        let room = (self.max_message + 1).saturating_sub(*total);
        let inflated = inflate_some(inflate, &payload, room)?;
        *total += inflated.len();
        let mut chunks = inflated.chunks(self.max_frame).peekable();
        if chunks.peek().is_none() && h.fin {
            frame(out, true, false, opcode.take().unwrap_or(0), true, &[]);
        }
        while let Some(c) = chunks.next() {
            let last = chunks.peek().is_none() && h.fin;
            frame(out, last, false, opcode.take().unwrap_or(0), true, c);
        }
        if h.fin {
            self.message = Message::None;
        }
        Ok(())
    }

    /// Takes tungstenite's bytes; appends what goes to the client to `out`.
    pub(crate) fn outbound(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        self.out_raw.extend_from_slice(bytes);
        let mut at = 0;
        while let Some(h) = header(&self.out_raw[at..]) {
            let end = at + h.header + h.payload as usize;
            if self.out_raw.len() < end {
                break;
            }
            let raw = &self.out_raw[at..end];
            at = end;
            let whole_message = h.fin && !self.out_fragmented && matches!(h.opcode, 1 | 2);
            if h.opcode < 8 && h.opcode != 0 {
                self.out_fragmented = !h.fin;
            } else if h.opcode == 0 && h.fin {
                self.out_fragmented = false;
            }
            let packed = (whole_message && !h.rsv1 && h.mask.is_none())
                .then(|| compress(&raw[h.header..], self.window_bits))
                .flatten();
            match packed {
                Some(p) => frame(out, true, true, h.opcode, false, &p),
                None => out.extend_from_slice(raw),
            }
        }
        self.out_raw.drain(..at);
    }
}

/// Inflates `input` (all of it, or until `room` bytes came out).
fn inflate_some(d: &mut Decompress, input: &[u8], room: usize) -> io::Result<Vec<u8>> {
    let mut out: Vec<u8> =
        Vec::with_capacity((input.len() * 4).clamp(64, 1 << 16).min(room.max(1)));
    let start = d.total_in();
    loop {
        let used = (d.total_in() - start) as usize;
        if out.len() >= room {
            out.truncate(room);
            return Ok(out);
        }
        if out.len() == out.capacity() {
            let more = out.capacity().min(room - out.len()).max(64);
            out.reserve(more);
        }
        let before = out.len();
        let status = d
            .decompress_vec(&input[used..], &mut out, FlushDecompress::Sync)
            .map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("permessage-deflate: {e}"),
                )
            })?;
        let used = (d.total_in() - start) as usize;
        let stuck = out.len() == before && used == input.len();
        if status == Status::StreamEnd
            || stuck
            || (used == input.len() && out.len() < out.capacity())
        {
            return Ok(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client_frame(fin: bool, rsv1: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        // A real mask, as a client sends.
        let key = [0x37, 0xfa, 0x21, 0x3d];
        let mut g = Vec::new();
        frame(&mut g, fin, rsv1, opcode, true, payload);
        let hlen = g.len() - payload.len();
        g[hlen - 4..hlen].copy_from_slice(&key);
        for (i, b) in g[hlen..].iter_mut().enumerate() {
            *b ^= key[i % 4];
        }
        g
    }

    /// Raw deflate of `data` as a client compresses one message.
    fn deflated(data: &[u8]) -> Vec<u8> {
        let mut c = Compress::new(Compression::default(), false);
        let mut out = Vec::with_capacity(data.len() + 64);
        c.compress_vec(data, &mut out, FlushCompress::Sync).unwrap();
        assert!(out.ends_with(&TAIL));
        out.truncate(out.len() - 4);
        out
    }

    /// The (fin, opcode, payload) of each plain frame tungstenite is given.
    fn frames(mut b: &[u8]) -> Vec<(bool, u8, Vec<u8>)> {
        let mut v = Vec::new();
        while let Some(h) = header(b) {
            assert!(!h.rsv1);
            // Inflated frames carry a zero key; those passed on, the client's.
            let key = h.mask.expect("masked, as a client's frame");
            let end = h.header + h.payload as usize;
            let payload = b[h.header..end]
                .iter()
                .enumerate()
                .map(|(i, x)| x ^ key[i % 4]);
            v.push((h.fin, h.opcode, payload.collect()));
            b = &b[end..];
        }
        v
    }

    #[test]
    fn unmasking_by_words_gives_what_a_byte_loop_gives() {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        let data: Vec<u8> = (0..=255u8).cycle().take(1031).collect();
        // Every remainder past the whole words, and a long run.
        for len in (0..=17).chain([1031]) {
            let bytes = &data[..len];
            let by_byte: Vec<u8> = bytes
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ key[i % 4])
                .collect();
            assert_eq!(unmasked(bytes, key), by_byte, "{len} bytes");
        }
    }

    #[test]
    fn inflates_a_compressed_message_in_fragments_and_passes_the_rest() {
        let text = "Hello, hello, hello, hello! ".repeat(50);
        let z = deflated(text.as_bytes());
        let (a, b) = z.split_at(z.len() / 2);
        let mut wire = client_frame(false, true, 1, a);
        wire.extend(client_frame(true, false, 9, b"ping")); // between fragments
        wire.extend(client_frame(true, false, 0, b));
        wire.extend(client_frame(true, false, 2, b"plain"));
        let mut d = Deflate::new(15, 1 << 20, 1 << 20);
        let mut out = Vec::new();
        // Byte by byte: frames wait until whole.
        for byte in &wire {
            d.inbound(std::slice::from_ref(byte), &mut out).unwrap();
        }
        let got = frames(&out);
        let message: Vec<u8> = got
            .iter()
            .filter(|(_, op, _)| *op == 1 || *op == 0)
            .flat_map(|(_, _, p)| p.clone())
            .collect();
        assert_eq!(String::from_utf8(message).unwrap(), text);
        assert_eq!(got.first().map(|f| f.1), Some(1));
        assert!(
            got.iter().any(|f| f.1 == 9),
            "the ping in between, untouched"
        );
        assert_eq!(got.last().unwrap(), &(true, 2, b"plain".to_vec()));
    }

    #[test]
    fn a_message_inflates_to_its_limit_and_no_further() {
        let bomb = vec![0u8; 10 << 20];
        let z = deflated(&bomb);
        assert!(z.len() < 20_000);
        let mut d = Deflate::new(15, 1 << 20, 1 << 20);
        let mut out = Vec::new();
        d.inbound(&client_frame(true, true, 2, &z), &mut out)
            .unwrap();
        let total: usize = frames(&out).iter().map(|f| f.2.len()).sum();
        assert_eq!(
            total,
            (1 << 20) + 1,
            "one byte past the limit: tungstenite says 1009"
        );
    }

    #[test]
    fn what_breaks_the_rules_goes_to_tungstenite_as_it_came() {
        let mut d = Deflate::new(15, 1 << 20, 1 << 20);
        let mut out = Vec::new();
        // RSV1 on a continuation, on a control frame, without a message.
        for f in [
            client_frame(true, true, 0, b"x"),
            client_frame(true, true, 9, b"x"),
        ] {
            out.clear();
            d.inbound(&f, &mut out).unwrap();
            assert_eq!(out, f);
        }
        // Corrupt data fails the connection.
        let e = d
            .inbound(&client_frame(true, true, 1, &[0xff; 16]), &mut Vec::new())
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn compresses_each_whole_message_and_passes_control_frames() {
        let mut d = Deflate::new(9, 1 << 20, 1 << 20);
        let text = "abcabcabcabcabcabcabcabcabcabcabcabc".repeat(100);
        let mut from_tungstenite = Vec::new();
        frame(
            &mut from_tungstenite,
            true,
            false,
            1,
            false,
            text.as_bytes(),
        );
        frame(&mut from_tungstenite, true, false, 2, false, b"xy");
        frame(&mut from_tungstenite, true, false, 8, false, &[3, 232]);
        let mut out = Vec::new();
        let (a, b) = from_tungstenite.split_at(7);
        d.outbound(a, &mut out);
        d.outbound(b, &mut out);
        let h = header(&out).unwrap();
        assert!(h.rsv1 && h.fin && h.opcode == 1 && h.mask.is_none());
        let z = &out[h.header..h.header + h.payload as usize];
        assert!(z.len() < 100, "{}", z.len());
        let mut full = z.to_vec();
        full.extend_from_slice(&TAIL);
        let mut i = Decompress::new_with_window_bits(false, 9);
        let plain = inflate_some(&mut i, &full, 1 << 20).unwrap();
        assert_eq!(plain, text.as_bytes());
        let rest = &out[h.header + h.payload as usize..];
        let small = header(rest).unwrap();
        assert!(small.rsv1 && small.opcode == 2, "small messages too");
        let end = small.header + small.payload as usize;
        let mut full = rest[small.header..end].to_vec();
        full.extend_from_slice(&TAIL);
        let mut i = Decompress::new_with_window_bits(false, 9);
        assert_eq!(inflate_some(&mut i, &full, 100).unwrap(), b"xy");
        let mut close = Vec::new();
        frame(&mut close, true, false, 8, false, &[3, 232]);
        assert_eq!(&rest[end..], &close[..], "a control frame as it was");
    }
}
