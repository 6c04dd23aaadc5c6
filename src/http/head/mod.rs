//! Request heads: finding their end, parsing them (the request line by
//! hand, `line.rs`; the field lines with httparse), and the RFC 9112 rules
//! a parser leaves to us (framing, Host, target forms).
//!
//! The parsed head is kept as offsets into the connection's read buffer, so
//! a request costs no allocation: the `Vec` of spans is reused.

mod fields;
mod line;

#[cfg(any(fuzzing, test))]
pub(crate) use self::fields::agrees_with_httparse as fields_agree_with_httparse;
use self::line::{request_line, scan_target};
use super::limits::{HEADERS_CAP, Limits};
use super::status::Reject;

/// A byte range relative to the start of the request in the read buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    pub(crate) fn get<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.start as usize..self.end as usize]
    }
    fn of(base: &[u8], part: &[u8]) -> Span {
        let start = part.as_ptr() as usize - base.as_ptr() as usize;
        Span {
            start: start as u32,
            end: (start + part.len()) as u32,
        }
    }
}

/// How the request body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    None,
    Length(u64),
    Chunked,
}

/// A parsed request head, as spans into the buffer it was parsed from.
#[derive(Debug, Default)]
pub(crate) struct Head {
    pub len: usize,
    pub method: Span,
    pub target: Span,
    /// Minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    pub headers: Vec<(Span, Span)>,
    pub path: Span,
    pub query: Option<Span>,
    pub host: Option<Span>,
    pub framing: Option<Framing>,
    pub keep_alive: bool,
    pub expect_continue: bool,
    pub is_head: bool,
    pub asterisk: bool,
}

/// Scans for the end of a head from `*scanned` on, so that a client sending
/// one byte at a time costs linear, not quadratic, work. Returns the length
/// of the head up to and including its empty line if one is present.
///
/// Every line must end in CRLF. A bare LF is refused rather than read as a
/// line end (RFC 9112 §2.2 allows either): a front proxy that splits lines
/// only on CRLF sees `A: x\nB: y` as one field where a lenient parser sees
/// two, which is how requests are smuggled past it.
/// `first_lf`: the first LF in `buf`, if known (no line end lies before
/// it, so the scan starts there).
fn find_end(
    buf: &[u8],
    scanned: &mut usize,
    first_lf: Option<usize>,
) -> Result<Option<usize>, Reject> {
    let mut from = (*scanned).max(first_lf.unwrap_or(0));
    while let Some(i) = next_lf(buf, from) {
        from = i + 1;
        if i == 0 || buf[i - 1] != b'\r' {
            return Err(Reject::new(
                400,
                "bare LF in the request head (lines end in CRLF)",
            ));
        }
        if i >= 3 && &buf[i - 3..i - 1] == b"\r\n" {
            *scanned = i + 1;
            return Ok(Some(i + 1));
        }
    }
    *scanned = buf.len();
    Ok(None)
}

/// The first LF in `buf` at or after `from`, eight bytes at a time: a
/// byte loop over a small request's head cost ~120 instructions, and the
/// `memchr` crate's setup for each call on a few dozen bytes ate most of
/// what its SIMD saves (callgrind, both).
fn next_lf(buf: &[u8], mut from: usize) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    const LFS: u64 = u64::from_ne_bytes([b'\n'; 8]);
    while let Some(word) = buf.get(from..from + 8) {
        let Ok(word) = <[u8; 8]>::try_from(word) else {
            break;
        };
        // A zero byte where an LF was; the lowest flagged byte is exact
        // (a borrow only ever flags bytes above a true zero).
        let w = u64::from_le_bytes(word) ^ LFS;
        let zero = w.wrapping_sub(ONES) & !w & HIGHS;
        if zero != 0 {
            return Some(from + (zero.trailing_zeros() / 8) as usize);
        }
        from += 8;
    }
    let tail = buf.get(from..)?;
    tail.iter().position(|&b| b == b'\n').map(|p| from + p)
}

/// The first LF within the longest request line allowed, or a 414.
#[inline(always)]
fn first_lf(buf: &[u8], limits: &Limits) -> Result<Option<usize>, Reject> {
    let window = &buf[..buf.len().min(limits.max_request_line + 1)];
    match next_lf(window, 0) {
        Some(p) if p <= limits.max_request_line => Ok(Some(p)),
        None if window.len() <= limits.max_request_line => Ok(None),
        _ => Err(Reject::new(414, "request line too long")),
    }
}

