//! HPACK (RFC 7541) for the server's two directions.
//!
//! Decoding what clients send is written here, though HPACK has a CVE
//! history and the crates exist, for two reasons found by measuring:
//! `loona-hpack` (the maintained fork of the `hpack` crate) builds a hash
//! map of the Huffman code for every Huffman-coded string it decodes,
//! about 100,000 instructions a string (callgrind: an h2c request cost
//! 244,000 instructions with it, and a header block of small Huffman
//! strings would make that an amplifier for a CPU attack); and no crate
//! lets the dynamic table be read out, which moving a connection to a new
//! process needs. What is written is small and held to the RFC's own
//! examples (Appendix C) and every error of §5 and §6 in tests, and fuzzed
//! (`fuzz/fuzz_targets/h2.rs` reaches it): integers with a bound, strings
//! within the block, Huffman decoded four bits at a time by a table built
//! once from Appendix B with EOS and bad padding refused, indexes checked
//! against both tables, and the dynamic table bounded by the size we
//! announced.
//!
//! Encoding our responses is small too: the static table, literals
//! without indexing, no dynamic table, as nginx does. Why: the client then
//! keeps nothing for us between responses, so an idle connection holds no
//! encoder table and moving a connection to a new process has no encoder
//! state to carry; and a response's fields cost a copy each, not a table
//! search. Strings go raw (not Huffman-coded), which every decoder takes.

use std::collections::VecDeque;
use std::sync::OnceLock;

/// Why a header block could not be decoded (a connection error of type
/// `COMPRESSION_ERROR`, RFC 9113 §4.3).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct DecodeError(pub(super) &'static str);

/// `SETTINGS_HEADER_TABLE_SIZE`'s initial value, which we keep: the most
/// a client may make our decoder's dynamic table hold.
pub(super) const TABLE_SIZE: usize = 4096;

/// The static table (RFC 7541 Appendix A), index 1 first.
const STATIC: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];

/// What an entry costs in the dynamic table (§4.1).
fn entry_size(name: &[u8], value: &[u8]) -> usize {
    name.len() + value.len() + 32
}

/// A dynamic table entry: a field's name and value.
type Entry = (Box<[u8]>, Box<[u8]>);

/// The decoder of one connection's header blocks: the dynamic table the
/// client's encoder fills (§2.3.2), newest first.
pub(super) struct Decoder {
    table: VecDeque<Entry>,
    size: usize,
    /// The table's maximum now, as the client last set it (§6.3).
    max: usize,
    /// Huffman-decoded strings, reused.
    names: Vec<u8>,
    values: Vec<u8>,
}

impl Decoder {
    pub(super) fn new() -> Decoder {
        Decoder {
            table: VecDeque::new(),
            size: 0,
            max: TABLE_SIZE,
            names: Vec::new(),
            values: Vec::new(),
        }
    }

    /// Decodes one whole header block (HEADERS and its CONTINUATIONs),
    /// giving each field to `field` in order.
    pub(super) fn decode(
        &mut self,
        block: &[u8],
        mut field: impl FnMut(&[u8], &[u8]),
    ) -> Result<(), DecodeError> {
        let mut names = std::mem::take(&mut self.names);
        let mut values = std::mem::take(&mut self.values);
        let r = self.decode_with(block, &mut field, &mut names, &mut values);
        self.names = names;
        self.values = values;
        r
    }

