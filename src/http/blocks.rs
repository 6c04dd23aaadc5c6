//! Response header fields encoded for HTTP/2, for the last few line sets
//! seen, shared by a loop's connections: a loop serving the same files
//! again (as a page's assets are) encodes each set once. Its own module,
//! beside both engines: the connection context (`conn::Ctx`) lends it to
//! the HTTP/2 engine, which does the encoding (`h2/fields.rs`).

use std::collections::VecDeque;

/// Encoded line sets kept, at most.
const KEPT: usize = 8;

/// A handler's lines, and the static fields and those lines encoded.
type Encoded = (Box<[u8]>, Box<[u8]>);

#[derive(Default)]
pub(crate) struct Blocks {
    statics: Box<[u8]>,
    recent: VecDeque<Encoded>,
}

impl Blocks {
    /// Appends to `out` what `encode` appends for `static_headers` and
    /// `lines`, from the cache when these lines were encoded lately. The
    /// key is the lines as the handler gave them (a cached file's are the
    /// same bytes each time); a change of the static fields empties it.
    pub(crate) fn put(
        &mut self,
        out: &mut Vec<u8>,
        static_headers: &[u8],
        lines: &[u8],
        encode: impl FnOnce(&mut Vec<u8>),
    ) {
        if *self.statics != *static_headers {
            self.statics = static_headers.into();
            self.recent.clear();
        }
        if let Some((_, block)) = self.recent.iter().find(|(k, _)| **k == *lines) {
            out.extend_from_slice(block);
            return;
        }
        let start = out.len();
        encode(out);
        if self.recent.len() == KEPT {
            self.recent.pop_front();
        }
        self.recent.push_back((lines.into(), out[start..].into()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_a_line_set_once_and_again_when_the_static_fields_change() {
        let mut b = Blocks::default();
        let mut calls = 0;
        let mut out = Vec::new();
        for statics in [&b"S: 1\r\n"[..], b"S: 1\r\n", b"S: 2\r\n"] {
            b.put(&mut out, statics, b"X: y\r\n", |o| {
                calls += 1;
                o.extend_from_slice(b"enc");
            });
        }
        assert_eq!(calls, 2);
        assert_eq!(out, b"encencenc");
    }
}
