//! HTTP tokens (RFC 9110 §5.6.2): what a field name, a method or a
//! parameter name must be.

/// Bytes a token may have (`tchar`), by value: the request line's method
/// is read a byte a lookup.
static TCHAR: [bool; 256] = alnum_and(b"!#$%&'*+-.^_`|~");

/// A table by byte value of letters, digits and `marks`: the sets of bytes
/// the head parser looks up.
pub(crate) const fn alnum_and(marks: &[u8]) -> [bool; 256] {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = (b as u8).is_ascii_alphanumeric();
        b += 1;
    }
    let mut i = 0;
    while i < marks.len() {
        t[marks[i] as usize] = true;
        i += 1;
    }
    t
}

/// Is `b` a `tchar`?
#[inline]
pub(crate) fn is_tchar(b: u8) -> bool {
    TCHAR[usize::from(b)]
}

/// Is `s` a token?
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_tchar)
}

/// A field that belongs to one hop (RFC 9110 §7.6.1), not to the message:
/// never passed on to another connection, nor to a request made again.
pub(crate) fn hop_by_hop(name: &str) -> bool {
    [
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
    ]
    .iter()
    .any(|h| name.eq_ignore_ascii_case(h))
}