    /// The table as it stands (its maximum, then its entries, oldest
    /// first), for a connection moving to a new process.
    pub(super) fn park(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.max as u32).to_be_bytes());
        out.extend_from_slice(&(self.table.len() as u32).to_be_bytes());
        for (n, v) in self.table.iter().rev() {
            out.extend_from_slice(&(n.len() as u32).to_be_bytes());
            out.extend_from_slice(n);
            out.extend_from_slice(&(v.len() as u32).to_be_bytes());
            out.extend_from_slice(v);
        }
    }

    /// The table `park` wrote, checked: within the size we announce.
    pub(super) fn resume(r: &mut Reader<'_>) -> Result<Decoder, &'static str> {
        let mut d = Decoder::new();
        d.max = r.u32()? as usize;
        if d.max > TABLE_SIZE {
            return Err("a table larger than SETTINGS_HEADER_TABLE_SIZE");
        }
        for _ in 0..r.u32()? {
            let n = r.bytes()?;
            let v = r.bytes()?;
            if d.size + entry_size(n, v) > d.max {
                return Err("table entries over the table's size");
            }
            d.insert(n, v);
        }
        Ok(d)
    }

    /// Gives back the scratch buffers' memory (an idle connection keeps
    /// only its table).
    pub(super) fn shrink(&mut self) {
        self.names = Vec::new();
        self.values = Vec::new();
    }

    fn decode_with(
        &mut self,
        block: &[u8],
        field: &mut impl FnMut(&[u8], &[u8]),
        names: &mut Vec<u8>,
        values: &mut Vec<u8>,
    ) -> Result<(), DecodeError> {
        let mut b = block;
        let mut fields = false;
        while let Some(&first) = b.first() {
            if first & 0x80 != 0 {
                // Indexed (§6.1).
                let i = integer(&mut b, 7)?;
                let (n, v) = self.get(i)?;
                field(n, v);
                fields = true;
                continue;
            }
            if first & 0xe0 == 0x20 {
                // A dynamic table size update (§6.3): at the start of a
                // block only (§4.2), and within what we announced.
                if fields {
                    return Err(DecodeError("a table size update after a field"));
                }
                let max = integer(&mut b, 5)?;
                if max > TABLE_SIZE {
                    return Err(DecodeError(
                        "a table size update over SETTINGS_HEADER_TABLE_SIZE",
                    ));
                }
                self.max = max;
                self.evict(0);
                continue;
            }
            // Literals (§6.2): with incremental indexing (01), without
            // indexing (0000) or never indexed (0001).
            let indexing = first & 0xc0 == 0x40;
            let i = integer(&mut b, if indexing { 6 } else { 4 })?;
            let name_raw: Option<&[u8]> = if i == 0 {
                string(&mut b, names)?
            } else {
                names.clear();
                names.extend_from_slice(self.get(i)?.0);
                None
            };
            let value_raw = string(&mut b, values)?;
            let name: &[u8] = match name_raw {
                Some(raw) => raw,
                None => names,
            };
            let value: &[u8] = match value_raw {
                Some(raw) => raw,
                None => values,
            };
            field(name, value);
            if indexing {
                self.insert(name, value);
            }
            fields = true;
        }
        Ok(())
    }

    /// The field at index `i` of the static table then the dynamic one
    /// (§2.3.3).
    fn get(&self, i: usize) -> Result<(&[u8], &[u8]), DecodeError> {
        if i == 0 {
            return Err(DecodeError("index 0"));
        }
        if let Some((n, v)) = STATIC.get(i - 1) {
            return Ok((n.as_bytes(), v.as_bytes()));
        }
        match self.table.get(i - 1 - STATIC.len()) {
            Some((n, v)) => Ok((n, v)),
            None => Err(DecodeError("an index past the tables")),
        }
    }

    /// Adds an entry, evicting the oldest to make room; an entry larger
    /// than the table empties it and is not added (§4.4).
    fn insert(&mut self, name: &[u8], value: &[u8]) {
        let size = entry_size(name, value);
        if size > self.max {
            self.table.clear();
            self.size = 0;
            return;
        }
        self.evict(size);
        self.table.push_front((name.into(), value.into()));
        self.size += size;
    }

    /// Evicts the oldest entries until `room` more fits under the maximum.
    fn evict(&mut self, room: usize) {
        while self.size + room > self.max {
            let Some((n, v)) = self.table.pop_back() else {
                break;
            };
            self.size -= entry_size(&n, &v);
        }
    }
}

