//! Passing fds between processes: `SCM_RIGHTS` over `SOCK_SEQPACKET`, peer
//! credentials, and the sockets that carry them.

use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::sys::socket::{
    self, AddressFamily, Backlog, ControlMessage, MsgFlags, SockFlag, SockType, UnixAddr, sockopt,
};

use super::{errno, retry};
use nix::errno::Errno;

/// Most fds one message may carry before we call it malformed. The buffer
/// has room for this many so that every fd that arrives is received (and so
/// closed by us) rather than left for the kernel to drop.
pub(crate) const FD_ROOM: usize = 16;

/// One received message.
#[derive(Debug)]
pub struct Received {
    pub len: usize,
    pub fds: Vec<OwnedFd>,
    /// The data did not fit the buffer (`MSG_TRUNC`).
    pub truncated: bool,
    /// The control data did not fit (`MSG_CTRUNC`): fds were lost.
    pub ctrunc: bool,
    /// A control message other than `SCM_RIGHTS` came along.
    pub other_cmsg: bool,
}

/// Receives one message and the fds with it, close-on-exec. `Ok(None)` on
/// an orderly close by the peer.
///
/// Written against libc rather than nix: when the control data is truncated
/// (`MSG_CTRUNC`, more fds than we have room for) the kernel has still
/// installed the fds that fit, and nix then declines to walk the control
/// messages, which would leak them. Here every installed fd is owned, so it
/// is closed when the message is refused.
///
/// A peer that closed with our messages unread makes the kernel report
/// `ECONNRESET` once, ahead of what the peer sent before closing (a REFUSE
/// saying why, say): the read is tried again, so that message still comes,
/// then the close.
pub fn recv_with_fds(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Option<Received>> {
    match recv_flags(sock, buf, 0) {
        Err(e) if e.raw_os_error() == Some(libc::ECONNRESET) => recv_flags(sock, buf, 0),
        r => r,
    }
}

/// Sends a request with `fds` and receives the answer into `buf`. A peer
/// that refused us and closed before the request went out leaves its
/// reason queued, and the send fails (`EPIPE`): that reason is then the
/// answer, rather than the send's error.
pub fn request(
    sock: BorrowedFd<'_>,
    data: &[u8],
    fds: &[BorrowedFd<'_>],
    buf: &mut [u8],
) -> io::Result<Option<Received>> {
    if let Err(e) = send_with_fds(sock, &[IoSlice::new(data)], fds) {
        return match recv_flags(sock, buf, libc::MSG_DONTWAIT) {
            Ok(Some(r)) => Ok(Some(r)),
            _ => Err(e),
        };
    }
    recv_with_fds(sock, buf)
}

/// Sends a last message, then reads and drops what the peer has sent that
/// we will not read (closing the fds that came with it): a socket closed
/// with unread messages resets its peer, which would then see
/// `ECONNRESET` ahead of this message. For refusals, before the close.
pub(crate) fn send_last(sock: BorrowedFd<'_>, data: &[u8]) -> io::Result<()> {
    send_with_fds(sock, &[IoSlice::new(data)], &[])?;
    let mut buf = [0u8; 512];
    // Bounded: a peer writing without pause cannot hold us here.
    for _ in 0..64 {
        match recv_flags(sock, &mut buf, libc::MSG_DONTWAIT) {
            Ok(Some(_)) => {}
            _ => break,
        }
    }
    Ok(())
}

/// `recvmsg` with `flags` (plus close-on-exec for the fds), as
/// [`recv_with_fds`] describes.
fn recv_flags(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    flags: libc::c_int,
) -> io::Result<Option<Received>> {
    // u64 words keep the control buffer aligned for cmsghdr.
    const SPACE: usize = 64 + FD_ROOM * std::mem::size_of::<RawFd>();
    let mut control = [0u64; SPACE / 8];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain old data; all-zero is a valid empty value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    // Exactly room for FD_ROOM fds: more is a truncation we can report.
    // SAFETY: CMSG_SPACE is a pure size computation.
    let room =
        unsafe { libc::CMSG_SPACE((FD_ROOM * std::mem::size_of::<RawFd>()) as u32) } as usize;
    msg.msg_controllen = room.min(std::mem::size_of_val(&control)) as _;
    let n = retry(|| {
        // SAFETY: `msg` points at `iov` (which points at `buf`) and at
        // `control`, all live and writable for the call, with their lengths.
        Errno::result(unsafe {
            libc::recvmsg(sock.as_raw_fd(), &mut msg, flags | libc::MSG_CMSG_CLOEXEC)
        })
    })? as usize;
    let mut fds = Vec::new();
    let mut other_cmsg = false;
    // SAFETY: the kernel filled `msg_control` with `msg_controllen` bytes of
    // well-formed cmsghdrs; CMSG_FIRSTHDR/CMSG_NXTHDR stay within them.
    let mut c = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    while !c.is_null() {
        // SAFETY: `c` is a cmsghdr inside the control buffer (see above).
        let h = unsafe { &*c };
        if h.cmsg_level == libc::SOL_SOCKET && h.cmsg_type == libc::SCM_RIGHTS {
            // SAFETY: CMSG_LEN(0) is a pure size computation.
            let header = unsafe { libc::CMSG_LEN(0) } as usize;
            let count = (h.cmsg_len as usize).saturating_sub(header) / std::mem::size_of::<RawFd>();
            // SAFETY: CMSG_DATA points at `count` ints the kernel wrote.
            let data = unsafe { libc::CMSG_DATA(c) }.cast::<RawFd>();
            for i in 0..count {
                // SAFETY: within the data just described; the fds were
                // installed for us by this recvmsg and nothing else owns them.
                let raw = unsafe { data.add(i).read_unaligned() };
                // SAFETY: `raw` was installed in this process by this very
                // recvmsg: open, and owned by nothing else until now.
                fds.push(unsafe { OwnedFd::from_raw_fd(raw) });
            }
        } else {
            other_cmsg = true;
        }
        // SAFETY: as for CMSG_FIRSTHDR.
        c = unsafe { libc::CMSG_NXTHDR(&msg, c) };
    }
    let truncated = msg.msg_flags & libc::MSG_TRUNC != 0;
    let ctrunc = msg.msg_flags & libc::MSG_CTRUNC != 0;
    if n == 0 && fds.is_empty() && !truncated {
        return Ok(None);
    }
    Ok(Some(Received {
        len: n.min(buf.len()),
        fds,
        truncated,
        ctrunc,
        other_cmsg,
    }))
}

/// Sends one message with `fds` attached.
pub fn send_with_fds(
    sock: BorrowedFd<'_>,
    data: &[IoSlice<'_>],
    fds: &[BorrowedFd<'_>],
) -> io::Result<usize> {
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let cmsgs = if raw.is_empty() {
        vec![]
    } else {
        vec![ControlMessage::ScmRights(&raw)]
    };
    retry(|| socket::sendmsg::<()>(sock.as_raw_fd(), data, &cmsgs, MsgFlags::MSG_NOSIGNAL, None))
}

/// Sends one message with `fds` attached without waiting for room
/// (`MSG_DONTWAIT`): a full queue is `WouldBlock`, whatever the socket's
/// own mode (another thread may be blocked reading it).
pub(crate) fn send_with_fds_now(
    sock: BorrowedFd<'_>,
    data: &[IoSlice<'_>],
    fds: &[BorrowedFd<'_>],
) -> io::Result<usize> {
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let cmsgs = [ControlMessage::ScmRights(&raw)];
    let cmsgs = if raw.is_empty() {
        &cmsgs[..0]
    } else {
        &cmsgs[..]
    };
    let flags = MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT;
    retry(|| socket::sendmsg::<()>(sock.as_raw_fd(), data, cmsgs, flags, None))
}

/// The uid and pid of the process at the other end of a Unix socket.
pub(crate) fn peer_cred(sock: BorrowedFd<'_>) -> io::Result<(u32, i32)> {
    let c = socket::getsockopt(&sock, sockopt::PeerCredentials).map_err(errno)?;
    Ok((c.uid(), c.pid()))
}

/// A listening `SOCK_SEQPACKET` socket at `path`, created mode 0600 (the
/// umask is tightened around `bind`, so there is no moment when the file
/// exists with looser permissions). Blocking: its accept loop has a thread.
fn seqpacket_socket() -> io::Result<OwnedFd> {
    socket::socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(errno)
}

pub(crate) fn seqpacket_listen(path: &Path) -> io::Result<OwnedFd> {
    let fd = seqpacket_socket()?;
    let addr = UnixAddr::new(path).map_err(errno)?;
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let bound = socket::bind(fd.as_raw_fd(), &addr);
    nix::sys::stat::umask(old);
    bound.map_err(|e| io::Error::new(errno(e).kind(), format!("bind {}: {e}", path.display())))?;
    socket::listen(&fd, Backlog::new(64).map_err(errno)?).map_err(errno)?;
    Ok(fd)
}

/// Connects a blocking `SOCK_SEQPACKET` socket to the control socket at `path`.
pub fn seqpacket_connect(path: &Path) -> io::Result<OwnedFd> {
    let fd = seqpacket_socket()?;
    let addr = UnixAddr::new(path).map_err(errno)?;
    socket::connect(fd.as_raw_fd(), &addr)
        .map_err(|e| io::Error::new(errno(e).kind(), format!("connect {}: {e}", path.display())))?;
    Ok(fd)
}

/// A connected pair of `SOCK_SEQPACKET` sockets (for worker processes).
pub(crate) fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    socket::socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(errno)
}

/// A connected pair of non-blocking `SOCK_STREAM` sockets (the TLS relay's
/// plaintext side).
pub(crate) fn stream_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    socket::socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
    )
    .map_err(errno)
}

/// Accepts, close-on-exec; the new socket is blocking whatever the
/// listener is.
pub(crate) fn accept_blocking(listener: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let raw = retry(|| socket::accept4(listener.as_raw_fd(), SockFlag::SOCK_CLOEXEC))?;
    // SAFETY: accept4 returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Accepts on a blocking listener for a thread that does nothing else:
/// an error (EMFILE and friends) is logged as `what` and answered by a
/// short rest rather than a spin.
pub(crate) fn accept_resting(listener: BorrowedFd<'_>, what: &str) -> OwnedFd {
    loop {
        match accept_blocking(listener) {
            Ok(c) => return c,
            Err(e) => {
                tracing::warn!("{what} accept: {e}");
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
    }
}

/// Accepts on a non-blocking listener until `stop` becomes readable (its
/// other end written or closed): `None` then. Non-blocking because another
/// process may accept from the same socket (an upgrade hands the control
/// socket on, and both have it for a moment): a blocking accept that lost
/// the race would wait for the next peer and not see `stop`. Errors are
/// logged as `what` and answered by a short rest rather than a spin.
pub(crate) fn accept_until(
    listener: BorrowedFd<'_>,
    stop: BorrowedFd<'_>,
    what: &str,
) -> Option<OwnedFd> {
    loop {
        let mut fds = [
            libc::pollfd {
                fd: listener.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: stop.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: two pollfds on our stack, valid for the call.
        let polled = retry(|| Errno::result(unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) }));
        if let Err(e) = polled {
            // Not a signal (retry took those): EFAULT, EINVAL, ENOMEM.
            // Polling again would fail again, in a busy loop.
            tracing::error!("{what}: poll: {e}; no longer accepting");
            return None;
        }
        if fds[1].revents != 0 {
            return None;
        }
        match accept_blocking(listener) {
            Ok(c) => return Some(c),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => {
                tracing::warn!("{what} accept: {e}");
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
    }
}

/// Is this a socket of type `SOCK_SEQPACKET`?
pub(crate) fn is_seqpacket(fd: BorrowedFd<'_>) -> bool {
    socket::getsockopt(&fd, sockopt::SockType).is_ok_and(|t| t == SockType::SeqPacket)
}

/// Sets a receive timeout on a blocking socket.
pub fn set_recv_timeout(fd: BorrowedFd<'_>, d: std::time::Duration) -> io::Result<()> {
    let tv = nix::sys::time::TimeVal::new(d.as_secs() as i64, d.subsec_micros() as i64);
    socket::setsockopt(&fd, sockopt::ReceiveTimeout, &tv).map_err(errno)
}

/// Sets `SO_SNDTIMEO`: a blocking send gives up after `d`.
pub(crate) fn set_send_timeout(fd: BorrowedFd<'_>, d: std::time::Duration) -> io::Result<()> {
    let tv = nix::sys::time::TimeVal::new(d.as_secs() as i64, d.subsec_micros() as i64);
    socket::setsockopt(&fd, sockopt::SendTimeout, &tv).map_err(errno)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    fn send(sock: &OwnedFd, data: &[u8]) {
        send_with_fds(sock.as_fd(), &[IoSlice::new(data)], &[]).unwrap();
    }

    #[test]
    fn a_message_sent_before_a_reset_is_still_read() {
        let (ours, theirs) = seqpacket_pair().unwrap();
        // They close with our message unread, which resets us.
        send(&ours, b"request");
        send(&theirs, b"refused: why");
        drop(theirs);
        let mut buf = [0u8; 64];
        let r = recv_with_fds(ours.as_fd(), &mut buf).unwrap().unwrap();
        assert_eq!(&buf[..r.len], b"refused: why");
        assert!(recv_with_fds(ours.as_fd(), &mut buf).unwrap().is_none());
    }

    #[test]
    fn a_request_to_a_peer_that_refused_and_closed_gets_its_reason() {
        let (ours, theirs) = seqpacket_pair().unwrap();
        send_last(theirs.as_fd(), b"refused: why").unwrap();
        drop(theirs);
        let mut buf = [0u8; 64];
        let r = request(ours.as_fd(), b"request", &[], &mut buf)
            .unwrap()
            .unwrap();
        assert_eq!(&buf[..r.len], b"refused: why");
        // Nothing left: the send's own error.
        let e = request(ours.as_fd(), b"again", &[], &mut buf).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EPIPE));
    }

    #[test]
    fn a_last_message_drains_the_peer_so_it_is_not_reset() {
        let (ours, theirs) = seqpacket_pair().unwrap();
        let (kept, passed) = stream_pair().unwrap();
        send(&theirs, b"one");
        send_with_fds(theirs.as_fd(), &[IoSlice::new(b"two")], &[passed.as_fd()]).unwrap();
        drop(passed);
        send_last(ours.as_fd(), b"refused").unwrap();
        drop(ours);
        // Read with a plain recv, as a peer that does not retry would.
        let mut buf = [0u8; 64];
        let n = nix::sys::socket::recv(theirs.as_raw_fd(), &mut buf, MsgFlags::empty()).unwrap();
        assert_eq!(&buf[..n], b"refused");
        // The fd that came with the dropped message was closed: the other
        // end of its pair reads EOF.
        let n = nix::unistd::read(&kept, &mut buf).unwrap();
        assert_eq!(n, 0);
    }
}
