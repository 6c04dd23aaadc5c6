//! The socket as tungstenite reads it: whole frame headers only, so that
//! this side always knows where tungstenite stands in the client's stream.
//!
//! Why: a WebSocket moves to another process (an upgrade) only between
//! messages, and the bytes read but not yet parsed must move with it.
//! tungstenite keeps what it has read in a private buffer and says neither
//! how much nor where its frames end. So this reader walks the frame
//! headers of what it gives: it never gives part of a header (those bytes
//! wait in `pending`), and it counts how much of the current frame is
//! still to come. Once a `read()` of tungstenite has returned `WouldBlock`,
//! tungstenite has parsed every whole frame it was given; if `left` is 0
//! it holds nothing at all, and `pending` is every byte not yet parsed.
//! Fragmented messages are tracked from the opcodes and FIN bits the same
//! way, since tungstenite keeps a message's earlier fragments too.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use super::frame::header;
use crate::sys;

pub(crate) struct FdStream {
    fd: OwnedFd,
    /// Bytes read and not given: part of a frame header, or what arrived
    /// with the connection beyond what one `read` could take.
    pending: Vec<u8>,
    /// Bytes of the current frame (header included) not yet given.
    left: u64,
    /// Inside a fragmented message: a data frame without FIN was given and
    /// its last continuation not yet.
    fragmented: bool,
    eof: bool,
    /// Bytes owed to the peer before anything tungstenite writes (the
    /// 101): written first, as far as the socket takes them; the rest
    /// waits for it to be writable like any other output, so the event
    /// loop never waits on a full socket.
    owed: Vec<u8>,
    /// permessage-deflate, when the handshake agreed it: what is read is
    /// inflated and what is written compressed (`deflate.rs`).
    deflate: Option<Box<super::deflate::Deflate>>,
}

impl FdStream {
    /// A stream whose first bytes (read by whoever had the socket before)
    /// are `pre_read`.
    pub(crate) fn new(fd: OwnedFd, pre_read: Vec<u8>) -> FdStream {
        FdStream {
            fd,
            pending: pre_read,
            left: 0,
            fragmented: false,
            eof: false,
            owed: Vec::new(),
            deflate: None,
        }
    }

    /// Speaks permessage-deflate from the first byte on (what came with
    /// the connection included).
    pub(crate) fn with_deflate(mut self, d: super::deflate::Deflate) -> io::Result<FdStream> {
        let mut d = Box::new(d);
        let early = std::mem::take(&mut self.pending);
        d.inbound(&early, &mut self.pending)?;
        self.deflate = Some(d);
        Ok(self)
    }

    /// Compresses and inflates (such a session does not move: its frames
    /// on the wire are not the ones tungstenite holds).
    pub(crate) fn deflates(&self) -> bool {
        self.deflate.is_some()
    }

    /// `read` with permessage-deflate: inflated frames go to tungstenite
    /// as they become whole.
    fn read_inflated(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if !self.pending.is_empty() {
                let n = self.pending.len().min(out.len());
                out[..n].copy_from_slice(&self.pending[..n]);
                self.pending.drain(..n);
                return Ok(n);
            }
            if self.eof {
                return Ok(0);
            }
            let mut buf = [0u8; 16 * 1024];
            match sys::read(self.fd.as_fd(), &mut buf)? {
                0 => self.eof = true,
                n => {
                    if let Some(d) = &mut self.deflate {
                        d.inbound(&buf[..n], &mut self.pending)?;
                    }
                }
            }
        }
    }

    /// Sends `bytes` ahead of every frame (the handshake's answer).
    pub(crate) fn owe(&mut self, bytes: &[u8]) {
        self.owed.extend_from_slice(bytes);
    }

    /// Writes what is owed; `WouldBlock` while some is left.
    fn pay(&mut self) -> io::Result<()> {
        while !self.owed.is_empty() {
            let n = sys::write(self.fd.as_fd(), &self.owed)?;
            self.owed.drain(..n);
        }
        Ok(())
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Between messages: tungstenite holds no part of a frame nor of a
    /// fragmented message (true once its `read()` has said `WouldBlock`).
    pub(crate) fn between_messages(&self) -> bool {
        self.left == 0
            && !self.fragmented
            && !self.eof
            && self.owed.is_empty()
            && self.deflate.is_none()
    }

    /// The bytes read and not given to tungstenite.
    pub(crate) fn pending(&self) -> &[u8] {
        &self.pending
    }

    /// How many of `given` may go to tungstenite now: up to the last whole
    /// frame header and beyond it, counting frames and fragments as it goes.
    fn walk(&mut self, given: &[u8]) -> usize {
        let mut i = 0usize;
        while i < given.len() {
            if self.left > 0 {
                let k = (given.len() - i).min(usize::try_from(self.left).unwrap_or(usize::MAX));
                i += k;
                self.left -= k as u64;
                continue;
            }
            let Some(h) = header(&given[i..]) else {
                return i; // part of a header: it waits for the rest
            };
            match h.opcode {
                1 | 2 => self.fragmented = !h.fin,
                0 if h.fin => self.fragmented = false,
                _ => {} // control frames may come between fragments
            }
            self.left = h.payload.saturating_add(h.header as u64);
        }
        i
    }
}

