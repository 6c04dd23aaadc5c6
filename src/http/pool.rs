//! Buffers are taken when a connection has bytes to move and given back
//! when it goes idle, so ten thousand idle keep-alive connections hold no
//! buffers at all, and a busy server reuses the same few.

/// Size of a pooled buffer: one request head or a batch of small ones.
pub(crate) const BUF_SIZE: usize = 16 * 1024;
/// Buffers kept for reuse; more are freed.
const MAX_FREE: usize = 256;

#[derive(Default)]
pub(crate) struct BufPool {
    /// Output buffers, empty.
    free: Vec<Vec<u8>>,
    /// Read buffers, kept at full length: their bytes are stale but
    /// initialised, so a connection reads into one without zeroing it
    /// again for every request (that `memset` was 60% of a small request's
    /// instructions when the two kinds shared one list).
    filled: Vec<Vec<u8>>,
}

impl BufPool {
    /// An empty buffer with at least `BUF_SIZE` capacity.
    pub(crate) fn take(&mut self) -> Vec<u8> {
        self.free
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(BUF_SIZE))
    }

    /// Keeps `buf` for reuse unless it grew past the standard size (a large
    /// body) or the pool is full: then it is freed.
    pub(crate) fn give(&mut self, mut buf: Vec<u8>) {
        if buf.capacity() >= BUF_SIZE
            && buf.capacity() <= 2 * BUF_SIZE
            && self.free.len() < MAX_FREE
        {
            buf.clear();
            self.free.push(buf);
        }
    }

    /// A read buffer of `BUF_SIZE` bytes or more, all of them usable.
    pub(crate) fn take_filled(&mut self) -> Vec<u8> {
        self.filled.pop().unwrap_or_else(|| vec![0; BUF_SIZE])
    }

    /// Keeps a read buffer (at its full length) for reuse, on the same
    /// terms as `give`.
    pub(crate) fn give_filled(&mut self, mut buf: Vec<u8>) {
        if buf.capacity() >= BUF_SIZE
            && buf.capacity() <= 2 * BUF_SIZE
            && self.filled.len() < MAX_FREE
        {
            let cap = buf.capacity();
            buf.resize(cap, 0);
            self.filled.push(buf);
        }
    }

    #[cfg(test)]
    pub(crate) fn free_buffers(&self) -> usize {
        self.free.len() + self.filled.len()
    }
}