/// Reads what `park` methods wrote: big-endian numbers and byte strings
/// with a 4-byte length, each checked against what is left.
pub(super) struct Reader<'a>(pub(super) &'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        if n > self.0.len() {
            return Err("the state is cut short");
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    pub(super) fn u8(&mut self) -> Result<u8, &'static str> {
        Ok(self.take(1)?[0])
    }
    pub(super) fn u32(&mut self) -> Result<u32, &'static str> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub(super) fn i64(&mut self) -> Result<i64, &'static str> {
        let b = self.take(8)?;
        let mut a = [0; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }
    pub(super) fn bytes(&mut self) -> Result<&'a [u8], &'static str> {
        let n = self.u32()? as usize;
        self.take(n)
    }
}

/// Reads an integer with an `n`-bit prefix (§5.1), past the prefix's
/// byte. Values over 2^28 are refused: nothing legitimate needs them, and
/// they could not overflow then.
fn integer(b: &mut &[u8], n: u8) -> Result<usize, DecodeError> {
    let Some((&first, rest)) = b.split_first() else {
        return Err(DecodeError("a block cut short in an integer"));
    };
    let max = (1usize << n) - 1;
    let mut v = usize::from(first) & max;
    *b = rest;
    if v < max {
        return Ok(v);
    }
    let mut shift = 0;
    loop {
        let Some((&c, rest)) = b.split_first() else {
            return Err(DecodeError("a block cut short in an integer"));
        };
        *b = rest;
        v += usize::from(c & 0x7f) << shift;
        if c & 0x80 == 0 {
            return Ok(v);
        }
        shift += 7;
        if shift > 21 {
            return Err(DecodeError("an integer over 2^28"));
        }
    }
}

/// Reads a string literal (§5.2): `Some` the raw bytes in the block, or
/// `None` when it was Huffman-coded and is decoded into `buf`.
fn string<'b>(b: &mut &'b [u8], buf: &mut Vec<u8>) -> Result<Option<&'b [u8]>, DecodeError> {
    let huffman = b.first().is_some_and(|&c| c & 0x80 != 0);
    let len = integer(b, 7)?;
    if len > b.len() {
        return Err(DecodeError("a string longer than the block"));
    }
    let (s, rest) = b.split_at(len);
    *b = rest;
    if !huffman {
        return Ok(Some(s));
    }
    buf.clear();
    huffman_decode(s, buf)?;
    Ok(None)
}

