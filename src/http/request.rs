//! What a handler sees of a request: borrowed views into the connection's
//! read buffer, so building one allocates nothing.

use super::head::Head;
use crate::sys::Addr;

/// What a TLS session can say about itself: the engine knows sessions
/// through this alone (the `tls` room implements it for rustls').
pub(crate) trait Session {
    fn server_name(&self) -> Option<&str>;
    fn alpn(&self) -> Option<&[u8]>;
    fn version(&self) -> &'static str;
    fn cipher(&self) -> &'static str;
}

/// What the connection under a request knows beyond its bytes, asked only
/// when a handler wants it: the address it was accepted on and its TLS
/// session.
pub(crate) trait Endpoint {
    fn local_addr(&self) -> Addr;
    fn tls(&self) -> Option<&dyn Session>;
}

/// The connection's `Endpoint`, lent by the server for a turn (a pointer:
/// nothing is built per request); tests and fuzzing have none.
#[derive(Clone, Copy, Default)]
pub(crate) struct Via<'a>(pub(crate) Option<&'a dyn Endpoint>);

/// The TLS session a request came over (lua-http's `checktls`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TlsInfo<'a> {
    /// The name the client asked for (SNI), if it sent one.
    pub server_name: Option<&'a str>,
    /// The protocol agreed by ALPN (`h2`, `http/1.1`), if any.
    pub alpn: Option<&'a [u8]>,
    /// `TLSv1_3` or `TLSv1_2`.
    pub version: &'static str,
    /// The cipher suite, by its IANA name.
    pub cipher: &'static str,
}

/// The HTTP version of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.0.
    Http10,
    /// HTTP/1.1.
    Http11,
    /// HTTP/2 (one stream of a connection).
    Http2,
}

/// One request, valid for the duration of the handler call.
pub struct Request<'a> {
    pub(crate) buf: &'a [u8],
    pub(crate) head: &'a Head,
    pub(crate) body: &'a [u8],
    pub(crate) trailers: &'a [u8],
    pub(crate) peer: &'a Addr,
    via: Via<'a>,
    pub(crate) state: super::deferred::ReadState,
    /// Came as an HTTP/2 stream (its head was rebuilt as HTTP/1.1's for
    /// the one parser and the one set of rules).
    pub(crate) http2: bool,
    /// The loop's clock for this turn (one read per turn, passed down).
    pub(crate) now: std::time::Instant,
    /// The method and target, checked as UTF-8 once (handlers ask for
    /// them, and for the path inside the target, several times).
    method: &'a str,
    target: &'a str,
}

#[inline]
fn text(b: &[u8]) -> &str {
    // The head parser only lets ASCII through for these parts.
    crate::sys::text::ascii(b)
        .or_else(|| std::str::from_utf8(b).ok())
        .unwrap_or("")
}

/// The method as text: `GET`, most requests' method, without a look at
/// its bytes' encoding (20 instructions a request, callgrind).
#[inline(always)]
fn method(m: &[u8]) -> &str {
    if m == b"GET" { "GET" } else { text(m) }
}

/// `part` of the target (the path, the query) as a slice of the target
/// already checked, if it lies within it.
#[inline]
fn within(target: &str, t: super::head::Span, part: super::head::Span) -> Option<&str> {
    let start = part.start.checked_sub(t.start)? as usize;
    let end = part.end.checked_sub(t.start)? as usize;
    target.get(start..end)
}

