//! Header field parameters: `type; name=value; name="quoted; value"`, as
//! `Content-Type` and `Content-Disposition` carry them (RFC 9110 §5.6.6),
//! with quoted strings and their backslash escapes, and RFC 8187's
//! `name*=charset'lang'percent-encoded` (RFC 6266 §4.3 for file names).
//! Splitting on `;` first would cut `filename="a;b.txt"` in two.

use super::Malformed;

/// A field value split into its leading item (lower-cased) and its
/// parameters (names lower-cased, values unquoted), in order.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Parameters {
    pub item: String,
    pub params: Vec<(String, String)>,
}

impl Parameters {
    /// The value of `name`, preferring the extended `name*` form when both
    /// came (RFC 6266 §4.3).
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        let ext = format!("{name}*");
        let find = |n: &str| {
            self.params
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.as_str())
        };
        find(&ext).or_else(|| find(name))
    }
}

fn is_tchar(c: char) -> bool {
    u8::try_from(c).is_ok_and(crate::http::token::is_tchar)
}

/// Parses `item *( OWS ";" OWS name "=" ( token / quoted-string ) )`.
pub(crate) fn parse(v: &str) -> Result<Parameters, Malformed> {
    let bad = Malformed("malformed header parameters");
    let (item, mut rest) = match v.find(';') {
        Some(i) => (&v[..i], &v[i..]),
        None => (v, ""),
    };
    let mut params = Vec::new();
    loop {
        rest = rest.trim_start_matches([' ', '\t']);
        if rest.is_empty() {
            break;
        }
        rest = rest
            .strip_prefix(';')
            .ok_or(bad)?
            .trim_start_matches([' ', '\t']);
        if rest.is_empty() {
            break; // a trailing `;`, which senders leave
        }
        let eq = rest.find('=').ok_or(bad)?;
        let name = rest[..eq].trim_end_matches([' ', '\t']);
        if name.is_empty() || !name.chars().all(is_tchar) {
            return Err(bad);
        }
        rest = rest[eq + 1..].trim_start_matches([' ', '\t']);
        let value = if let Some(q) = rest.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = q.char_indices();
            let end = loop {
                match chars.next().ok_or(bad)? {
                    (i, '"') => break i,
                    (_, '\\') => out.push(chars.next().ok_or(bad)?.1),
                    (_, c) => out.push(c),
                }
            };
            rest = &q[end + 1..];
            out
        } else {
            let end = rest.find(|c: char| !is_tchar(c)).unwrap_or(rest.len());
            let t = &rest[..end];
            rest = &rest[end..];
            t.to_string()
        };
        let name = name.to_ascii_lowercase();
        let value = if name.ends_with('*') {
            ext_value(&value).ok_or(bad)?
        } else {
            value
        };
        params.push((name, value));
    }
    Ok(Parameters {
        item: item.trim().to_ascii_lowercase(),
        params,
    })
}

/// RFC 8187 `charset'[language]'value`: UTF-8 (or ISO-8859-1, which maps
/// byte for byte to Unicode) percent-encoded.
fn ext_value(v: &str) -> Option<String> {
    let (charset, rest) = v.split_once('\'')?;
    let (_lang, encoded) = rest.split_once('\'')?;
    let bytes = crate::http::percent::decode(encoded.as_bytes(), false)?;
    if charset.eq_ignore_ascii_case("utf-8") {
        String::from_utf8(bytes).ok()
    } else if charset.eq_ignore_ascii_case("iso-8859-1") {
        Some(bytes.into_iter().map(char::from).collect())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_semicolons_and_escaped_quotes_inside_quoted_strings() {
        let p = parse(r#"form-data; name="file"; filename="a;b \"c\".txt""#).unwrap();
        assert_eq!(p.item, "form-data");
        assert_eq!(p.get("name"), Some("file"));
        assert_eq!(p.get("filename"), Some(r#"a;b "c".txt"#));
    }

    #[test]
    fn prefers_the_extended_filename_and_decodes_it() {
        let p =
            parse("attachment; filename=\"fallback.txt\"; filename*=UTF-8''caf%C3%A9%20menu.txt")
                .unwrap();
        assert_eq!(p.get("filename"), Some("café menu.txt"));
        let p = parse("attachment; FILENAME*=iso-8859-1'en'%E9t%E9").unwrap();
        assert_eq!(p.get("filename"), Some("été"));
    }

    #[test]
    fn refuses_what_cannot_be_read_unambiguously() {
        for bad in [
            r#"form-data; name="open"#,
            "form-data; name",
            "form-data; =x",
            "form-data; name=a b",
            "form-data; filename*=UTF-8''%zz",
            "form-data; filename*=koi8-r''x",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert_eq!(parse("text/plain;").unwrap().params, []);
    }
}