/// RFC 7541 Appendix B: each symbol's code and its length in bits,
/// symbols 0 to 255, then EOS (256).
#[rustfmt::skip]
const CODES: [(u32, u8); 257] = [
    (0x1ff8, 13), (0x7fffd8, 23), (0xfffffe2, 28), (0xfffffe3, 28), (0xfffffe4, 28),
    (0xfffffe5, 28), (0xfffffe6, 28), (0xfffffe7, 28), (0xfffffe8, 28), (0xffffea, 24),
    (0x3ffffffc, 30), (0xfffffe9, 28), (0xfffffea, 28), (0x3ffffffd, 30), (0xfffffeb, 28),
    (0xfffffec, 28), (0xfffffed, 28), (0xfffffee, 28), (0xfffffef, 28), (0xffffff0, 28),
    (0xffffff1, 28), (0xffffff2, 28), (0x3ffffffe, 30), (0xffffff3, 28), (0xffffff4, 28),
    (0xffffff5, 28), (0xffffff6, 28), (0xffffff7, 28), (0xffffff8, 28), (0xffffff9, 28),
    (0xffffffa, 28), (0xffffffb, 28), (0x14, 6), (0x3f8, 10), (0x3f9, 10), (0xffa, 12),
    (0x1ff9, 13), (0x15, 6), (0xf8, 8), (0x7fa, 11), (0x3fa, 10), (0x3fb, 10), (0xf9, 8),
    (0x7fb, 11), (0xfa, 8), (0x16, 6), (0x17, 6), (0x18, 6), (0x0, 5), (0x1, 5), (0x2, 5),
    (0x19, 6), (0x1a, 6), (0x1b, 6), (0x1c, 6), (0x1d, 6), (0x1e, 6), (0x1f, 6), (0x5c, 7),
    (0xfb, 8), (0x7ffc, 15), (0x20, 6), (0xffb, 12), (0x3fc, 10), (0x1ffa, 13), (0x21, 6),
    (0x5d, 7), (0x5e, 7), (0x5f, 7), (0x60, 7), (0x61, 7), (0x62, 7), (0x63, 7), (0x64, 7),
    (0x65, 7), (0x66, 7), (0x67, 7), (0x68, 7), (0x69, 7), (0x6a, 7), (0x6b, 7), (0x6c, 7),
    (0x6d, 7), (0x6e, 7), (0x6f, 7), (0x70, 7), (0x71, 7), (0x72, 7), (0xfc, 8), (0x73, 7),
    (0xfd, 8), (0x1ffb, 13), (0x7fff0, 19), (0x1ffc, 13), (0x3ffc, 14), (0x22, 6), (0x7ffd, 15),
    (0x3, 5), (0x23, 6), (0x4, 5), (0x24, 6), (0x5, 5), (0x25, 6), (0x26, 6), (0x27, 6), (0x6, 5),
    (0x74, 7), (0x75, 7), (0x28, 6), (0x29, 6), (0x2a, 6), (0x7, 5), (0x2b, 6), (0x76, 7),
    (0x2c, 6), (0x8, 5), (0x9, 5), (0x2d, 6), (0x77, 7), (0x78, 7), (0x79, 7), (0x7a, 7),
    (0x7b, 7), (0x7ffe, 15), (0x7fc, 11), (0x3ffd, 14), (0x1ffd, 13), (0xffffffc, 28),
    (0xfffe6, 20), (0x3fffd2, 22), (0xfffe7, 20), (0xfffe8, 20), (0x3fffd3, 22), (0x3fffd4, 22),
    (0x3fffd5, 22), (0x7fffd9, 23), (0x3fffd6, 22), (0x7fffda, 23), (0x7fffdb, 23), (0x7fffdc, 23),
    (0x7fffdd, 23), (0x7fffde, 23), (0xffffeb, 24), (0x7fffdf, 23), (0xffffec, 24), (0xffffed, 24),
    (0x3fffd7, 22), (0x7fffe0, 23), (0xffffee, 24), (0x7fffe1, 23), (0x7fffe2, 23), (0x7fffe3, 23),
    (0x7fffe4, 23), (0x1fffdc, 21), (0x3fffd8, 22), (0x7fffe5, 23), (0x3fffd9, 22), (0x7fffe6, 23),
    (0x7fffe7, 23), (0xffffef, 24), (0x3fffda, 22), (0x1fffdd, 21), (0xfffe9, 20), (0x3fffdb, 22),
    (0x3fffdc, 22), (0x7fffe8, 23), (0x7fffe9, 23), (0x1fffde, 21), (0x7fffea, 23), (0x3fffdd, 22),
    (0x3fffde, 22), (0xfffff0, 24), (0x1fffdf, 21), (0x3fffdf, 22), (0x7fffeb, 23), (0x7fffec, 23),
    (0x1fffe0, 21), (0x1fffe1, 21), (0x3fffe0, 22), (0x1fffe2, 21), (0x7fffed, 23), (0x3fffe1, 22),
    (0x7fffee, 23), (0x7fffef, 23), (0xfffea, 20), (0x3fffe2, 22), (0x3fffe3, 22), (0x3fffe4, 22),
    (0x7ffff0, 23), (0x3fffe5, 22), (0x3fffe6, 22), (0x7ffff1, 23), (0x3ffffe0, 26),
    (0x3ffffe1, 26), (0xfffeb, 20), (0x7fff1, 19), (0x3fffe7, 22), (0x7ffff2, 23), (0x3fffe8, 22),
    (0x1ffffec, 25), (0x3ffffe2, 26), (0x3ffffe3, 26), (0x3ffffe4, 26), (0x7ffffde, 27),
    (0x7ffffdf, 27), (0x3ffffe5, 26), (0xfffff1, 24), (0x1ffffed, 25), (0x7fff2, 19),
    (0x1fffe3, 21), (0x3ffffe6, 26), (0x7ffffe0, 27), (0x7ffffe1, 27), (0x3ffffe7, 26),
    (0x7ffffe2, 27), (0xfffff2, 24), (0x1fffe4, 21), (0x1fffe5, 21), (0x3ffffe8, 26),
    (0x3ffffe9, 26), (0xffffffd, 28), (0x7ffffe3, 27), (0x7ffffe4, 27), (0x7ffffe5, 27),
    (0xfffec, 20), (0xfffff3, 24), (0xfffed, 20), (0x1fffe6, 21), (0x3fffe9, 22), (0x1fffe7, 21),
    (0x1fffe8, 21), (0x7ffff3, 23), (0x3fffea, 22), (0x3fffeb, 22), (0x1ffffee, 25),
    (0x1ffffef, 25), (0xfffff4, 24), (0xfffff5, 24), (0x3ffffea, 26), (0x7ffff4, 23),
    (0x3ffffeb, 26), (0x7ffffe6, 27), (0x3ffffec, 26), (0x3ffffed, 26), (0x7ffffe7, 27),
    (0x7ffffe8, 27), (0x7ffffe9, 27), (0x7ffffea, 27), (0x7ffffeb, 27), (0xffffffe, 28),
    (0x7ffffec, 27), (0x7ffffed, 27), (0x7ffffee, 27), (0x7ffffef, 27), (0x7fffff0, 27),
    (0x3ffffee, 26), (0x3fffffff, 30),
];

