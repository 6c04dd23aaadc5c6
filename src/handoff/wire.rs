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
    /// A WebSocket session moving between processes' workers (fds: the
    /// socket, then as `FLAGS` say an `exec:` child's stdin, stdout and
    /// pidfd), resumed between messages without a new handshake. Also, pool
    /// → worker with no fd and ID 0: "hand every session back" (the old
    /// process of an upgrade).
    PassWebsocket = 9,
    /// A channel between two processes' parts (fd attached; NAME its role,
    /// `ws-pool`): the old process of an upgrade gives the new one a line
    /// between their WebSocket pools.
    PassChannel = 10,
    /// The old process of an upgrade → the new one, before the end of the
    /// listeners: the self-signed certificate and key it serves (`DATA`,
    /// PEM), which the new process serves instead of making its own, so a
    /// client that pinned the fingerprint keeps working. Only on the
    /// upgrade channel, never over a control socket.
    PassCertificate = 11,
    /// A pool → a worker it started, first on their control socket, no
    /// fd, ID 0: the routes and limits the worker serves with (`DATA`: a
    /// TOML table with the settings file's keys, `ws`, `ws-max-message`,
    /// …). Answered with `ACK` or `REFUSE` (REASON), ID 0.
    Configure = 12,
    /// An HTTP process → an app process, on their line, no fd: this
    /// process is going (a drain, or an upgrade's old process). Give back
    /// each of this line's connections as it becomes idle (as always), and
    /// answer with `ACK` (same ID) once none is left with you: each given
    /// back or closed. Connections may still come meanwhile.
    Finish = 13,
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
            9 => Kind::PassWebsocket,
            10 => Kind::PassChannel,
            11 => Kind::PassCertificate,
            12 => Kind::Configure,
            13 => Kind::Finish,
            _ => return None,
        })
    }
    /// Does a message of this kind carry exactly one fd?
    pub fn carries_fd(self) -> bool {
        matches!(
            self,
            Kind::PassListener | Kind::PassConnection | Kind::PassChannel
        )
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
    /// `PASS_WEBSOCKET`, `BROADCAST`: a broadcast's place in its pool's
    /// order (the last one the session was given, in a pass).
    pub const SEQ: u16 = 9;
    /// `PASS_WEBSOCKET`: bytes queued for an `exec:` child's stdin.
    pub const INPUT: u16 = 10;
    /// `PASS_WEBSOCKET`: an `exec:` child's output line read in part.
    pub const OUTPUT: u16 = 11;
    /// `PASS_WEBSOCKET`: the `exec:` child's PID, u32.
    pub const PID: u16 = 12;
    /// `PASS_WEBSOCKET`: messages the session is still owed, sent before
    /// anything else (see `encode_backlog`).
    pub const BACKLOG: u16 = 13;
    /// `PASS_CONNECTION` to a worker: the WebSocket route the request is
    /// for (its path), as the HTTP process matched it.
    pub const ROUTE: u16 = 14;
    /// `PASS_CONNECTION` to a worker: the `Sec-WebSocket-Accept` value the
    /// 101 carries, computed by the HTTP process from the request's key.
    pub const ACCEPT: u16 = 15;
    /// `PASS_CONNECTION` to a worker, for an `exec:` route: the request's
    /// CGI meta-variables and `HTTP_*` fields, `NAME=VALUE` each ended by
    /// a NUL (`encode_env`). With `ROUTE` and `ACCEPT`, the worker need not
    /// parse `HEAD` (sent still, for workers older than these fields).
    pub const ENV: u16 = 16;
    /// `BROADCAST`, `PASS_CONNECTION` and `PASS_WEBSOCKET` on a route with
    /// a bus (Redis): a Redis stream ID, two u64s (milliseconds, sequence).
    /// On a broadcast its place in the stream; on a pass the last entry the
    /// session was given (or, to a worker, the pool's last), so that it is
    /// given only what comes after (`ws/bus.rs`).
    pub const BUS_ID: u16 = 17;
    /// `PASS_CONNECTION`: the socket is an HTTP/2 connection between
    /// requests, and this is its state (settings, windows, the last stream,
    /// the HPACK table: `docs/upgrade.md`), which the receiver goes on
    /// from. Critical: a receiver that cannot must refuse it, or the
    /// client's next header block would be read against an empty table.
    pub const H2_STATE: u16 = CRITICAL | 1;
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
    /// `PASS_WEBSOCKET`: the `exec:` child's stdin pipe follows the socket.
    pub const STDIN: u32 = 8;
    /// `PASS_WEBSOCKET`: then its stdout pipe.
    pub const STDOUT: u32 = 16;
    /// `PASS_WEBSOCKET`: then a pidfd for it.
    pub const PIDFD: u32 = 32;
    /// `PASS_WEBSOCKET`: the `exec:` route passes bytes, not lines.
    pub const EXEC_BINARY: u32 = 64;
    /// `BROADCAST` from a worker: deliver it back to the sender too (set
    /// on one of a worker's control sockets only, so that a worker that
    /// serves several HTTP processes hears its own message once).
    pub const RETURN: u32 = 128;
    /// `PASS_CONNECTION` to a worker: the client came over TLS, ended by
    /// the sender (the fd carries the plaintext: not `TLS`).
    pub const SECURE: u32 = 256;
    /// `PASS_CONNECTION` from an app process: a connection the HTTP process
    /// lent it, given back idle (HTTP/1.1 between requests). Not answered:
    /// the sender closed its copy once the message was sent.
    pub const RETURNED: u32 = 512;
    /// `BROADCAST` from a pool to a worker: the message its session (whose
    /// serial is the ID) sent was not taken by the bus (Redis away past
    /// the route's queue): close that session with 1013.
    pub const REFUSED: u32 = 1024;
    /// `PASS_CONNECTION` to an app: it may keep the connection for the
    /// client's next requests under `NAME` (the route's prefix, whole
    /// segments of the decoded path), nothing of the HTTP process's own
    /// applying to them; one that is not, or a connection idle past the
    /// app's keep-alive timeout, is given back (`RETURNED`) unread.
    pub const KEEP: u32 = 2048;
}

