//! Header fields between HTTP/2 and the one HTTP/1.1 parser and writer: a
//! request's decoded fields checked as RFC 9113 §8.2–8.3 says and written
//! as HTTP/1.1 text (so requests on both versions go through one parser
//! and one set of rules), trailers as a trailer section, and a response's
//! `Name: value` lines encoded for HPACK.

use super::hpack;
use crate::http::blocks::Blocks;

/// Header fields that mean something only to one HTTP/1.1 connection:
/// malformed in an HTTP/2 request (RFC 9113 §8.2.2), left out of our
/// responses.
const CONNECTION_SPECIFIC: [&[u8]; 5] = [
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"transfer-encoding",
    b"upgrade",
];

fn connection_specific(name: &[u8]) -> bool {
    CONNECTION_SPECIFIC
        .iter()
        .any(|c| c.len() == name.len() && c.eq_ignore_ascii_case(name))
}

/// RFC 9113 §8.2.1: no byte under 0x21 (space and controls), no uppercase
/// letter, nothing from 0x7f up; a colon only as a pseudo-field's first.
fn name_ok(name: &[u8]) -> bool {
    !name.is_empty()
        && name
            .iter()
            .all(|&c| c > 0x20 && c < 0x7f && !c.is_ascii_uppercase() && c != b':')
}

/// RFC 9113 §8.2.1: no NUL, CR or LF, and no space or tab at either end.
fn value_ok(v: &[u8]) -> bool {
    !v.iter().any(|&c| c == 0 || c == b'\r' || c == b'\n')
        && !matches!(v.first(), Some(b' ' | b'\t'))
        && !matches!(v.last(), Some(b' ' | b'\t'))
}

/// Where a pseudo-field's value lies in `RequestHead::pseudo`.
type Span = Option<(usize, usize)>;

/// A request's fields as they are decoded, written as HTTP/1.1 text as
/// they come (the pseudo-fields, which come first, make the request line;
/// each regular field is then one line). The first problem found is kept
/// (the block is still decoded to its end: the HPACK table must stay in
/// step).
#[derive(Default)]
pub(super) struct RequestHead {
    /// The head as HTTP/1.1 text, once the request line is written.
    out: Vec<u8>,
    /// The pseudo-fields' values, side by side.
    pseudo: Vec<u8>,
    method: Span,
    scheme: Span,
    path: Span,
    authority: Span,
    /// The request line is written: the pseudo-fields are over.
    started: bool,
    cookies: Vec<u8>,
    /// The field list's size as RFC 9113 §6.5.2 counts it.
    size: usize,
    /// Over `max_header_bytes`: answered 431, as HTTP/1.1's head is.
    pub(super) oversized: bool,
    /// Why the request is malformed (a stream error, `PROTOCOL_ERROR`).
    pub(super) malformed: Option<&'static str>,
    pub(super) content_length: Option<u64>,
    trailers: bool,
    limit: usize,
}

impl RequestHead {
    pub(super) fn new(limit: usize) -> RequestHead {
        RequestHead {
            limit,
            ..RequestHead::default()
        }
    }

    /// For a trailer section: regular fields only.
    pub(super) fn trailers(limit: usize) -> RequestHead {
        RequestHead {
            limit,
            trailers: true,
            started: true,
            ..RequestHead::default()
        }
    }

    fn bad(&mut self, why: &'static str) {
        if self.malformed.is_none() {
            self.malformed = Some(why);
        }
    }

    fn span(&self, s: Span) -> Option<&[u8]> {
        s.map(|(a, n)| &self.pseudo[a..a + n])
    }