/// One step of the Huffman decoder: from a state (a node of the code's
/// tree) on four bits, the next state, the symbol emitted if one ended
/// (at most one: no code is shorter than five bits), and whether EOS was
/// met.
#[derive(Clone, Copy, Default)]
struct Step {
    next: u8,
    symbol: u8,
    emits: bool,
    eos: bool,
}

struct Huffman {
    steps: Vec<[Step; 16]>,
    /// States where the string may end: the bits since the last symbol
    /// are all ones and fewer than eight (§5.2's padding).
    accepting: Vec<bool>,
}

/// The tree's children: an internal node's index, or a leaf's symbol
/// with `LEAF` set.
const LEAF: u16 = 0x8000;

fn huffman() -> &'static Huffman {
    static TABLE: OnceLock<Huffman> = OnceLock::new();
    TABLE.get_or_init(|| {
        // The tree: 256 internal nodes for 257 leaves; node 0 is the root.
        let mut kids: Vec<[u16; 2]> = vec![[0, 0]];
        let mut ones_depth: Vec<Option<u8>> = vec![Some(0)];
        for (sym, &(code, len)) in CODES.iter().enumerate() {
            let mut node = 0usize;
            for k in (0..len).rev() {
                let bit = ((code >> k) & 1) as usize;
                if k == 0 {
                    kids[node][bit] = LEAF | sym as u16;
                } else {
                    if kids[node][bit] == 0 {
                        kids.push([0, 0]);
                        let depth = ones_depth[node]
                            .filter(|_| bit == 1)
                            .map(|d| d + 1)
                            .filter(|&d| d <= 7);
                        ones_depth.push(depth);
                        kids[node][bit] = (kids.len() - 1) as u16;
                    }
                    node = kids[node][bit] as usize;
                }
            }
        }
        let mut steps = vec![[Step::default(); 16]; kids.len()];
        for (state, row) in steps.iter_mut().enumerate() {
            for (nibble, step) in row.iter_mut().enumerate() {
                let mut node = state;
                for k in (0..4).rev() {
                    let child = kids[node][(nibble >> k) & 1];
                    if child & LEAF != 0 {
                        let sym = child & !LEAF;
                        if sym == 256 {
                            step.eos = true;
                        } else {
                            step.symbol = sym as u8;
                            step.emits = true;
                        }
                        node = 0;
                    } else {
                        node = child as usize;
                    }
                }
                step.next = node as u8;
            }
        }
        Huffman {
            steps,
            accepting: ones_depth.iter().map(Option::is_some).collect(),
        }
    })
}

