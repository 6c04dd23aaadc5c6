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
}

impl Route {
    /// `PATH=echo`, `PATH=broadcast`, `PATH=exec:COMMAND`, `PATH=exec-binary:COMMAND`.
    pub fn parse(s: &str) -> Result<Route, String> {
        let (path, mode) = s
            .split_once('=')
            .ok_or_else(|| format!("{s:?}: expected PATH=MODE"))?;
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
        })
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
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
        ] {
            assert_eq!(Route::parse(s).unwrap().to_string(), s);
        }
        assert!(Route::parse("echo").is_err());
        assert!(Route::parse("/x=shout").is_err());
        assert!(Route::parse("/x=exec:").is_err());
    }
}
