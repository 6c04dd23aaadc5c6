//! The access log: one line per answered request, in the Common or
//! Combined Log Format that log analysers read (GoAccess, AWStats, fail2ban
//! filters), or as JSON for a log pipeline. Lines go where the rest of the
//! log goes (stderr or the journal, `--log-file`, syslog), without the
//! tracing prefix a parser would trip on, still batched per loop turn.
//!
//! - `common`: `HOST - - [TIME] "REQUEST" STATUS BYTES`
//! - `combined` (the default): common, then `"REFERER" "USER-AGENT"` and
//!   the request's duration in seconds with milliseconds, as nginx's
//!   `$request_time` (from the request's first byte to its answer being
//!   queued; `-` where there is none, a WebSocket session's 101).
//! - `json`: one object a line with the same facts, the peer's port, and
//!   the engine's note (why a request was refused, "handed off").
//!
//! TIME is UTC (`+0000`): a worker under systemd often has no zone, and
//! one clock for every line is what correlating logs needs. HOST is the
//! client's address without its port (the PROXY protocol's client where a
//! header named it), or `unix`/`-`. Text from the client is escaped as
//! nginx does (`\"`, `\\`, `\xHH` for anything not printable ASCII), so a
//! line can never be split or forged by a header.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use crate::sys::Addr;

/// `--access-log-format`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AccessFormat {
    /// The Common Log Format.
    Common,
    /// The Combined Log Format and the request time.
    #[default]
    Combined,
    /// A JSON object a line.
    Json,
    /// No access lines (the error log only).
    Off,
}

impl AccessFormat {
    /// The flag's value: `common`, `combined`, `json` or `off`.
    pub fn parse(s: &str) -> Result<AccessFormat, String> {
        match s {
            "common" => Ok(AccessFormat::Common),
            "combined" => Ok(AccessFormat::Combined),
            "json" => Ok(AccessFormat::Json),
            "off" => Ok(AccessFormat::Off),
            _ => Err(format!("{s:?}: common, combined, json or off")),
        }
    }

    /// The flag's value for this format.
    pub fn name(self) -> &'static str {
        match self {
            AccessFormat::Common => "common",
            AccessFormat::Combined => "combined",
            AccessFormat::Json => "json",
            AccessFormat::Off => "off",
        }
    }
}

static FORMAT: OnceLock<AccessFormat> = OnceLock::new();

pub(crate) fn set_format(f: AccessFormat) {
    let _ = FORMAT.set(f);
}

fn format() -> AccessFormat {
    FORMAT.get().copied().unwrap_or_default()
}

/// Whether an access line would be written (format not `off`, and
/// `RUST_LOG` lets `handoff::access` through at info): callers skip the
/// work of gathering its parts otherwise.
#[inline]
pub(crate) fn on() -> bool {
    format() != AccessFormat::Off
        && tracing::enabled!(target: "handoff::access", tracing::Level::INFO)
}

/// The Referer and User-Agent, looked up only where the format writes
/// them (combined, json).
/// Does the format write `Referer` and `User-Agent` (the engine finds them
/// only then)?
pub(crate) fn wants_client_fields() -> bool {
    matches!(format(), AccessFormat::Combined | AccessFormat::Json)
}

/// One access line's facts.
pub(crate) struct Access<'a> {
    pub(crate) peer: &'a Addr,
    /// The request line; `None` for a refusal before one was parsed.
    pub(crate) line: Option<&'a dyn std::fmt::Display>,
    /// `None`: not ours to give (a hand-off; the worker answers).
    pub(crate) status: Option<u16>,
    pub(crate) sent: u64,
    pub(crate) referer: Option<&'a [u8]>,
    pub(crate) agent: Option<&'a [u8]>,
    pub(crate) took: Option<Duration>,
    /// What the engine has to add ("handed off", a refusal's reason).
    pub(crate) note: &'a str,
}

