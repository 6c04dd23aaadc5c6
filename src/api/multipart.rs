//! `multipart/form-data` (RFC 7578), parsed incrementally: bytes are pushed
//! in as they arrive and each part's data is passed on as it is found, so a
//! 1 GiB file goes through in pieces and never sits in memory. Hand-written
//! because the well-kept crates (multer) need an async stream, and a mio
//! server needs a push parser. Memory is bounded by one delimiter length
//! (carried between pushes) and the part header limit.

use super::Malformed;

/// Largest header block of one part.
pub const MAX_PART_HEADERS: usize = 8 * 1024;
/// Most parts in one body.
pub const MAX_PARTS: usize = 1000;

/// What a part says about itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PartMeta {
    /// The part's `name` (from `Content-Disposition`).
    pub name: String,
    /// The part's `filename`, for an uploaded file.
    pub file_name: Option<String>,
    /// The part's `Content-Type`.
    pub content_type: Option<String>,
}

/// Where a parser's parts go.
pub trait PartSink {
    /// A part begins.
    fn start(&mut self, meta: &PartMeta) -> Result<(), Malformed>;
    /// Bytes of the current part.
    fn data(&mut self, chunk: &[u8]) -> Result<(), Malformed>;
    /// The current part ends.
    fn end(&mut self) -> Result<(), Malformed>;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Preamble,
    AfterDelimiter,
    Headers,
    Body,
    Epilogue,
}

/// A `multipart/form-data` parser fed a body in pieces of any size.
pub struct Parser {
    /// `\r\n--BOUNDARY`.
    delim: Vec<u8>,
    state: State,
    buf: Vec<u8>,
    parts: usize,
    /// The name of the part whose data is being read.
    current: Option<String>,
}

/// The boundary parameter of a `multipart/form-data` Content-Type.
pub fn boundary(content_type: &str) -> Result<String, Malformed> {
    let p = super::params::parse(content_type)?;
    if p.item != "multipart/form-data" {
        return Err(Malformed("not multipart/form-data"));
    }
    match p.get("boundary") {
        Some(v) if !v.is_empty() && v.len() <= 70 => Ok(v.to_string()),
        Some(_) => Err(Malformed("invalid multipart boundary")),
        None => Err(Malformed("multipart body without a boundary")),
    }
}

/// Finds `needle` in `hay` (the first byte is rare in practice: `\r`).
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let first = needle[0];
    let mut from = 0;
    while let Some(p) = hay[from..].iter().position(|&b| b == first) {
        let i = from + p;
        if hay.len() - i < needle.len() {
            return None;
        }
        if &hay[i..i + needle.len()] == needle {
            return Some(i);
        }
        from = i + 1;
    }
    None
}

/// A `Content-Disposition: form-data; name="…"; filename="…"` value
/// (quoted strings may hold `;`; `filename*` wins over `filename`).
fn disposition(v: &str) -> Result<(String, Option<String>), Malformed> {
    let p = super::params::parse(v)?;
    if p.item != "form-data" {
        return Err(Malformed("part is not form-data"));
    }
    let name = p.get("name").ok_or(Malformed("part without a name"))?;
    Ok((name.to_string(), p.get("filename").map(str::to_string)))
}

impl Parser {
    /// A parser for parts separated by `boundary` (from the `Content-Type`).
    pub fn new(boundary: &str) -> Parser {
        let mut delim = b"\r\n--".to_vec();
        delim.extend_from_slice(boundary.as_bytes());
        // The first boundary may open the body with no CRLF before it.
        Parser {
            delim,
            state: State::Preamble,
            buf: b"\r\n".to_vec(),
            parts: 0,
            current: None,
        }
    }

    /// Pushes more of the body through.
    pub fn feed(&mut self, data: &[u8], sink: &mut dyn PartSink) -> Result<(), Malformed> {
        self.buf.extend_from_slice(data);
        loop {
            match self.state {
                State::Preamble => match find(&self.buf, &self.delim) {
                    Some(i) => {
                        self.buf.drain(..i + self.delim.len());
                        self.state = State::AfterDelimiter;
                    }
                    None => {
                        let keep = self.delim.len() - 1;
                        let cut = self.buf.len().saturating_sub(keep);
                        self.buf.drain(..cut);
                        return Ok(());
                    }
                },
                State::AfterDelimiter => {
                    // Transport padding (spaces, tabs) may precede the CRLF.
                    let pad = self
                        .buf
                        .iter()
                        .take_while(|&&b| b == b' ' || b == b'\t')
                        .count();
                    let rest = &self.buf[pad..];
                    if rest.len() < 2 {
                        return Ok(());
                    }
                    if rest.starts_with(b"--") {
                        self.state = State::Epilogue;
                    } else if rest.starts_with(b"\r\n") {
                        self.buf.drain(..pad + 2);
                        self.state = State::Headers;
                    } else {
                        return Err(Malformed("malformed multipart boundary line"));
                    }
                }
                State::Headers => {
                    if self.buf.starts_with(b"\r\n") {
                        return Err(Malformed("multipart part without headers"));
                    }
                    let Some(i) = find(&self.buf, b"\r\n\r\n") else {
                        if self.buf.len() > MAX_PART_HEADERS {
                            return Err(Malformed("multipart part header too large"));
                        }
                        return Ok(());
                    };
                    if i + 4 > MAX_PART_HEADERS {
                        return Err(Malformed("multipart part header too large"));
                    }
                    let mut storage = [httparse::EMPTY_HEADER; 16];
                    let meta = match httparse::parse_headers(&self.buf[..i + 4], &mut storage) {
                        Ok(httparse::Status::Complete((_, hs))) => {
                            let mut meta = PartMeta::default();
                            let mut named = false;
                            for h in hs {
                                let v = std::str::from_utf8(h.value)
                                    .map_err(|_| Malformed("part header not UTF-8"))?;
                                if h.name.eq_ignore_ascii_case("content-disposition") {
                                    let (n, f) = disposition(v)?;
                                    meta.name = n;
                                    meta.file_name = f;
                                    named = true;
                                } else if h.name.eq_ignore_ascii_case("content-type") {
                                    meta.content_type = Some(v.to_string());
                                }
                            }
                            if !named {
                                return Err(Malformed("part without Content-Disposition"));
                            }
                            meta
                        }
                        _ => return Err(Malformed("malformed multipart part header")),
                    };
                    self.buf.drain(..i + 4);
                    self.parts += 1;
                    if self.parts > MAX_PARTS {
                        return Err(Malformed("too many multipart parts"));
                    }
                    sink.start(&meta)?;
                    self.current = Some(meta.name);
                    self.state = State::Body;
                }
                State::Body => match find(&self.buf, &self.delim) {
                    Some(i) => {
                        if i > 0 {
                            sink.data(&self.buf[..i])?;
                        }
                        sink.end()?;
                        self.current = None;
                        self.buf.drain(..i + self.delim.len());
                        self.state = State::AfterDelimiter;
                    }
                    None => {
                        // Everything but a possible start of the delimiter.
                        let keep = self.delim.len() - 1;
                        let cut = self.buf.len().saturating_sub(keep);
                        if cut > 0 {
                            sink.data(&self.buf[..cut])?;
                            self.buf.drain(..cut);
                        }
                        return Ok(());
                    }
                },
                State::Epilogue => {
                    self.buf.clear();
                    return Ok(());
                }
            }
        }
    }

