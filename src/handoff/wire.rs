//! The handoff wire format, version 1 (documented in
//! `docs/handoff-protocol.md`). Sans-I/O: messages to and from bytes; the
//! fd travels beside them in `SCM_RIGHTS`.

/// "HOFF".
pub const MAGIC: [u8; 4] = *b"HOFF";
/// The wire format's version, the first byte of every message.
pub const VERSION: u8 = 1;
/// Bytes before the first TLV: version, kind, reserved, id, TLV length.
pub const HEADER_LEN: usize = 12;
/// The largest message: header, fields and pre-read bytes.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// What a message is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// One listening socket (fd attached).
    PassListener = 1,
    /// One connected socket (fd attached), maybe with bytes already read.
    PassConnection = 2,
    /// The receiver took the socket.
    Ack = 3,
    /// The receiver did not take it (`REASON` says why); the sender still owns it.
    Refuse = 4,
    /// Worker ↔ HTTP process: a message for every connection on the path
    /// in NAME (DATA, FLAGS `BINARY`), relayed to the other workers.
    Broadcast = 5,
    /// Worker → HTTP process: the worker serves ID connections now.
    Load = 6,
    /// A new process → the one it replaces (`docs/upgrade.md`): it serves
    /// the listeners it was given; ID is its PID.
    Ready = 7,
    /// `handoff upgrade` → a control socket: replace the binary. Answered,
    /// once the new process is ready or has failed, with `ACK` (NAME: the
    /// new PID) or `REFUSE` (REASON: why; the old process serves on).
    Upgrade = 8,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::PassListener,
            2 => Kind::PassConnection,
            3 => Kind::Ack,
            4 => Kind::Refuse,
            5 => Kind::Broadcast,
            6 => Kind::Load,
            7 => Kind::Ready,
            8 => Kind::Upgrade,
            _ => return None,
        })
    }
    /// Does a message of this kind carry exactly one fd?
    pub fn carries_fd(self) -> bool {
        matches!(self, Kind::PassListener | Kind::PassConnection)
    }
}

/// TLV tags (`docs/handoff-protocol.md`).
pub mod tag {
    /// The sender's id for the socket (echoed in the answer).
    pub const ID: u16 = 1;
    /// The peer's address, as text.
    pub const PEER: u16 = 2;
    /// The local address, as text.
    pub const LOCAL: u16 = 3;
    /// Flags (TLS on the socket).
    pub const FLAGS: u16 = 4;
    /// Bytes already read from the connection.
    pub const DATA: u16 = 5;
    /// A request head already parsed (a WebSocket upgrade).
    pub const HEAD: u16 = 6;
    /// Why a socket was refused.
    pub const REASON: u16 = 7;
    /// A listener's name (systemd's `FileDescriptorName`).
    pub const NAME: u16 = 8;
    /// Tags at or above this are critical: a receiver that does not know one
    /// must refuse the message rather than skip it.
    pub const CRITICAL: u16 = 0x8000;
}

/// Bits of the FLAGS field.
pub mod flags {
    /// The stream is TLS from its first byte.
    pub const TLS: u32 = 1;
    /// A PROXY protocol header precedes the stream's data.
    pub const PROXY: u32 = 2;
    /// BROADCAST: the message is binary, not text.
    pub const BINARY: u32 = 4;
}

/// One message, without its fd.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Message {
    /// What the message is; `None` for a kind this version does not know.
    pub kind: Option<Kind>,
    /// The sender's id for the socket.
    pub id: u64,
    /// The peer's address.
    pub peer: Option<String>,
    /// The local address.
    pub local: Option<String>,
    /// Flags.
    pub flags: u32,
    /// Bytes already read from the connection.
    pub data: Vec<u8>,
    /// A request head already parsed.
    pub head: Vec<u8>,
    /// Why a socket was refused.
    pub reason: Option<String>,
    /// A listener's name.
    pub name: Option<String>,
}

impl Message {
    /// A message of `kind` about socket `id`, with no TLVs yet.
    pub fn new(kind: Kind, id: u64) -> Message {
        Message {
            kind: Some(kind),
            id,
            ..Message::default()
        }
    }

