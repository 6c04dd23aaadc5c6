//! What the I/O layer needs of an engine, HTTP/1.1's (`conn::Conn`) or
//! HTTP/2's (`h2::H2Conn`): room to read into, the bytes owed, and the end
//! of input. The server's connection moves bytes through this alone, so
//! plain, TLS and PROXY transports serve both protocols with one code path
//! (monomorphised: the HTTP/1.1 path pays nothing for it).

use std::time::Instant;

use super::limits::Limits;
use super::output::Output;
use super::pool::BufPool;
use crate::sys::Addr;

pub(crate) trait EngineIo {
    /// Should the I/O layer read now (if the socket is readable)?
    fn wants_read(&self, limits: &Limits) -> bool;
    /// Room to read into, or `None` when the engine should not read.
    fn read_buf(&mut self, pool: &mut BufPool, limits: &Limits) -> Option<&mut [u8]>;
    /// `n` bytes were read into the slice `read_buf` lent.
    fn filled(&mut self, n: usize, now: Instant);
    /// Bytes read elsewhere (what came after a PROXY header or with a
    /// handed-over socket).
    fn feed(&mut self, bytes: &[u8], pool: &mut BufPool, now: Instant);
    /// Bytes read but not yet taken (a sniffing transport looks at them).
    fn unparsed(&self) -> &[u8];
    /// Takes them (they were a TLS ClientHello, for the session).
    fn take_unparsed(&mut self) -> Vec<u8>;
    /// The peer ended its input (a read returned 0, or close_notify).
    fn on_eof(&mut self);
    /// Who is at the other end, once a PROXY header says.
    fn set_peer(&mut self, peer: Addr);
    /// The queue of bytes owed to the peer.
    fn output(&mut self) -> &mut Output;
    /// Bytes went out (for the write deadline).
    fn wrote(&mut self, now: Instant);
}

impl EngineIo for super::Conn {
    #[inline]
    fn wants_read(&self, limits: &Limits) -> bool {
        super::Conn::wants_read(self, limits)
    }
    #[inline]
    fn read_buf(&mut self, pool: &mut BufPool, limits: &Limits) -> Option<&mut [u8]> {
        super::Conn::read_buf(self, pool, limits)
    }
    #[inline]
    fn filled(&mut self, n: usize, now: Instant) {
        super::Conn::filled(self, n, now)
    }
    fn feed(&mut self, bytes: &[u8], pool: &mut BufPool, now: Instant) {
        super::Conn::feed(self, bytes, pool, now)
    }
    #[inline]
    fn unparsed(&self) -> &[u8] {
        super::Conn::unparsed(self)
    }
    fn take_unparsed(&mut self) -> Vec<u8> {
        super::Conn::take_unparsed(self)
    }
    #[inline]
    fn on_eof(&mut self) {
        super::Conn::on_eof(self)
    }
    fn set_peer(&mut self, peer: Addr) {
        super::Conn::set_peer(self, peer)
    }
    #[inline]
    fn output(&mut self) -> &mut Output {
        super::Conn::output(self)
    }
    #[inline]
    fn wrote(&mut self, now: Instant) {
        super::Conn::wrote(self, now)
    }
}
