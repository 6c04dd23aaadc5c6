//! The field lines (RFC 9112 §5): the plainest ones split by hand, every
//! other by httparse.
//!
//! httparse stays the parser of record. The hand path takes only lines
//! made of a token, a colon, spaces or tabs, and a value of visible ASCII,
//! spaces and tabs, each ending in CRLF, and gives up on anything else
//! (obs-text, a control byte, whitespace before the colon, obs-fold, more
//! lines than the limit) so that httparse reads the whole section again.
//! What it takes, httparse takes too, split the same way:
//! `splits_plain_fields_as_httparse_does` in the tests, and the `head`
//! fuzz target through `crate::fuzzing`.
//!
//! Why by hand at all: httparse's parse of one `Host: x` line cost 272
//! instructions a request (callgrind), for a split that takes ~60, in a
//! server whose whole answer to a small request is ~3,500.

use super::Span;
use crate::http::token::is_tchar;

const ONES: u64 = u64::from_ne_bytes([1; 8]);
const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);

/// Splits `fields` (a whole section, its empty line included, inside
/// `buf`) into `headers` as `(name, value)` spans, the value without the
/// whitespace around it. The section's length, or `None` where a line is
/// not plain or there are more than `max`: httparse's to read.
#[inline(always)]
pub(super) fn plain(
    buf: &[u8],
    fields: &[u8],
    max: usize,
    headers: &mut Vec<(Span, Span)>,
) -> Option<usize> {
    headers.clear();
    let mut at = 0;
    loop {
        let rest = fields.get(at..)?;
        if rest.starts_with(b"\r\n") {
            return Some(at + 2);
        }
        let colon = rest.iter().position(|&b| !is_tchar(b))?;
        if colon == 0 || rest[colon] != b':' || headers.len() == max {
            return None;
        }
        let mut from = colon + 1;
        while let Some(b' ' | b'\t') = rest.get(from) {
            from += 1;
        }
        let cr = from + value_len(&rest[from..])?;
        if rest.get(cr + 1) != Some(&b'\n') {
            return None;
        }
        let mut to = cr;
        while to > from && matches!(rest[to - 1], b' ' | b'\t') {
            to -= 1;
        }
        headers.push((
            Span::of(buf, &rest[..colon]),
            Span::of(buf, &rest[from..to]),
        ));
        at += cr + 2;
    }
}

/// Where the CR that ends a value lies in `v`; `None` if a byte before it
/// is neither visible ASCII, a space nor a tab (or there is no CR). Eight
/// bytes at a time while they are all printable.
#[inline(always)]
fn value_len(v: &[u8]) -> Option<usize> {
    let mut at = 0;
    loop {
        if let Some(word) = v.get(at..at + 8)
            && let Ok(word) = <[u8; 8]>::try_from(word)
        {
            let flags = unprintable(u64::from_le_bytes(word));
            if flags == 0 {
                at += 8;
                continue;
            }
            // The lowest flag is exact (see `unprintable`).
            at += (flags.trailing_zeros() / 8) as usize;
        } else {
            // Fewer than eight left: to the first byte that is not printable.
            at += v[at..].iter().position(|&b| !(b' '..=b'~').contains(&b))?;
        }
        match v[at] {
            b'\r' => return Some(at),
            b'\t' => at += 1,
            _ => return None,
        }
    }
}

/// The high bit of each byte of `w` below a space or above `~`. The lowest
/// flagged byte is exact: a borrow (below a space) only ever flags bytes
/// above the byte that caused it, as does a carry (from 0xff, which flags
/// itself); the others may be flagged wrongly, and are not read.
#[inline(always)]
fn unprintable(w: u64) -> u64 {
    let below = w.wrapping_sub(ONES * 0x20) & !w;
    let above = w.wrapping_add(ONES) | w;
    (below | above) & HIGHS
}

