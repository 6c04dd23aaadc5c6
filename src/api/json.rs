//! JSON bodies with serde (feature `json`): a request's body read as a
//! type ([`RequestJson::json`]: a 415 for another media type, a 400 with
//! serde's words for a body that does not fit), a response or a deferred
//! answer written from a value, and an error body in one shape.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::http::{Answer, Rendered, Request, Response};

/// A request body that is not the JSON asked for.
#[derive(Debug)]
pub struct BadJson {
    /// 415 (not `application/json`) or 400 (does not parse as the type).
    pub status: u16,
    /// Why, for the client.
    pub message: String,
}

impl std::fmt::Display for BadJson {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.status)
    }
}

impl std::error::Error for BadJson {}

/// Reading a request's body as JSON.
pub trait RequestJson {
    /// The body as a `T`, if it is `application/json` (or `+json`) and
    /// parses as one.
    fn json<T: DeserializeOwned>(&self) -> Result<T, BadJson>;
}

impl RequestJson for Request<'_> {
    fn json<T: DeserializeOwned>(&self) -> Result<T, BadJson> {
        let ct = self.header("Content-Type").unwrap_or("");
        let base = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if base != "application/json" && !base.ends_with("+json") {
            return Err(BadJson {
                status: 415,
                message: "expected Content-Type: application/json".into(),
            });
        }
        serde_json::from_slice(self.body()).map_err(|e| BadJson {
            status: 400,
            message: e.to_string(),
        })
    }
}

/// Writing a response as JSON.
pub trait ResponseJson {
    /// `value` as the body, `Content-Type: application/json`. A value serde
    /// cannot write (a map with keys that are not strings) answers 500.
    fn json(&mut self, value: &impl Serialize) -> &mut Self;
}

impl ResponseJson for Response<'_> {
    fn json(&mut self, value: &impl Serialize) -> &mut Self {
        match serde_json::to_vec(value) {
            Ok(body) => self.header("Content-Type", "application/json").body(body),
            Err(e) => self
                .status(500)
                .header("Content-Type", "application/json")
                .body(error_body(&format!("the answer could not be written: {e}"))),
        }
    }
}

/// `{"error": message}`.
pub fn error_body(message: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "error": message })).unwrap_or_default()
}

/// `{"error": message}` as a refusal's body (`Handler::refusal`,
/// `Router::on_refusal`).
pub fn error(message: &str) -> Rendered {
    Rendered::new("application/json", error_body(message))
}

/// A whole answer with `value` as its JSON body (for a deferred reply or a
/// middleware's refusal).
pub fn answer(status: u16, value: &impl Serialize) -> Answer {
    match serde_json::to_vec(value) {
        Ok(body) => Answer::new(status)
            .header("Content-Type", "application/json")
            .body(body),
        Err(e) => Answer::new(500)
            .header("Content-Type", "application/json")
            .body(error_body(&format!("the answer could not be written: {e}"))),
    }
}

/// An answer `{"error": message}` with `status`.
pub fn error_answer(status: u16, message: &str) -> Answer {
    Answer::new(status)
        .header("Content-Type", "application/json")
        .body(error_body(message))
}
