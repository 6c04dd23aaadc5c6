//! Content codings for static files (RFC 9110 §8.4.1, §12.5.3): which of
//! brotli, zstd and gzip a client takes, by its `Accept-Encoding`, and
//! compressing a file's bytes on the fly.

/// A content coding we serve, in the order preferred when a client gives
/// several the same weight: brotli compresses text best, then zstd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Coding {
    Br,
    Zstd,
    Gzip,
}

impl Coding {
    pub(crate) const ALL: [Coding; 3] = [Coding::Br, Coding::Zstd, Coding::Gzip];

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// Its `Content-Encoding` token.
    pub(crate) fn token(self) -> &'static str {
        match self {
            Coding::Br => "br",
            Coding::Zstd => "zstd",
            Coding::Gzip => "gzip",
        }
    }

    /// The suffix of a precompressed sibling (`style.css.br`).
    pub(crate) fn suffix(self) -> &'static str {
        match self {
            Coding::Br => ".br",
            Coding::Zstd => ".zst",
            Coding::Gzip => ".gz",
        }
    }
}

/// The weight, in thousandths, a client's `Accept-Encoding` gives each
/// coding (`Coding::index`); 0: not acceptable. A coding it does not name
/// is not acceptable unless it names `*` (RFC 9110 §12.5.3); `x-gzip` is
/// gzip. A member that does not parse counts as absent.
pub(crate) fn weights(accept: &[u8]) -> [u16; 3] {
    let mut named = [None; 3];
    let mut star = None;
    for member in accept.split(|&b| b == b',') {
        let mut parts = member.split(|&b| b == b';');
        let token = parts.next().unwrap_or_default().trim_ascii();
        let mut q = Some(1000);
        for p in parts {
            let p = p.trim_ascii();
            if p.len() > 2 && p[..2].eq_ignore_ascii_case(b"q=") {
                q = qvalue(&p[2..]);
            }
        }
        let Some(q) = q else { continue };
        let slot = if token == b"*" {
            &mut star
        } else if token.eq_ignore_ascii_case(b"br") {
            &mut named[0]
        } else if token.eq_ignore_ascii_case(b"zstd") {
            &mut named[1]
        } else if token.eq_ignore_ascii_case(b"gzip") || token.eq_ignore_ascii_case(b"x-gzip") {
            &mut named[2]
        } else {
            continue;
        };
        *slot = Some(q);
    }
    named.map(|n| n.or(star).unwrap_or(0))
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`, in
/// thousandths.
fn qvalue(v: &[u8]) -> Option<u16> {
    let (int, frac) = match v.iter().position(|&b| b == b'.') {
        Some(dot) => (&v[..dot], &v[dot + 1..]),
        None => (v, &b""[..]),
    };
    if frac.len() > 3 || !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut thousandths = 0u16;
    for i in 0..3 {
        thousandths = thousandths * 10 + frac.get(i).map_or(0, |d| u16::from(d - b'0'));
    }
    match int {
        b"0" => Some(thousandths),
        b"1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// The coding to answer with: the heaviest acceptable one that `has`
/// says the file has, ties going to the earlier in `Coding::ALL`.
pub(crate) fn choose(weights: [u16; 3], has: impl Fn(Coding) -> bool) -> Option<Coding> {
    let mut best: Option<(u16, Coding)> = None;
    for c in Coding::ALL {
        let w = weights[c.index()];
        if w > 0 && best.is_none_or(|(bw, _)| w > bw) && has(c) {
            best = Some((w, c));
        }
    }
    best.map(|(_, c)| c)
}

/// Files of a type worth compressing (`text/*`, JSON, JavaScript, SVG,
/// XML), between these sizes, are compressed on the fly: under 1 KiB the
/// saving does not pay for `Content-Encoding` and `Vary`; over 2 MiB the
/// work (tens of milliseconds) would hold the loop's other connections
/// too long, and a precompressed sibling serves such a file.
pub(crate) const COMPRESS_MIN: u64 = 1024;
pub(crate) const COMPRESS_MAX: u64 = 2 << 20;

/// Is a file of this `Content-Type` worth compressing?
pub(crate) fn compressible_type(content_type: &str) -> bool {
    let mime = content_type.split(';').next().unwrap_or("").trim();
    mime.starts_with("text/")
        || matches!(
            mime,
            "application/json"
                | "application/javascript"
                | "application/xml"
                | "image/svg+xml"
                | "application/manifest+json"
        )
}

/// Can this build compress with `c` on the fly? (brotli and gzip with the
/// `compress` feature; zstd is served from precompressed siblings only,
/// which keeps a C library out of the build.)
pub(crate) fn can_compress(c: Coding) -> bool {
    cfg!(feature = "compress") && c != Coding::Zstd
}

/// `bytes` coded with `c`, or `None` when that is no smaller (or `c` is not
/// one this build compresses with). Brotli at quality 5 and gzip at level
/// 6: done once per file and kept, so a little slower than nginx's default
/// gzip level 1 for a good deal smaller.
#[cfg(feature = "compress")]
pub(crate) fn compress(c: Coding, bytes: &[u8]) -> Option<Vec<u8>> {
    use std::io::Write;
    let out = match c {
        Coding::Br => {
            let mut out = Vec::with_capacity(bytes.len() / 3);
            let params = brotli::enc::BrotliEncoderParams {
                quality: 5,
                lgwin: 22,
                size_hint: bytes.len(),
                ..Default::default()
            };
            brotli::BrotliCompress(&mut &bytes[..], &mut out, &params).ok()?;
            out
        }
        Coding::Gzip => {
            let mut e = flate2::write::GzEncoder::new(
                Vec::with_capacity(bytes.len() / 3),
                flate2::Compression::new(6),
            );
            e.write_all(bytes).ok()?;
            e.finish().ok()?
        }
        Coding::Zstd => return None,
    };
    (out.len() < bytes.len()).then_some(out)
}

#[cfg(not(feature = "compress"))]
pub(crate) fn compress(_: Coding, _: &[u8]) -> Option<Vec<u8>> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighs_each_coding_as_the_client_lists_it() {
        for (accept, w) in [
            (&b"br, gzip"[..], [1000, 0, 1000]),
            (b"gzip;q=0.5, br;q=0.8", [800, 0, 500]),
            (b"GZIP", [0, 0, 1000]),
            (b"x-gzip", [0, 0, 1000]),
            (b"*", [1000, 1000, 1000]),
            (b"*;q=0.1, br;q=0", [0, 100, 100]),
            (b"zstd, br;q=1.0, gzip;q=0.001", [1000, 1000, 1]),
            (b"", [0, 0, 0]),
            (b"identity", [0, 0, 0]),
            // q-values out of the grammar make the member absent.
            (b"br;q=2, gzip;q=0.5x", [0, 0, 0]),
            (b"br;q=1.5", [0, 0, 0]),
            (b"br;q=0.1234", [0, 0, 0]),
            (b"deflate, gzip ; q=0.7", [0, 0, 700]),
        ] {
            assert_eq!(weights(accept), w, "{}", String::from_utf8_lossy(accept));
        }
    }

    #[test]
    fn chooses_the_heaviest_coding_the_file_has_brotli_first_on_a_tie() {
        let all = |_: Coding| true;
        assert_eq!(choose([1000, 1000, 1000], all), Some(Coding::Br));
        assert_eq!(choose([500, 1000, 1000], all), Some(Coding::Zstd));
        assert_eq!(choose([500, 0, 1000], all), Some(Coding::Gzip));
        assert_eq!(choose([0, 0, 0], all), None);
        let no_br = |c: Coding| c != Coding::Br;
        assert_eq!(choose([1000, 0, 300], no_br), Some(Coding::Gzip));
        assert_eq!(choose([1000, 0, 0], no_br), None);
    }

    #[test]
    fn compresses_text_types_only() {
        assert!(compressible_type("text/css; charset=utf-8"));
        assert!(compressible_type("application/javascript; charset=utf-8"));
        assert!(compressible_type("image/svg+xml; charset=utf-8"));
        assert!(!compressible_type("image/png"));
        assert!(!compressible_type("application/wasm"));
        assert!(!compressible_type("application/octet-stream"));
    }

    #[cfg(feature = "compress")]
    #[test]
    fn compressed_text_decodes_to_the_original_and_noise_is_left_alone() {
        use std::io::Read;
        let text = "body { color: #333; margin: 0 auto; }\n".repeat(200);
        let br = compress(Coding::Br, text.as_bytes()).unwrap();
        assert!(br.len() < text.len() / 10);
        let mut back = Vec::new();
        brotli::Decompressor::new(&br[..], 4096)
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, text.as_bytes());
        let gz = compress(Coding::Gzip, text.as_bytes()).unwrap();
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, text.as_bytes());
        // Random bytes do not shrink: no variant.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        assert_eq!(compress(Coding::Gzip, &noise), None);
        assert_eq!(compress(Coding::Zstd, text.as_bytes()), None);
    }
}
