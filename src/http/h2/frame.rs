//! HTTP/2 frames (RFC 9113 §4, §6): their types, flags and error codes,
//! the 9-byte head read, and the frames the server writes. Reading a
//! frame's payload, and what each kind means, is `session.rs`'s.

/// Frame types (§6).
pub(super) const DATA: u8 = 0x0;
pub(super) const HEADERS: u8 = 0x1;
pub(super) const PRIORITY: u8 = 0x2;
pub(super) const RST_STREAM: u8 = 0x3;
pub(super) const SETTINGS: u8 = 0x4;
pub(super) const PUSH_PROMISE: u8 = 0x5;
pub(super) const PING: u8 = 0x6;
pub(super) const GOAWAY: u8 = 0x7;
pub(super) const WINDOW_UPDATE: u8 = 0x8;
pub(super) const CONTINUATION: u8 = 0x9;

/// Flags.
pub(super) const END_STREAM: u8 = 0x1;
pub(super) const ACK: u8 = 0x1;
pub(super) const END_HEADERS: u8 = 0x4;
pub(super) const PADDED: u8 = 0x8;
pub(super) const PRIORITY_FLAG: u8 = 0x20;

/// Error codes (§7).
pub(crate) const NO_ERROR: u32 = 0x0;
pub(crate) const PROTOCOL_ERROR: u32 = 0x1;
pub(crate) const INTERNAL_ERROR: u32 = 0x2;
pub(crate) const FLOW_CONTROL_ERROR: u32 = 0x3;
pub(crate) const STREAM_CLOSED: u32 = 0x5;
pub(crate) const FRAME_SIZE_ERROR: u32 = 0x6;
pub(crate) const REFUSED_STREAM: u32 = 0x7;
pub(crate) const COMPRESSION_ERROR: u32 = 0x9;
pub(crate) const ENHANCE_YOUR_CALM: u32 = 0xb;

/// Settings (§6.5.2).
pub(super) const HEADER_TABLE_SIZE: u16 = 0x1;
pub(super) const ENABLE_PUSH: u16 = 0x2;
pub(super) const MAX_CONCURRENT_STREAMS: u16 = 0x3;
pub(super) const INITIAL_WINDOW_SIZE: u16 = 0x4;
pub(super) const MAX_FRAME_SIZE: u16 = 0x5;
pub(super) const MAX_HEADER_LIST_SIZE: u16 = 0x6;

/// The largest window (§6.9.1).
pub(super) const MAX_WINDOW: i64 = 0x7fff_ffff;
/// Every window's size before SETTINGS or WINDOW_UPDATE change it (§6.9.2).
pub(super) const DEFAULT_WINDOW: i64 = 65_535;
/// `SETTINGS_MAX_FRAME_SIZE`'s initial value, which we never raise: the
/// largest frame a client may send us.
pub(super) const MAX_FRAME: usize = 16_384;

/// A frame's 9-byte head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Head {
    pub len: usize,
    pub ty: u8,
    pub flags: u8,
    /// The stream, the reserved bit dropped (§4.1: ignored on receipt).
    pub stream: u32,
}

impl Head {
    pub(super) fn parse(b: &[u8; 9]) -> Head {
        Head {
            len: u32::from_be_bytes([0, b[0], b[1], b[2]]) as usize,
            ty: b[3],
            flags: b[4],
            stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & 0x7fff_ffff,
        }
    }
}

/// Appends a frame head.
pub(super) fn head(out: &mut Vec<u8>, len: usize, ty: u8, flags: u8, stream: u32) {
    out.extend_from_slice(&head_bytes(len, ty, flags, stream));
}

/// A frame head's 9 bytes (also written over room kept for it, once a
/// payload written in place has its length).
pub(super) fn head_bytes(len: usize, ty: u8, flags: u8, stream: u32) -> [u8; 9] {
    debug_assert!(len < 1 << 24);
    let [_, a, b, c] = (len as u32).to_be_bytes();
    let [d, e, f, g] = stream.to_be_bytes();
    [a, b, c, ty, flags, d, e, f, g]
}

