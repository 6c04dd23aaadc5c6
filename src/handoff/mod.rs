//! Handing sockets between processes: the one wire format used by the
//! control socket (a front proxy passing us sockets), the WebSocket
//! worker handoff (`crate::ws::pool`) and the upgrade. See `docs/handoff-protocol.md`.

pub(crate) mod outbox;
pub(crate) mod upgrade;
pub mod wire;
pub mod worker;

/// The sending side, for a program that hands sockets to `handoff`'s
/// control socket: `SOCK_SEQPACKET` messages carrying fds (`SCM_RIGHTS`).
pub mod fdpass {
    pub use crate::sys::fdpass::{
        recv_with_fds, request, send_with_fds, seqpacket_connect, set_recv_timeout,
    };
}
