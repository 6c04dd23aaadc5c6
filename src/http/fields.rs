//! Header fields between HTTP/2 and the one HTTP/1.1 parser and writer:
//! a request's head rebuilt as HTTP/1.1 text, a response's head built from
//! `Name: value` lines, trailers as a trailer section.

/// Header fields that mean something only to one HTTP/1.1 connection: not
/// allowed in HTTP/2 (RFC 9113 §8.2.2), so a handler's are left out.
const CONNECTION_SPECIFIC: [&str; 5] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
];

/// Trailer fields as HTTP/1.1's trailer section has them.
pub(crate) fn trailer_lines(map: &http::HeaderMap) -> Vec<u8> {
    let mut b = Vec::new();
    for (n, v) in map {
        b.extend_from_slice(n.as_str().as_bytes());
        b.extend_from_slice(b": ");
        b.extend_from_slice(v.as_bytes());
        b.extend_from_slice(b"\r\n");
    }
    b
}

/// Response heads built from a handler's lines, the last few kept (a
/// connection or a loop serving the same files again, as a page's assets
/// are, builds each head once: building one cost some 5,000 instructions,
/// callgrind), and the `date` value of the current second.
#[derive(Default)]
pub(crate) struct Heads {
    recent: std::collections::VecDeque<(Box<[u8]>, http::HeaderMap)>,
    date: Option<(Box<[u8]>, http::HeaderValue)>,
}

/// Heads kept, at most.
const KEPT: usize = 8;

impl Heads {
    /// The response head: `date`, the static fields, the handler's
    /// (`Name: value` lines, names lowercased, the connection-specific
    /// ones left out), and `content-length` when the body's length is
    /// known. `None` if `http` refuses a field.
    pub(crate) fn response(
        &mut self,
        status: u16,
        date: &[u8],
        static_headers: &[u8],
        lines: &[u8],
        length: Option<u64>,
    ) -> Option<http::Response<()>> {
        use http::header::{CONTENT_LENGTH, DATE, HeaderValue};
        let mut map = match self.recent.iter().find(|(k, _)| **k == *lines) {
            Some((_, m)) => m.clone(),
            None => {
                let m = fields_of(static_headers, lines)?;
                if self.recent.len() == KEPT {
                    self.recent.pop_front();
                }
                self.recent.push_back((lines.into(), m.clone()));
                m
            }
        };
        let date = match &self.date {
            Some((d, v)) if **d == *date => v.clone(),
            _ => {
                let v = HeaderValue::from_bytes(date).ok()?;
                self.date = Some((date.into(), v.clone()));
                v
            }
        };
        map.insert(DATE, date);
        if let Some(n) = length {
            map.insert(CONTENT_LENGTH, HeaderValue::from(n));
        }
        let mut head = http::Response::new(());
        *head.status_mut() = http::StatusCode::from_u16(status).ok()?;
        *head.headers_mut() = map;
        Some(head)
    }
}

/// The static fields and the handler's, as a header map.
fn fields_of(static_headers: &[u8], lines: &[u8]) -> Option<http::HeaderMap> {
    use http::header::{HeaderName, HeaderValue};
    let mut map = http::HeaderMap::with_capacity(8);
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
    Some(map)
}

/// The request head as HTTP/1.1 text: `METHOD TARGET HTTP/1.1`, `host`
/// from `:authority`, then every field (the `h2` crate has already refused
/// connection-specific ones, bad pseudo-fields and `TE` other than
/// `trailers`).
pub(crate) fn rebuild_head(parts: &http::request::Parts) -> Vec<u8> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_head_is_the_one_built_and_takes_the_current_date() {
        let mut h = Heads::default();
        let lines = b"Content-Type: text/plain\r\nConnection: close\r\nX-A: 1\r\n";
        let first = h
            .response(200, b"D1", b"Server: t\r\n", lines, Some(5))
            .unwrap();
        let again = h
            .response(404, b"D2", b"Server: t\r\n", lines, None)
            .unwrap();
        assert_eq!(first.headers()["content-type"], "text/plain");
        assert_eq!(first.headers()["server"], "t");
        assert_eq!(first.headers()["x-a"], "1");
        assert!(
            first.headers().get("connection").is_none(),
            "connection-specific"
        );
        assert_eq!(first.headers()["content-length"], "5");
        assert_eq!(first.headers()["date"], "D1");
        assert_eq!(again.status(), 404);
        assert_eq!(again.headers()["date"], "D2");
        assert!(again.headers().get("content-length").is_none());
        assert_eq!(again.headers()["x-a"], "1");
        // A field `http` refuses is no head at all.
        assert!(
            h.response(200, b"D2", b"", b"Bad Name: x\r\n", None)
                .is_none()
        );
    }
}
