//! Every raw file-descriptor syscall handoff makes, behind small functions
//! that return `io::Result`. This is the only module allowed `unsafe`; each
//! block says why it is sound.
//!
//! Most calls go through `nix`, whose wrappers are already safe; we drop to
//! `libc` only where nix would cost an extra syscall (accept4 with the peer
//! address in one call).

use std::fmt;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
use nix::sys::socket::{self, AddressFamily, SockType, SockaddrLike, SockaddrStorage, sockopt};

pub(crate) mod fdpass;
pub(crate) mod fs;
pub(crate) mod privileges;
pub(crate) mod process;
pub(crate) mod text;

fn errno(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

/// Runs a system call again for as long as a signal interrupts it
/// (`EINTR`) and maps any other failure to an `io::Error`: the retry loop
/// for every nix call here (mio's `syscall!` does the same), and for a
/// raw libc call through `Errno::result`. Rustix's calls have theirs,
/// `retry_raw`.
pub(crate) fn retry<T>(mut call: impl FnMut() -> nix::Result<T>) -> io::Result<T> {
    loop {
        match call() {
            Err(Errno::EINTR) => continue,
            r => return r.map_err(errno),
        }
    }
}

/// The address of a socket's peer or local end, as much as the kernel says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Addr {
    /// An IP address and port.
    Inet(SocketAddr),
    /// A Unix socket; `None` for an unnamed one (the usual peer).
    Unix(Option<std::path::PathBuf>),
    /// Not known (`getpeername` failed).
    Unknown,
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Addr::Inet(a) => write!(f, "{a}"),
            Addr::Unix(Some(p)) => write!(f, "unix:{}", p.display()),
            Addr::Unix(None) => f.write_str("unix"),
            Addr::Unknown => f.write_str("-"),
        }
    }
}

fn addr_from_storage(s: &SockaddrStorage) -> Addr {
    if let Some(a) = s.as_sockaddr_in() {
        return Addr::Inet(SocketAddr::from(*a));
    }
    if let Some(a) = s.as_sockaddr_in6() {
        return Addr::Inet(SocketAddr::from(*a));
    }
    if let Some(u) = s.as_unix_addr() {
        return Addr::Unix(u.path().map(|p| p.to_path_buf()));
    }
    Addr::Unknown
}

/// What the kernel says a socket fd is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SockKind {
    /// A listening stream socket (`SO_ACCEPTCONN`).
    Listener { unix: bool },
    /// A connected (or connecting) stream socket.
    Stream { unix: bool },
}

/// Asks the kernel what `fd` is, rather than guessing from where it came.
/// Anything that is not a stream socket is an error that says what it is.
pub(crate) fn classify(fd: BorrowedFd<'_>) -> io::Result<SockKind> {
    let ty = socket::getsockopt(&fd, sockopt::SockType).map_err(|e| {
        if e == Errno::ENOTSOCK {
            io::Error::new(io::ErrorKind::InvalidInput, "fd is not a socket")
        } else {
            errno(e)
        }
    })?;
    if ty != SockType::Stream {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("socket is {ty:?}, not a stream socket"),
        ));
    }
    let local: SockaddrStorage = socket::getsockname(fd.as_raw_fd()).map_err(errno)?;
    let unix = match local.family() {
        Some(AddressFamily::Unix) => true,
        Some(AddressFamily::Inet) | Some(AddressFamily::Inet6) => false,
        other => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("socket family {other:?} is not served"),
            ));
        }
    };
    let listening = socket::getsockopt(&fd, sockopt::AcceptConn).map_err(errno)?;
    Ok(if listening {
        SockKind::Listener { unix }
    } else {
        SockKind::Stream { unix }
    })
}

