//! WebSockets: the HTTP process only checks an upgrade and hands the
//! connection off (`handshake.rs`, `pool/`); worker processes
//! run the protocol with tungstenite (`worker/`), per path as an echo, a
//! broadcast channel or a websocketd-style command (`exec.rs`).

pub(crate) mod bus;
pub(crate) mod deflate;
pub(crate) mod exec;
pub(crate) mod handshake;
pub(crate) mod origin;
pub(crate) mod pool;
pub(crate) mod route;
pub(crate) mod worker;

/// The subprotocol agreed for a connection, as the HTTP process hands it
/// to the worker (an `ENV` pair, no wire field of its own) and as an
/// `exec:` command sees it.
pub(crate) const PROTOCOL_VAR: &str = "WEBSOCKET_PROTOCOL";