/// Parses a head if the whole of it is in `buf`.
/// `Ok(false)`: not complete yet (and within limits).
// Inlined into each caller (HTTP/1.1's reader, HTTP/2's stream): called
// from two places it stopped being inlined into HTTP/1.1's request path,
// which cost 100 instructions a request (callgrind).
#[inline(always)]
pub(crate) fn parse(
    buf: &[u8],
    scanned: &mut usize,
    limits: &Limits,
    head: &mut Head,
) -> Result<bool, Reject> {
    if buf.first() == Some(&0x16) {
        return Err(Reject::new(400, "a TLS handshake on a plain-HTTP listener"));
    }
    let first_lf = first_lf(buf, limits)?;
    let Some(end) = find_end(buf, scanned, first_lf)? else {
        if buf.len() > limits.max_header_bytes {
            return Err(Reject::new(431, "request head too large"));
        }
        return Ok(false);
    };
    if end > limits.max_header_bytes {
        return Err(Reject::new(431, "request head too large"));
    }
    let Some(line) = request_line(&buf[..end], first_lf)? else {
        // Leading empty lines looked like an end; keep reading.
        return Ok(false);
    };
    head.method = line.method;
    head.target = line.target;
    head.minor = line.minor;
    let fields = &buf[line.len..end];
    let n = limits.max_headers.min(HEADERS_CAP);
    let taken = match fields::plain(buf, fields, n, &mut head.headers) {
        Some(len) => Ok(Some(len)),
        None => httparse_fields(buf, fields, n, head),
    };
    head.len = match taken {
        Ok(Some(len)) => line.len + len,
        Ok(None) => return Ok(false),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Reject::new(431, "too many header fields"));
        }
        Err(e) => return Err(Reject::new(400, parse_error_reason(e))),
    };
    check(buf, head, limits)?;
    Ok(true)
}

/// The field lines with httparse, where `fields::plain` gave up on them:
/// out of line, as few requests need it.
#[inline(never)]
fn httparse_fields(
    buf: &[u8],
    fields: &[u8],
    n: usize,
    head: &mut Head,
) -> Result<Option<usize>, httparse::Error> {
    // A field line takes 4 bytes at least (`a:` CRLF), and the section
    // ends in a CRLF of its own: a section that cannot hold more than a
    // few fields gets a few slots.
    let k = n.min(FEW_FIELDS).min(fields.len().saturating_sub(2) / 4);
    let mut few = [httparse::EMPTY_HEADER; FEW_FIELDS];
    match fields_into(buf, fields, &mut few[..k], head) {
        Err(httparse::Error::TooManyHeaders) if n > k => many_fields_into(buf, fields, n, head),
        taken => taken,
    }
}

/// Field-line slots on the stack for the usual request (a browser's has
/// 10 to 20 fields). httparse wants them initialised, and filling all 256
/// for every request (8 KiB) would cost more than parsing a small head.
const FEW_FIELDS: usize = 32;

/// Parses the field lines into `head.headers` with httparse, given its
/// slots. `None`: not complete.
#[inline(always)]
fn fields_into<'b>(
    buf: &'b [u8],
    fields: &'b [u8],
    slots: &mut [httparse::Header<'b>],
    head: &mut Head,
) -> Result<Option<usize>, httparse::Error> {
    let httparse::Status::Complete((len, parsed)) = httparse::parse_headers(fields, slots)? else {
        return Ok(None);
    };
    head.headers.clear();
    for h in parsed {
        head.headers
            .push((Span::of(buf, h.name.as_bytes()), Span::of(buf, h.value)));
    }
    Ok(Some(len))
}

/// `fields_into` with room for `n` fields, for a head with more fields
/// than the slots it was first given: parsed again, out of the usual path.
#[cold]
#[inline(never)]
fn many_fields_into(
    buf: &[u8],
    fields: &[u8],
    n: usize,
    head: &mut Head,
) -> Result<Option<usize>, httparse::Error> {
    let mut slots = [httparse::EMPTY_HEADER; HEADERS_CAP];
    fields_into(buf, fields, &mut slots[..n], head)
}

fn parse_error_reason(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name (whitespace before colon or obs-fold)",
        httparse::Error::HeaderValue => "invalid header value (bare CR or control character)",
        httparse::Error::NewLine => "invalid line ending (bare CR)",
        httparse::Error::Token => "invalid request line",
        httparse::Error::Version => "invalid HTTP version",
        httparse::Error::Status => "invalid status",
        httparse::Error::TooManyHeaders => "too many headers",
    }
}

