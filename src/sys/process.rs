//! Start-up calls on the process itself: inherited fds, the environment,
//! stdio.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::fcntl::{FcntlArg, OFlag, fcntl};

use super::errno;

/// An fd handed over by the service manager, with its `LISTEN_FDNAMES` name.
pub(crate) struct Inherited {
    pub fd: OwnedFd,
    pub name: String,
}

/// Takes the fds of systemd socket activation (`LISTEN_PID` must be ours)
/// and removes `LISTEN_PID`, `LISTEN_FDS` and `LISTEN_FDNAMES` from the
/// environment so that children do not inherit them.
///
/// Call it at start-up, before any thread is started.
pub(crate) fn take_listen_fds() -> io::Result<Vec<Inherited>> {
    // Variables meant for another process (LISTEN_PID not ours, or not a
    // pid at all) say nothing to us: start as if they were absent, and do
    // not pass them on. sd-notify would check the fd names against a count
    // of zero and fail.
    let ours = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.trim().parse::<u32>().ok())
        == Some(std::process::id());
    if !ours {
        for v in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
            if std::env::var_os(v).is_some() {
                tracing::debug!("ignoring {v}: LISTEN_PID does not name this process");
            }
            // SAFETY: as below, no other thread exists yet.
            unsafe { std::env::remove_var(v) };
        }
        return Ok(Vec::new());
    }
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
pub(crate) fn take_inetd_socket() -> io::Result<OwnedFd> {
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

/// Makes a blocking fd out of a possibly non-blocking one (a control socket
/// inherited from systemd is served by a thread with blocking calls).
pub(crate) fn set_blocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    let fl = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL).map_err(errno)?);
    if fl.contains(OFlag::O_NONBLOCK) {
        fcntl(fd, FcntlArg::F_SETFL(fl - OFlag::O_NONBLOCK)).map_err(errno)?;
    }
    Ok(())
}

/// The effective uid of this process.
pub(crate) fn euid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// Whether `uid`, as `SO_PEERCRED` gave it, stands for a user this
/// process's user namespace does not map: the kernel reports such a peer
/// as the overflow uid (`kernel.overflowuid`, 65534), and that uid is not
/// itself mapped here. Under systemd's `PrivateUsers=yes` every user but
/// root and the unit's own is one; in the initial namespace none is.
pub(crate) fn is_unmapped_uid(uid: u32) -> bool {
    let overflow = std::fs::read_to_string("/proc/sys/kernel/overflowuid")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(65534);
    let Ok(map) = std::fs::read_to_string("/proc/self/uid_map") else {
        return false;
    };
    uid == overflow && !maps(&map, uid)
}

/// Whether a `uid_map` (lines of "inside outside count") maps `uid`.
fn maps(uid_map: &str, uid: u32) -> bool {
    uid_map.lines().any(|l| {
        let n: Vec<u64> = l
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        n.len() == 3 && n[0] <= u64::from(uid) && u64::from(uid) < n[0] + n[2]
    })
}

