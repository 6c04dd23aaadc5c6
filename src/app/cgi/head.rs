//! The head of a CGI response (RFC 3875 §6): header lines on stdout, ended
//! by an empty line, with `Status:` and `Location:` read by the server.

/// The most a head may take (nginx's FastCGI buffer is 4-8 KiB, Apache's
/// line limit 8 KiB): a script that prints more before the empty line
/// gets 502.
pub(super) const MAX_HEAD: usize = 16 * 1024;

/// A parsed head.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Head {
    pub status: u16,
    /// The fields passed on to the client, `Status:` and framing removed.
    pub fields: Vec<(String, Vec<u8>)>,
    /// `Location:` a path of this server's with no status of the script's
    /// (§6.2.2, a local redirect).
    pub local_redirect: Option<String>,
}

/// Where the head ends in `buf`: the offset of the body. Lines may end in
/// LF or CRLF (§6.1 allows both).
pub(super) fn find_end(buf: &[u8]) -> Option<usize> {
    let mut at_line_start = true;
    let mut i = 0;
    while i < buf.len() {
        match buf[i] {
            b'\n' if at_line_start => return Some(i + 1),
            b'\r' if at_line_start && buf.get(i + 1) == Some(&b'\n') => return Some(i + 2),
            b'\n' => at_line_start = true,
            _ => at_line_start = false,
        }
        i += 1;
    }
    None
}

/// Framing and connection fields are the server's, as for `--header`
/// rules (the engine frames the body; a script's wrong `Content-Length`
/// must not desynchronise a keep-alive connection).
use super::super::rules::REFUSED as DROPPED;
use crate::http::token::is_token;

/// Parses the head (the bytes before `find_end`'s offset). `Err`: why it
/// is not a head, for the log and the 502.
pub(super) fn parse(head: &[u8]) -> Result<Head, String> {
    let mut status = None;
    let mut location = None;
    let mut fields = Vec::new();
    for line in head.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or_else(|| format!("a header line without ':': {:?}", lossy(line)))?;
        let name = std::str::from_utf8(&line[..colon])
            .ok()
            .filter(|n| is_token(n))
            .ok_or_else(|| format!("an invalid header name: {:?}", lossy(&line[..colon])))?;
        let value = line[colon + 1..].trim_ascii();
        if value.iter().any(|&b| b == b'\r' || b == 0) {
            return Err(format!("a control character in {name}"));
        }
        let lower = name.to_ascii_lowercase();
        match lower.as_str() {
            "status" => {
                let code = value
                    .get(..3)
                    .and_then(|c| std::str::from_utf8(c).ok())
                    .and_then(|c| c.parse::<u16>().ok())
                    .filter(|c| (200..=599).contains(c) && value.get(3).is_none_or(|&b| b == b' '))
                    .ok_or_else(|| format!("an invalid Status: {:?}", lossy(value)))?;
                status = Some(code);
            }
            "location" => {
                location = Some(String::from_utf8_lossy(value).into_owned());
                fields.push((name.to_string(), value.to_vec()));
            }
            _ if DROPPED.contains(&lower.as_str()) => {}
            _ => fields.push((name.to_string(), value.to_vec())),
        }
    }
    if status.is_none()
        && location.is_none()
        && !fields
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
    {
        // §6.2: a document response has a Content-Type; a redirect a
        // Location. A head with neither is a script that printed something
        // else first.
        return Err("neither Content-Type, Location nor Status".into());
    }
    let local = match (&location, status) {
        (Some(l), None) if l.starts_with('/') && !l.starts_with("//") => Some(l.clone()),
        _ => None,
    };
    // §6.2.3: a client redirect without a status of its own is a 302.
    let status = status.unwrap_or(if location.is_some() { 302 } else { 200 });
    Ok(Head {
        status,
        fields,
        local_redirect: local,
    })
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(&b[..b.len().min(80)]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_end_of_a_head_with_lf_or_crlf_lines() {
        assert_eq!(find_end(b"Content-Type: text/plain\n\nbody"), Some(26));
        assert_eq!(find_end(b"Content-Type: text/plain\r\n\r\nbody"), Some(28));
        assert_eq!(find_end(b"A: b\r\n\nbody"), Some(7));
        assert_eq!(find_end(b"\nbody"), Some(1));
        assert_eq!(find_end(b"Content-Type: text/plain\r\n"), None);
    }

    #[test]
    fn reads_status_and_passes_other_fields_but_not_framing() {
        let h = parse(b"Status: 404 Not Found\r\nContent-Type: text/html\r\nContent-Length: 9\r\nX-A:  b \r\n").unwrap();
        assert_eq!(h.status, 404);
        assert_eq!(
            h.fields,
            vec![
                ("Content-Type".to_string(), b"text/html".to_vec()),
                ("X-A".to_string(), b"b".to_vec())
            ]
        );
        assert_eq!(h.local_redirect, None);
    }

    #[test]
    fn a_location_alone_is_a_302_or_a_local_redirect() {
        let h = parse(b"Location: https://example.org/x\n").unwrap();
        assert_eq!((h.status, h.local_redirect), (302, None));
        let h = parse(b"Location: /other?q=1\n").unwrap();
        assert_eq!(h.local_redirect.as_deref(), Some("/other?q=1"));
        let h = parse(b"Status: 301\nLocation: /moved\n").unwrap();
        assert_eq!((h.status, h.local_redirect), (301, None));
        let h = parse(b"Location: //evil.example/\n").unwrap();
        assert_eq!(
            (h.status, h.local_redirect),
            (302, None),
            "scheme-relative is not local"
        );
    }

    #[test]
    fn rejects_what_is_not_a_head() {
        for bad in [
            &b"hello world\n"[..],
            b"Status: 99\nContent-Type: a/b\n",
            b"Status: 2000\nContent-Type: a/b\n",
            b"Bad Name: x\nContent-Type: a/b\n",
            b"X-A: one\x00two\nContent-Type: a/b\n",
            b"X-Only: field\n",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
