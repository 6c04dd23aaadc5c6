//! handoff: an HTTP/1.1 and HTTP/2 server for sockets handed over by
//! systemd, inetd or a front proxy, as a library: handlers are callbacks
//! on a mio event loop, and every socket, whatever its source, ends in
//! [`Server::add_socket`] or [`Server::add_stream`]. See the README for
//! the architecture.
//!
//! # A service in a few lines
//!
//! [`service::Service`] takes its sockets from the process it replaces
//! (a live upgrade), else from systemd socket activation, else binds the
//! addresses given; it tells systemd it is ready, drains on SIGTERM and
//! replaces its own binary on SIGUSR2 without dropping a connection.
//! [`api::Router`] routes with path parameters, [`api::Wrap`] puts a
//! [`api::Middleware`] around a handler, and `api::json` (feature `json`)
//! reads and writes JSON. `examples/items.rs` is a whole JSON service.
//!
//! ```no_run
//! use handoff::api::{PathParams, Router};
//! use handoff::service::Service;
//! use handoff::{Options, Request, Response};
//!
//! let mut app = Router::new();
//! app.get("/hello/{name}", |_: &Request<'_>, res: &mut Response<'_>, p: &PathParams<'_>| {
//!     res.body(format!("hello, {}\n", p.get("name").unwrap_or("you")));
//! });
//! let mut service = Service::new(Options::default(), app)?;
//! for addr in service.take_sockets(&["127.0.0.1:8080"])? {
//!     println!("listening on {addr}");
//! }
//! service.run()
//! # ; Ok::<(), std::io::Error>(())
//! ```
//!
//! # Each intake path
//!
//! systemd socket activation (`LISTEN_FDS`, named sockets, `Accept=yes`):
//!
//! ```no_run
//! # let mut server = handoff::Server::new(handoff::Options::default(), |_: &handoff::Request<'_>, _: &mut handoff::Response<'_>| {})?;
//! for socket in handoff::service::activation::systemd()? {
//!     server.add_socket(socket.into_socket())?; // framed by its name: TLS, PROXY, HTTP/2
//! }
//! server.run()
//! # ; Ok::<(), std::io::Error>(())
//! ```
//!
//! inetd, `wait` (a listener on fd 0) or `nowait` (the client's connection):
//!
//! ```no_run
//! # let mut server = handoff::Server::new(handoff::Options::default(), |_: &handoff::Request<'_>, _: &mut handoff::Response<'_>| {})?;
//! server.add_socket(handoff::service::activation::inetd()?)?;
//! server.run()
//! # ; Ok::<(), std::io::Error>(())
//! ```
//!
//! A front proxy passing connections on a control socket (`SCM_RIGHTS`,
//! `docs/handoff-protocol.md`), served on a thread that gives each to the
//! loop:
//!
//! ```no_run
//! # let mut server = handoff::Server::new(handoff::Options::default(), |_: &handoff::Request<'_>, _: &mut handoff::Response<'_>| {})?;
//! let listener = std::os::unix::net::UnixListener::bind("/run/app/control")?; // must be SOCK_SEQPACKET
//! # let listener: std::os::fd::OwnedFd = listener.into();
//! let control = handoff::service::activation::control(listener, handoff::Loops::new(vec![server.inbox()]))?;
//! server.run()
//! # ; Ok::<(), std::io::Error>(())
//! ```
//!
//! A connection of your own, with the bytes you already read from it:
//!
//! ```
//! use std::io::{Read, Write};
//! use handoff::{Options, Request, Response, Server};
//!
//! let mut server = Server::new(Options::default(), |req: &Request<'_>, res: &mut Response<'_>| {
//!     res.header("Content-Type", "text/plain").body(format!("you asked for {}", req.path()));
//! })?;
//! let (ours, mut client) = std::os::unix::net::UnixStream::pair()?;
//! server.add_stream(ours, b"GET /hi HTTP/1.1\r\n")?;
//! client.write_all(b"Host: x\r\nConnection: close\r\n\r\n")?;
//! server.run()?; // returns once the only connection has closed
//! let mut answer = String::new();
//! client.read_to_string(&mut answer)?;
//! assert!(answer.ends_with("you asked for /hi"));
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # In a poll loop of your own
//!
//! A [`Server`] is a file descriptor (`AsRawFd`): register it for
//! readability in your loop, call [`Server::step`] with a zero timeout when
//! it is readable, and wait no longer than [`Server::timeout`] (whole
//! milliseconds, rounded up, so a loop that truncates to milliseconds does
//! not spin).
//!
//! # Features
//!
//! - default: the engines (HTTP/1.1, HTTP/2), TLS (rustls), the request
//!   API, the router and middleware, the service's lifecycle.
//! - `json`: `api::json`, with serde.
//! - `tokio`: `Reply::spawn_on`, a deferred response completed on a tokio
//!   runtime.
//! - `cli`: the `handoff` binary's rooms (command line, settings file, man
//!   page, WebSocket workers, log sinks, self-signed certificates):
//!   `cargo install handoff --features cli`.
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
#[cfg(feature = "cli")]
pub(crate) mod apps;
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

pub use handoff::{fdpass, wire, worker};
pub use http::{
    Answer, Body, BodyPlan, BodySink, BodyStream, Gone, Handler, Limits, Misuse, ReadState,
    Refusal, Rendered, Reply, Request, Response, SinkError, StreamWaker, Timeouts, TlsInfo,
    Version, WriteState,
};
pub use server::{
    AccessLine, Added, HandedOff, Inbox, Loops, Mover, Options, PerClient, Rate, Server, Socket,
    Submission, Ticket,
};
pub use sys::Addr;
pub use tls::TlsMode;
