//! `application/x-www-form-urlencoded` and query strings, decoded as
//! browsers encode them: `+` is a space, `%XX` a byte, and the result must
//! be UTF-8. A bad escape or invalid UTF-8 is an error, not a guess.

use super::Malformed;

/// Name/value pairs in the order they came; names may repeat.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// The first value for `name` (Moonbridge's `get_params[name]`).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value for `name`, in order (`get_params_list[name]`).
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The name/value pairs, in order, decoded.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// How many pairs.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    pub(crate) fn push(&mut self, name: String, value: String) {
        self.pairs.push((name, value));
    }
}

/// Decodes one component: `+` → space, `%XX` → byte, then UTF-8.
pub fn decode(s: &[u8]) -> Result<String, Malformed> {
    let out = crate::http::percent::decode(s, true).ok_or(Malformed("bad percent escape"))?;
    String::from_utf8(out).map_err(|_| Malformed("not UTF-8 after percent-decoding"))
}

/// Parses `a=1&b=2&a=3` (empty pieces skipped; `a` alone is `a=""`).
pub fn parse(s: &[u8]) -> Result<Params, Malformed> {
    let mut p = Params::default();
    for piece in s.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
        let (n, v) = match piece.iter().position(|&b| b == b'=') {
            Some(i) => (&piece[..i], &piece[i + 1..]),
            None => (piece, &b""[..]),
        };
        p.push(decode(n)?, decode(v)?);
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_as_browsers_encode() {
        let p = parse(b"q=caf%C3%A9+au+lait&x=1&x=2&empty=&flag&&a%2Bb=c%26d").unwrap();
        assert_eq!(p.get("q"), Some("café au lait"));
        assert_eq!(p.get("x"), Some("1"));
        assert_eq!(p.get_all("x").collect::<Vec<_>>(), ["1", "2"]);
        assert_eq!(p.get("empty"), Some(""));
        assert_eq!(p.get("flag"), Some(""));
        assert_eq!(p.get("a+b"), Some("c&d"));
        assert_eq!(p.get("missing"), None);
    }

    #[test]
    fn refuses_bad_escapes_and_invalid_utf8() {
        for bad in [
            &b"a=%"[..],
            b"a=%4",
            b"a=%zz",
            b"%ff=1",
            b"a=%C3%28",
            b"a=%+f",
        ] {
            assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
