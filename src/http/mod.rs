//! The HTTP/1.1 engine, sans-I/O: bytes in, bytes out. See `conn/`.

pub(crate) mod again;
pub(crate) mod blocks;
pub(crate) mod body;
pub(crate) mod chunked;
pub(crate) mod conn;
pub(crate) mod deferred;
pub(crate) mod encode;
pub(crate) mod engine_io;
pub(crate) mod events;
pub(crate) mod h2;
pub(crate) mod head;
pub(crate) mod limits;
pub(crate) mod link;
pub(crate) mod output;
pub(crate) mod percent;
pub(crate) mod pool;
pub(crate) mod refusal;
pub(crate) mod reply;
pub(crate) mod request;
pub(crate) mod response;
pub(crate) mod sink;
pub(crate) mod status;
pub(crate) mod token;

#[cfg(test)]
mod tests;

pub use conn::Handler;
pub(crate) use conn::{Conn, Ctx, Expired, Next, Parked, Spare, Taken};
pub use deferred::{Misuse, ReadState, WriteState, Writer};
pub(crate) use engine_io::EngineIo;
pub use limits::{Limits, Timeouts};
pub(crate) use pool::BufPool;
pub use refusal::{Refusal, Rendered};
pub use reply::{Answer, Gone, GoneFuture, Reply, StreamWaker};
pub use request::{Request, TlsInfo, Version};
pub use response::{Body, BodyStream, HandOffContext, Response};
pub use sink::{BodyPlan, BodySink, SinkError};
