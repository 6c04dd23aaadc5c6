//! The site's settings on what goes out: header fields (`--header`) and
//! content types (`--mime`), parsed and checked once at start.

/// `--header [PATH_PREFIX]NAME:VALUE`: a field added to responses, to
/// every one without a prefix (`Strict-Transport-Security`), else to the
/// 2xx and 3xx answers for paths under the prefix (`/assets/Cache-Control:
/// max-age=31536000, immutable`), as nginx's `add_header` does without
/// `always`: a 404 for a missing asset is not to be cached for a year.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderRule {
    /// The path prefix (`/assets/`); empty: every response.
    pub prefix: String,
    /// The field's name, as given.
    pub name: String,
    /// Its value, without surrounding spaces.
    pub value: String,
}

/// Fields the server itself frames or that belong to one connection: a
/// rule may not set them (HTTP/2 forbids the connection-specific ones).
pub(super) const REFUSED: [&str; 9] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-connection",
    "date",
];

impl HeaderRule {
    /// Reads `[PATH_PREFIX]NAME:VALUE`, refusing what would break a
    /// response: a name that is not a token, a framing or connection
    /// field, a control character in the value.
    pub fn parse(s: &str) -> Result<HeaderRule, String> {
        let Some((left, value)) = s.split_once(':') else {
            return Err(format!("{s:?}: [PATH_PREFIX]NAME:VALUE"));
        };
        let (prefix, name) = match left.rfind('/') {
            Some(slash) if left.starts_with('/') => (&left[..=slash], &left[slash + 1..]),
            Some(_) => return Err(format!("{s:?}: a path prefix begins with /")),
            None => ("", left),
        };
        let value = value.trim_matches([' ', '\t']);
        if name.is_empty() || !name.bytes().all(is_token) {
            return Err(format!("{s:?}: {name:?} is not a field name"));
        }
        if REFUSED.iter().any(|r| name.eq_ignore_ascii_case(r)) {
            return Err(format!(
                "{s:?}: {name} is the server's to send (framing or connection)"
            ));
        }
        // Visible characters, spaces and tabs (RFC 9110 §5.5): no CR, LF or
        // NUL that would end the field early.
        if !value
            .bytes()
            .all(|b| b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80)
        {
            return Err(format!("{s:?}: a control character in the value"));
        }
        Ok(HeaderRule {
            prefix: prefix.into(),
            name: name.into(),
            value: value.into(),
        })
    }
}

fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `--mime EXT=TYPE`: the `Content-Type` for files ending `.EXT`, before
/// the built-in table.
pub fn parse_mime(s: &str) -> Result<(String, String), String> {
    let Some((ext, ty)) = s.split_once('=') else {
        return Err(format!("{s:?}: EXT=TYPE"));
    };
    let ext = ext.trim().trim_start_matches('.').to_ascii_lowercase();
    let ty = ty.trim();
    let ok_type = ty.split_once('/').is_some_and(|(a, b)| {
        let b = b.split(';').next().unwrap_or("").trim();
        !a.is_empty() && !b.is_empty() && a.bytes().all(is_token) && b.bytes().all(is_token)
    });
    if ext.is_empty() || ext.contains('/') || !ok_type || ty.bytes().any(|b| b < b' ' || b == 0x7f)
    {
        return Err(format!("{s:?}: EXT=TYPE, as html=text/html"));
    }
    Ok((ext, ty.into()))
}

/// `--redirect FROM=TO`: a 301 from one path (exact) to another path or an
/// absolute `http(s)://` URL.
pub fn parse_redirect(s: &str) -> Result<(String, String), String> {
    let Some((from, to)) = s.split_once('=') else {
        return Err(format!("{s:?}: FROM=TO, as /old=/new"));
    };
    let visible = |v: &str| !v.is_empty() && v.bytes().all(|b| (b'!'..=b'~').contains(&b));
    if !from.starts_with('/') || !visible(from) {
        return Err(format!("{s:?}: FROM is a path, as /old"));
    }
    let absolute = to.starts_with("https://") || to.starts_with("http://");
    if !(to.starts_with('/') || absolute) || !visible(to) {
        return Err(format!("{s:?}: TO is a path or an http(s):// URL"));
    }
    Ok((from.into(), to.into()))
}

/// `--vhost HOST=ROOT`: the folder served for a host name, exact
/// (`example.org`) or every name under a domain (`*.example.org`, not the
/// domain itself).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VirtualHost {
    /// Lowercase; a leading `*.` for a wildcard.
    pub host: String,
    /// The folder served.
    pub root: std::path::PathBuf,
}

impl VirtualHost {
    /// Reads `HOST=ROOT`.
    pub fn parse(s: &str) -> Result<VirtualHost, String> {
        let Some((host, root)) = s.split_once('=') else {
            return Err(format!("{s:?}: HOST=ROOT, as example.org=/srv/example"));
        };
        let host = host.trim().to_ascii_lowercase();
        let name = host.strip_prefix("*.").unwrap_or(&host);
        let label_ok =
            |l: &str| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if name.is_empty() || !name.split('.').all(label_ok) || root.trim().is_empty() {
            return Err(format!(
                "{s:?}: HOST=ROOT, as example.org=/srv/example or *.example.org=/srv/all"
            ));
        }
        Ok(VirtualHost {
            host,
            root: root.trim().into(),
        })
    }

