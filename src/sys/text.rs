//! ASCII bytes as `&str` without UTF-8 validation: what a request's method
//! and target are once the head parser has let them through. Not a
//! syscall, but the one other place that needs `unsafe`, so it lives here.

/// `bytes` as text if they are all ASCII. `is_ascii` checks a word at a
/// time; `str::from_utf8` costs about 80 instructions on a 10-byte target
/// (callgrind), twice per request.
#[inline]
pub(crate) fn ascii(bytes: &[u8]) -> Option<&str> {
    if bytes.is_ascii() {
        // SAFETY: every ASCII byte sequence is valid UTF-8.
        Some(unsafe { std::str::from_utf8_unchecked(bytes) })
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::ascii;

    #[test]
    fn gives_ascii_as_text_and_nothing_else() {
        assert_eq!(ascii(b"/a/b?c=d"), Some("/a/b?c=d"));
        assert_eq!(ascii(b""), Some(""));
        assert_eq!(ascii("/é".as_bytes()), None);
        assert_eq!(ascii(b"\xff"), None);
    }
}
