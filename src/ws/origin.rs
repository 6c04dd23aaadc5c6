//! Which web pages may open a WebSocket here (cross-site WebSocket
//! hijacking). A browser sends `Origin` with every WebSocket upgrade and
//! lets any page open one to any server; cookies and the user's network
//! position go along. So a path whose messages reach a command (`exec:`)
//! refuses pages from other origins unless the operator lists them, as
//! websocketd's `--origin` and `--sameorigin` do. A request without
//! `Origin` does not come from a browser page and is not judged here.

use crate::http::Request;
use crate::ws::route::Mode;

/// `--ws-origin` and `--ws-same-origin`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OriginPolicy {
    /// Origins allowed on every path: `scheme://host[:port]`, or
    /// `host[:port]` for any scheme.
    pub allow: Vec<String>,
    /// Only same-origin pages (and those in `allow`) on every path, not just
    /// on `exec:` ones.
    pub same_origin: bool,
}

impl OriginPolicy {
    /// Checks an upgrade for a path of this mode. `Err` is the reason for a
    /// 403.
    pub fn check(&self, mode: &Mode, req: &Request<'_>) -> Result<(), &'static str> {
        let mut values = req.header_all("origin");
        let origin = match (values.next(), values.next()) {
            (None, _) => return Ok(()),
            (Some(o), None) => {
                std::str::from_utf8(o.trim_ascii()).map_err(|_| "malformed Origin")?
            }
            _ => return Err("more than one Origin"),
        };
        let restricted =
            self.same_origin || !self.allow.is_empty() || matches!(mode, Mode::Exec { .. });
        if !restricted || self.allow.iter().any(|a| listed(a, origin)) {
            return Ok(());
        }
        match (parse_origin(origin), req.host()) {
            (Some(o), Some(host)) if same_authority(&o, host) => Ok(()),
            _ => Err("cross-origin WebSocket upgrade refused (see --ws-origin)"),
        }
    }
}

/// An origin's parts, lower-cased, the port made explicit.
#[derive(Debug, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    }
}

/// Splits `host[:port]` (a bracketed IPv6 literal included).
fn split_authority(a: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if let Some(rest) = a.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        match after {
            "" => (h, None),
            p => (h, Some(p.strip_prefix(':')?)),
        }
    } else {
        match a.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (a, None),
        }
    };
    if host.is_empty() {
        return None;
    }
    let port = match port {
        Some(p) => Some(p.parse().ok()?),
        None => None,
    };
    Some((host, port))
}

/// `scheme://host[:port]` as RFC 6454 serialises it (no path).
fn parse_origin(o: &str) -> Option<Origin> {
    let (scheme, authority) = o.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let (host, port) = split_authority(authority)?;
    Some(Origin {
        port: port.or_else(|| default_port(&scheme))?,
        host: host.to_ascii_lowercase(),
        scheme,
    })
}

/// Is the page's origin the authority the request was sent to? Without a
/// port in `Host`, the origin's scheme gives the default.
fn same_authority(o: &Origin, host: &str) -> bool {
    match split_authority(host) {
        Some((h, p)) => {
            h.eq_ignore_ascii_case(&o.host) && p.or_else(|| default_port(&o.scheme)) == Some(o.port)
        }
        None => false,
    }
}

/// Does an `--ws-origin` entry admit this origin?
fn listed(entry: &str, origin: &str) -> bool {
    let Some(o) = parse_origin(origin) else {
        // `null` (sandboxed pages, file://) only when listed as such.
        return entry == origin;
    };
    match parse_origin(entry) {
        Some(e) => e == o,
        None => split_authority(entry)
            .is_some_and(|(h, p)| h.eq_ignore_ascii_case(&o.host) && p.is_none_or(|p| p == o.port)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_origins_with_default_ports_made_explicit() {
        let o = parse_origin("HTTPS://Example.com").unwrap();
        assert_eq!(
            (o.scheme.as_str(), o.host.as_str(), o.port),
            ("https", "example.com", 443)
        );
        assert!(same_authority(&o, "example.com"));
        assert!(same_authority(&o, "example.com:443"));
        assert!(!same_authority(&o, "example.com:8080"));
        assert!(!same_authority(&o, "evil.example"));
        let v6 = parse_origin("http://[::1]:8080").unwrap();
        assert!(same_authority(&v6, "[::1]:8080"));
        assert!(parse_origin("null").is_none());
        assert!(parse_origin("http://host:99999").is_none());
    }

    #[test]
    fn allow_list_entries_match_a_whole_origin_or_a_host() {
        assert!(listed("https://app.example", "https://app.example:443"));
        assert!(!listed("https://app.example", "http://app.example"));
        assert!(listed("app.example", "http://app.example"));
        assert!(listed("app.example:8443", "https://app.example:8443"));
        assert!(!listed("app.example:8443", "https://app.example"));
        assert!(listed("null", "null"));
        assert!(!listed("app.example", "null"));
    }
}
