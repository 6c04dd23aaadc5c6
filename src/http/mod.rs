//! The HTTP/1.1 engine, sans-I/O: bytes in, bytes out. See `conn/`.

pub mod body;
pub mod chunked;
pub mod conn;
pub mod deferred;
pub mod encode;
pub mod head;
pub mod limits;
pub mod output;
pub(crate) mod percent;
pub mod pool;
pub mod request;
pub mod response;
pub mod sink;
pub mod status;

#[cfg(test)]
mod tests;

pub use conn::{Conn, Ctx, Expired, Handler, Next};
pub use deferred::{Misuse, ReadState, WriteState};
pub use limits::{Limits, Timeouts};
pub use pool::BufPool;
pub use request::{Request, Version};
pub use response::{Body, BodyStream, Response};
pub use sink::{BodyPlan, BodySink, SinkError};