    /// The answer taking socket `id`.
    pub fn ack(id: u64) -> Message {
        Message::new(Kind::Ack, id)
    }

    /// The answer refusing socket `id`, saying why.
    pub fn refuse(id: u64, reason: impl Into<String>) -> Message {
        Message {
            reason: Some(reason.into()),
            ..Message::new(Kind::Refuse, id)
        }
    }

    /// The kind (a message of unknown kind reads as `Refuse`).
    pub fn kind(&self) -> Kind {
        self.kind.unwrap_or(Kind::Refuse)
    }

    /// Encodes the message: header and fields, in one record.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(32 + self.data.len() + self.head.len());
        field(&mut body, tag::ID, &self.id.to_be_bytes());
        if let Some(p) = &self.peer {
            field(&mut body, tag::PEER, p.as_bytes());
        }
        if let Some(l) = &self.local {
            field(&mut body, tag::LOCAL, l.as_bytes());
        }
        if self.flags != 0 {
            field(&mut body, tag::FLAGS, &self.flags.to_be_bytes());
        }
        if !self.data.is_empty() {
            field(&mut body, tag::DATA, &self.data);
        }
        if !self.head.is_empty() {
            field(&mut body, tag::HEAD, &self.head);
        }
        if let Some(r) = &self.reason {
            field(&mut body, tag::REASON, r.as_bytes());
        }
        if let Some(n) = &self.name {
            field(&mut body, tag::NAME, n.as_bytes());
        }
        let mut out = Vec::with_capacity(HEADER_LEN + body.len());
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(self.kind() as u8);
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// Decodes one whole record. The error is the reason sent back in the
    /// refusal, with the id if it could be read.
    pub fn decode(rec: &[u8]) -> Result<Message, (u64, String)> {
        let fail = |id: u64, why: String| Err((id, why));
        if rec.len() < HEADER_LEN {
            return fail(
                0,
                format!(
                    "message of {} bytes is shorter than the 12-byte header",
                    rec.len()
                ),
            );
        }
        if rec[..4] != MAGIC {
            return fail(0, "bad magic (expected \"HOFF\")".into());
        }
        if rec[4] != VERSION {
            return fail(
                0,
                format!(
                    "unsupported version {} (this server speaks {VERSION})",
                    rec[4]
                ),
            );
        }
        let Some(kind) = Kind::from_u8(rec[5]) else {
            return fail(0, format!("unknown message kind {}", rec[5]));
        };
        if rec[6] != 0 || rec[7] != 0 {
            return fail(0, "reserved header bytes are not zero".into());
        }
        let len = u32::from_be_bytes([rec[8], rec[9], rec[10], rec[11]]) as usize;
        if len != rec.len() - HEADER_LEN {
            return fail(
                0,
                format!(
                    "length field says {len} bytes but {} followed",
                    rec.len() - HEADER_LEN
                ),
            );
        }
        let mut m = Message::new(kind, 0);
        let mut seen: u16 = 0;
        let mut body = &rec[HEADER_LEN..];
        while !body.is_empty() {
            if body.len() < 6 {
                return fail(m.id, "truncated field header".into());
            }
            let t = u16::from_be_bytes([body[0], body[1]]);
            let flen = u32::from_be_bytes([body[2], body[3], body[4], body[5]]) as usize;
            if flen > body.len() - 6 {
                return fail(m.id, format!("field {t} runs past the end of the message"));
            }
            let v = &body[6..6 + flen];
            body = &body[6 + flen..];
            if (1..=8).contains(&t) {
                let bit = 1u16 << t;
                if seen & bit != 0 {
                    return fail(m.id, format!("field {t} appears twice"));
                }
                seen |= bit;
            }
            let text = |v: &[u8]| {
                String::from_utf8(v.to_vec()).map_err(|_| (m.id, format!("field {t} is not UTF-8")))
            };
            match t {
                tag::ID => {
                    m.id = u64::from_be_bytes(
                        v.try_into()
                            .map_err(|_| (0, "ID is not 8 bytes".to_string()))?,
                    )
                }
                tag::PEER => m.peer = Some(text(v)?),
                tag::LOCAL => m.local = Some(text(v)?),
                tag::FLAGS => {
                    m.flags = u32::from_be_bytes(
                        v.try_into()
                            .map_err(|_| (m.id, "FLAGS is not 4 bytes".to_string()))?,
                    )
                }
                tag::DATA => m.data = v.to_vec(),
                tag::HEAD => m.head = v.to_vec(),
                tag::REASON => m.reason = Some(text(v)?),
                tag::NAME => m.name = Some(text(v)?),
                t if t >= tag::CRITICAL => {
                    return fail(m.id, format!("unknown critical field {t:#x}"));
                }
                _ => {} // unknown, not critical: skipped, for newer senders
            }
        }
        if kind.carries_fd() && seen & (1 << tag::ID) == 0 {
            return fail(0, "no ID field".into());
        }
        Ok(m)
    }
}

