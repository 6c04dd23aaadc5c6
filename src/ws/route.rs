//! What a WebSocket path does: `--ws PATH=MODE`.

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Every message comes back.
    Echo,
    /// Every message goes to every connection on the same path, across all
    /// workers of one server.
    Broadcast,
    /// One process per connection, websocketd-style: messages are lines on
    /// its stdin, its stdout lines are messages (`binary`: raw bytes).
    Exec { command: String, binary: bool },
}

/// A WebSocket path and what its worker does with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// The request path that upgrades.
    pub path: String,
    /// Echo, broadcast, or a command.
    pub mode: Mode,
    /// Subprotocols it speaks (`,protocols=chat|superchat`): of those a
    /// client offers in `Sec-WebSocket-Protocol`, the first it offers that
    /// is here is answered.
    pub protocols: Vec<String>,
    /// A broadcast route's bus (`,bus=redis://…`): its messages go through
    /// a Redis stream shared by every instance (`ws/bus`).
    pub bus: Option<crate::ws::bus::BusSpec>,
}

/// Options a route may end with, taken from the end (a command may hold
/// commas).
const OPTIONS: [&str; 5] = ["protocols", "bus", "bus-prefix", "bus-maxlen", "bus-queue"];
const BUS_CA: &str = "bus-ca";

/// A `Sec-WebSocket-Protocol` value is a token (RFC 6455 §4.1, RFC 9110 §5.6.2).
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        && !s.contains('|')
}

impl Route {
    /// `PATH=echo`, `PATH=broadcast`, `PATH=exec:COMMAND`,
    /// `PATH=exec-binary:COMMAND`, each optionally followed by
    /// `,protocols=P1|P2` (taken from the end: a command may hold commas).
    pub fn parse(s: &str) -> Result<Route, String> {
        let (path, mode) = s
            .split_once('=')
            .ok_or_else(|| format!("{s:?}: expected PATH=MODE"))?;
        let mut mode = mode;
        let mut options = Vec::new();
        while let Some((rest, last)) = mode.rsplit_once(',') {
            match last.split_once('=') {
                Some((k, v)) if OPTIONS.contains(&k) || k == BUS_CA => {
                    options.push((k, v));
                    mode = rest;
                }
                _ => break,
            }
        }
        options.reverse();
        let mut protocols = Vec::new();
        let mut bus: Option<crate::ws::bus::BusSpec> = None;
        for (k, v) in options {
            match k {
                "protocols" => {
                    protocols = v.split('|').map(str::to_string).collect();
                    if let Some(bad) = protocols.iter().find(|p| !is_token(p)) {
                        return Err(format!(
                            "{s:?}: {bad:?} is not a subprotocol name (a token: letters, digits, !#$%&'*+-.^_`~)"
                        ));
                    }
                }
                "bus" => {
                    bus = Some(crate::ws::bus::BusSpec::new(v).map_err(|e| format!("{s:?}: {e}"))?)
                }
                k => match bus.as_mut() {
                    Some(b) => b.set(k, v).map_err(|e| format!("{s:?}: {e}"))?,
                    None => return Err(format!("{s:?}: {k}= needs bus= before it")),
                },
            }
        }
        if !path.starts_with('/') {
            return Err(format!("{s:?}: the path must start with /"));
        }
        let mode = match mode {
            "echo" => Mode::Echo,
            "broadcast" => Mode::Broadcast,
            m => match m.split_once(':') {
                Some(("exec", c)) if !c.trim().is_empty() => Mode::Exec {
                    command: c.into(),
                    binary: false,
                },
                Some(("exec-binary", c)) if !c.trim().is_empty() => Mode::Exec {
                    command: c.into(),
                    binary: true,
                },
                _ => {
                    return Err(format!(
                        "{s:?}: mode is echo, broadcast, exec:COMMAND or exec-binary:COMMAND"
                    ));
                }
            },
        };
        if bus.is_some() && mode != Mode::Broadcast {
            return Err(format!("{s:?}: only a broadcast route has a bus"));
        }
        Ok(Route {
            path: path.into(),
            mode,
            protocols,
            bus,
        })
    }