    /// The part whose data is being read, by name.
    pub fn current_part(&self) -> Option<&str> {
        self.current.as_deref()
    }

    /// The body has ended: was the closing boundary seen?
    pub fn finish(&self) -> Result<(), Malformed> {
        if self.state == State::Epilogue {
            Ok(())
        } else {
            Err(Malformed("truncated multipart body"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Collect(Vec<(PartMeta, Vec<u8>)>, bool);
    impl PartSink for Collect {
        fn start(&mut self, m: &PartMeta) -> Result<(), Malformed> {
            self.0.push((m.clone(), Vec::new()));
            self.1 = true;
            Ok(())
        }
        fn data(&mut self, c: &[u8]) -> Result<(), Malformed> {
            assert!(self.1, "data outside a part");
            self.0.last_mut().unwrap().1.extend_from_slice(c);
            Ok(())
        }
        fn end(&mut self) -> Result<(), Malformed> {
            self.1 = false;
            Ok(())
        }
    }

    const BODY: &[u8] = b"preamble\r\n--XyZ\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nHello\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a b.txt\"\r\nContent-Type: text/plain\r\n\r\nline1 --XyZ inline\r\n-XyZ\r\nline3\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"\"\r\nContent-Type: application/octet-stream\r\n\r\n\r\n--XyZ--\r\nepilogue";

    fn run(step: usize) -> Result<Vec<(PartMeta, Vec<u8>)>, Malformed> {
        let mut p = Parser::new("XyZ");
        let mut c = Collect::default();
        for piece in BODY.chunks(step) {
            p.feed(piece, &mut c)?;
        }
        p.finish()?;
        Ok(c.0)
    }

    #[test]
    fn parses_fields_and_files_whole_and_byte_by_byte() {
        for step in [1, 2, 3, 7, 64, BODY.len()] {
            let parts = run(step).unwrap();
            assert_eq!(parts.len(), 3, "step {step}");
            assert_eq!(parts[0].0.name, "title");
            assert_eq!(parts[0].1, b"Hello");
            assert_eq!(parts[1].0.file_name.as_deref(), Some("a b.txt"));
            assert_eq!(parts[1].0.content_type.as_deref(), Some("text/plain"));
            assert_eq!(parts[1].1, b"line1 --XyZ inline\r\n-XyZ\r\nline3");
            assert_eq!(parts[2].0.file_name.as_deref(), Some(""));
            assert_eq!(parts[2].1, b"");
        }
    }

    #[test]
    fn refuses_truncated_and_malformed_bodies() {
        let mut c = Collect::default();
        let mut p = Parser::new("XyZ");
        p.feed(&BODY[..120], &mut c).unwrap();
        assert_eq!(p.finish().unwrap_err().0, "truncated multipart body");

        let mut p = Parser::new("B");
        let big = format!(
            "--B\r\nContent-Disposition: form-data; name=\"x\"\r\nX-Long: {}\r\n\r\n",
            "a".repeat(9000)
        );
        assert!(
            p.feed(big.as_bytes(), &mut Collect::default())
                .unwrap_err()
                .0
                .contains("too large")
        );

        let mut p = Parser::new("B");
        assert!(
            p.feed(
                b"--B\r\nContent-Type: text/plain\r\n\r\nx\r\n--B--",
                &mut Collect::default()
            )
            .is_err()
        );
        let mut p = Parser::new("B");
        assert!(p.feed(b"--Bjunk", &mut Collect::default()).is_err());
    }

    #[test]
    fn reads_the_boundary_from_the_content_type() {
        assert_eq!(
            boundary("multipart/form-data; boundary=----x1").unwrap(),
            "----x1"
        );
        assert_eq!(
            boundary("Multipart/Form-Data; charset=utf-8; boundary=\"q r\"").unwrap(),
            "q r"
        );
        assert!(boundary("multipart/form-data").is_err());
        assert!(boundary("text/plain; boundary=x").is_err());
    }
}
