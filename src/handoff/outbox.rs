//! Records waiting for room on a `SOCK_SEQPACKET` line (a WebSocket pool
//! and its worker, either way; an app process's answers on its lines). A burst (a bus catching up
//! after Redis came back, many clients speaking at once) can fill the
//! socket's queue in a few hundred records: what does not fit waits here,
//! in order, and goes when the line is writable again, rather than being
//! dropped. Bounded: a peer that reads nothing while this much waits is
//! taken for hung.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::os::fd::BorrowedFd;

use crate::sys::fdpass;

/// At most this many bytes wait on one line.
pub(crate) const MAX_WAITING: usize = 64 << 20;

/// Watches `fd` (registered under `token`) for writable too while
/// something waits on it, readable only once nothing does: an idle line
/// would otherwise wake its loop each time the other side reads.
pub(crate) fn watch(
    registry: &mio::Registry,
    fd: BorrowedFd<'_>,
    token: mio::Token,
    waiting: bool,
) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let interest = if waiting {
        mio::Interest::READABLE | mio::Interest::WRITABLE
    } else {
        mio::Interest::READABLE
    };
    registry.reregister(&mut mio::unix::SourceFd(&fd.as_raw_fd()), token, interest)
}

#[derive(Default)]
pub(crate) struct Outbox {
    waiting: VecDeque<Vec<u8>>,
    bytes: usize,
}

impl Outbox {
    /// Nothing waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Sends `rec` now if nothing waits before it, else after what does;
    /// never waits for room, whatever the socket's own mode.
    /// `Ok(true)`: something waits (watch the line for writable).
    pub(crate) fn send(&mut self, fd: BorrowedFd<'_>, rec: &[u8]) -> io::Result<bool> {
        if self.waiting.is_empty() {
            match fdpass::send_with_fds_now(fd, &[IoSlice::new(rec)], &[]) {
                Ok(_) => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        if self.bytes + rec.len() > MAX_WAITING {
            return Err(io::Error::other(
                "the other side has read nothing while 64 MiB waited",
            ));
        }
        self.bytes += rec.len();
        self.waiting.push_back(rec.to_vec());
        Ok(true)
    }

    /// Sends what waits, oldest first, until the line is full again.
    /// `Ok(true)`: something still waits.
    pub(crate) fn flush(&mut self, fd: BorrowedFd<'_>) -> io::Result<bool> {
        while let Some(rec) = self.waiting.front() {
            match fdpass::send_with_fds_now(fd, &[IoSlice::new(rec)], &[]) {
                Ok(_) => {
                    self.bytes -= rec.len();
                    self.waiting.pop_front();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                Err(e) => return Err(e),
            }
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn keeps_what_does_not_fit_in_order_and_sends_it_once_there_is_room() {
        let (a, b) = fdpass::seqpacket_pair().unwrap();
        crate::sys::prepare_adopted(a.as_fd()).unwrap();
        crate::sys::prepare_adopted(b.as_fd()).unwrap();
        let mut out = Outbox::default();
        let mut n = 0u32;
        while !out.send(a.as_fd(), &n.to_be_bytes()).unwrap() {
            n += 1;
        }
        for k in 1..=100u32 {
            assert!(out.send(a.as_fd(), &(n + k).to_be_bytes()).unwrap());
        }
        let mut buf = [0u8; 16];
        let mut next = 0u32;
        loop {
            match fdpass::recv_with_fds(b.as_fd(), &mut buf) {
                Ok(Some(r)) => {
                    assert_eq!(u32::from_be_bytes(buf[..r.len].try_into().unwrap()), next);
                    next += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !out.flush(a.as_fd()).unwrap() && next == n + 101 {
                        break;
                    }
                }
                other => panic!("{:?}", other.map(|r| r.map(|r| r.len))),
            }
        }
        assert!(out.is_empty());
    }
}