    /// One decoded field.
    pub(super) fn field(&mut self, name: &[u8], value: &[u8]) {
        self.size += name.len() + value.len() + 32;
        if self.size > self.limit {
            self.oversized = true;
        }
        if self.oversized || self.malformed.is_some() {
            return;
        }
        if let Some(pseudo) = name.strip_prefix(b":") {
            if self.trailers {
                return self.bad("a pseudo-field in trailers");
            }
            if self.started {
                return self.bad("a pseudo-field after a regular one");
            }
            if !value_ok(value) {
                return self.bad("a pseudo-field's value with CR, LF, NUL or edge whitespace");
            }
            let at = (self.pseudo.len(), value.len());
            let slot = match pseudo {
                b"method" => &mut self.method,
                b"scheme" => &mut self.scheme,
                b"path" => &mut self.path,
                b"authority" => &mut self.authority,
                _ => return self.bad("an unknown or response pseudo-field"),
            };
            if slot.is_some() {
                return self.bad("a pseudo-field twice");
            }
            *slot = Some(at);
            self.pseudo.extend_from_slice(value);
            return;
        }
        if !self.started {
            self.request_line();
            if self.malformed.is_some() {
                return;
            }
        }
        if !name_ok(name) {
            return self.bad("a field name with uppercase or forbidden bytes");
        }
        if !value_ok(value) {
            return self.bad("a field value with CR, LF, NUL or edge whitespace");
        }
        if connection_specific(name) {
            return self.bad("a connection-specific field");
        }
        match name {
            b"te" if value != b"trailers" => return self.bad("TE other than trailers"),
            b"content-length" => {
                // HTTP/1.1's rules for the value (the head is parsed by
                // them again, as text).
                let n = crate::http::head::parse_content_length(value).ok();
                match (n, self.content_length) {
                    (None, _) => return self.bad("a content-length that is not a number"),
                    (Some(a), Some(b)) if a != b => {
                        return self.bad("two different content-lengths");
                    }
                    (n, _) => self.content_length = n,
                }
            }
            // RFC 9113 §8.2.3: crumbs joined into one field for HTTP/1.1.
            b"cookie" if !self.trailers => {
                if !self.cookies.is_empty() {
                    self.cookies.extend_from_slice(b"; ");
                }
                self.cookies.extend_from_slice(value);
                return;
            }
            // `:authority` wins over `host` (RFC 9113 §8.3.1).
            b"host" if self.authority.is_some() => return,
            _ => {}
        }
        self.out.extend_from_slice(name);
        self.out.extend_from_slice(b": ");
        self.out.extend_from_slice(value);
        self.out.extend_from_slice(b"\r\n");
    }

    /// The pseudo-fields are over: the request line, and `host` from
    /// `:authority` (RFC 9113 §8.3.1: `:method`, and `:scheme` and a
    /// non-empty `:path` unless it is CONNECT, which has `:authority` and
    /// neither of those).
    fn request_line(&mut self) {
        self.started = true;
        let Some(method) = self.method else {
            return self.bad("no :method");
        };
        let (m0, mn) = method;
        let target = if &self.pseudo[m0..m0 + mn] == b"CONNECT" {
            if self.scheme.is_some() || self.path.is_some() {
                return self.bad("CONNECT with :scheme or :path");
            }
            match self.authority {
                Some(a) => a,
                None => return self.bad("CONNECT without :authority"),
            }
        } else {
            match (self.scheme, self.path) {
                (Some(_), Some(p)) if p.1 > 0 => p,
                (None, _) => return self.bad("no :scheme"),
                _ => return self.bad("no :path, or an empty one"),
            }
        };
        let mut out = std::mem::take(&mut self.out);
        out.reserve(self.pseudo.len() + 64);
        out.extend_from_slice(&self.pseudo[m0..m0 + mn]);
        out.push(b' ');
        out.extend_from_slice(&self.pseudo[target.0..target.0 + target.1]);
        out.extend_from_slice(b" HTTP/1.1\r\n");
        if let Some(a) = self.span(self.authority) {
            out.extend_from_slice(b"host: ");
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        self.out = out;
    }

    /// The head as HTTP/1.1 text, or why the request is malformed.
    pub(super) fn finish(mut self) -> Result<Vec<u8>, &'static str> {
        if !self.started {
            self.request_line();
        }
        if let Some(why) = self.malformed {
            return Err(why);
        }
        if !self.cookies.is_empty() {
            self.out.extend_from_slice(b"cookie: ");
            self.out.extend_from_slice(&self.cookies);
            self.out.extend_from_slice(b"\r\n");
        }
        self.out.extend_from_slice(b"\r\n");
        Ok(self.out)
    }

    /// A trailer section's fields, `name: value\r\n` each, as HTTP/1.1's
    /// trailer section has them (`Request::trailers`).
    pub(super) fn finish_trailers(self) -> Result<Vec<u8>, &'static str> {
        match self.malformed {
            Some(why) => Err(why),
            None => Ok(self.out),
        }
    }
}

/// A response's header block: `:status`, `date`, the static fields, the
/// handler's (`Name: value` lines, the connection-specific ones left
/// out), and `content-length` when the body's length is known.
pub(super) fn response_block(
    out: &mut Vec<u8>,
    blocks: &mut Blocks,
    status: u16,
    date: &[u8],
    static_headers: &[u8],
    lines: &[u8],
    length: Option<u64>,
) {
    hpack::status(out, status);
    if !date.is_empty() {
        hpack::field(out, b"date", date);
    }
    blocks.put(out, static_headers, lines, |out| {
        for line in static_headers
            .split(|&c| c == b'\n')
            .chain(lines.split(|&c| c == b'\n'))
        {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let Some(colon) = line.iter().position(|&c| c == b':') else {
                continue;
            };
            let name = &line[..colon];
            if name.is_empty() || connection_specific(name) {
                continue;
            }
            hpack::field(out, name, line[colon + 1..].trim_ascii());
        }
    });
    if let Some(n) = length {
        let mut digits = itoa::Buffer::new();
        hpack::field(out, b"content-length", digits.format(n).as_bytes());
    }
}