impl<'a> Request<'a> {
    // Inlined: a call built the request in the callee's frame and copied
    // it out (43 instructions a request, callgrind).
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub(crate) fn new(
        buf: &'a [u8],
        head: &'a Head,
        body: &'a [u8],
        trailers: &'a [u8],
        (peer, via): (&'a Addr, Via<'a>),
        state: super::deferred::ReadState,
        http2: bool,
        now: std::time::Instant,
    ) -> Request<'a> {
        Request {
            buf,
            head,
            body,
            trailers,
            peer,
            via,
            state,
            http2,
            now,
            method: method(head.method.get(buf)),
            target: text(head.target.get(buf)),
        }
    }

    /// The event loop's clock as it read it for the turn that runs this
    /// handler: what a handler should use rather than `Instant::now`,
    /// which costs a clock read per call.
    #[inline]
    pub fn now(&self) -> std::time::Instant {
        self.now
    }

    /// The request method, as sent (case-sensitive).
    #[inline]
    pub fn method(&self) -> &'a str {
        self.method
    }

    /// The request target as sent (origin-form, absolute-form, `*`, or an
    /// authority for CONNECT).
    #[inline]
    pub fn target(&self) -> &'a str {
        self.target
    }

    /// The path, still percent-encoded; `/` for an absolute-form target
    /// without one. Empty for `OPTIONS *` and CONNECT.
    #[inline]
    pub fn path(&self) -> &'a str {
        let p = within(self.target, self.head.target, self.head.path)
            .unwrap_or_else(|| text(self.head.path.get(self.buf)));
        if p.is_empty() && !self.head.asterisk && self.method != "CONNECT" {
            "/"
        } else {
            p
        }
    }

    /// The query string after `?`, still percent-encoded.
    #[inline]
    pub fn query(&self) -> Option<&'a str> {
        self.head.query.map(|q| {
            within(self.target, self.head.target, q).unwrap_or_else(|| text(q.get(self.buf)))
        })
    }

    /// The request's HTTP version.
    #[inline]
    pub fn version(&self) -> Version {
        if self.http2 {
            Version::Http2
        } else if self.head.minor == 0 {
            Version::Http10
        } else {
            Version::Http11
        }
    }

    /// True for `OPTIONS *`.
    #[inline]
    pub fn is_asterisk(&self) -> bool {
        self.head.asterisk
    }

    /// True for `HEAD` (the body is not sent).
    #[inline]
    pub fn is_head(&self) -> bool {
        self.head.is_head
    }

    /// The authority the request is for: from an absolute-form target, else
    /// the Host header.
    #[inline]
    pub fn host(&self) -> Option<&'a str> {
        self.head.host.map(|h| text(h.get(self.buf)))
    }

    /// Every header field in order, names as sent.
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> + 'a {
        let buf = self.buf;
        self.head
            .headers
            .iter()
            .map(move |(n, v)| (text(n.get(buf)), v.get(buf)))
    }

    /// The first value of each of several headers (case-insensitive
    /// names), found in one pass over the fields: cheaper than a lookup
    /// each when a handler wants several (a file's preconditions).
    pub fn headers_first<const N: usize>(&self, names: [&str; N]) -> [Option<&'a [u8]>; N] {
        let mut found = [None; N];
        let mut left = N;
        for (n, v) in &self.head.headers {
            let n = n.get(self.buf);
            for (want, slot) in names.iter().zip(found.iter_mut()) {
                if slot.is_none() && n.eq_ignore_ascii_case(want.as_bytes()) {
                    *slot = Some(v.get(self.buf));
                    left -= 1;
                    break;
                }
            }
            if left == 0 {
                break;
            }
        }
        found
    }

    /// The first value of a header, by case-insensitive name, as bytes.
    #[inline]
    pub fn header_bytes(&self, name: &str) -> Option<&'a [u8]> {
        self.header_all(name).next()
    }

    /// The first value of a header, if it is valid UTF-8.
    #[inline]
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.header_bytes(name)
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Every value of a header, by case-insensitive name.
    #[inline]
    pub fn header_all<'n>(&self, name: &'n str) -> impl Iterator<Item = &'a [u8]> + 'n
    where
        'a: 'n,
    {
        let buf = self.buf;
        self.head
            .headers
            .iter()
            .filter(move |(n, _)| n.get(buf).eq_ignore_ascii_case(name.as_bytes()))
            .map(move |(_, v)| v.get(buf))
    }

    /// The whole body (chunked framing removed). Bodies larger than
    /// `Limits::max_body` never reach a handler.
    #[inline]
    pub fn body(&self) -> &'a [u8] {
        self.body
    }

    /// Trailer fields of a chunked body, parsed on demand.
    pub fn trailers(&self) -> Vec<(&'a str, &'a [u8])> {
        let mut storage = [httparse::EMPTY_HEADER; 64];
        let mut section = Vec::with_capacity(self.trailers.len() + 2);
        section.extend_from_slice(self.trailers);
        section.extend_from_slice(b"\r\n");
        let mut out = Vec::new();
        if let Ok(httparse::Status::Complete(_)) = httparse::parse_headers(&section, &mut storage) {
            // Map the parsed copies back onto our own slice so they borrow 'a.
            for h in storage.iter().take_while(|h| !h.name.is_empty()) {
                let off = h.name.as_ptr() as usize - section.as_ptr() as usize;
                let voff = h.value.as_ptr() as usize - section.as_ptr() as usize;
                out.push((
                    text(&self.trailers[off..off + h.name.len()]),
                    &self.trailers[voff..voff + h.value.len()],
                ));
            }
        }
        out
    }

    /// Emilua's `read_state`: `MessageReady` in `on_head` (the body not
    /// read yet), `Finished` when the handler has the whole request.
    pub fn read_state(&self) -> super::deferred::ReadState {
        self.state
    }

    /// Who sent it: the socket peer (a proxy, if there is one).
    #[inline]
    pub fn peer_addr(&self) -> &'a Addr {
        self.peer
    }

    /// The TLS session the request came over; `None` on a plain
    /// connection (behind a front that ended TLS, too: its PROXY header
    /// names the client, not the cipher).
    pub fn tls(&self) -> Option<TlsInfo<'a>> {
        self.via.0?.tls().map(|s| TlsInfo {
            server_name: s.server_name(),
            alpn: s.alpn(),
            version: s.version(),
            cipher: s.cipher(),
        })
    }

    /// True when the request came over TLS here.
    #[inline]
    pub fn is_tls(&self) -> bool {
        self.via.0.is_some_and(|e| e.tls().is_some())
    }

    /// The address the connection was accepted on (lua-http's
    /// `localname`): a system call, made when asked. `Addr::Unknown`
    /// where there is no socket (the engine driven by hand).
    pub fn local_addr(&self) -> Addr {
        self.via.0.map_or(Addr::Unknown, |e| e.local_addr())
    }
}
