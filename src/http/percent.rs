//! Percent-decoding (RFC 3986 §2.1), the one decoder for URL paths and form
//! data. Strict: `%` must be followed by exactly two hex digits. (Parsing
//! them with `u8::from_str_radix` would take `%+f` as 0x0F, since it allows
//! a sign.)

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes `%XX` escapes; with `plus_is_space` (form data, not paths) `+`
/// is a space. `None` for a malformed escape.
pub(crate) fn decode(s: &[u8], plus_is_space: bool) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'%' => {
                let h = hex(*s.get(i + 1)?)?;
                let l = hex(*s.get(i + 2)?)?;
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
            b'+' if plus_is_space => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::decode;

    #[test]
    fn decodes_escapes_and_refuses_anything_but_two_hex_digits() {
        assert_eq!(decode(b"a%2Fb%e9+c", false).unwrap(), b"a/b\xe9+c");
        assert_eq!(decode(b"a+b", true).unwrap(), b"a b");
        for bad in [&b"%+f"[..], b"%-1", b"% f", b"%f", b"%", b"%zz", b"%0x"] {
            assert_eq!(decode(bad, false), None, "{}", String::from_utf8_lossy(bad));
        }
    }
}
