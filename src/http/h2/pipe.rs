//! The in-memory socket the `h2` crate runs over: our loop reads the real
//! socket into `input` and writes `output` to it; `h2` reads and writes
//! these buffers through tokio's I/O traits, and is polled by the engine,
//! never by a runtime. An empty `input` is "would block" (`Pending`); a
//! full `output` is back-pressure on `h2`, which then stops producing
//! frames until the socket takes what is there.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes `h2` may have written but the socket not yet taken.
pub(super) const OUTPUT_LIMIT: usize = 256 * 1024;

#[derive(Default)]
pub(super) struct Buffers {
    /// Read from the socket, not yet read by `h2` (from `pos`).
    pub(super) input: Vec<u8>,
    pos: usize,
    /// The peer ended its input: after `input`, `h2` reads the end.
    pub(super) eof: bool,
    /// Written by `h2`, for the socket.
    pub(super) output: Vec<u8>,
}

impl Buffers {
    /// Bytes read from the socket that `h2` has not read yet.
    pub(super) fn unread(&self) -> usize {
        self.input.len() - self.pos
    }
}

/// Both ends share the buffers: the engine's handle and the one `h2` owns.
#[derive(Clone, Default)]
pub(super) struct Pipe(pub(super) Rc<RefCell<Buffers>>);

impl AsyncRead for Pipe {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut b = self.0.borrow_mut();
        let pos = b.pos;
        let avail = &b.input[pos..];
        if avail.is_empty() {
            // The engine polls again whenever bytes or the end arrive.
            return if b.eof {
                Poll::Ready(Ok(()))
            } else {
                Poll::Pending
            };
        }
        let n = avail.len().min(buf.remaining());
        buf.put_slice(&avail[..n]);
        b.pos += n;
        if b.pos == b.input.len() {
            b.input.clear();
            b.pos = 0;
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Pipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut b = self.0.borrow_mut();
        if b.output.len() >= OUTPUT_LIMIT {
            return Poll::Pending;
        }
        let n = data.len().min(OUTPUT_LIMIT - b.output.len());
        b.output.extend_from_slice(&data[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx() -> Context<'static> {
        Context::from_waker(std::task::Waker::noop())
    }

    #[test]
    fn reading_an_empty_pipe_waits_and_reading_after_the_end_gives_nothing() {
        let mut p = Pipe::default();
        let mut space = [0u8; 8];
        let mut buf = ReadBuf::new(&mut space);
        assert!(Pin::new(&mut p).poll_read(&mut cx(), &mut buf).is_pending());
        p.0.borrow_mut().input.extend_from_slice(b"abc");
        assert!(Pin::new(&mut p).poll_read(&mut cx(), &mut buf).is_ready());
        assert_eq!(buf.filled(), b"abc");
        p.0.borrow_mut().eof = true;
        let mut space = [0u8; 8];
        let mut buf = ReadBuf::new(&mut space);
        assert!(Pin::new(&mut p).poll_read(&mut cx(), &mut buf).is_ready());
        assert!(buf.filled().is_empty());
    }

    #[test]
    fn writing_past_the_output_limit_waits_for_the_socket() {
        let mut p = Pipe::default();
        let big = vec![7u8; OUTPUT_LIMIT + 10];
        match Pin::new(&mut p).poll_write(&mut cx(), &big) {
            Poll::Ready(Ok(n)) => assert_eq!(n, OUTPUT_LIMIT),
            other => panic!("{other:?}"),
        }
        assert!(Pin::new(&mut p).poll_write(&mut cx(), b"x").is_pending());
        p.0.borrow_mut().output.clear();
        assert!(Pin::new(&mut p).poll_write(&mut cx(), b"x").is_ready());
    }
}
