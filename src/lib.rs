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

#[allow(unsafe_code)]
pub mod sys;

pub mod tls;

pub mod api;
pub mod app;
pub mod blocking;
pub mod conn_io;
pub mod files;
pub mod handoff;
pub mod http;
pub mod intake;
pub mod log;
pub mod notify;
pub mod pass;
pub mod relay;
pub mod server;
pub mod ws;

pub use http::{Body, BodyStream, Handler, Limits, Request, Response, Timeouts, Version};
pub use server::{Added, Options, Server, Socket};
pub use sys::Addr;