impl<'a> Access<'a> {
    /// Only what the connection knows (a refusal, a WebSocket's 101).
    pub(crate) fn bare(peer: &'a Addr, line: Option<&'a dyn std::fmt::Display>) -> Access<'a> {
        Access {
            peer,
            line,
            status: None,
            sent: 0,
            referer: None,
            agent: None,
            took: None,
            note: "",
        }
    }

    pub(crate) fn status(mut self, status: Option<u16>, sent: u64) -> Self {
        self.status = status;
        self.sent = sent;
        self
    }

    pub(crate) fn note(mut self, note: &'a str) -> Self {
        self.note = note;
        self
    }

    /// Writes the line (batched with the turn's other log lines).
    pub(crate) fn log(&self) {
        let f = format();
        if f == AccessFormat::Off {
            return;
        }
        LINE.with(|l| {
            let mut l = l.borrow_mut();
            let (out, scratch) = &mut *l;
            out.clear();
            let now = TURN_TIME.with(|c| c.get()).unwrap_or_else(SystemTime::now);
            render(f, self, now, out, scratch);
            if super::ours() {
                let _ = super::LogWriter::access().write_all(out.as_bytes());
            } else {
                // A program on the library: its subscriber decides where
                // (and whether) access lines go.
                tracing::info!(target: "handoff::access", "{}", out.trim_end());
            }
        });
    }
}

thread_local! {
    /// The wall clock as the event loop read it at the start of its turn
    /// (`set_turn_time`); threads without one read the clock per line.
    static TURN_TIME: std::cell::Cell<Option<SystemTime>> = const { std::cell::Cell::new(None) };
    /// The line being made and a scratch string (the request line is
    /// formatted there before it is escaped), reused line after line.
    static LINE: RefCell<(String, String)> = const { RefCell::new((String::new(), String::new())) };
    /// The bracketed time, made once a second.
    static STAMP: RefCell<(u64, String, String)> = const { RefCell::new((u64::MAX, String::new(), String::new())) };
}

/// Sets this thread's clock for access lines (the loop, once a turn).
pub(crate) fn set_turn_time(t: SystemTime) {
    TURN_TIME.with(|c| c.set(Some(t)));
}

/// `10/Oct/2000:13:55:36 +0000` and `2000-10-10T13:55:36Z` for `t`,
/// rearranged from httpdate's IMF-fixdate (`Tue, 10 Oct 2000 13:55:36
/// GMT`) rather than by calendar arithmetic of our own.
fn stamps(t: SystemTime) -> (String, String) {
    let http = httpdate::fmt_http_date(t);
    let f: Vec<&str> = http.split(' ').collect();
    let (day, mon, year, time) = (f[1], f[2], f[3], f[4]);
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let m = MONTHS.iter().position(|x| *x == mon).unwrap_or(0) + 1;
    (
        format!("{day}/{mon}/{year}:{time} +0000"),
        format!("{year}-{m:02}-{day}T{time}Z"),
    )
}

fn with_stamp<R>(t: SystemTime, f: impl FnOnce(&str, &str) -> R) -> R {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    STAMP.with(|s| {
        let mut s = s.borrow_mut();
        if s.0 != secs {
            let (clf, iso) = stamps(t);
            *s = (secs, clf, iso);
        }
        f(&s.1, &s.2)
    })
}

/// Appends `text` escaped: inside a quoted log field (`json` false: `\"`,
/// `\\`, `\xHH`) or a JSON string (`\"`, `\\`, `\u00HH`; bytes past ASCII
/// are taken as Latin-1, as HTTP's obs-text was).
fn escape(out: &mut String, text: &[u8], json: bool) {
    // Nearly always nothing to escape: one copy.
    if text
        .iter()
        .all(|&b| (0x20..=0x7e).contains(&b) && b != b'"' && b != b'\\')
    {
        // Printable ASCII is UTF-8.
        out.push_str(std::str::from_utf8(text).unwrap_or_default());
        return;
    }
    for &b in text {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(b as char),
            _ if json => {
                let _ = write!(out, "\\u{b:04x}");
            }
            _ => {
                let _ = write!(out, "\\x{b:02X}");
            }
        }
    }
}

