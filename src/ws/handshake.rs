//! Is a request a valid WebSocket opening handshake (RFC 6455 §4.2.1)? (Not
//! to be confused with `handoff/upgrade.rs`, which replaces the binary.)

use crate::http::Request;
use crate::http::head::csv;

/// An upgrade the HTTP process accepted, as it hands it to a worker
/// (`Response::hand_off_with`): what it matched and computed, so that the
/// worker need not parse the request again (wire `ROUTE`, `ACCEPT`, `ENV`).
pub(crate) struct Accepted {
    /// The route's path.
    pub route: String,
    /// `Sec-WebSocket-Accept` for the request's key.
    pub accept: String,
    /// An `exec:` route's request variables (`exec::request_environment`);
    /// for the others, `REQUEST_URI` alone.
    pub env: Vec<(String, String)>,
}

/// Why an upgrade is refused: the status and the reason.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Refused {
    pub status: u16,
    pub reason: &'static str,
}

fn has_token(req: &Request<'_>, header: &str, token: &str) -> bool {
    req.header_all(header)
        .any(|v| csv(v).any(|t| t.eq_ignore_ascii_case(token.as_bytes())))
}

/// A valid `Sec-WebSocket-Key`: base64 of 16 bytes, so 22 characters of the
/// alphabet, the last of which carries only 2 bits, then `==`.
fn valid_key(k: &[u8]) -> bool {
    let b64 = |c: &u8| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/';
    k.len() == 24 && k[..22].iter().all(b64) && b"AQgw".contains(&k[21]) && &k[22..] == b"=="
}

/// Checks a request for a WebSocket path. `Ok` means hand it to a worker.
pub(crate) fn check(req: &Request<'_>) -> Result<(), Refused> {
    let refuse = |status, reason| Err(Refused { status, reason });
    if !has_token(req, "upgrade", "websocket") {
        return refuse(426, "this path takes WebSocket connections only");
    }
    if req.method() != "GET" {
        return refuse(400, "a WebSocket upgrade must be a GET");
    }
    if req.version() != crate::http::Version::Http11 {
        return refuse(400, "a WebSocket upgrade needs HTTP/1.1");
    }
    if !has_token(req, "connection", "upgrade") {
        return refuse(400, "Connection does not include upgrade");
    }
    if !req.body().is_empty()
        || req.header("content-length").is_some_and(|v| v != "0")
        || req.header("transfer-encoding").is_some()
    {
        return refuse(400, "a WebSocket upgrade has no body");
    }
    match req.header_all("sec-websocket-key").collect::<Vec<_>>()[..] {
        [k] if valid_key(k.trim_ascii()) => {}
        _ => return refuse(400, "missing or invalid Sec-WebSocket-Key"),
    }
    match req.header("sec-websocket-version").map(str::trim) {
        Some("13") => Ok(()),
        _ => refuse(
            426,
            "unsupported Sec-WebSocket-Version (this server speaks 13)",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_key_from_rfc_6455_and_refuses_others() {
        assert!(valid_key(b"dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(!valid_key(b"dGhlIHNhbXBsZSBub25jZR=="));
        assert!(!valid_key(b"dGhlIHNhbXBsZSBub25jZQ="));
        assert!(!valid_key(b"not base64 at all!!!!!=="));
    }
}