/// Makes an adopted fd non-blocking and close-on-exec: sockets inherited from
/// systemd or inetd, or passed by a proxy, may be neither.
pub(crate) fn prepare_adopted(fd: BorrowedFd<'_>) -> io::Result<()> {
    let fl = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL).map_err(errno)?);
    if !fl.contains(OFlag::O_NONBLOCK) {
        fcntl(fd, FcntlArg::F_SETFL(fl | OFlag::O_NONBLOCK)).map_err(errno)?;
    }
    let fdfl = FdFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFD).map_err(errno)?);
    if !fdfl.contains(FdFlag::FD_CLOEXEC) {
        fcntl(fd, FcntlArg::F_SETFD(fdfl | FdFlag::FD_CLOEXEC)).map_err(errno)?;
    }
    Ok(())
}

/// Accepts one connection, non-blocking and close-on-exec, with its peer
/// address from the same syscall.
pub(crate) fn accept(listener: BorrowedFd<'_>) -> io::Result<(OwnedFd, Addr)> {
    let mut storage: libc::sockaddr_storage = unsafe_zeroed_storage();
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `storage` is a properly sized, writable sockaddr_storage and
    // `len` holds its size, as accept4(2) requires; the listener fd is
    // borrowed and so open for the duration of the call.
    let raw = unsafe {
        libc::accept4(
            listener.as_raw_fd(),
            (&raw mut storage).cast::<libc::sockaddr>(),
            &mut len,
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: accept4 returned a new fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: the kernel wrote a valid address of `len` bytes into storage.
    let addr = unsafe {
        SockaddrStorage::from_raw((&raw const storage).cast::<libc::sockaddr>(), Some(len))
    }
    .map(|s| addr_from_storage(&s))
    .unwrap_or(Addr::Unknown);
    Ok((fd, addr))
}

fn unsafe_zeroed_storage() -> libc::sockaddr_storage {
    // SAFETY: sockaddr_storage is plain old data for which all-zero bytes
    // are a valid value.
    unsafe { std::mem::zeroed() }
}

pub(crate) fn peer_addr(fd: BorrowedFd<'_>) -> Addr {
    socket::getpeername::<SockaddrStorage>(fd.as_raw_fd())
        .map(|s| addr_from_storage(&s))
        .unwrap_or(Addr::Unknown)
}

pub(crate) fn local_addr(fd: BorrowedFd<'_>) -> Addr {
    socket::getsockname::<SockaddrStorage>(fd.as_raw_fd())
        .map(|s| addr_from_storage(&s))
        .unwrap_or(Addr::Unknown)
}

// `read` and `writev` are made with rustix, which issues the system call
// itself (its `linux_raw` backend), not through libc: libc's wrappers are
// thread-cancellation points, wrapping every call in two calls into the
// threads library (50 instructions a small request, callgrind), and even
// `syscall(2)` cost 11 a call more than rustix's. Nothing here cancels
// threads.

/// Runs a rustix call again for as long as a signal interrupts it.
#[inline(always)]
fn retry_raw<T>(mut call: impl FnMut() -> rustix::io::Result<T>) -> io::Result<T> {
    loop {
        match call() {
            Err(rustix::io::Errno::INTR) => continue,
            r => return r.map_err(io::Error::from),
        }
    }
}

/// One `read(2)`; `WouldBlock` comes back as an error for the caller to map.
pub(crate) fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    retry_raw(|| rustix::io::read(fd, &mut *buf))
}

/// One `writev(2)`, with `MSG_NOSIGNAL` semantics provided by the process
/// ignoring SIGPIPE (Rust's runtime does this for every binary).
pub(crate) fn writev(fd: BorrowedFd<'_>, iov: &[IoSlice<'_>]) -> io::Result<usize> {
    retry_raw(|| rustix::io::writev(fd, iov))
}

/// One `sendmsg(2)` of `iov` with `MSG_MORE`: the kernel holds a partial
/// segment for what the caller sends next (a file body after its head).
/// (nix names no `MSG_MORE`; the bit is libc's.)
pub(crate) fn send_more(fd: BorrowedFd<'_>, iov: &[IoSlice<'_>]) -> io::Result<usize> {
    let flags = socket::MsgFlags::from_bits_retain(libc::MSG_MORE) | socket::MsgFlags::MSG_NOSIGNAL;
    retry(|| socket::sendmsg::<()>(fd.as_raw_fd(), iov, &[], flags, None))
}