    /// The subprotocol to answer: the first of the client's offers
    /// (`Sec-WebSocket-Protocol`, every field, comma-separated) that the
    /// route speaks; `None` if it offered none or none of ours.
    pub(crate) fn choose_protocol<'a>(
        &self,
        offers: impl Iterator<Item = &'a [u8]>,
    ) -> Option<&str> {
        if self.protocols.is_empty() {
            return None;
        }
        offers
            .flat_map(crate::http::head::csv)
            .find_map(|o| self.protocols.iter().find(|p| p.as_bytes() == o))
            .map(String::as_str)
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fmt_mode(f)?;
        if let Some(b) = &self.bus {
            write!(f, "{b}")?;
        }
        if !self.protocols.is_empty() {
            write!(f, ",protocols={}", self.protocols.join("|"))?;
        }
        Ok(())
    }
}

impl Route {
    fn fmt_mode(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.mode {
            Mode::Echo => write!(f, "{}=echo", self.path),
            Mode::Broadcast => write!(f, "{}=broadcast", self.path),
            Mode::Exec {
                command,
                binary: false,
            } => write!(f, "{}=exec:{command}", self.path),
            Mode::Exec {
                command,
                binary: true,
            } => write!(f, "{}=exec-binary:{command}", self.path),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_routes() {
        for s in [
            "/echo=echo",
            "/chat=broadcast",
            "/cat=exec:cat",
            "/raw=exec-binary:cat -u",
            "/chat=echo,protocols=chat|superchat",
            "/mq=exec:relay a,b,protocols=mqtt",
            "/chat=broadcast,bus=redis://127.0.0.1:6379/",
            "/chat=broadcast,bus=rediss://db.example:6380/,bus-prefix=site:,bus-maxlen=500,bus-queue=20,protocols=chat",
        ] {
            assert_eq!(Route::parse(s).unwrap().to_string(), s);
        }
        assert!(Route::parse("echo").is_err());
        assert!(Route::parse("/x=shout").is_err());
        assert!(Route::parse("/x=exec:").is_err());
        assert!(Route::parse("/x=echo,protocols=").is_err());
        assert!(Route::parse("/x=echo,protocols=a b").is_err());
        assert!(Route::parse("/x=echo,protocols=a|").is_err());
        assert!(
            Route::parse("/x=echo,bus=redis://h/").is_err(),
            "echo has no bus"
        );
        assert!(Route::parse("/x=broadcast,bus-queue=3").is_err(), "no bus");
        assert!(Route::parse("/x=broadcast,bus=http://h/").is_err());
        let r = Route::parse("/x=broadcast,bus=redis://:pw@h:1/,bus-queue=3").unwrap();
        assert_eq!(r.bus.as_ref().map(|b| b.queue), Some(3));
        assert_eq!(
            r.to_string(),
            "/x=broadcast,bus=redis://:***@h:1/,bus-queue=3"
        );
        let r = Route::parse("/mq=exec:relay a,b,protocols=mqtt").unwrap();
        assert_eq!(
            r.mode,
            Mode::Exec {
                command: "relay a,b".into(),
                binary: false
            }
        );
    }

    #[test]
    fn answers_the_first_offer_the_route_speaks() {
        let r = Route::parse("/chat=echo,protocols=chat|superchat").unwrap();
        let pick = |offers: &[&str]| {
            r.choose_protocol(offers.iter().map(|o| o.as_bytes()))
                .map(str::to_string)
        };
        assert_eq!(pick(&["superchat, chat"]), Some("superchat".into()));
        assert_eq!(pick(&["mqtt", "chat"]), Some("chat".into()));
        assert_eq!(pick(&["Chat"]), None, "case-sensitive (RFC 6455 §11.3.4)");
        assert_eq!(pick(&[]), None);
        let plain = Route::parse("/e=echo").unwrap();
        assert_eq!(plain.choose_protocol([&b"chat"[..]].into_iter()), None);
    }
}
