//! WebSockets: the HTTP process only checks an upgrade and hands the
//! connection off (`upgrade.rs`, `crate::handoff::pool`); worker processes
//! run the protocol with tungstenite (`worker/`), per path as an echo, a
//! broadcast channel or a websocketd-style command (`exec.rs`).

pub mod exec;
pub mod origin;
pub mod route;
pub mod upgrade;
pub mod worker;