fn host(out: &mut String, peer: &Addr) {
    match peer {
        // A v4 client on a dual-stack socket as v4 (`::ffff:1.2.3.4` is
        // 1.2.3.4), as log analysers and fail2ban expect it.
        Addr::Inet(a) => {
            let _ = write!(out, "{}", a.ip().to_canonical());
        }
        Addr::Unix(_) => out.push_str("unix"),
        Addr::Unknown => out.push('-'),
    }
}

/// The line for `a` in format `f` at time `t`, into `out` (`scratch` for
/// the request line before escaping).
fn render(f: AccessFormat, a: &Access<'_>, t: SystemTime, out: &mut String, scratch: &mut String) {
    scratch.clear();
    if let Some(line) = a.line {
        let _ = write!(scratch, "{line}");
    }
    if f == AccessFormat::Json {
        return json(a, t, out, scratch);
    }
    host(out, a.peer);
    with_stamp(t, |clf, _| {
        let _ = write!(out, " - - [{clf}] \"");
    });
    if a.line.is_some() {
        escape(out, scratch.as_bytes(), false);
    } else {
        out.push('-');
    }
    out.push_str("\" ");
    match a.status {
        Some(s) => {
            let _ = write!(out, "{s}");
        }
        None => out.push('-'),
    }
    // CLF writes a body of nothing as `-`.
    if a.sent == 0 {
        out.push_str(" -");
    } else {
        let _ = write!(out, " {}", a.sent);
    }
    if f == AccessFormat::Combined {
        for field in [a.referer, a.agent] {
            out.push_str(" \"");
            match field {
                Some(v) => escape(out, v, false),
                None => out.push('-'),
            }
            out.push('"');
        }
        match a.took {
            Some(d) => {
                let _ = write!(out, " {}.{:03}", d.as_secs(), d.subsec_millis());
            }
            None => out.push_str(" -"),
        }
    }
    out.push('\n');
}

