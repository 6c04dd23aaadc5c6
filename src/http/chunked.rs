//! Chunked request bodies (RFC 9112 §7.1), decoded in place.
//!
//! The region after the head holds `[decoded body][raw bytes not yet
//! decoded]`. Decoding moves chunk data down over the framing, so the body
//! ends up contiguous right after the head with no second buffer, and memory
//! is bounded by the head, the body limit and one partial framing line.
//! When the message ends, the raw trailer section is moved down to sit right
//! after the body, and the bytes of any pipelined request after it follow.

use super::limits::Limits;
use super::status::Reject;

/// Longest chunk-size line, extensions included. Extensions carry nothing we
/// use; the limit stops them from being a way to send unbounded framing.
pub(crate) const MAX_CHUNK_LINE: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
    Done,
}

#[derive(Debug)]
pub(crate) struct Chunked {
    state: State,
    /// Most body bytes in all (declared chunk sizes): 413 past it.
    limit: u64,
    total: u64,
    /// Decoded body bytes so far; they are `region[..decoded]`.
    decoded: usize,
    /// When done: the raw trailer section, `region[decoded..decoded+trailer_len]`.
    trailer_len: usize,
}

/// What one decoding step did to the region.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Step {
    /// Bytes of framing removed: the caller shortens its buffer by this much
    /// (everything after has been moved down already).
    pub removed: usize,
    /// True once the last chunk and trailers have been seen.
    pub done: bool,
    /// Bytes of chunk data this step decoded (progress for deadlines).
    pub progressed: usize,
}

impl Chunked {
    pub(crate) fn new(limit: u64) -> Self {
        Chunked {
            state: State::Size,
            limit,
            total: 0,
            decoded: 0,
            trailer_len: 0,
        }
    }

    /// The caller took the decoded bytes out of the region (a streamed
    /// body): decoding goes on from the start of the region.
    pub(crate) fn take_decoded(&mut self) {
        self.decoded = 0;
    }

    pub(crate) fn body_len(&self) -> usize {
        self.decoded
    }

    pub(crate) fn trailer_len(&self) -> usize {
        self.trailer_len
    }

    /// Decodes as much of `region` as possible. `region` starts right after
    /// the head and runs to the end of the bytes read.
    pub(crate) fn decode(&mut self, region: &mut [u8], limits: &Limits) -> Result<Step, Reject> {
        let bad = |why| Reject::new(400, why);
        let mut w = self.decoded; // write position: end of decoded body
        let mut r = w; // read position: start of raw bytes
        let before = w;
        loop {
            match self.state {
                State::Size => {
                    let raw = &region[r..];
                    let window = &raw[..raw.len().min(MAX_CHUNK_LINE)];
                    let Some(nl) = window.iter().position(|&b| b == b'\n') else {
                        if raw.len() >= MAX_CHUNK_LINE {
                            return Err(bad("chunk-size line too long"));
                        }
                        break;
                    };
                    let size = parse_size_line(&raw[..nl])?;
                    r += nl + 1;
                    if size == 0 {
                        self.state = State::Trailers;
                    } else {
                        self.total = self.total.saturating_add(size);
                        if self.total > self.limit {
                            return Err(Reject::new(413, "request body too large"));
                        }
                        self.state = State::Data(size);
                    }
                }
                State::Data(left) => {
                    let avail = region.len() - r;
                    let take = (left.min(avail as u64)) as usize;
                    if take == 0 {
                        break;
                    }
                    region.copy_within(r..r + take, w);
                    w += take;
                    r += take;
                    self.state = if left == take as u64 {
                        State::DataEnd
                    } else {
                        State::Data(left - take as u64)
                    };
                }
                State::DataEnd => {
                    if region.len() - r < 2 {
                        break;
                    }
                    if &region[r..r + 2] != b"\r\n" {
                        return Err(bad("chunk data not followed by CRLF"));
                    }
                    r += 2;
                    self.state = State::Size;
                }
                State::Trailers => {
                    let raw = &region[r..];
                    // Decided before the end is looked for, so the answer
                    // is the same however the bytes arrive (found by the
                    // chunked fuzz target: whole, `\n\r\n\r\n` passed).
                    if raw.first() == Some(&b'\n') {
                        return Err(bad("bare LF ends the trailer section"));
                    }
                    let end = if raw.starts_with(b"\r\n") {
                        Some(2)
                    } else {
                        raw.windows(4).position(|x| x == b"\r\n\r\n").map(|p| p + 4)
                    };
                    let Some(end) = end else {
                        if raw.len() > limits.max_header_bytes {
                            return Err(Reject::new(431, "trailer section too large"));
                        }
                        break;
                    };
                    if end > limits.max_header_bytes {
                        return Err(Reject::new(431, "trailer section too large"));
                    }
                    if end > 2 {
                        // httparse takes bare LF line ends; we do not, as
                        // in the head.
                        let lines = &raw[..end];
                        if (1..end).any(|i| lines[i] == b'\n' && lines[i - 1] != b'\r') {
                            return Err(bad("bare LF in the trailer section"));
                        }
                        let mut storage = [httparse::EMPTY_HEADER; 64];
                        match httparse::parse_headers(&raw[..end], &mut storage) {
                            Ok(httparse::Status::Complete(_)) => {}
                            _ => return Err(bad("malformed trailer section")),
                        }
                        // Keep the section without its final empty line.
                        self.trailer_len = end - 2;
                        region.copy_within(r..r + end - 2, w);
                    }
                    r += end;
                    self.state = State::Done;
                    self.decoded = w;
                    let tail_from = r;
                    let keep_to = w + self.trailer_len;
                    let len = region.len();
                    region.copy_within(tail_from..len, keep_to);
                    return Ok(Step {
                        removed: tail_from - keep_to,
                        done: true,
                        progressed: w - before,
                    });
                }
                State::Done => {
                    return Ok(Step {
                        removed: 0,
                        done: true,
                        progressed: 0,
                    });
                }
            }
        }
        // Move what is left of the raw bytes down to the end of the body.
        let len = region.len();
        region.copy_within(r..len, w);
        self.decoded = w;
        Ok(Step {
            removed: r - w,
            done: false,
            progressed: w - before,
        })
    }
}

