//! Handing sockets between processes: the one wire format used by the
//! control socket (a front proxy passing us sockets) and, later, by the
//! WebSocket worker handoff. See `docs/handoff-protocol.md`.

pub mod pool;
pub mod wire;
