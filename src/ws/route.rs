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
}

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
        let (mode, protocols) = match mode.rsplit_once(",protocols=") {
            Some((m, p)) => {
                let list: Vec<String> = p.split('|').map(str::to_string).collect();
                if let Some(bad) = list.iter().find(|p| !is_token(p)) {
                    return Err(format!(
                        "{s:?}: {bad:?} is not a subprotocol name (a token: letters, digits, !#$%&'*+-.^_`~)"
                    ));
                }
                (m, list)
            }
            None => (mode, Vec::new()),
        };
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
        Ok(Route {
            path: path.into(),
            mode,
            protocols,
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
        ] {
            assert_eq!(Route::parse(s).unwrap().to_string(), s);
        }
        assert!(Route::parse("echo").is_err());
        assert!(Route::parse("/x=shout").is_err());
        assert!(Route::parse("/x=exec:").is_err());
        assert!(Route::parse("/x=echo,protocols=").is_err());
        assert!(Route::parse("/x=echo,protocols=a b").is_err());
        assert!(Route::parse("/x=echo,protocols=a|").is_err());
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