#[cfg(any(fuzzing, test))]
/// Where `plain` takes `section`, httparse takes it too, with the same
/// names and values: for the tests and the `head` fuzz target.
pub(crate) fn agrees_with_httparse(section: &[u8]) {
    let mut ours = Vec::new();
    let Some(len) = plain(section, section, super::HEADERS_CAP, &mut ours) else {
        return;
    };
    // httparse's way in `parse`, into a head of its own.
    let mut slots = [httparse::EMPTY_HEADER; super::HEADERS_CAP];
    let mut head = super::Head::default();
    let theirs = match super::fields_into(section, section, &mut slots, &mut head) {
        Ok(Some(n)) => Some((n, head.headers)),
        _ => None,
    };
    assert_eq!(
        Some((len, ours)),
        theirs,
        "{:?}",
        String::from_utf8_lossy(section)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `plain` on a section alone, with room for `max` lines.
    fn split(section: &[u8], max: usize) -> Option<usize> {
        plain(section, section, max, &mut Vec::new())
    }

    #[test]
    fn flags_the_first_byte_that_is_not_printable_exactly() {
        for i in 0..8 {
            for b in (0..=255u8).filter(|b| !(b' '..=b'~').contains(b)) {
                let mut word = [b'a'; 8];
                word[i] = b;
                // Bytes after it that cause borrows and carries of their own.
                for (j, w) in word.iter_mut().enumerate().skip(i + 1) {
                    *w = [0x00, 0xff, 0x1f, 0x7f, b' '][j % 5];
                }
                let flags = unprintable(u64::from_le_bytes(word));
                assert_eq!(flags.trailing_zeros() / 8, i as u32, "{word:?}");
            }
            let word = [b' ', b'~', b'a', b'Z', b'!', b'0', b'"', b'}'];
            assert_eq!(unprintable(u64::from_le_bytes(word)), 0);
        }
    }

    #[test]
    fn splits_plain_fields_as_httparse_does() {
        let sections: &[&[u8]] = &[
            b"\r\n",
            b"Host: x\r\n\r\n",
            b"Host:x\r\n\r\n",
            b"Host:\r\n\r\n",
            b"Host:   \r\n\r\n",
            b"Host: \t a b \t \r\n\r\n",
            b"A: 0123456789abcdefghij\tklmnopqrstuvwxyz \r\nB:\t\t\r\n\r\n",
            b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101\r\nAccept: */*\r\n\r\n",
            b"!#$%&'*+-.^_`|~09azAZ: ~\r\n\r\n",
        ];
        for s in sections {
            assert!(split(s, 100).is_some(), "{s:?}");
            agrees_with_httparse(s);
        }
    }

    #[test]
    fn leaves_every_line_that_is_not_plain_to_httparse() {
        let sections: &[&[u8]] = &[
            b"Host : x\r\n\r\n",
            b" Host: x\r\n\r\n",
            b"Host: x\r\n y\r\n\r\n",
            b"Host: caf\xc3\xa9\r\n\r\n",
            b"Host: a\x7fb\r\n\r\n",
            b"Host: a\x00b\r\n\r\n",
            b"Host: a\rb\r\n\r\n",
            b"H\xc3st: x\r\n\r\n",
            b": x\r\n\r\n",
            b"Host x\r\n\r\n",
            b"Host: x\r\n",
            b"Host: x",
        ];
        for s in sections {
            assert_eq!(split(s, 100), None, "{s:?}");
        }
    }

    #[test]
    fn leaves_more_lines_than_the_limit_to_httparse() {
        let s = b"A: 1\r\nB: 2\r\nC: 3\r\n\r\n";
        assert_eq!(split(s, 3), Some(s.len()));
        assert_eq!(split(s, 2), None);
    }

    /// Sections built from pieces that each need care (whitespace at both
    /// ends, tabs, empty values, long values, bytes either side of what is
    /// printable), every way up to three lines.
    #[test]
    fn agrees_with_httparse_on_built_sections() {
        let names: &[&[u8]] = &[b"a", b"Content-Length", b"x-\x7f", b"b c"];
        let values: &[&[u8]] = &[
            b"",
            b" ",
            b"v",
            b" \tv\t ",
            b"0123456789abcdef0123456789",
            b"0123456\t89abcdef",
            b"a\x1fb",
            b"a\x80b",
            b"abcdefg\xff",
            b"a\rb",
        ];
        let mut lines = Vec::new();
        for n in names {
            for v in values {
                let mut l = n.to_vec();
                l.push(b':');
                l.extend_from_slice(v);
                l.extend_from_slice(b"\r\n");
                lines.push(l);
            }
        }
        let mut checked = 0;
        for a in &lines {
            for b in lines.iter().step_by(3) {
                let mut s = a.clone();
                s.extend_from_slice(b);
                s.extend_from_slice(b"\r\n");
                agrees_with_httparse(&s);
                checked += usize::from(split(&s, 100).is_some());
            }
        }
        // The hand path took a good share, so the agreement said something.
        assert!(checked >= 40, "{checked}");
    }
}
