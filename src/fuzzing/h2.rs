//! The HTTP/2 engine's target.

use std::time::Instant;

use super::{Env, control, drain, pieces};
use crate::http::conn::Next;
use crate::http::{Request, Response};
use crate::sys::Addr;

/// The HTTP/2 engine (its session, HPACK decoder and streams) fed arbitrary frames in
/// arbitrary pieces after the preface and an empty SETTINGS (control
/// byte 0x80 of the first: no preface, the bytes as they are), with
/// deadlines passing (0x40). It must not panic, and what it writes must
/// be whole frames, the first of them SETTINGS when the client's preface
/// was one (after one that is not, RFC 9113 §3.4 lets the server end
/// the connection as it likes: we send GOAWAY `PROTOCOL_ERROR`).
pub fn h2(data: &[u8]) {
    use crate::http::EngineIo;
    use crate::http::h2::{H2Conn, PREFACE};
    let (ctl, input) = control(data);
    let mut first = Vec::new();
    let with_preface = ctl.first().is_none_or(|c| c & 0x80 == 0);
    if with_preface {
        first.extend_from_slice(PREFACE);
        first.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    }
    let handler = |req: &Request<'_>, res: &mut Response<'_>| {
        res.header("X-Path", req.path())
            .body(format!("{} {}", req.method(), req.body().len()));
    };
    let mut env = Env::default();
    let (limits, timeouts) = (env.limits.clone(), env.timeouts.clone());
    let mut now = Instant::now();
    let mut conn = H2Conn::new(Addr::Unknown, now, &first, &limits);
    let mut out = Vec::new();
    macro_rules! ctx {
        () => {
            env.ctx(&handler)
        };
    }
    conn.advance(now, &mut ctx!(), Default::default());
    for (i, piece) in pieces(ctl, input).into_iter().enumerate() {
        let c = ctl.get(i).copied().unwrap_or(0);
        if c & 0x40 != 0
            && let Some(d) = conn.deadline(&timeouts)
        {
            // Drained first: a write deadline would rightly drop what the
            // peer never read, and the server closes such a connection.
            out.extend(drain(&mut conn).expect("no files are served here"));
            now = now.max(d);
            if let Some(crate::http::Expired::Write) = conn.on_timeout(now, &mut ctx!()) {
                break;
            }
            conn.advance(now, &mut ctx!(), Default::default());
        }
        let Some(buf) = conn.read_buf(&mut env.pool, &limits) else {
            break;
        };
        let n = buf.len().min(piece.len());
        buf[..n].copy_from_slice(&piece[..n]);
        conn.filled(n, now);
        conn.advance(now, &mut ctx!(), Default::default());
        out.extend(drain(&mut conn).expect("no files are served here"));
        if let Next::Close = conn.next() {
            break;
        }
    }
    conn.on_eof();
    conn.advance(now, &mut ctx!(), Default::default());
    out.extend(drain(&mut conn).expect("no files are served here"));
    // Whole frames, the server's SETTINGS first.
    let mut i = 0;
    while i < out.len() {
        assert!(out.len() - i >= 9, "a frame head cut short");
        let len = u32::from_be_bytes([0, out[i], out[i + 1], out[i + 2]]) as usize;
        if i == 0 && with_preface {
            assert_eq!(out[3], 4, "the first frame is not SETTINGS");
        }
        i += 9 + len;
    }
    assert_eq!(i, out.len(), "a frame cut short");
}