    /// Does a request's host (any case, a port after it) name this one?
    pub fn matches(&self, host: &str) -> bool {
        let host = strip_port(host);
        match self.host.strip_prefix("*.") {
            Some(domain) => {
                host.len() > domain.len() + 1
                    && host[host.len() - domain.len()..].eq_ignore_ascii_case(domain)
                    && host.as_bytes()[host.len() - domain.len() - 1] == b'.'
            }
            None => host.eq_ignore_ascii_case(&self.host),
        }
    }
}

/// `example.org:8080` → `example.org`; `[::1]:80` → `[::1]`.
pub(super) fn strip_port(host: &str) -> &str {
    match host.rfind(':') {
        Some(i)
            if !host[i..].contains(']') && host[i + 1..].bytes().all(|b| b.is_ascii_digit()) =>
        {
            &host[..i]
        }
        _ => host,
    }
}

/// `--error-page STATUS=FILE`: a status of 400 to 599 and a path beneath
/// the root.
pub fn parse_error_page(s: &str) -> Result<(u16, String), String> {
    let Some((status, file)) = s.split_once('=') else {
        return Err(format!("{s:?}: STATUS=FILE, as 404=errors/404.html"));
    };
    let status: u16 = status
        .trim()
        .parse()
        .map_err(|_| format!("{s:?}: {status:?} is not a status"))?;
    if !(400..600).contains(&status) {
        return Err(format!("{s:?}: an error status is 400 to 599"));
    }
    let file = file.trim();
    if file.is_empty() {
        return Err(format!("{s:?}: STATUS=FILE, as 404=errors/404.html"));
    }
    Ok((status, file.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_header_rule_with_or_without_a_path_prefix() {
        let r = HeaderRule::parse("/assets/Cache-Control:max-age=31536000, immutable").unwrap();
        assert_eq!(r.prefix, "/assets/");
        assert_eq!(r.name, "Cache-Control");
        assert_eq!(r.value, "max-age=31536000, immutable");
        let r = HeaderRule::parse("Strict-Transport-Security: max-age=63072000").unwrap();
        assert_eq!(
            (&r.prefix[..], &r.name[..]),
            ("", "Strict-Transport-Security")
        );
        assert_eq!(r.value, "max-age=63072000");
        let r = HeaderRule::parse("/X-Root:1").unwrap();
        assert_eq!((&r.prefix[..], &r.name[..]), ("/", "X-Root"));
    }

    #[test]
    fn refuses_header_rules_that_would_break_the_response() {
        for bad in [
            "no colon",
            "Bad Name:x",
            ":x",
            "/assets/:x",
            "assets/X:y",
            "Content-Length:5",
            "connection: close",
            "/a/Transfer-Encoding: chunked",
            "X-A:one\rtwo",
            "X-A:one\ntwo",
            "X-A:nul\0",
        ] {
            assert!(HeaderRule::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn reads_a_redirect_and_refuses_what_is_not_a_path_or_url() {
        assert_eq!(
            parse_redirect("/old=/new").unwrap(),
            ("/old".into(), "/new".into())
        );
        assert!(parse_redirect("/blog=https://blog.example.org/").is_ok());
        for bad in [
            "/old",
            "old=/new",
            "/old=new",
            "/old=/n ew",
            "/a=ftp://x/",
            "/a=/b\r\nX: y",
        ] {
            assert!(parse_redirect(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_virtual_host_matches_its_name_or_the_names_under_its_domain() {
        let exact = VirtualHost::parse("Example.ORG=/srv/a").unwrap();
        assert_eq!(exact.host, "example.org");
        assert!(exact.matches("example.org"));
        assert!(exact.matches("EXAMPLE.org:8080"));
        assert!(!exact.matches("www.example.org"));
        let wild = VirtualHost::parse("*.example.org=/srv/b").unwrap();
        assert!(wild.matches("www.example.org"));
        assert!(wild.matches("a.b.example.org:443"));
        assert!(!wild.matches("example.org"));
        assert!(!wild.matches("badexample.org"));
        for bad in [
            "example.org",
            "=/srv",
            "exa mple.org=/srv",
            "*.=/srv",
            "a..b=/srv",
            "a.org=",
        ] {
            assert!(VirtualHost::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn reads_a_mime_rule_and_refuses_a_malformed_one() {
        assert_eq!(
            parse_mime(".MD=text/markdown").unwrap(),
            ("md".into(), "text/markdown".into())
        );
        assert_eq!(
            parse_mime("wasm=application/wasm").unwrap(),
            ("wasm".into(), "application/wasm".into())
        );
        for bad in [
            "md",
            "=text/plain",
            "md=text",
            "md=/plain",
            "md=text/pl ain",
            "a/b=text/x",
        ] {
            assert!(parse_mime(bad).is_err(), "{bad:?}");
        }
    }
}
