//! The request API of Moonbridge and Emilua, in Rust: parameters, forms
//! (urlencoded and multipart, buffered or streamed field by field),
//! cookies, and the four views of a header field.
//!
//! Where the seeds have two tables (`get_params` for the first value,
//! `get_params_list` for all), Rust has one ordered multimap with `get` and
//! `get_all`; malformed input is an error (a 400), never a panic.

pub mod form;
pub mod headers;
#[cfg(feature = "json")]
pub mod json;
pub mod middleware;
pub mod multipart;
pub(crate) mod params;
pub mod router;
pub mod urlencoded;

pub use form::{Field, Form, StreamForm};
pub use middleware::{Middleware, Wrap};
pub use router::{PathParams, Route, Router};
pub use urlencoded::Params;

/// Input that cannot be decoded: answered with 400 and this reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for Malformed {}