/// One `sendfile(2)` from `file` at `*offset`, advancing it.
pub(crate) fn sendfile(
    out: BorrowedFd<'_>,
    file: BorrowedFd<'_>,
    offset: &mut u64,
    count: usize,
) -> io::Result<usize> {
    let mut off = i64::try_from(*offset).map_err(|_| io::Error::other("file offset too large"))?;
    let n = retry(|| nix::sys::sendfile::sendfile(out, file, Some(&mut off), count))?;
    *offset = off as u64;
    Ok(n)
}

/// One `write(2)`.
pub(crate) fn write(fd: BorrowedFd<'_>, data: &[u8]) -> io::Result<usize> {
    retry(|| nix::unistd::write(fd, data))
}

/// Writes all of `data` on a blocking fd (a short answer from a tool).
pub(crate) fn write_all_blocking(fd: BorrowedFd<'_>, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        let n = retry(|| nix::unistd::write(fd, data))?;
        data = &data[n..];
    }
    Ok(())
}

pub(crate) fn shutdown_write(fd: BorrowedFd<'_>) -> io::Result<()> {
    match socket::shutdown(fd.as_raw_fd(), socket::Shutdown::Write) {
        Ok(()) | Err(Errno::ENOTCONN) => Ok(()),
        Err(e) => Err(errno(e)),
    }
}

/// mio's epoll fd, borrowed for as long as the `Poll` (mio implements
/// `AsRawFd` only).
pub(crate) fn poll_fd(poll: &mio::Poll) -> BorrowedFd<'_> {
    // SAFETY: the Poll owns its epoll fd and keeps it open until it is
    // dropped, which the borrow's lifetime cannot outlast.
    unsafe { BorrowedFd::borrow_raw(poll.as_raw_fd()) }
}

