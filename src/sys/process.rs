//! Start-up calls on the process itself: inherited fds, the environment,
//! stdio.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::fcntl::{FcntlArg, OFlag, fcntl};

use super::errno;

/// An fd handed over by the service manager, with its `LISTEN_FDNAMES` name.
pub struct Inherited {
    pub fd: OwnedFd,
    pub name: String,
}

/// Takes the fds of systemd socket activation (`LISTEN_PID` must be ours)
/// and removes `LISTEN_PID`, `LISTEN_FDS` and `LISTEN_FDNAMES` from the
/// environment so that children do not inherit them.
///
/// Call it at start-up, before any thread is started.
pub fn take_listen_fds() -> io::Result<Vec<Inherited>> {
    // SAFETY: `remove_var` is sound while no other thread reads the
    // environment; handoff calls this from `main` before it starts threads.
    let fds = unsafe { sd_notify::listen_fds_with_names_and_unset_env() }?;
    Ok(fds
        .map(|(raw, name)| Inherited {
            // SAFETY: systemd passed these fds to this process (LISTEN_PID
            // matched) and nothing in the process has claimed them yet;
            // taking them once here makes us their only owner.
            fd: unsafe { OwnedFd::from_raw_fd(raw) },
            name,
        })
        .collect())
}

/// Takes fd 0 as inetd hands it over (a listening or a connected socket),
/// and points fds 1 and 2 at /dev/null: inetd makes them the same socket,
/// and nothing stray (a log line, a panic message) may ever reach the client.
///
/// Call it at start-up, before any thread is started.
pub fn take_inetd_socket() -> io::Result<OwnedFd> {
    let devnull = std::fs::OpenOptions::new().write(true).open("/dev/null")?;
    // Move the socket off fd 0 first, so that fd 0 can be /dev/null too.
    // SAFETY: inetd passed fd 0 to this process and nothing in it owns fd 0.
    let stdin = unsafe { BorrowedFd::borrow_raw(0) };
    let sock = stdin.try_clone_to_owned()?;
    nix::unistd::dup2_stdout(devnull.as_fd()).map_err(errno)?;
    nix::unistd::dup2_stderr(devnull.as_fd()).map_err(errno)?;
    nix::unistd::dup2_stdin(devnull.as_fd()).map_err(errno)?;
    Ok(sock)
}

/// Borrows a raw fd number for a moment (to classify it).
///
/// # Safety
/// `raw` must be open for the duration of the borrow.
pub unsafe fn borrow(raw: RawFd) -> BorrowedFd<'static> {
    // SAFETY: upheld by the caller.
    unsafe { BorrowedFd::borrow_raw(raw) }
}

/// Makes a blocking fd out of a possibly non-blocking one (a control socket
/// inherited from systemd is served by a thread with blocking calls).
pub fn set_blocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    let fl = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL).map_err(errno)?);
    if fl.contains(OFlag::O_NONBLOCK) {
        fcntl(fd, FcntlArg::F_SETFL(fl - OFlag::O_NONBLOCK)).map_err(errno)?;
    }
    Ok(())
}

/// The effective uid of this process.
pub fn euid() -> u32 {
    nix::unistd::geteuid().as_raw()
}