/// A Redis stream entry's ID (`ms-seq`), ordered as Redis orders them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BusId(pub u64, pub u64);

impl BusId {
    /// Parses Redis's text form, `1700000000000-3`.
    pub fn parse(s: &str) -> Option<BusId> {
        let (ms, n) = s.split_once('-')?;
        Some(BusId(ms.parse().ok()?, n.parse().ok()?))
    }
}

impl std::fmt::Display for BusId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.0, self.1)
    }
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
    /// A broadcast's sequence number.
    pub seq: Option<u64>,
    /// A broadcast's place in its bus's stream (`BUS_ID`).
    pub bus_id: Option<BusId>,
    /// Bytes queued for an `exec:` child's stdin.
    pub input: Vec<u8>,
    /// An `exec:` child's output line read in part.
    pub output: Vec<u8>,
    /// An `exec:` child's PID.
    pub pid: Option<u32>,
    /// Messages owed to a moving session (`encode_backlog`).
    pub backlog: Vec<u8>,
    /// The WebSocket route matched (`ROUTE`).
    pub route: Option<String>,
    /// The `Sec-WebSocket-Accept` value (`ACCEPT`).
    pub accept: Option<String>,
    /// An `exec:` route's request variables (`ENV`, `encode_env`).
    pub env: Vec<u8>,
    /// A moving HTTP/2 connection's state (`H2_STATE`).
    pub h2_state: Vec<u8>,
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
        if let Some(s) = self.seq {
            field(&mut body, tag::SEQ, &s.to_be_bytes());
        }
        if let Some(BusId(ms, n)) = self.bus_id {
            let mut v = [0u8; 16];
            v[..8].copy_from_slice(&ms.to_be_bytes());
            v[8..].copy_from_slice(&n.to_be_bytes());
            field(&mut body, tag::BUS_ID, &v);
        }
        if !self.input.is_empty() {
            field(&mut body, tag::INPUT, &self.input);
        }
        if !self.output.is_empty() {
            field(&mut body, tag::OUTPUT, &self.output);
        }
        if let Some(p) = self.pid {
            field(&mut body, tag::PID, &p.to_be_bytes());
        }
        if !self.backlog.is_empty() {
            field(&mut body, tag::BACKLOG, &self.backlog);
        }
        if let Some(r) = &self.route {
            field(&mut body, tag::ROUTE, r.as_bytes());
        }
        if let Some(a) = &self.accept {
            field(&mut body, tag::ACCEPT, a.as_bytes());
        }
        if !self.env.is_empty() {
            field(&mut body, tag::ENV, &self.env);
        }
        if !self.h2_state.is_empty() {
            field(&mut body, tag::H2_STATE, &self.h2_state);
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
        let mut seen: u32 = 0;
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
            if (1..=16).contains(&t) {
                let bit = 1u32 << t;
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
                tag::SEQ => {
                    m.seq = Some(u64::from_be_bytes(
                        v.try_into()
                            .map_err(|_| (m.id, "SEQ is not 8 bytes".to_string()))?,
                    ))
                }
                tag::BUS_ID => {
                    let (ms, n) = v
                        .split_at_checked(8)
                        .filter(|(_, n)| n.len() == 8)
                        .ok_or_else(|| (m.id, "BUS_ID is not 16 bytes".to_string()))?;
                    let word = |b: &[u8]| u64::from_be_bytes(b.try_into().unwrap_or_default());
                    m.bus_id = Some(BusId(word(ms), word(n)));
                }
                tag::INPUT => m.input = v.to_vec(),
                tag::OUTPUT => m.output = v.to_vec(),
                tag::PID => {
                    m.pid = Some(u32::from_be_bytes(
                        v.try_into()
                            .map_err(|_| (m.id, "PID is not 4 bytes".to_string()))?,
                    ))
                }
                tag::BACKLOG => m.backlog = v.to_vec(),
                tag::ROUTE => m.route = Some(text(v)?),
                tag::ACCEPT => m.accept = Some(text(v)?),
                tag::ENV => m.env = v.to_vec(),
                tag::H2_STATE if !m.h2_state.is_empty() || v.is_empty() => {
                    return fail(m.id, "H2_STATE twice, or empty".into());
                }
                tag::H2_STATE => m.h2_state = v.to_vec(),
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

/// Appends one message to a `BACKLOG` field: a byte (1 binary, 0 text),
/// its length (u32) and its bytes.
pub fn push_backlog(out: &mut Vec<u8>, binary: bool, data: &[u8]) {
    out.push(u8::from(binary));
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(data);
}

/// The messages of a `BACKLOG` field, as (binary, bytes).
pub fn read_backlog(mut b: &[u8]) -> Result<Vec<(bool, Vec<u8>)>, String> {
    let mut out = Vec::new();
    while !b.is_empty() {
        if b.len() < 5 || b[0] > 1 {
            return Err("malformed BACKLOG".into());
        }
        let len = u32::from_be_bytes([b[1], b[2], b[3], b[4]]) as usize;
        let Some(data) = b.get(5..5 + len) else {
            return Err("BACKLOG runs past its field".into());
        };
        out.push((b[0] == 1, data.to_vec()));
        b = &b[5 + len..];
    }
    Ok(out)
}

fn field(out: &mut Vec<u8>, t: u16, v: &[u8]) {
    out.extend_from_slice(&t.to_be_bytes());
    out.extend_from_slice(&(v.len() as u32).to_be_bytes());
    out.extend_from_slice(v);
}

/// `ENV`'s form: `NAME=VALUE` pairs, each ended by a NUL (a name holds
/// no `=` and nothing holds a NUL: HTTP field values cannot).
pub fn encode_env(vars: &[(String, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in vars {
        out.extend_from_slice(k.as_bytes());
        out.push(b'=');
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

/// Reads `ENV` back (`None`: not that form).
pub fn decode_env(data: &[u8]) -> Option<Vec<(String, String)>> {
    data.split(|&b| b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| {
            let text = std::str::from_utf8(p).ok()?;
            let (k, v) = text.split_once('=')?;
            Some((k.to_string(), v.to_string()))
        })
        .collect()
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
            ..Message::default()
        };
        assert_eq!(Message::decode(&m.encode()).unwrap(), m);
        let mut backlog = Vec::new();
        push_backlog(&mut backlog, false, b"one");
        push_backlog(&mut backlog, true, &[0, 1, 2]);
        let m = Message {
            kind: Some(Kind::PassWebsocket),
            id: 3,
            seq: Some(17),
            bus_id: Some(BusId(1_700_000_000_000, 3)),
            input: b"queued\n".to_vec(),
            output: b"half a li".to_vec(),
            pid: Some(4242),
            backlog,
            flags: flags::STDIN | flags::STDOUT | flags::PIDFD,
            ..Message::default()
        };
        assert_eq!(Message::decode(&m.encode()).unwrap(), m);
        assert_eq!(
            read_backlog(&m.backlog).unwrap(),
            vec![(false, b"one".to_vec()), (true, vec![0, 1, 2])]
        );
        assert!(read_backlog(&m.backlog[..m.backlog.len() - 1]).is_err());
        let r = Message::refuse(7, "busy");
        assert_eq!(Message::decode(&r.encode()).unwrap(), r);
        let vars = vec![
            ("QUERY_STRING".to_string(), "a=b=c".to_string()),
            ("HTTP_X".to_string(), String::new()),
        ];
        let m = Message {
            kind: Some(Kind::PassConnection),
            id: 9,
            route: Some("/chat".into()),
            accept: Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".into()),
            env: encode_env(&vars),
            flags: flags::SECURE,
            ..Message::default()
        };
        assert_eq!(Message::decode(&m.encode()).unwrap(), m);
        assert_eq!(decode_env(&m.env).unwrap(), vars);
        assert!(decode_env(b"no equals sign\0").is_none());
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
        bad[5] = 99;
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
        field(&mut m, 0x80ff, b"must understand");
        let n = (m.len() - HEADER_LEN) as u32;
        m[8..12].copy_from_slice(&n.to_be_bytes());
        assert!(Message::decode(&m).unwrap_err().1.contains("critical"));
    }

    #[test]
    fn carries_an_http2_state_once_and_refuses_it_twice_or_empty() {
        let mut m = Message::new(Kind::PassConnection, 4);
        m.h2_state = b"state".to_vec();
        let rec = m.encode();
        assert_eq!(Message::decode(&rec).unwrap().h2_state, b"state");
        let mut twice = rec.clone();
        field(&mut twice, tag::H2_STATE, b"again");
        let n = (twice.len() - HEADER_LEN) as u32;
        twice[8..12].copy_from_slice(&n.to_be_bytes());
        assert!(Message::decode(&twice).unwrap_err().1.contains("H2_STATE"));
        let mut empty = Message::new(Kind::PassConnection, 4).encode();
        field(&mut empty, tag::H2_STATE, b"");
        let n = (empty.len() - HEADER_LEN) as u32;
        empty[8..12].copy_from_slice(&n.to_be_bytes());
        assert!(Message::decode(&empty).unwrap_err().1.contains("H2_STATE"));
    }
}
