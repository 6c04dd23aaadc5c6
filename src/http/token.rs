//! HTTP tokens (RFC 9110 §5.6.2): what a field name, a method or a
//! parameter name must be.

/// Is `s` a token?
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A field that belongs to one hop (RFC 9110 §7.6.1), not to the message:
/// never passed on to another connection, nor to a request made again.
pub(crate) fn hop_by_hop(name: &str) -> bool {
    [
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
    ]
    .iter()
    .any(|h| name.eq_ignore_ascii_case(h))
}
