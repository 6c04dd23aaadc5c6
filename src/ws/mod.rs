//! WebSockets: the HTTP process only checks an upgrade and hands the
//! connection off (`handshake.rs`, `pool/`); worker processes
//! run the protocol with tungstenite (`worker/`), per path as an echo, a
//! broadcast channel or a websocketd-style command (`exec.rs`).

pub(crate) mod exec;
pub(crate) mod handshake;
pub(crate) mod origin;
pub(crate) mod pool;
pub(crate) mod route;
pub(crate) mod worker;