fn field(out: &mut Vec<u8>, t: u16, v: &[u8]) {
    out.extend_from_slice(&t.to_be_bytes());
    out.extend_from_slice(&(v.len() as u32).to_be_bytes());
    out.extend_from_slice(v);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_field() {
        let m = Message {
            kind: Some(Kind::PassConnection),
            id: 42,
            peer: Some("203.0.113.7:51234".into()),
            local: Some("[::1]:443".into()),
            flags: flags::TLS,
            data: b"GET / HTTP/1.1\r\n".to_vec(),
            head: b"GET /ws HTTP/1.1\r\n\r\n".to_vec(),
            reason: None,
            name: Some("http".into()),
        };
        assert_eq!(Message::decode(&m.encode()).unwrap(), m);
        let r = Message::refuse(7, "busy");
        assert_eq!(Message::decode(&r.encode()).unwrap(), r);
    }

    #[test]
    fn refuses_bad_magic_version_kind_reserved_and_length() {
        let good = Message::new(Kind::PassListener, 1).encode();
        let mut bad = good.clone();
        bad[0] = b'X';
        assert!(Message::decode(&bad).unwrap_err().1.contains("magic"));
        let mut bad = good.clone();
        bad[4] = 2;
        assert!(Message::decode(&bad).unwrap_err().1.contains("version 2"));
        let mut bad = good.clone();
        bad[5] = 9;
        assert!(Message::decode(&bad).unwrap_err().1.contains("kind"));
        let mut bad = good.clone();
        bad[7] = 1;
        assert!(Message::decode(&bad).unwrap_err().1.contains("reserved"));
        let mut bad = good.clone();
        bad.push(0);
        assert!(Message::decode(&bad).unwrap_err().1.contains("length"));
        assert!(
            Message::decode(&good[..5])
                .unwrap_err()
                .1
                .contains("shorter")
        );
    }

    #[test]
    fn refuses_fields_that_overrun_repeat_or_are_unknown_and_critical() {
        let mut m = Message::new(Kind::PassConnection, 3).encode();
        // A field claiming more bytes than follow.
        let mut over = m.clone();
        over.extend_from_slice(&[0, 5, 0, 0, 1, 0, b'x']);
        let n = (over.len() - HEADER_LEN) as u32;
        over[8..12].copy_from_slice(&n.to_be_bytes());
        assert!(
            Message::decode(&over)
                .unwrap_err()
                .1
                .contains("past the end")
        );
        // A repeated field.
        field(&mut m, tag::ID, &9u64.to_be_bytes());
        let n = (m.len() - HEADER_LEN) as u32;
        m[8..12].copy_from_slice(&n.to_be_bytes());
        assert!(Message::decode(&m).unwrap_err().1.contains("twice"));
        // Unknown fields: skipped, unless critical.
        let mut m = Message::new(Kind::PassConnection, 3).encode();
        field(&mut m, 0x0100, b"future");
        let n = (m.len() - HEADER_LEN) as u32;
        m[8..12].copy_from_slice(&n.to_be_bytes());
        assert_eq!(Message::decode(&m).unwrap().id, 3);
        field(&mut m, 0x8001, b"must understand");
        let n = (m.len() - HEADER_LEN) as u32;
        m[8..12].copy_from_slice(&n.to_be_bytes());
        assert!(Message::decode(&m).unwrap_err().1.contains("critical"));
    }
}