/// `chunk-size [ chunk-ext ] CRLF`, strictly: hex digits, no sign, no
/// overflow, extensions of visible characters only, and CR only right before
/// the LF.
fn parse_size_line(line: &[u8]) -> Result<u64, Reject> {
    let bad = |why| Reject::new(400, why);
    let Some(line) = line.strip_suffix(b"\r") else {
        return Err(bad("chunk-size line not ended by CRLF"));
    };
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(bad("invalid chunk size"));
    }
    if digits > 15 {
        return Err(bad("chunk size too large"));
    }
    let mut size: u64 = 0;
    for &b in &line[..digits] {
        size = size * 16 + (b as char).to_digit(16).unwrap_or(0) as u64;
    }
    let ext = &line[digits..];
    let ext_start = ext
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(ext.len());
    let ext_rest = &ext[ext_start..];
    if !ext_rest.is_empty() {
        if ext_rest[0] != b';' {
            return Err(bad("invalid chunk size"));
        }
        if ext_rest
            .iter()
            .any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f)
        {
            return Err(bad("invalid chunk extension"));
        }
    } else if ext_start > 0 {
        return Err(bad("whitespace after chunk size"));
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Body, trailer section, and what followed the message.
    type Decoded = (Vec<u8>, Vec<u8>, Vec<u8>);

    /// Decodes `input` fed in pieces of `step` bytes.
    fn run(input: &[u8], step: usize) -> Result<Decoded, Reject> {
        let mut buf: Vec<u8> = Vec::new();
        let limits = Limits::default();
        let mut c = Chunked::new(limits.max_body);
        for piece in input.chunks(step) {
            buf.extend_from_slice(piece);
            let s = c.decode(&mut buf, &limits)?;
            let n = buf.len() - s.removed;
            buf.truncate(n);
            if s.done {
                break;
            }
        }
        assert_eq!(c.state, State::Done, "not done");
        let b = c.body_len();
        let t = b + c.trailer_len();
        // Whatever followed the message in the input is the next request.
        let consumed_input_tail = &buf[t..];
        Ok((
            buf[..b].to_vec(),
            buf[b..t].to_vec(),
            consumed_input_tail.to_vec(),
        ))
    }

    #[test]
    fn decodes_chunks_whole_and_one_byte_at_a_time() {
        let input = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\nNEXT";
        for step in [1, 2, 3, 7, input.len()] {
            let (body, trailers, rest) = run(input, step).unwrap();
            assert_eq!(body, b"hello world");
            assert!(trailers.is_empty());
            // Fed piecewise, decoding stops at the end of the message; the
            // remainder shows up only when fed whole.
            if step == input.len() {
                assert_eq!(rest, b"NEXT");
            }
        }
    }

    #[test]
    fn keeps_trailers() {
        let (body, trailers, _) = run(b"3\r\nabc\r\n0\r\nX-Sum: 1\r\nY: 2\r\n\r\n", 1).unwrap();
        assert_eq!(body, b"abc");
        assert_eq!(trailers, b"X-Sum: 1\r\nY: 2\r\n");
    }

    #[test]
    fn rejects_bad_chunk_sizes() {
        for bad in [
            &b"x\r\nabc\r\n0\r\n\r\n"[..],
            b"-3\r\nabc\r\n0\r\n\r\n",
            b"+3\r\nabc\r\n0\r\n\r\n",
            b"0x3\r\nabc\r\n0\r\n\r\n",
            b"3 \r\nabc\r\n0\r\n\r\n",
            b"3\nabc\r\n0\r\n\r\n",
            b"3\r\nabcX\r\n0\r\n\r\n",
            b"ffffffffffffffffff\r\n",
            b"3;a\rb\r\nabc\r\n0\r\n\r\n",
        ] {
            assert_eq!(
                run(bad, bad.len()).unwrap_err().status,
                400,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn rejects_bare_lf_in_trailers_however_the_bytes_arrive() {
        for bad in [
            &b"0\r\n\n\r\n\r\n"[..],
            b"0\r\n\n",
            b"0\r\nX: 1\nY: 2\r\n\r\n",
            b"0\r\nX: 1\r\nY: 2\n\r\n\r\n",
        ] {
            for step in [1, 2, bad.len()] {
                assert_eq!(
                    run(bad, step).map(|_| ()).unwrap_err().status,
                    400,
                    "{:?} in pieces of {step}",
                    String::from_utf8_lossy(bad)
                );
            }
        }
    }

    #[test]
    fn answers_413_when_chunks_exceed_the_body_limit() {
        let mut c = Chunked::new(4);
        let limits = Limits::default();
        let mut buf = b"5\r\nhello\r\n0\r\n\r\n".to_vec();
        assert_eq!(c.decode(&mut buf, &limits).unwrap_err().status, 413);
    }

    #[test]
    fn refuses_an_endless_chunk_extension() {
        let mut input = b"3;".to_vec();
        input.extend(std::iter::repeat_n(b'a', MAX_CHUNK_LINE + 10));
        assert_eq!(run(&input, 100).unwrap_err().status, 400);
    }
}
