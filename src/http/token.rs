//! HTTP tokens (RFC 9110 §5.6.2): what a field name, a method or a
//! parameter name must be.

/// Is `s` a token?
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}
