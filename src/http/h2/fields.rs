//! Header fields between HTTP/2 and the one HTTP/1.1 parser and writer:
//! a request's head rebuilt as HTTP/1.1 text, a response's head built from
//! `Name: value` lines, trailers as a trailer section.

/// Header fields that mean something only to one HTTP/1.1 connection: not
/// allowed in HTTP/2 (RFC 9113 §8.2.2), so a handler's are left out.
pub(super) const CONNECTION_SPECIFIC: [&str; 5] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
];

/// Trailer fields as HTTP/1.1's trailer section has them.
pub(super) fn trailer_lines(map: &http::HeaderMap) -> Vec<u8> {
    let mut b = Vec::new();
    for (n, v) in map {
        b.extend_from_slice(n.as_str().as_bytes());
        b.extend_from_slice(b": ");
        b.extend_from_slice(v.as_bytes());
        b.extend_from_slice(b"\r\n");
    }
    b
}

/// The response head: `date`, the static fields, the handler's
/// (`Name: value` lines, names lowercased, the connection-specific ones
/// left out), and `content-length` when the body's length is known.
/// `None` if `http` refuses a field.
pub(super) fn response_head(
    status: u16,
    date: &[u8],
    static_headers: &[u8],
    lines: &[u8],
    length: Option<u64>,
) -> Option<http::Response<()>> {
    use http::header::{CONTENT_LENGTH, DATE, HeaderName, HeaderValue};
    let mut map = http::HeaderMap::with_capacity(8);
    map.insert(DATE, HeaderValue::from_bytes(date).ok()?);
    for line in static_headers
        .split(|&c| c == b'\n')
        .chain(lines.split(|&c| c == b'\n'))
    {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&c| c == b':') else {
            continue;
        };
        let name = &line[..colon];
        if CONNECTION_SPECIFIC
            .iter()
            .any(|c| c.as_bytes().eq_ignore_ascii_case(name))
        {
            continue;
        }
        // `from_bytes` lowercases the name, as HTTP/2 wants it.
        let name = HeaderName::from_bytes(name).ok()?;
        let value = HeaderValue::from_bytes(line[colon + 1..].trim_ascii()).ok()?;
        map.append(name, value);
    }
    if let Some(n) = length {
        map.insert(CONTENT_LENGTH, HeaderValue::from(n));
    }
    let mut head = http::Response::new(());
    *head.status_mut() = http::StatusCode::from_u16(status).ok()?;
    *head.headers_mut() = map;
    Some(head)
}

/// The request head as HTTP/1.1 text: `METHOD TARGET HTTP/1.1`, `host`
/// from `:authority`, then every field (the `h2` crate has already refused
/// connection-specific ones, bad pseudo-fields and `TE` other than
/// `trailers`).
pub(super) fn rebuild_head(parts: &http::request::Parts) -> Vec<u8> {
    let mut b = Vec::with_capacity(256);
    b.extend_from_slice(parts.method.as_str().as_bytes());
    b.push(b' ');
    match parts.uri.path_and_query() {
        Some(pq) => b.extend_from_slice(pq.as_str().as_bytes()),
        None => match parts.uri.authority() {
            // CONNECT names an authority, not a path.
            Some(a) => b.extend_from_slice(a.as_str().as_bytes()),
            None => b.push(b'/'),
        },
    }
    b.extend_from_slice(b" HTTP/1.1\r\n");
    let authority = parts.uri.authority();
    if let Some(a) = authority {
        b.extend_from_slice(b"host: ");
        b.extend_from_slice(a.as_str().as_bytes());
        b.extend_from_slice(b"\r\n");
    }
    for (name, value) in &parts.headers {
        // `:authority` wins over a `host` field (RFC 9113 §8.3.1).
        if authority.is_some() && name == http::header::HOST {
            continue;
        }
        b.extend_from_slice(name.as_str().as_bytes());
        b.extend_from_slice(b": ");
        b.extend_from_slice(value.as_bytes());
        b.extend_from_slice(b"\r\n");
    }
    b.extend_from_slice(b"\r\n");
    b
}
