//! Moonbridge's four views of a header field, case-insensitive by name.

use crate::http::Request;
use crate::http::head::csv;

/// `headers_value`: the value when the field came once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderValue<'a> {
    /// No such field.
    Absent,
    /// One field line with this name.
    One(&'a [u8]),
    /// More than one line with this name (Moonbridge's `false`).
    Several,
}

impl<'a> Request<'a> {
    /// The field `name` (case-insensitive): absent, one, or several lines.
    pub fn headers_value(&self, name: &str) -> HeaderValue<'a> {
        let mut it = self.header_all(name);
        match (it.next(), it.next()) {
            (None, _) => HeaderValue::Absent,
            (Some(v), None) => HeaderValue::One(v),
            _ => HeaderValue::Several,
        }
    }

    /// `headers_csv_string`: every line's value joined with `, `.
    pub fn headers_csv_string(&self, name: &str) -> Option<String> {
        let parts: Vec<String> = self
            .header_all(name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect();
        (!parts.is_empty()).then(|| parts.join(", "))
    }

    /// `headers_csv_table`: every comma-separated item of every line.
    pub fn headers_csv_table(&self, name: &str) -> Vec<&'a [u8]> {
        self.header_all(name).flat_map(csv).collect()
    }

    /// `headers_flags`: is `token` among the comma-separated items
    /// (case-insensitively)?
    pub fn headers_flag(&self, name: &str, token: &str) -> bool {
        self.header_all(name)
            .flat_map(csv)
            .any(|t| t.eq_ignore_ascii_case(token.as_bytes()))
    }

    /// `headers_flags`: the set of items, lower-cased.
    pub fn headers_flags(&self, name: &str) -> std::collections::BTreeSet<String> {
        self.header_all(name)
            .flat_map(csv)
            .map(|t| String::from_utf8_lossy(t).to_ascii_lowercase())
            .collect()
    }

    /// Query parameters (`get_params` / `get_params_list`).
    pub fn get_params(&self) -> Result<super::Params, super::Malformed> {
        super::urlencoded::parse(self.query().unwrap_or("").as_bytes())
    }

    /// Cookies, from every `Cookie` line (`name=value; name2="v"`). Values
    /// are not percent-decoded (RFC 6265 leaves their encoding to the site).
    pub fn cookies(&self) -> super::Params {
        let mut p = super::Params::default();
        for line in self.header_all("cookie") {
            for pair in line.split(|&b| b == b';') {
                let pair = pair.trim_ascii();
                let Some(eq) = pair.iter().position(|&b| b == b'=') else {
                    continue;
                };
                let name = pair[..eq].trim_ascii();
                let mut value = pair[eq + 1..].trim_ascii();
                if value.len() >= 2 && value[0] == b'"' && value[value.len() - 1] == b'"' {
                    value = &value[1..value.len() - 1];
                }
                if name.is_empty() {
                    continue;
                }
                p.push(
                    String::from_utf8_lossy(name).into_owned(),
                    String::from_utf8_lossy(value).into_owned(),
                );
            }
        }
        p
    }
}
