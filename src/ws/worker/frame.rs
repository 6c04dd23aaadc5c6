//! A WebSocket frame's header (RFC 6455 §5.2), as the stream's walk
//! (`stream.rs`) and permessage-deflate (`deflate.rs`) read frames.

/// A frame's header fields and lengths, once its header is whole.
pub(super) struct Header {
    pub(super) fin: bool,
    pub(super) rsv1: bool,
    pub(super) rsv23: bool,
    pub(super) opcode: u8,
    pub(super) mask: Option<[u8; 4]>,
    pub(super) header: usize,
    pub(super) payload: u64,
}

/// A frame's header, once it is whole.
pub(super) fn header(b: &[u8]) -> Option<Header> {
    let (first, second) = (*b.first()?, *b.get(1)?);
    let ext = match second & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let masked = second & 0x80 != 0;
    let len = 2 + ext + if masked { 4 } else { 0 };
    if b.len() < len {
        return None;
    }
    let payload = match ext {
        2 => u64::from(u16::from_be_bytes([b[2], b[3]])),
        8 => u64::from_be_bytes(b[2..10].try_into().ok()?),
        _ => u64::from(second & 0x7f),
    };
    Some(Header {
        fin: first & 0x80 != 0,
        rsv1: first & 0x40 != 0,
        rsv23: first & 0x30 != 0,
        opcode: first & 0x0f,
        mask: masked.then(|| [b[len - 4], b[len - 3], b[len - 2], b[len - 1]]),
        header: len,
        payload,
    })
}
