//! Status codes: reason phrases, and the rejection the engine answers itself.

/// A request the engine refuses before any handler sees it: a status, and a
/// reason for the log line. Every rejection closes the connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Reject {
    pub status: u16,
    pub reason: std::borrow::Cow<'static, str>,
}

impl Reject {
    pub(crate) const fn new(status: u16, reason: &'static str) -> Self {
        Reject {
            status,
            reason: std::borrow::Cow::Borrowed(reason),
        }
    }
}

pub(crate) fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// Responses that never carry a body (RFC 9110 §6.4.1).
pub(crate) fn has_no_body(status: u16) -> bool {
    (100..200).contains(&status) || status == 204 || status == 304
}
