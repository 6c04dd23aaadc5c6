//! The request line (RFC 9112 §3): read by hand, the field lines after it
//! by httparse (`super::fields_into`). The target's bytes are looked at
//! once, by `check`, through `scan_target`.

use super::{Span, next_lf, parse_error_reason};
use crate::http::status::Reject;
use crate::http::token::is_tchar;

/// Is `v`, the line's last 8 bytes, `HTTP/d.d`? Then a version we do not
/// read is one we do not speak (505), not garbage (400).
fn other_version(v: &[u8; 8]) -> bool {
    v.starts_with(b"HTTP/") && v[5].is_ascii_digit() && v[6] == b'.' && v[7].is_ascii_digit()
}

/// The request line's parts, and where its field lines begin.
pub(super) struct Line {
    pub(super) method: Span,
    pub(super) target: Span,
    pub(super) minor: u8,
    pub(super) len: usize,
}

/// `method SP request-target SP HTTP-version CRLF` (RFC 9112 §3), after
/// any empty lines before it (§2.2), in a head `find_end` has found whole:
/// every line in it ends in CRLF. `None`: nothing but empty lines yet.
///
/// By hand, not httparse's request parser (which still parses the field
/// lines): the line is three tokens with one space between each, and
/// httparse's parse of it cost 336 instructions a small request
/// (callgrind), a third of it a UTF-8 check of a target `check` refuses
/// unless it is ASCII. Bytes let through are those httparse lets through,
/// `agrees_with_httparse_on_request_lines` in the tests.
#[inline(always)]
pub(super) fn request_line(head: &[u8], first_lf: Option<usize>) -> Result<Option<Line>, Reject> {
    let mut at = 0;
    while head[at..].starts_with(b"\r\n") {
        at += 2;
    }
    // The line, without its CRLF (`find_end` saw every LF after a CR).
    let lf = match first_lf {
        Some(lf) if at == 0 => Some(lf),
        _ => next_lf(head, at),
    };
    let Some(lf) = lf else {
        return Ok(None);
    };
    let line = &head[at..lf - 1];
    let invalid = || Reject::new(400, parse_error_reason(httparse::Error::Token));
    // The method: `GET` read as one word (most requests' method; a byte
    // loop over the table cost 25 instructions), any other by the table.
    let m = if line.starts_with(b"GET ") {
        3
    } else {
        line.iter()
            .position(|&b| !is_tchar(b))
            .unwrap_or(line.len())
    };
    // `M T HTTP/1.1`: a method, a space, a target of a byte at least,
    // and the version after the last space. The target's bytes are
    // `check`'s to look at, in its one pass over them.
    let room = m + 11 <= line.len();
    if m == 0 || line.get(m) != Some(&b' ') || !room || line[line.len() - 9] != b' ' {
        return Err(invalid());
    }
    let version: [u8; 8] = line[line.len() - 8..].try_into().map_err(|_| invalid())?;
    let v = u64::from_ne_bytes(version);
    let minor = if v == u64::from_ne_bytes(*b"HTTP/1.1") {
        1
    } else if v == u64::from_ne_bytes(*b"HTTP/1.0") {
        0
    } else if !line.contains(&b'\r') && other_version(&version) {
        return Err(Reject::new(505, "HTTP version not supported"));
    } else {
        return Err(Reject::new(
            400,
            parse_error_reason(httparse::Error::Version),
        ));
    };
    Ok(Some(Line {
        method: Span::of(head, &line[..m]),
        target: Span::of(head, &line[m + 1..line.len() - 9]),
        minor,
        len: lf + 1,
    }))
}

/// Where the target's query begins (its `?`), if it has one; a refusal
/// for a byte no target may have (outside `!`..`~`: `request_line` left
/// them to us) and for a fragment. Eight bytes at a time up to the first
/// word with anything but plain bytes in it: a byte loop cost 6
/// instructions a byte (callgrind).
pub(super) fn scan_target(target: &[u8]) -> Result<Option<usize>, Reject> {
    let mut from = 0;
    let mut all_plain = true;
    while let Some(word) = target.get(from..from + 8) {
        let Ok(word) = <[u8; 8]>::try_from(word) else {
            break;
        };
        if !plain(word) {
            all_plain = false;
            break;
        }
        from += 8;
    }
    // Fewer than eight left, all plain before them: the last eight bytes
    // as one word (some seen already, plain) tell whether the rest is
    // plain too, without the byte loop.
    if all_plain
        && let Some(&last) = target.last_chunk::<8>()
        && plain(last)
    {
        return Ok(None);
    }
    let mut query_at = None;
    for (i, &b) in target.iter().enumerate().skip(from) {
        match b {
            0x80.. => return Err(Reject::new(400, "non-ASCII request target")),
            ..=b' ' | 0x7f => {
                return Err(Reject::new(400, parse_error_reason(httparse::Error::Token)));
            }
            b'#' => return Err(Reject::new(400, "fragment in request target")),
            b'?' if query_at.is_none() => query_at = Some(i),
            _ => {}
        }
    }
    Ok(query_at)
}

/// No byte below `!` or above `~`, no `#`, no `?` in `word` (each flag is
/// set exactly when some byte is one).
#[inline(always)]
fn plain(word: [u8; 8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    let w = u64::from_le_bytes(word);
    let below = w.wrapping_sub(ONES * 0x21) & !w;
    let above = w.wrapping_add(ONES) | w;
    let is = |b: u8| {
        let x = w ^ (ONES * u64::from(b));
        x.wrapping_sub(ONES) & !x
    };
    (below | above | is(b'#') | is(b'?')) & HIGHS == 0
}