/// Registers a listening socket with an epoll instance (mio's) for
/// readability, edge-triggered and `EPOLLEXCLUSIVE`: when several loops
/// watch one listener (`--threads`), a new connection wakes one of them,
/// not all. mio has no such interest, hence the raw call; the fd is
/// deregistered through mio as usual (`EPOLL_CTL_DEL` does not care).
pub(crate) fn epoll_add_exclusive(
    epoll: BorrowedFd<'_>,
    fd: BorrowedFd<'_>,
    token: usize,
) -> io::Result<()> {
    let mut ev = libc::epoll_event {
        events: (libc::EPOLLIN | libc::EPOLLET | libc::EPOLLEXCLUSIVE) as u32,
        u64: token as u64,
    };
    // SAFETY: both fds are open for the call (borrowed), and `ev` is a
    // valid epoll_event that the kernel only reads.
    let r = unsafe {
        libc::epoll_ctl(
            epoll.as_raw_fd(),
            libc::EPOLL_CTL_ADD,
            fd.as_raw_fd(),
            &mut ev,
        )
    };
    if r == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Disables Nagle. Set on listeners: Linux copies it to accepted sockets, so
/// the accept path pays no extra syscall.
pub(crate) fn set_nodelay(fd: BorrowedFd<'_>) -> io::Result<()> {
    socket::setsockopt(&fd, sockopt::TcpNoDelay, &true).map_err(errno)
}

/// Most bytes a TCP socket keeps queued and not yet sent. Why: a client
/// that reads slowly (slowhttptest's slow read, a stalled phone) otherwise
/// lets the kernel queue what we write up to the autotuned send buffer
/// (4 MiB here): a thousand of them took the host's TCP memory to its
/// hard limit (`tcp_mem`), and every other client's socket slowed with
/// them (a probe waited a second). This bounds only what waits unsent, so a
/// fast client's data in flight still grows with autotuning; writability is
/// signalled again below the mark.
pub(crate) const NOTSENT_LOWAT: u32 = 128 * 1024;

/// Sets `TCP_NOTSENT_LOWAT` (inherited by what a listener accepts).
pub(crate) fn set_notsent_lowat(fd: BorrowedFd<'_>, bytes: u32) -> io::Result<()> {
    set_tcp_int(fd, libc::TCP_NOTSENT_LOWAT, bytes as libc::c_int)
}

/// The segment size a TCP socket sends now (`TCP_MAXSEG`).
pub(crate) fn tcp_mss(fd: BorrowedFd<'_>) -> io::Result<u32> {
    socket::getsockopt(&fd, sockopt::TcpMaxSeg).map_err(errno)
}

/// An int option at `IPPROTO_TCP` level that nix does not name.
fn set_tcp_int(fd: BorrowedFd<'_>, opt: libc::c_int, v: libc::c_int) -> io::Result<()> {
    // SAFETY: an int option read by the kernel from our stack for the call.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            opt,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
fn notsent_lowat(fd: BorrowedFd<'_>) -> io::Result<u32> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: an int and its length on our stack, written by the kernel.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NOTSENT_LOWAT,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(v as u32)
}

#[cfg(test)]
fn nodelay(fd: BorrowedFd<'_>) -> io::Result<bool> {
    socket::getsockopt(&fd, sockopt::TcpNoDelay).map_err(errno)
}

/// The device and inode of what an fd refers to (to recognise the journal's
/// stream in `JOURNAL_STREAM`).
pub(crate) fn dev_ino(fd: BorrowedFd<'_>) -> io::Result<(u64, u64)> {
    let st = nix::sys::stat::fstat(fd).map_err(errno)?;
    Ok((st.st_dev as u64, st.st_ino as u64))
}

/// The one test for "try again when the fd is ready" (`EAGAIN`).
pub(crate) fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

/// A TCP listener on `addr`: non-blocking, close-on-exec, `SO_REUSEADDR`,
/// with the largest backlog the kernel allows (std's 128 is small for a
/// burst).
pub(crate) fn listen_tcp(
    addr: std::net::SocketAddr,
    reuseport: bool,
    v6only: Option<bool>,
) -> io::Result<OwnedFd> {
    let family = if addr.is_ipv4() {
        socket::AddressFamily::Inet
    } else {
        socket::AddressFamily::Inet6
    };
    let set_up = |fd: &OwnedFd| -> io::Result<()> {
        if reuseport {
            socket::setsockopt(fd, sockopt::ReusePort, &true).map_err(errno)?;
        }
        if let (Some(only), false) = (v6only, addr.is_ipv4()) {
            socket::setsockopt(fd, sockopt::Ipv6V6Only, &only).map_err(errno)?;
        }
        Ok(())
    };
    listen_on(
        family,
        &socket::SockaddrStorage::from(addr),
        &addr.to_string(),
        set_up,
    )
}

/// A blocking TCP listener with `SO_REUSEPORT` too, for a socket that is
/// not handed over on an upgrade (the metrics endpoint): the new process
/// binds it beside the old one, which closes its own when it exits.
pub(crate) fn listen_tcp_shared(addr: std::net::SocketAddr) -> io::Result<std::net::TcpListener> {
    use socket::{Backlog, SockFlag, SockType};
    let family = if addr.is_ipv4() {
        socket::AddressFamily::Inet
    } else {
        socket::AddressFamily::Inet6
    };
    let fd =
        socket::socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).map_err(errno)?;
    socket::setsockopt(&fd, socket::sockopt::ReuseAddr, &true).map_err(errno)?;
    socket::setsockopt(&fd, socket::sockopt::ReusePort, &true).map_err(errno)?;
    socket::bind(fd.as_raw_fd(), &socket::SockaddrStorage::from(addr))
        .map_err(|e| io::Error::new(errno(e).kind(), format!("bind {addr}: {e}")))?;
    socket::listen(&fd, Backlog::new(64).map_err(errno)?).map_err(errno)?;
    Ok(std::net::TcpListener::from(fd))
}

/// A Unix stream listener at `path` (which must not exist).
pub(crate) fn listen_unix(path: &std::path::Path) -> io::Result<OwnedFd> {
    let addr = socket::UnixAddr::new(path).map_err(errno)?;
    listen_on(
        socket::AddressFamily::Unix,
        &addr,
        &path.display().to_string(),
        |_| Ok(()),
    )
}

/// `set_up` runs between `socket` and `bind` (options that must come first).
fn listen_on(
    family: socket::AddressFamily,
    addr: &dyn socket::SockaddrLike,
    name: &str,
    set_up: impl FnOnce(&OwnedFd) -> io::Result<()>,
) -> io::Result<OwnedFd> {
    use socket::{Backlog, SockFlag, SockType};
    let fd = socket::socket(
        family,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(errno)?;
    if family != socket::AddressFamily::Unix {
        socket::setsockopt(&fd, socket::sockopt::ReuseAddr, &true).map_err(errno)?;
    }
    set_up(&fd)?;
    socket::bind(fd.as_raw_fd(), addr)
        .map_err(|e| io::Error::new(errno(e).kind(), format!("bind {name}: {e}")))?;
    socket::listen(&fd, Backlog::MAXCONN).map_err(errno)?;
    Ok(fd)
}

/// Sends a signal to a child process (`SIGTERM` to a worker on shutdown,
/// the escalation to an `exec:` command that does not end). A process that
/// is already gone is not an error worth reporting.
pub(crate) fn signal_child(child: &std::process::Child, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig);
}

/// Sends a signal to a child's process group (a CGI script made its own
/// with `process_group(0)`: its background jobs go with it). Called only
/// before the child is reaped, so that the group id cannot name another
/// group yet. A group already empty is not an error worth reporting.
pub(crate) fn signal_group(child: &std::process::Child, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(child.id() as i32), sig);
}