impl Read for FdStream {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        if self.deflate.is_some() {
            return self.read_inflated(out);
        }
        loop {
            let mut n = self.pending.len().min(out.len());
            out[..n].copy_from_slice(&self.pending[..n]);
            self.pending.drain(..n);
            let mut error = None;
            if self.pending.is_empty() && n < out.len() && !self.eof {
                match sys::read(self.fd.as_fd(), &mut out[n..]) {
                    Ok(0) => self.eof = true,
                    Ok(k) => n += k,
                    Err(e) => error = Some(e),
                }
            }
            if self.eof {
                // What is left goes as it is: tungstenite reports the end.
                self.left = 0;
                return Ok(n);
            }
            let give = self.walk(&out[..n]);
            if give < n {
                let mut rest = out[give..n].to_vec();
                rest.append(&mut self.pending);
                self.pending = rest;
            }
            if give > 0 {
                return Ok(give);
            }
            if let Some(e) = error {
                return Err(e);
            }
            if n == 0 {
                return Ok(0);
            }
            // Only part of a header so far, and the socket had more: read on.
        }
    }
}

impl Write for FdStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.pay()?;
        if let Some(d) = &mut self.deflate {
            // Taken whole (a frame is compressed once it is whole); what
            // the socket does not take now is owed, and the next write
            // waits for it, so no more than one write's worth waits here.
            d.outbound(buf, &mut self.owed);
            match self.pay() {
                Err(e) if e.kind() != io::ErrorKind::WouldBlock => return Err(e),
                _ => return Ok(buf.len()),
            }
        }
        sys::write(self.fd.as_fd(), buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.pay()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    fn masked_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![(u8::from(fin) << 7) | opcode];
        match payload.len() {
            n if n < 126 => f.push(0x80 | n as u8),
            n if n < 65536 => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(&[0, 0, 0, 0]); // a zero mask leaves the payload as it is
        f.extend_from_slice(payload);
        f
    }

    fn stream(pre_read: &[u8]) -> (FdStream, UnixStream) {
        let (a, b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        (FdStream::new(OwnedFd::from(a), pre_read.to_vec()), b)
    }

    #[test]
    fn never_gives_part_of_a_header_and_keeps_it_as_pending() {
        let frame = masked_frame(true, 1, &[b'x'; 300]);
        let (mut s, mut peer) = stream(&frame[..3]); // the header is 8 bytes
        let mut out = [0u8; 64];
        assert_eq!(
            s.read(&mut out).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        assert_eq!(s.pending(), &frame[..3]);
        assert!(s.between_messages());
        peer.write_all(&frame[3..]).unwrap();
        let mut got = Vec::new();
        while got.len() < frame.len() {
            let n = s.read(&mut out).unwrap();
            got.extend_from_slice(&out[..n]);
            assert!(got.len() == frame.len() || !s.between_messages());
        }
        assert_eq!(got, frame);
        assert!(s.between_messages() && s.pending().is_empty());
    }

    #[test]
    fn knows_a_fragmented_message_until_its_last_continuation() {
        let mut bytes = masked_frame(false, 1, b"one ");
        bytes.extend(masked_frame(true, 9, b"ping"));
        let (mut s, mut peer) = stream(&bytes);
        let mut out = [0u8; 256];
        let n = s.read(&mut out).unwrap();
        assert_eq!(n, bytes.len());
        assert!(!s.between_messages(), "a fragment is outstanding");
        peer.write_all(&masked_frame(true, 0, b"two")).unwrap();
        assert_eq!(s.read(&mut out).unwrap(), 9);
        assert!(s.between_messages());
    }

    #[test]
    fn gives_whole_frames_past_several_headers_and_counts_long_lengths() {
        let big = masked_frame(true, 2, &vec![7u8; 70_000]);
        let mut bytes = masked_frame(true, 1, b"hi");
        bytes.extend_from_slice(&big);
        let (mut s, _peer) = stream(&bytes);
        let mut out = vec![0u8; 100_000];
        let n = s.read(&mut out).unwrap();
        assert_eq!(n, bytes.len());
        assert!(s.between_messages());
    }

    #[test]
    fn what_is_owed_goes_out_before_any_frame_and_a_full_socket_waits() {
        let (a, mut b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let mut s = FdStream::new(OwnedFd::from(a), Vec::new());
        // Fill the socket so that nothing more fits.
        let filler = vec![b'x'; 1 << 16];
        let mut queued = 0;
        loop {
            match sys::write(s.fd(), &filler) {
                Ok(n) => queued += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        let answer = b"HTTP/1.1 101 Switching Protocols\r\n\r\n";
        s.owe(answer);
        let frame = [0x81, 2, b'h', b'i'];
        let e = s.write(&frame).unwrap_err();
        assert_eq!(
            e.kind(),
            io::ErrorKind::WouldBlock,
            "the frame waits behind the 101"
        );
        assert_eq!(s.flush().unwrap_err().kind(), io::ErrorKind::WouldBlock);
        assert!(
            !s.between_messages(),
            "a session owing its 101 does not move"
        );
        // The peer reads what filled the socket: now the 101, then the frame.
        let mut sink = vec![0u8; queued];
        std::io::Read::read_exact(&mut b, &mut sink).unwrap();
        s.flush().unwrap();
        assert_eq!(s.write(&frame).unwrap(), frame.len());
        let mut got = vec![0u8; answer.len() + frame.len()];
        std::io::Read::read_exact(&mut b, &mut got).unwrap();
        assert!(got.starts_with(answer));
        assert!(got.ends_with(&frame));
    }
}