fn eq(a: &[u8], b: &str) -> bool {
    a.eq_ignore_ascii_case(b.as_bytes())
}

/// Splits a comma-separated field value into trimmed, non-empty items.
pub(crate) fn csv(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(|s| s.trim_ascii())
        .filter(|s| !s.is_empty())
}

pub(crate) fn parse_content_length(v: &[u8]) -> Result<u64, Reject> {
    let bad = || Reject::new(400, "invalid Content-Length");
    let mut value: Option<u64> = None;
    // A list of identical values ("5, 5") is allowed by RFC 9110 §8.6;
    // anything else is a smuggling attempt.
    for item in v.split(|&b| b == b',').map(|s| s.trim_ascii()) {
        if item.is_empty() || !item.iter().all(u8::is_ascii_digit) || item.len() > 19 {
            return Err(bad());
        }
        let n: u64 = std::str::from_utf8(item)
            .map_err(|_| bad())?
            .parse()
            .map_err(|_| bad())?;
        match value {
            Some(prev) if prev != n => {
                return Err(Reject::new(400, "differing Content-Length values"));
            }
            _ => value = Some(n),
        }
    }
    value.ok_or_else(bad)
}

/// Bytes a host (or an authority's host and port) may have, by value.
static HOST_BYTES: [bool; 256] = crate::http::token::alnum_and(b"-._~!$&'()*+,;=%:[]");

/// A byte a lookup: the `matches!` over nineteen marks it replaces cost
/// 19 instructions for a one-byte host (callgrind).
#[inline]
fn valid_host(h: &[u8]) -> bool {
    h.iter().all(|&b| HOST_BYTES[usize::from(b)])
}

fn check(buf: &[u8], head: &mut Head, limits: &Limits) -> Result<(), Reject> {
    let method = head.method.get(buf);
    head.is_head = method == b"HEAD";
    let target = head.target.get(buf);
    // One pass over the target: its bytes, its fragment, its query.
    let query_at = scan_target(target)?;
    head.asterisk = false;
    head.query = None;
    head.host = None;

    // Target forms (RFC 9112 §3.2).
    let mut authority: Option<Span> = None;
    let path_and_query: &[u8] = if target.first() == Some(&b'/') {
        target
    } else if target == b"*" {
        if method != b"OPTIONS" {
            return Err(Reject::new(400, "asterisk-form is only for OPTIONS"));
        }
        head.asterisk = true;
        &target[..0]
    } else if let Some(rest) = strip_scheme(target) {
        let auth_end = rest
            .iter()
            .position(|&b| b == b'/' || b == b'?')
            .unwrap_or(rest.len());
        let auth = &rest[..auth_end];
        let host = match auth.iter().rposition(|&b| b == b'@') {
            Some(_) => return Err(Reject::new(400, "userinfo in request target")),
            None => auth,
        };
        if host.is_empty() || !valid_host(host) {
            return Err(Reject::new(400, "invalid authority in request target"));
        }
        authority = Some(Span::of(buf, host));
        &rest[auth_end..]
    } else if method == b"CONNECT" {
        authority = Some(head.target);
        &target[..0]
    } else {
        return Err(Reject::new(400, "invalid request target"));
    };
    if target.len() > limits.max_request_line {
        return Err(Reject::new(414, "request target too long"));
    }
    // Where `path_and_query` begins in the target: the `?` found above is
    // its query's, unless it came before (in an authority: refused there).
    let base = target.len() - path_and_query.len();
    match query_at.and_then(|q| q.checked_sub(base)) {
        Some(q) => {
            head.path = Span::of(buf, &path_and_query[..q]);
            head.query = Some(Span::of(buf, &path_and_query[q + 1..]));
        }
        None => head.path = Span::of(buf, path_and_query),
    }

    let mut host_count = 0;
    let mut content_length: Option<u64> = None;
    let mut te_seen = false;
    let mut chunked_last = false;
    let mut chunked_count = 0;
    let mut unknown_coding = false;
    let mut close = false;
    let mut keep_alive_token = false;
    head.expect_continue = false;

    for &(name, value) in &head.headers {
        let name = name.get(buf);
        let value = value.get(buf);
        match Field::of(name) {
            Field::Other => {}
            Field::Host => {
                host_count += 1;
                if !valid_host(value) {
                    return Err(Reject::new(400, "invalid Host"));
                }
                if authority.is_none() {
                    head.host = Some(Span::of(buf, value));
                }
            }
            Field::ContentLength => {
                let n = parse_content_length(value)?;
                if let Some(prev) = content_length
                    && prev != n
                {
                    return Err(Reject::new(400, "differing Content-Length values"));
                }
                content_length = Some(n);
            }
            Field::TransferEncoding => {
                te_seen = true;
                let mut any = false;
                for coding in csv(value) {
                    any = true;
                    chunked_last = false;
                    if eq(coding, "chunked") {
                        chunked_count += 1;
                        chunked_last = true;
                    } else {
                        unknown_coding = true;
                    }
                }
                if !any {
                    return Err(Reject::new(400, "empty Transfer-Encoding"));
                }
            }
            Field::Connection => {
                for token in csv(value) {
                    if eq(token, "close") {
                        close = true;
                    } else if eq(token, "keep-alive") {
                        keep_alive_token = true;
                    }
                }
            }
            Field::Expect => {
                if eq(value, "100-continue") {
                    head.expect_continue = true;
                } else {
                    return Err(Reject::new(417, "unsupported expectation"));
                }
            }
        }
    }

    if authority.is_some() {
        head.host = authority;
    }
    if host_count > 1 {
        return Err(Reject::new(400, "more than one Host"));
    }
    if head.minor == 1 && host_count == 0 {
        return Err(Reject::new(400, "HTTP/1.1 request without Host"));
    }

    // Framing (RFC 9112 §6.1, §6.3): every ambiguity is a 400 and a close.
    head.framing = Some(if te_seen {
        if content_length.is_some() {
            return Err(Reject::new(
                400,
                "both Content-Length and Transfer-Encoding",
            ));
        }
        if head.minor == 0 {
            return Err(Reject::new(400, "Transfer-Encoding in an HTTP/1.0 request"));
        }
        if chunked_count > 1 || !chunked_last {
            return Err(Reject::new(
                400,
                "chunked is not the final transfer coding exactly once",
            ));
        }
        if unknown_coding {
            return Err(Reject::new(501, "unsupported transfer coding"));
        }
        Framing::Chunked
    } else if let Some(n) = content_length {
        if n == 0 {
            Framing::None
        } else {
            Framing::Length(n)
        }
    } else {
        Framing::None
    });

    head.keep_alive = if head.minor == 1 {
        !close
    } else {
        keep_alive_token && !close
    };
    // A 100 is never sent to an HTTP/1.0 client (RFC 9110 §10.1.1).
    head.expect_continue &= head.minor == 1;
    Ok(())
}