/// Is an accept error about one connection (it died in the backlog, or a
/// transient network error), so that the next accept may well succeed?
pub(crate) fn belongs_to_one_connection(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::ECONNABORTED
                | libc::EINTR
                | libc::EPROTO
                | libc::EPERM
                | libc::ENETDOWN
                | libc::ENOPROTOOPT
                | libc::EHOSTDOWN
                | libc::ENONET
                | libc::EHOSTUNREACH
                | libc::EOPNOTSUPP
                | libc::ENETUNREACH
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_calls_again_after_eintr_and_only_after_eintr() {
        let mut calls = 0;
        let got = retry(|| {
            calls += 1;
            if calls < 3 {
                Err(Errno::EINTR)
            } else {
                Ok(calls)
            }
        });
        assert_eq!(got.unwrap(), 3);
        let mut calls = 0;
        let got: io::Result<()> = retry(|| {
            calls += 1;
            Err(Errno::EBADF)
        });
        assert_eq!(got.unwrap_err().raw_os_error(), Some(libc::EBADF));
        assert_eq!(calls, 1, "any other error is returned at once");
    }
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsFd;

    #[test]
    fn classifies_listeners_and_streams_by_asking_the_kernel() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        assert_eq!(
            classify(l.as_fd()).unwrap(),
            SockKind::Listener { unix: false }
        );
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        assert_eq!(
            classify(c.as_fd()).unwrap(),
            SockKind::Stream { unix: false }
        );
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        assert_eq!(
            classify(a.as_fd()).unwrap(),
            SockKind::Stream { unix: true }
        );
    }

    #[test]
    fn refuses_a_file_and_a_datagram_socket() {
        let f = std::fs::File::open("/dev/null").unwrap();
        assert!(classify(f.as_fd()).is_err());
        let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(
            classify(u.as_fd())
                .unwrap_err()
                .to_string()
                .contains("not a stream")
        );
    }

    #[test]
    fn accepted_sockets_inherit_nodelay_and_the_unsent_mark_from_the_listener() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        set_nodelay(l.as_fd()).unwrap();
        set_notsent_lowat(l.as_fd(), NOTSENT_LOWAT).unwrap();
        let _c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (fd, peer) = accept(l.as_fd()).unwrap();
        assert!(nodelay(fd.as_fd()).unwrap());
        assert_eq!(notsent_lowat(fd.as_fd()).unwrap(), NOTSENT_LOWAT);
        assert!(matches!(peer, Addr::Inet(a) if a.ip() == std::net::Ipv4Addr::LOCALHOST));
    }
}
