//! Response heads, written in one place: how a body is delimited (decided
//! once for one-shot and step-wise responses alike), the status line and
//! header section, and the small canned answers other processes write
//! without the engine (a 503 from the WebSocket pool or `handoff pass`, a
//! worker's 101).

use super::status::{has_no_body, reason_phrase};

/// How a response's body is delimited and whether the connection stays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ResponseFraming {
    /// The status has no body (1xx, 204, 304).
    pub no_body: bool,
    /// `Transfer-Encoding: chunked` (a body of unknown length, HTTP/1.1).
    pub chunked: bool,
    pub keep_alive: bool,
}

impl ResponseFraming {
    /// `len`: the body's length if known. An HTTP/1.0 client cannot read
    /// chunked, so a body of unknown length is delimited by closing the
    /// connection.
    pub(crate) fn decide(
        status: u16,
        len: Option<u64>,
        is_head: bool,
        minor: u8,
        keep_alive: bool,
    ) -> ResponseFraming {
        let no_body = has_no_body(status);
        let unknown = len.is_none() && !no_body;
        ResponseFraming {
            no_body,
            chunked: unknown && minor == 1,
            keep_alive: keep_alive && !(unknown && minor == 0 && !is_head),
        }
    }
}

/// Writes the status line and header section. `headers` are the handler's
/// `Name: value\r\n` lines; the framing fields are ours.
#[allow(clippy::too_many_arguments)]
pub(crate) fn head(
    b: &mut Vec<u8>,
    status: u16,
    date: &[u8],
    static_headers: &[u8],
    headers: &[u8],
    len: Option<u64>,
    minor: u8,
    f: ResponseFraming,
) {
    // Pieces, and numbers by `itoa`, not `write!`: this runs for every
    // response, and the formatting machinery was a tenth of its cost.
    let mut num = itoa::Buffer::new();
    // One reservation for the usual head; the line of the usual statuses
    // in one piece.
    b.reserve(64 + date.len() + static_headers.len() + headers.len());
    match status {
        200 => b.extend_from_slice(b"HTTP/1.1 200 OK\r\nDate: "),
        304 => b.extend_from_slice(b"HTTP/1.1 304 Not Modified\r\nDate: "),
        404 => b.extend_from_slice(b"HTTP/1.1 404 Not Found\r\nDate: "),
        _ => {
            b.extend_from_slice(b"HTTP/1.1 ");
            b.extend_from_slice(num.format(status).as_bytes());
            b.push(b' ');
            b.extend_from_slice(reason_phrase(status).as_bytes());
            b.extend_from_slice(b"\r\nDate: ");
        }
    }
    // An IMF-fixdate is 29 bytes: known so, the copy is two moves, not a
    // call to `memcpy`.
    match <&[u8; 29]>::try_from(date) {
        Ok(fixed) => b.extend_from_slice(fixed),
        Err(_) => b.extend_from_slice(date),
    }
    b.extend_from_slice(b"\r\n");
    // Most servers have none: no call to copy nothing.
    if !static_headers.is_empty() {
        b.extend_from_slice(static_headers);
    }
    b.extend_from_slice(headers);
    if !f.no_body {
        match len {
            Some(n) => {
                b.extend_from_slice(b"Content-Length: ");
                b.extend_from_slice(num.format(n).as_bytes());
                b.extend_from_slice(b"\r\n");
            }
            None if f.chunked => b.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
            None => {}
        }
    }
    if !f.keep_alive {
        b.extend_from_slice(b"Connection: close\r\n");
    } else if minor == 0 {
        b.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    b.extend_from_slice(b"\r\n");
}

/// A whole plain-text answer that closes the connection, for code outside
/// the engine (the WebSocket pool, `handoff pass`). `extra`: more header
/// lines, `Name: value\r\n` each.
pub(crate) fn canned(status: u16, why: &str, extra: &str) -> Vec<u8> {
    let reason = reason_phrase(status);
    let body = format!("{status} {reason}: {why}\n");
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The 101 that completes a WebSocket opening handshake, with the
/// subprotocol agreed if there is one (a token, checked by its route).
pub(crate) fn switching_to_websocket(
    accept_key: &str,
    protocol: Option<&str>,
    extensions: Option<&str>,
) -> Vec<u8> {
    let protocol = protocol.map_or(String::new(), |p| {
        format!("Sec-WebSocket-Protocol: {p}\r\n")
    });
    let extensions = extensions.map_or(String::new(), |e| {
        format!("Sec-WebSocket-Extensions: {e}\r\n")
    });
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept_key}\r\n{protocol}{extensions}\r\n"
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_usual_status_lines_written_in_one_piece_read_as_any_other() {
        for status in [200, 304, 404] {
            let mut b = Vec::new();
            let f = ResponseFraming::decide(status, Some(0), false, 1, true);
            head(&mut b, status, b"D", b"", b"", Some(0), 1, f);
            let line = format!("HTTP/1.1 {status} {}\r\nDate: D\r\n", reason_phrase(status));
            assert!(b.starts_with(line.as_bytes()), "{status}");
        }
    }

    #[test]
    fn frames_by_length_chunks_or_close_by_version() {
        let f = |status, len, is_head, minor| {
            ResponseFraming::decide(status, len, is_head, minor, true)
        };
        let ka = |no_body, chunked, keep_alive| ResponseFraming {
            no_body,
            chunked,
            keep_alive,
        };
        assert_eq!(f(200, Some(5), false, 1), ka(false, false, true));
        assert_eq!(f(200, None, false, 1), ka(false, true, true));
        assert_eq!(
            f(200, None, false, 0),
            ka(false, false, false),
            "1.0: close-delimited"
        );
        assert_eq!(
            f(200, None, true, 0),
            ka(false, false, true),
            "HEAD sends no body"
        );
        assert_eq!(f(204, None, false, 1), ka(true, false, true));
        assert_eq!(f(304, None, false, 0), ka(true, false, true));
        assert!(!ResponseFraming::decide(200, Some(1), false, 1, false).keep_alive);
    }

    #[test]
    fn writes_the_framing_fields_itself() {
        let mut b = Vec::new();
        let f = ResponseFraming::decide(200, None, false, 1, false);
        head(&mut b, 200, b"D", b"Server: s\r\n", b"X: 1\r\n", None, 1, f);
        assert_eq!(
            b,
            b"HTTP/1.1 200 OK\r\nDate: D\r\nServer: s\r\nX: 1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        );
        let mut b = Vec::new();
        head(
            &mut b,
            200,
            b"D",
            b"",
            b"",
            Some(3),
            0,
            ResponseFraming::decide(200, Some(3), false, 0, true),
        );
        assert!(b.ends_with(b"Content-Length: 3\r\nConnection: keep-alive\r\n\r\n"));
    }

    #[test]
    fn canned_answers_are_complete_and_close() {
        let a = String::from_utf8(canned(503, "no worker", "Retry-After: 1\r\n")).unwrap();
        assert!(a.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{a}");
        assert!(a.contains(
            "Retry-After: 1\r\nConnection: close\r\n\r\n503 Service Unavailable: no worker\n"
        ));
        let n: usize = a
            .split("Content-Length: ")
            .nth(1)
            .unwrap()
            .split("\r\n")
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(n, a.split("\r\n\r\n").nth(1).unwrap().len());
    }
}