/// Decodes a Huffman-coded string (§5.2, Appendix B): EOS in it, or
/// padding that is not the start of EOS or longer than seven bits, is a
/// decoding error.
fn huffman_decode(s: &[u8], out: &mut Vec<u8>) -> Result<(), DecodeError> {
    let h = huffman();
    let mut state = 0usize;
    for &byte in s {
        for nibble in [byte >> 4, byte & 0xf] {
            let step = h.steps[state][nibble as usize];
            if step.eos {
                return Err(DecodeError("EOS in a Huffman string"));
            }
            if step.emits {
                out.push(step.symbol);
            }
            state = step.next as usize;
        }
    }
    if !h.accepting[state] {
        return Err(DecodeError("a Huffman string's padding is not EOS's start"));
    }
    Ok(())
}

/// Appends an integer with an `n`-bit prefix (§5.1); `first` holds the
/// representation's pattern bits.
fn put_integer(out: &mut Vec<u8>, first: u8, n: u8, mut v: usize) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(first | v as u8);
        return;
    }
    out.push(first | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
}

/// A raw string literal (§5.2, H = 0).
fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    put_integer(out, 0, 7, s.len());
    out.extend_from_slice(s);
}

/// `:status`: indexed when the static table has it (§6.1), else a literal
/// with the indexed name `:status` (index 8).
pub(super) fn status(out: &mut Vec<u8>, status: u16) {
    let index = match status {
        200 => 8,
        204 => 9,
        206 => 10,
        304 => 11,
        400 => 12,
        404 => 13,
        500 => 14,
        _ => 0,
    };
    if index > 0 {
        out.push(0x80 | index);
        return;
    }
    let mut digits = itoa::Buffer::new();
    put_integer(out, 0, 4, 8);
    put_string(out, digits.format(status).as_bytes());
}

/// A field as a literal without indexing (§6.2.2): the name by its index
/// in the static table when it is there, else as a string, lowercased
/// (RFC 9113 §8.2.1).
pub(super) fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    match static_name(name) {
        Some(i) => put_integer(out, 0, 4, i),
        None => {
            out.push(0);
            put_integer(out, 0, 7, name.len());
            out.extend(name.iter().map(u8::to_ascii_lowercase));
        }
    }
    put_string(out, value);
}

/// The static table's names a response may carry (RFC 7541 Appendix A),
/// with their indexes.
const NAMES: [(&str, usize); 30] = [
    ("accept-ranges", 18),
    ("access-control-allow-origin", 20),
    ("age", 21),
    ("allow", 22),
    ("cache-control", 24),
    ("content-disposition", 25),
    ("content-encoding", 26),
    ("content-language", 27),
    ("content-length", 28),
    ("content-location", 29),
    ("content-range", 30),
    ("content-type", 31),
    ("date", 33),
    ("etag", 34),
    ("expires", 36),
    ("last-modified", 44),
    ("link", 45),
    ("location", 46),
    ("proxy-authenticate", 48),
    ("refresh", 52),
    ("retry-after", 53),
    ("server", 54),
    ("set-cookie", 55),
    ("strict-transport-security", 56),
    ("transfer-encoding", 57),
    ("vary", 59),
    ("via", 60),
    ("www-authenticate", 61),
    ("cookie", 32),
    ("range", 50),
];