/// The fields `check` reads, and the rest.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Field {
    Host,
    ContentLength,
    TransferEncoding,
    Connection,
    Expect,
    Other,
}

impl Field {
    /// Told apart by length, then by bytes with the case bit set: exact
    /// for a token, which is all httparse lets through as a name (the
    /// only byte other than a letter's other case to match a letter or
    /// `-` so is CR, never in a token). `eq_ignore_ascii_case` for each
    /// name in turn cost about 30 instructions for a one-field head
    /// (callgrind).
    #[inline]
    fn of(name: &[u8]) -> Field {
        match name.len() {
            4 if folded_is(name, b"host") => Field::Host,
            6 if folded_is(name, b"expect") => Field::Expect,
            10 if folded_is(name, b"connection") => Field::Connection,
            14 if folded_is(name, b"content-length") => Field::ContentLength,
            17 if folded_is(name, b"transfer-encoding") => Field::TransferEncoding,
            _ => Field::Other,
        }
    }
}

/// `name` with the case bit set on every byte is `want`: a fixed length,
/// so the loop unrolls, and no branch per byte.
#[inline(always)]
fn folded_is<const N: usize>(name: &[u8], want: &[u8; N]) -> bool {
    let Ok(name) = <&[u8; N]>::try_from(name) else {
        return false;
    };
    let mut differ = 0;
    for i in 0..N {
        differ |= (name[i] | 0x20) ^ want[i];
    }
    differ == 0
}

fn strip_scheme(target: &[u8]) -> Option<&[u8]> {
    for scheme in ["http://", "https://"] {
        if target.len() > scheme.len()
            && target[..scheme.len()].eq_ignore_ascii_case(scheme.as_bytes())
        {
            return Some(&target[scheme.len()..]);
        }
    }
    None
}

#[cfg(test)]
mod tests;