fn json(a: &Access<'_>, t: SystemTime, out: &mut String, line: &str) {
    let string = |out: &mut String, key: &str, v: Option<&[u8]>| {
        let _ = write!(out, ",\"{key}\":");
        match v {
            Some(v) => {
                out.push('"');
                escape(out, v, true);
                out.push('"');
            }
            None => out.push_str("null"),
        }
    };
    with_stamp(t, |_, iso| {
        let _ = write!(out, "{{\"time\":\"{iso}\",\"client\":\"");
    });
    host(out, a.peer);
    out.push('"');
    let peer = a.peer.to_string();
    string(out, "peer", Some(peer.as_bytes()));
    string(out, "request", a.line.is_some().then_some(line.as_bytes()));
    match a.status {
        Some(s) => {
            let _ = write!(out, ",\"status\":{s}");
        }
        None => out.push_str(",\"status\":null"),
    }
    let _ = write!(out, ",\"bytes\":{}", a.sent);
    string(out, "referer", a.referer);
    string(out, "user_agent", a.agent);
    match a.took {
        Some(d) => {
            let _ = write!(
                out,
                ",\"request_time\":{}.{:06}",
                d.as_secs(),
                d.subsec_micros()
            );
        }
        None => out.push_str(",\"request_time\":null"),
    }
    string(
        out,
        "note",
        (!a.note.is_empty()).then_some(a.note.as_bytes()),
    );
    out.push_str("}\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(f: AccessFormat, a: &Access<'_>) -> String {
        // 2000-10-10 13:55:36 UTC
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(971_186_136);
        let (mut out, mut scratch) = (String::new(), String::new());
        render(f, a, t, &mut out, &mut scratch);
        out
    }

    fn sample<'a>(peer: &'a Addr, req: &'a dyn std::fmt::Display) -> Access<'a> {
        Access {
            peer,
            line: Some(req),
            status: Some(200),
            sent: 2326,
            referer: Some(b"http://example.com/start.html"),
            agent: Some(b"Mozilla/4.08 [en] (Win98; I ;Nav)"),
            took: Some(Duration::from_micros(1_234_567)),
            note: "",
        }
    }

    #[test]
    fn writes_the_common_and_combined_formats_as_apache_documents_them() {
        let peer = Addr::Inet("127.0.0.1:5000".parse().unwrap());
        let req = "GET /apache_pb.gif HTTP/1.0";
        let a = sample(&peer, &req);
        assert_eq!(
            line(AccessFormat::Common, &a),
            "127.0.0.1 - - [10/Oct/2000:13:55:36 +0000] \"GET /apache_pb.gif HTTP/1.0\" 200 2326\n"
        );
        assert_eq!(
            line(AccessFormat::Combined, &a),
            "127.0.0.1 - - [10/Oct/2000:13:55:36 +0000] \"GET /apache_pb.gif HTTP/1.0\" 200 2326 \"http://example.com/start.html\" \"Mozilla/4.08 [en] (Win98; I ;Nav)\" 1.234\n"
        );
    }

    #[test]
    fn writes_a_refusal_and_a_handoff_with_dashes() {
        let peer = Addr::Inet("[2001:db8::1]:443".parse().unwrap());
        let a = Access::bare(&peer, None)
            .status(Some(400), 0)
            .note("bad request line");
        assert_eq!(
            line(AccessFormat::Combined, &a),
            "2001:db8::1 - - [10/Oct/2000:13:55:36 +0000] \"-\" 400 - \"-\" \"-\" -\n"
        );
        let unix = Addr::Unix(None);
        let a = Access::bare(&unix, Some(&"GET /ws HTTP/1.1")).status(None, 0);
        assert_eq!(
            line(AccessFormat::Common, &a),
            "unix - - [10/Oct/2000:13:55:36 +0000] \"GET /ws HTTP/1.1\" - -\n"
        );
    }

    #[test]
    fn escapes_what_a_client_sends_so_a_line_cannot_be_split_or_forged() {
        let peer = Addr::Unknown;
        let req = "GET /a\"b HTTP/1.1";
        let mut a = sample(&peer, &req);
        a.agent = Some(b"x\" 200 1\n\\\xff");
        assert_eq!(
            line(AccessFormat::Combined, &a),
            "- - - [10/Oct/2000:13:55:36 +0000] \"GET /a\\\"b HTTP/1.1\" 200 2326 \"http://example.com/start.html\" \"x\\\" 200 1\\x0A\\\\\\xFF\" 1.234\n"
        );
        let j = line(AccessFormat::Json, &a);
        assert!(
            j.contains(r#""user_agent":"x\" 200 1\u000a\\\u00ff""#),
            "{j}"
        );
        assert_eq!(j.matches('\n').count(), 1);
    }

    #[test]
    fn writes_a_v4_client_of_a_dual_stack_socket_as_v4() {
        let peer = Addr::Inet("[::ffff:192.0.2.7]:80".parse().unwrap());
        let a = Access::bare(&peer, Some(&"GET / HTTP/1.1")).status(Some(200), 5);
        assert!(line(AccessFormat::Common, &a).starts_with("192.0.2.7 - - ["));
    }

    #[test]
    fn writes_json_with_every_fact_and_the_note() {
        let peer = Addr::Inet("192.0.2.1:8000".parse().unwrap());
        let req = "GET / HTTP/1.1";
        let a = sample(&peer, &req).note("deferred");
        assert_eq!(
            line(AccessFormat::Json, &a),
            "{\"time\":\"2000-10-10T13:55:36Z\",\"client\":\"192.0.2.1\",\"peer\":\"192.0.2.1:8000\",\"request\":\"GET / HTTP/1.1\",\"status\":200,\"bytes\":2326,\"referer\":\"http://example.com/start.html\",\"user_agent\":\"Mozilla/4.08 [en] (Win98; I ;Nav)\",\"request_time\":1.234567,\"note\":\"deferred\"}\n"
        );
    }
}