fn static_name(name: &[u8]) -> Option<usize> {
    // Narrowed by length first: a response's fields are looked up here
    // one by one, on every response.
    let candidates: &[(&str, usize)] = match name.len() {
        3 => &[NAMES[2], NAMES[26]],
        4 => &[NAMES[12], NAMES[13], NAMES[16], NAMES[25]],
        5 => &[NAMES[3], NAMES[29]],
        6 => &[NAMES[21], NAMES[28]],
        7 => &[NAMES[14], NAMES[19]],
        8 => &NAMES[17..18],
        10 => &NAMES[22..23],
        11 => &NAMES[20..21],
        12 => &NAMES[11..12],
        13 => &[NAMES[0], NAMES[4], NAMES[10], NAMES[15]],
        14 => &NAMES[8..9],
        16 => &[NAMES[6], NAMES[7], NAMES[9], NAMES[27]],
        17 => &NAMES[24..25],
        18 => &NAMES[18..19],
        19 => &NAMES[5..6],
        25 => &NAMES[23..24],
        27 => &NAMES[1..2],
        _ => &[],
    };
    candidates
        .iter()
        .find(|(n, _)| n.as_bytes().eq_ignore_ascii_case(name))
        .map(|&(_, i)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn fields(d: &mut Decoder, block: &[u8]) -> Result<Vec<String>, DecodeError> {
        let mut v = Vec::new();
        d.decode(block, |n, val| {
            v.push(format!(
                "{}: {}",
                String::from_utf8_lossy(n),
                String::from_utf8_lossy(val)
            ))
        })?;
        Ok(v)
    }

    fn table(d: &Decoder) -> Vec<String> {
        d.table
            .iter()
            .map(|(n, v)| {
                format!(
                    "{}: {}",
                    String::from_utf8_lossy(n),
                    String::from_utf8_lossy(v)
                )
            })
            .collect()
    }

    #[test]
    fn decodes_rfc_7541_c_3_requests_without_huffman() {
        let mut d = Decoder::new();
        let b = hex("8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d");
        assert_eq!(
            fields(&mut d, &b).unwrap(),
            [
                ":method: GET",
                ":scheme: http",
                ":path: /",
                ":authority: www.example.com"
            ]
        );
        let b = hex("8286 84be 5808 6e6f 2d63 6163 6865");
        assert_eq!(
            fields(&mut d, &b).unwrap()[3..],
            [":authority: www.example.com", "cache-control: no-cache"]
        );
        let b = hex("8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65");
        assert_eq!(
            fields(&mut d, &b).unwrap(),
            [
                ":method: GET",
                ":scheme: https",
                ":path: /index.html",
                ":authority: www.example.com",
                "custom-key: custom-value"
            ]
        );
        assert_eq!(d.size, 164);
    }

    #[test]
    fn decodes_rfc_7541_c_4_requests_with_huffman() {
        let mut d = Decoder::new();
        let b = hex("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff");
        assert_eq!(
            fields(&mut d, &b).unwrap()[3],
            ":authority: www.example.com"
        );
        let b = hex("8286 84be 5886 a8eb 1064 9cbf");
        assert_eq!(fields(&mut d, &b).unwrap()[4], "cache-control: no-cache");
        let b = hex("8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf");
        assert_eq!(fields(&mut d, &b).unwrap()[4], "custom-key: custom-value");
        assert_eq!(
            table(&d),
            [
                "custom-key: custom-value",
                "cache-control: no-cache",
                ":authority: www.example.com"
            ]
        );
        assert_eq!(d.size, 164);
    }

    #[test]
    fn evicts_as_rfc_7541_c_6_does_with_a_256_byte_table() {
        let mut d = Decoder::new();
        d.max = 256;
        let b = hex(
            "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6
             2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
        );
        assert_eq!(
            fields(&mut d, &b).unwrap(),
            [
                ":status: 302",
                "cache-control: private",
                "date: Mon, 21 Oct 2013 20:13:21 GMT",
                "location: https://www.example.com"
            ]
        );
        assert_eq!(d.size, 222);
        let b = hex("4883 640e ff c1 c0 bf");
        assert_eq!(fields(&mut d, &b).unwrap()[0], ":status: 307");
        assert_eq!(table(&d)[0], ":status: 307");
        assert_eq!(d.size, 222);
        let b = hex(
            "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab
             77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f
             9587 3160 65c0 03ed 4ee5 b106 3d50 07",
        );
        assert_eq!(
            fields(&mut d, &b).unwrap()[5],
            "set-cookie: foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1"
        );
        assert_eq!(
            table(&d),
            [
                "set-cookie: foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1",
                "content-encoding: gzip",
                "date: Mon, 21 Oct 2013 20:13:22 GMT"
            ]
        );
        assert_eq!(d.size, 215);
    }

    #[test]
    fn refuses_each_decoding_error_of_rfc_7541() {
        let refused = |b: &[u8]| Decoder::new().decode(b, |_, _| {}).unwrap_err().0;
        assert_eq!(refused(&[0x80]), "index 0");
        assert_eq!(refused(&[0xbe]), "an index past the tables");
        // A size update over 4096 (§6.3), and one after a field (§4.2).
        assert!(refused(&hex("3fe21f")).contains("over SETTINGS"));
        assert!(refused(&hex("82 20")).contains("after a field"));
        // Integers cut short or past 2^28 (§5.1).
        assert!(refused(&[0xff]).contains("cut short"));
        assert!(refused(&hex("ff ff ff ff ff 0f")).contains("2^28"));
        // A string longer than the block (§5.2).
        assert!(refused(&hex("00 05 61")).contains("longer than the block"));
        // Huffman: EOS (30 ones) in the string; padding of 8 ones; padding
        // with a zero in it.
        assert!(refused(&hex("00 81 61 84 ff ff ff ff")).contains("EOS"));
        assert!(refused(&hex("00 81 61 82 1f ff")).contains("padding"));
        assert!(refused(&hex("00 81 61 81 1e")).contains("padding"));
    }

    #[test]
    fn the_huffman_tree_has_256_inner_nodes_and_every_symbol_decodes() {
        assert_eq!(huffman().steps.len(), 256);
        // Every byte, encoded bit by bit from Appendix B, decodes back.
        let mut bits: Vec<bool> = Vec::new();
        for &(code, len) in &CODES[..256] {
            bits.extend((0..len).rev().map(|k| (code >> k) & 1 == 1));
        }
        while !bits.len().is_multiple_of(8) {
            bits.push(true);
        }
        let enc: Vec<u8> = bits
            .chunks(8)
            .map(|c| c.iter().fold(0u8, |a, &b| a << 1 | u8::from(b)))
            .collect();
        let mut out = Vec::new();
        huffman_decode(&enc, &mut out).unwrap();
        assert_eq!(out, (0..=255u8).collect::<Vec<_>>());
    }

    #[test]
    fn an_entry_larger_than_the_table_empties_it() {
        let mut d = Decoder::new();
        d.insert(b"a", b"b");
        d.insert(b"big", &[b'v'; TABLE_SIZE]);
        assert!(d.table.is_empty());
        assert_eq!(d.size, 0);
    }

    #[test]
    fn what_we_encode_a_decoder_reads_back_with_names_lowercased() {
        let mut b = Vec::new();
        status(&mut b, 200);
        status(&mut b, 431);
        field(&mut b, b"Content-Type", b"text/plain");
        field(&mut b, b"X-Long-Name", &[b'v'; 300]);
        let v = fields(&mut Decoder::new(), &b).unwrap();
        assert_eq!(v[0], ":status: 200");
        assert_eq!(v[1], ":status: 431");
        assert_eq!(v[2], "content-type: text/plain");
        assert_eq!(v[3], format!("x-long-name: {}", "v".repeat(300)));
        assert_eq!(b[0], 0x88, "200 indexed");
    }

    #[test]
    fn every_static_name_we_encode_has_its_index_in_the_table_and_is_found() {
        for (name, i) in NAMES {
            assert_eq!(STATIC[i - 1].0, name, "index {i}");
            assert_eq!(static_name(name.as_bytes()), Some(i), "{name}");
            assert_eq!(
                static_name(name.to_uppercase().as_bytes()),
                Some(i),
                "{name}"
            );
        }
        assert_eq!(static_name(b"x-other"), None);
    }

    #[test]
    fn encodes_integers_as_rfc_7541_c_1_does() {
        let mut b = Vec::new();
        put_integer(&mut b, 0, 5, 10);
        assert_eq!(b, [10]);
        let mut b = Vec::new();
        put_integer(&mut b, 0, 5, 1337);
        assert_eq!(b, [31, 154, 10]);
        let mut b = Vec::new();
        put_integer(&mut b, 0, 8, 42);
        assert_eq!(b, [42]);
        let mut slice: &[u8] = &[31, 154, 10];
        assert_eq!(integer(&mut slice, 5).unwrap(), 1337);
    }
}