/// Trailer fields (`end`'s) as a header block.
pub(super) fn trailer_block(out: &mut Vec<u8>, fields: &[(String, Vec<u8>)]) {
    for (n, v) in fields {
        if !connection_specific(n.as_bytes()) {
            hpack::field(out, n.as_bytes(), v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(fields: &[(&str, &str)]) -> Result<String, &'static str> {
        let mut h = RequestHead::new(16 * 1024);
        for (n, v) in fields {
            h.field(n.as_bytes(), v.as_bytes());
        }
        h.finish().map(|b| String::from_utf8(b).unwrap())
    }

    const GET: [(&str, &str); 4] = [
        (":method", "GET"),
        (":scheme", "https"),
        (":authority", "example.org"),
        (":path", "/a?b"),
    ];

    #[test]
    fn writes_a_request_as_http11_text_with_host_from_authority_and_cookies_joined() {
        let mut f = GET.to_vec();
        f.extend([
            ("cookie", "a=1"),
            ("accept", "*/*"),
            ("host", "other"),
            ("cookie", "b=2"),
        ]);
        assert_eq!(
            head(&f).unwrap(),
            "GET /a?b HTTP/1.1\r\nhost: example.org\r\naccept: */*\r\ncookie: a=1; b=2\r\n\r\n"
        );
    }

    #[test]
    fn refuses_what_rfc_9113_calls_malformed() {
        let with = |extra: (&'static str, &'static str)| {
            let mut f = GET.to_vec();
            f.push(extra);
            head(&f)
        };
        assert!(with(("X-Upper", "1")).is_err());
        assert!(with(("connection", "close")).is_err());
        assert!(with(("te", "gzip")).is_err());
        assert!(with(("te", "trailers")).is_ok());
        assert!(with(("x-a", " lead")).is_err());
        assert!(with(("x-a", "nul\0")).is_err());
        assert!(with((":path", "/twice")).is_err());
        assert!(with((":status", "200")).is_err());
        assert!(with(("content-length", "1x")).is_err());
        assert!(
            head(&[
                (":method", "GET"),
                ("x-a", "1"),
                (":scheme", "http"),
                (":path", "/")
            ])
            .is_err()
        );
        assert!(head(&[(":scheme", "http"), (":path", "/")]).is_err());
        assert!(head(&[(":method", "GET"), (":scheme", "http"), (":path", "")]).is_err());
        assert_eq!(
            head(&[(":method", "CONNECT"), (":authority", "h:443")]).unwrap(),
            "CONNECT h:443 HTTP/1.1\r\nhost: h:443\r\n\r\n"
        );
        assert!(
            head(&[
                (":method", "CONNECT"),
                (":authority", "h:443"),
                (":path", "/")
            ])
            .is_err()
        );
    }

    #[test]
    fn counts_the_field_list_as_settings_max_header_list_size_does() {
        let mut h = RequestHead::new(100);
        h.field(b":method", b"GET");
        assert!(!h.oversized);
        h.field(b"x-big", &[b'v'; 60]);
        assert!(h.oversized);
    }

    #[test]
    fn a_response_block_leaves_connection_specific_fields_out() {
        let mut b = Vec::new();
        let mut blocks = Blocks::default();
        response_block(
            &mut b,
            &mut blocks,
            200,
            b"Sat, 05 Dec 2026 16:36:45 GMT",
            b"Server: handoff\r\n",
            b"Connection: close\r\nX-A: 1\r\n",
            Some(5),
        );
        let mut again = Vec::new();
        let lines = b"Connection: close\r\nX-A: 1\r\n";
        let date = b"Sat, 05 Dec 2026 16:36:45 GMT";
        response_block(
            &mut again,
            &mut blocks,
            200,
            date,
            b"Server: handoff\r\n",
            lines,
            Some(5),
        );
        assert_eq!(again, b, "the same from the cache");
        let mut d = hpack::Decoder::new();
        let mut got = Vec::new();
        d.decode(&b, |n, v| {
            got.push(format!(
                "{}: {}",
                String::from_utf8_lossy(n),
                String::from_utf8_lossy(v)
            ))
        })
        .unwrap();
        assert_eq!(
            got,
            [
                ":status: 200",
                "date: Sat, 05 Dec 2026 16:36:45 GMT",
                "server: handoff",
                "x-a: 1",
                "content-length: 5"
            ]
        );
    }
}
