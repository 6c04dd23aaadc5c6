//! inetd: the socket is on fd 0. A connected socket (`nowait`) is served,
//! keep-alive included, and the process exits when it closes; a listening
//! socket (`wait`) is accepted from until the process has been idle for
//! `--idle-exit`, so that inetd takes the port back. Which one it is comes
//! from the kernel (`Server::add_socket`).
//!
//! inetd makes fds 1 and 2 the same socket, so they are pointed at
//! /dev/null and logs go to syslog or a file instead.

use std::io;
use std::os::fd::OwnedFd;

/// Takes fd 0 and silences fds 1 and 2. Must run before any thread starts.
pub(crate) fn take() -> io::Result<OwnedFd> {
    crate::sys::process::take_inetd_socket()
}