pub(super) fn settings(out: &mut Vec<u8>, values: &[(u16, u32)]) {
    head(out, 6 * values.len(), SETTINGS, 0, 0);
    for (id, v) in values {
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&v.to_be_bytes());
    }
}

pub(super) fn settings_ack(out: &mut Vec<u8>) {
    head(out, 0, SETTINGS, ACK, 0);
}

pub(super) fn ping(out: &mut Vec<u8>, flags: u8, payload: &[u8; 8]) {
    head(out, 8, PING, flags, 0);
    out.extend_from_slice(payload);
}

/// GOAWAY: the last stream processed, the code, no debug data.
pub(crate) fn goaway(out: &mut Vec<u8>, last_stream: u32, code: u32) {
    head(out, 8, GOAWAY, 0, 0);
    out.extend_from_slice(&last_stream.to_be_bytes());
    out.extend_from_slice(&code.to_be_bytes());
}

pub(super) fn rst_stream(out: &mut Vec<u8>, stream: u32, code: u32) {
    head(out, 4, RST_STREAM, 0, stream);
    out.extend_from_slice(&code.to_be_bytes());
}

pub(super) fn window_update(out: &mut Vec<u8>, stream: u32, increment: u32) {
    head(out, 4, WINDOW_UPDATE, 0, stream);
    out.extend_from_slice(&increment.to_be_bytes());
}

/// A header block as HEADERS and as many CONTINUATIONs as `max_frame`
/// makes it (§4.3: nothing else between them).
pub(super) fn header_block(
    out: &mut Vec<u8>,
    stream: u32,
    block: &[u8],
    end_stream: bool,
    max_frame: usize,
) {
    let mut chunks = block.chunks(max_frame);
    let first = chunks.next().unwrap_or(&[]);
    let more = block.len() > max_frame;
    let flags = if end_stream { END_STREAM } else { 0 } | if more { 0 } else { END_HEADERS };
    head(out, first.len(), HEADERS, flags, stream);
    out.extend_from_slice(first);
    let mut left = block.len() - first.len();
    for c in chunks {
        left -= c.len();
        let flags = if left == 0 { END_HEADERS } else { 0 };
        head(out, c.len(), CONTINUATION, flags, stream);
        out.extend_from_slice(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heads(mut b: &[u8]) -> Vec<Head> {
        let mut v = Vec::new();
        while !b.is_empty() {
            let h = Head::parse(b[..9].try_into().unwrap());
            b = &b[9 + h.len..];
            v.push(h);
        }
        v
    }

    #[test]
    fn reads_a_head_and_drops_the_reserved_bit() {
        let h = Head::parse(&[0, 1, 2, HEADERS, END_HEADERS, 0x80, 0, 0, 5]);
        assert_eq!(
            h,
            Head {
                len: 258,
                ty: HEADERS,
                flags: END_HEADERS,
                stream: 5
            }
        );
    }

    #[test]
    fn splits_a_header_block_into_headers_and_continuations_with_end_headers_on_the_last() {
        let mut out = Vec::new();
        header_block(&mut out, 3, &[7; 25], true, 10);
        let h = heads(&out);
        assert_eq!(
            h.iter().map(|h| (h.ty, h.flags, h.len)).collect::<Vec<_>>(),
            [
                (HEADERS, END_STREAM, 10),
                (CONTINUATION, 0, 10),
                (CONTINUATION, END_HEADERS, 5)
            ]
        );
        let mut out = Vec::new();
        header_block(&mut out, 3, &[7; 10], false, 10);
        assert_eq!(heads(&out)[0].flags, END_HEADERS);
    }

    #[test]
    fn writes_a_goaway_with_the_last_stream_and_the_code() {
        let mut f = Vec::new();
        goaway(&mut f, 7, ENHANCE_YOUR_CALM);
        assert_eq!(&f[..9], &[0, 0, 8, GOAWAY, 0, 0, 0, 0, 0]);
        assert_eq!(&f[9..], &[0, 0, 0, 7, 0, 0, 0, 11]);
    }
}
