//! handoff: an HTTP/1.1 worker service for sockets handed over by systemd,
//! inetd or a front proxy. See the README for the architecture.
//!
//! ```
//! use std::io::{Read, Write};
//! use std::time::Duration;
//! use handoff::{Options, Request, Response, Server};
//!
//! let mut server = Server::new(Options::default(), |req: &Request<'_>, res: &mut Response<'_>| {
//!     res.header("Content-Type", "text/plain").body(format!("you asked for {}", req.path()));
//! })?;
//! let (ours, mut client) = std::os::unix::net::UnixStream::pair()?;
//! server.add_socket(ours)?;
//! client.write_all(b"GET /hi HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
//! server.run()?; // returns once the only connection has closed
//! let mut answer = String::new();
//! client.read_to_string(&mut answer)?;
//! assert!(answer.ends_with("you asked for /hi"));
//! # Ok::<(), std::io::Error>(())
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs, unreachable_pub, clippy::undocumented_unsafe_blocks)]
// Without the `cli` feature the binary's rooms are left out, and with them
// the only callers of some crate-private helpers (the static files, the
// log sinks, the WebSocket pool's syscalls). Dead code is still caught in
// the build with `cli` (the tests and clippy's).
#![cfg_attr(
    not(feature = "cli"),
    allow(dead_code, unused_imports, unreachable_pub)
)]

// The public API is what the README's library section documents: the
// server and its options, the handler and request/response types, `api`,
// `blocking`, the hand-off wire format, `app` (the service the binary
// runs) and `cli` (its command line). Everything else is the crate's own.

#[allow(unsafe_code)]
pub(crate) mod sys;

pub(crate) mod tls;

pub mod api;
#[cfg(feature = "cli")]
pub mod app;
pub mod blocking;
#[cfg(feature = "cli")]
pub mod cli;
pub(crate) mod event_loop;
pub(crate) mod files;
#[cfg(any(fuzzing, test))]
#[doc(hidden)]
#[allow(missing_docs)]
pub mod fuzzing;
pub(crate) mod handoff;
pub mod http;
pub(crate) mod intake;
pub(crate) mod log;
mod metrics;
pub mod notify;
#[cfg(feature = "cli")]
pub(crate) mod pass;
pub mod proxy;
pub(crate) mod server;
pub mod service;
#[cfg(feature = "cli")]
pub(crate) mod ws;

pub use handoff::{fdpass, wire};
pub use http::{
    Answer, Body, BodyPlan, BodySink, BodyStream, Gone, Handler, Limits, Misuse, ReadState,
    Refusal, Rendered, Reply, Request, Response, SinkError, StreamWaker, Timeouts, Version,
    WriteState,
};
pub use server::{
    AccessLine, Added, HandedOff, Inbox, Loops, Mover, Options, Server, Socket, Submission, Ticket,
};
pub use sys::Addr;
pub use tls::TlsMode;
