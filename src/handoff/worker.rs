//! An application process behind `handoff serve --app`: the HTTP process
//! lends it HTTP/1.1 connections whose request is on one of its routes (the
//! socket, the request's bytes, the client's address, over a line in the
//! wire format), this process's `Server` answers on the client's socket
//! itself, and gives each connection back as soon as it is idle, so the
//! client's next request is routed afresh (`docs/apps.md`).
//!
//! ```no_run
//! use handoff::{Options, Request, Response, Server};
//!
//! let mut server = Server::new(Options::default(), |req: &Request<'_>, res: &mut Response<'_>| {
//!     res.body(format!("{} from the app\n", req.path()));
//! })?;
//! // `exec:` routes start us with our line; a `unix:` route's socket is
//! // ours by systemd socket activation (or `Lines::listen`).
//! handoff::worker::Lines::from_env()?.run(&mut server)
//! # ; Ok::<(), std::io::Error>(())
//! ```

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use crate::server::Server;
use crate::sys::{self, fdpass};

/// The variable naming the fd of the line an `exec:` app process is
/// started with.
pub const LINE_FD_VAR: &str = "HANDOFF_APP_FD";

/// Where lent connections come from: one line (an `exec:` app process's),
/// or a `SOCK_SEQPACKET` listener each HTTP process connects to (a `unix:`
/// app's).
pub struct Lines(Source);

enum Source {
    Line(OwnedFd),
    Listener(OwnedFd),
}

impl Lines {
    /// The line `handoff serve --app PREFIX=exec:CMD` started us with
    /// (`HANDOFF_APP_FD`), else a `SOCK_SEQPACKET` socket systemd socket
    /// activation gave us (`ListenSequentialPacket=`, for `--app
    /// PREFIX=unix:PATH`). Call it before starting threads.
    pub fn from_env() -> io::Result<Lines> {
        if let Some(fd) = sys::process::take_env_fd(LINE_FD_VAR)? {
            return Ok(Lines(Source::Line(fd)));
        }
        for inherited in sys::process::take_listen_fds()? {
            if sys::fdpass::is_seqpacket(inherited.fd.as_fd()) {
                return Ok(Lines(Source::Listener(inherited.fd)));
            }
        }
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no line: neither {LINE_FD_VAR} nor a SOCK_SEQPACKET socket from systemd"),
        ))
    }

    /// Listens at `path` (mode 0600) for HTTP processes (`--app
    /// PREFIX=unix:PATH`), for an app started by hand.
    pub fn listen(path: &Path) -> io::Result<Lines> {
        Ok(Lines(Source::Listener(fdpass::seqpacket_listen(path)?)))
    }

    /// Serves what comes on the lines with `server`, in its own loop (no
    /// thread): each connection lent is adopted at once (as `add_stream`,
    /// with the request's bytes and the client's address) and answered
    /// `ACK`, and goes back on its line once idle. Returns when the server
    /// is empty and no line is open (the HTTP process that started us has
    /// gone); a listener keeps it running.
    pub fn run(self, server: &mut Server) -> io::Result<()> {
        match self.0 {
            Source::Line(fd) => server.add_line(fd)?,
            Source::Listener(l) => server.add_line_listener(l)?,
        }
        server.run()
    }
}