/// In a child between fork and exec: makes `raw` its fd 3, inherited by
/// the program it runs (dup2 clears close-on-exec; fd 3 itself has the flag
/// cleared). Only async-signal-safe calls, no allocation.
///
/// # Safety
/// To be called only in a `pre_exec` closure, with `raw` open.
unsafe fn onto_fd3(raw: RawFd) -> io::Result<()> {
    // SAFETY: fcntl and dup2 on fds of this (forked) process.
    unsafe {
        if raw == 3 {
            let fl = libc::fcntl(3, libc::F_GETFD);
            if fl < 0 || libc::fcntl(3, libc::F_SETFD, fl & !libc::FD_CLOEXEC) < 0 {
                return Err(io::Error::last_os_error());
            }
        } else if libc::dup2(raw, 3) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Starts a worker process with `ctl` as its fd 3. The worker gets its own
/// process group (a terminal's ^C goes to us, and we decide) and dies with
/// us: `PR_SET_PDEATHSIG` sends it SIGKILL when the thread that started it
/// ends, and a parent that died before that was set is caught by checking
/// `getppid`. It starts with SIGUSR1 ignored (a disposition exec keeps)
/// until its log installs the handler: we pass SIGUSR1 on to workers, and
/// one just started would die of it.
pub(crate) fn spawn_worker(
    cmd: &mut std::process::Command,
    ctl: OwnedFd,
) -> io::Result<std::process::Child> {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let raw = ctl.as_raw_fd();
    let parent = std::process::id() as libc::pid_t;
    cmd.process_group(0);
    // SAFETY: the closure runs in the child between fork and exec, where
    // only async-signal-safe calls are allowed; it makes only dup2, fcntl,
    // signal, prctl, getppid and _exit, and builds errors without
    // allocating.
    unsafe {
        cmd.pre_exec(move || {
            onto_fd3(raw)?;
            if libc::signal(libc::SIGUSR1, libc::SIG_IGN) == libc::SIG_ERR {
                return Err(io::Error::last_os_error());
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) < 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    let child = cmd.spawn();
    drop(ctl); // the child has its copy
    child
}

/// Takes the fd whose number the variable `var` names, if it is set, and
/// removes the variable (so a child does not see it). Must run before any
/// thread starts.
pub(crate) fn take_env_fd(var: &str) -> io::Result<Option<OwnedFd>> {
    let Some(v) = std::env::var_os(var) else {
        return Ok(None);
    };
    // SAFETY: `remove_var` is sound while no other thread reads the
    // environment; handoff calls this from `serve` before it starts threads.
    unsafe { std::env::remove_var(var) };
    let raw: RawFd = v
        .to_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other(format!("{var}={v:?} is not an fd number")))?;
    take_inherited_fd(raw).map(Some)
}

/// Starts the process that replaces this one (`docs/upgrade.md`) with
/// `chan` as its fd 3. Unlike a worker it must outlive us: no death signal,
/// and it stays in our process group and session.
pub(crate) fn spawn_successor(
    cmd: &mut std::process::Command,
    chan: OwnedFd,
) -> io::Result<std::process::Child> {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let raw = chan.as_raw_fd();
    // SAFETY: the closure runs in the child between fork and exec; it
    // makes only dup2 and fcntl, which are async-signal-safe, and builds
    // errors without allocating.
    unsafe {
        cmd.pre_exec(move || onto_fd3(raw));
    }
    let child = cmd.spawn();
    drop(chan);
    child
}

/// A pidfd for a process (Linux 5.3): it names that process and no other,
/// even after its PID is reused, and can be passed to another process,
/// which may then signal it and see it end (an `exec:` child moving with
/// its WebSocket to the new process of an upgrade).
pub(crate) fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes two integers and returns a new fd or -1;
    // no memory is shared with the kernel.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just gave us this fd; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(r as RawFd) })
}

/// Sends a signal to the process a pidfd names. One that has ended is not
/// an error worth reporting.
pub(crate) fn pidfd_signal(pidfd: BorrowedFd<'_>, sig: nix::sys::signal::Signal) {
    // SAFETY: integers and a null siginfo, which the call allows.
    let _ = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig as libc::c_int,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
}

/// Has the process a pidfd names ended? (Its pidfd reads as readable.)
pub(crate) fn pidfd_ended(pidfd: BorrowedFd<'_>) -> bool {
    let mut p = libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one pollfd on our stack, valid for the call; timeout 0.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n > 0
}

/// Takes ownership of an fd number this process inherited by arrangement
/// (`handoff ws-worker --ctl-fd 3`), after checking that it is open.
///
/// Each number is taken at most once per process: a second call for the
/// same number is an error, never a second owner. (Nothing else in handoff
/// makes an `OwnedFd` from a raw number it did not create, apart from the
/// activation fds, which have numbers of their own.)
pub(crate) fn take_inherited_fd(raw: RawFd) -> io::Result<OwnedFd> {
    static TAKEN: std::sync::Mutex<Vec<RawFd>> = std::sync::Mutex::new(Vec::new());
    if raw < 3 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "fds 0 to 2 are not taken this way",
        ));
    }
    let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
    if taken.contains(&raw) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("fd {raw} was taken already"),
        ));
    }
    // SAFETY: borrowed only to ask the kernel whether it is open.
    fcntl(unsafe { BorrowedFd::borrow_raw(raw) }, FcntlArg::F_GETFD).map_err(errno)?;
    taken.push(raw);
    // SAFETY: the fd is open, it was given to this process for us, and the
    // list above lets each number be taken once, so nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// How this process was started (`argv[0]`), for the processes it starts
/// from `/proc/self/exe`: `ps` shows them under the same name.
pub(crate) fn own_argv0() -> std::ffi::OsString {
    std::env::args_os()
        .next()
        .unwrap_or_else(|| "handoff".into())
}

/// Names this process after its `argv[0]`'s last part (the kernel's
/// `comm`, which `pgrep` and `top` show): exec sets it from the file run,
/// and a worker started from `/proc/self/exe` would be called `exe`.
pub(crate) fn name_after_argv0() {
    let argv0 = own_argv0();
    let base = std::path::Path::new(&argv0)
        .file_name()
        .map(|b| b.to_string_lossy().into_owned())
        .unwrap_or_else(|| "handoff".into());
    // The kernel keeps 15 bytes; a NUL in an argument cannot happen.
    let base: String = base.chars().take(15).collect();
    if let Ok(name) = std::ffi::CString::new(base) {
        let _ = nix::sys::prctl::set_name(&name);
    }
}

/// Makes the child `cmd` starts receive `SIGKILL` when the thread that
/// started it ends (`PR_SET_PDEATHSIG`): a CGI script's thread lives until
/// it has reaped the script, so the script outlives it only when the whole
/// server went (killed, or crashed), and then it goes too instead of
/// running on under init.
pub(crate) fn kill_with_starting_thread(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id();
    // SAFETY: the closure runs in the child between fork and exec, where
    // only async-signal-safe calls are allowed: prctl, getppid and _exit
    // are; it allocates nothing and takes no lock.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
            // The parent may have gone before the prctl: then no signal
            // would come.
            if nix::unistd::getppid().as_raw() as u32 != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inherited_fd_is_taken_once() {
        use std::os::fd::IntoRawFd;
        let raw = std::fs::File::open("/dev/null").unwrap().into_raw_fd();
        let fd = take_inherited_fd(raw).unwrap();
        let again = take_inherited_fd(raw).map(|_| ()).unwrap_err();
        assert!(again.to_string().contains("taken already"), "{again}");
        drop(fd);
    }

    #[test]
    fn a_uid_map_maps_the_ids_of_its_ranges_alone() {
        // The initial namespace, and systemd's PrivateUsers=yes for a unit
        // running as uid 999.
        let initial = "         0          0 4294967295\n";
        let private = "         0          0          1\n       999        999          1\n";
        assert!(maps(initial, 65534) && maps(initial, 0));
        assert!(maps(private, 0) && maps(private, 999));
        assert!(!maps(private, 65534) && !maps(private, 1) && !maps(private, 1000));
        assert!(!maps("", 0));
    }
}
