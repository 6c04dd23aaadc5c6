//! handoff: an HTTP/1.1 worker service for sockets handed over by systemd,
//! inetd or a front proxy. See the README for the architecture.
#![deny(unsafe_code)]

#[allow(unsafe_code)]
pub mod sys;

pub mod app;
pub mod files;
pub mod http;
pub mod intake;
pub mod log;
pub mod server;

pub use http::{Body, BodyStream, Handler, Limits, Request, Response, Timeouts, Version};
pub use server::{Added, Options, Server, Socket};
pub use sys::Addr;
