//! What a WebSocket worker serves and its limits, and the one form in
//! which a pool gives them to a worker it starts: a `CONFIGURE` message
//! whose `DATA` is a TOML table with the settings file's keys (`ws`,
//! `ws-max-connections`, …; `docs/handoff-protocol.md`). A worker started
//! by an operator (`handoff ws-worker --socket`) takes the same settings
//! as flags of the same names.

use std::time::Duration;

use super::Route;

/// What a WebSocket worker serves and its limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerConfig {
    /// The routes it serves.
    pub routes: Vec<Route>,
    /// Most connections this worker serves; more are refused (the HTTP
    /// process answers those with 503).
    pub max_connections: usize,
    /// Largest message, reassembled from frames.
    pub max_message: usize,
    /// Largest single frame.
    pub max_frame: usize,
    /// A ping goes to each connection this often.
    pub ping_interval: Duration,
    /// A connection from which nothing (not even a pong) arrives for this
    /// long is closed.
    pub idle_timeout: Duration,
    /// Uids (besides our own) allowed to connect to a listening control
    /// socket (`--socket`, a systemd socket); checked with `SO_PEERCRED`.
    pub allowed_uids: Vec<u32>,
    /// The worker's own environment variables an `exec:` command is given
    /// (`--ws-passenv`); it gets none of the others.
    pub passenv: Vec<String>,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            routes: Vec::new(),
            max_connections: 10_000,
            max_message: 64 << 20,
            max_frame: 16 << 20,
            ping_interval: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(120),
            allowed_uids: Vec::new(),
            passenv: Vec::new(),
        }
    }
}

/// The keys of a worker's configuration, as in the settings file.
const KEYS: [&str; 7] = [
    "ws",
    "ws-max-connections",
    "ws-max-message",
    "ws-max-frame",
    "ws-ping-interval",
    "ws-idle-timeout",
    "ws-passenv",
];

impl WorkerConfig {
    /// The routes and limits as `CONFIGURE`'s TOML table. Not
    /// `allowed_uids`: that guards a listening control socket, which a
    /// worker started by a pool does not have.
    pub fn to_settings(&self) -> String {
        use toml::Value;
        let strings = |v: Vec<String>| Value::Array(v.into_iter().map(Value::String).collect());
        let int = |n: usize| Value::Integer(i64::try_from(n).unwrap_or(i64::MAX));
        let mut t = toml::Table::new();
        t.insert(
            "ws".into(),
            strings(self.routes.iter().map(Route::to_string).collect()),
        );
        t.insert("ws-max-connections".into(), int(self.max_connections));
        t.insert("ws-max-message".into(), int(self.max_message));
        t.insert("ws-max-frame".into(), int(self.max_frame));
        t.insert(
            "ws-ping-interval".into(),
            Value::Float(self.ping_interval.as_secs_f64()),
        );
        t.insert(
            "ws-idle-timeout".into(),
            Value::Float(self.idle_timeout.as_secs_f64()),
        );
        t.insert("ws-passenv".into(), strings(self.passenv.clone()));
        t.to_string()
    }

    /// Reads `CONFIGURE`'s table. A key left out keeps its default; an
    /// unknown key or a value of the wrong shape is refused, so a worker
    /// never serves with a setting it did not understand.
    pub fn from_settings(text: &str) -> Result<WorkerConfig, String> {
        let t: toml::Table = text.parse().map_err(|e| format!("configuration: {e}"))?;
        let mut c = WorkerConfig::default();
        for (k, v) in &t {
            let bad = || format!("configuration: {k} = {v} is not what {k} takes");
            let count = || {
                v.as_integer()
                    .and_then(|n| usize::try_from(n).ok())
                    .ok_or_else(bad)
            };
            let secs = || {
                v.as_float()
                    .or_else(|| v.as_integer().map(|n| n as f64))
                    .and_then(|f| Duration::try_from_secs_f64(f).ok())
                    .ok_or_else(bad)
            };
            let strings = || -> Result<Vec<String>, String> {
                let a = v.as_array().ok_or_else(bad)?;
                a.iter()
                    .map(|s| s.as_str().map(str::to_string).ok_or_else(bad))
                    .collect()
            };
            match k.as_str() {
                "ws" => {
                    c.routes = strings()?
                        .iter()
                        .map(|r| Route::parse(r))
                        .collect::<Result<_, _>>()?
                }
                "ws-max-connections" => c.max_connections = count()?,
                "ws-max-message" => c.max_message = count()?,
                "ws-max-frame" => c.max_frame = count()?,
                "ws-ping-interval" => c.ping_interval = secs()?,
                "ws-idle-timeout" => c.idle_timeout = secs()?,
                "ws-passenv" => c.passenv = strings()?,
                _ => {
                    return Err(format!(
                        "configuration: unknown key {k} (a worker takes {})",
                        KEYS.join(", ")
                    ));
                }
            }
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configuration_read_back_from_its_settings_is_the_same() {
        let c = WorkerConfig {
            routes: vec![
                Route::parse("/e=echo").unwrap(),
                Route::parse("/x=exec:cat -n \"quoted\" = ok").unwrap(),
                Route::parse("/b=exec-binary:od").unwrap(),
            ],
            max_connections: 7,
            max_message: 1000,
            max_frame: 500,
            ping_interval: Duration::from_millis(2500),
            idle_timeout: Duration::from_secs(9),
            allowed_uids: Vec::new(),
            passenv: vec!["LANG".into(), "PGHOST".into()],
        };
        assert_eq!(WorkerConfig::from_settings(&c.to_settings()), Ok(c));
    }

    #[test]
    fn refuses_a_configuration_with_a_key_it_does_not_know() {
        let e = WorkerConfig::from_settings("ws-max-conections = 3").unwrap_err();
        assert!(e.contains("unknown key ws-max-conections"), "{e}");
    }

    #[test]
    fn refuses_a_configuration_with_a_bad_route_or_value() {
        let e = WorkerConfig::from_settings("ws = [\"nopath=echo\"]").unwrap_err();
        assert!(e.contains("must start with /"), "{e}");
        let e = WorkerConfig::from_settings("ws-max-frame = -1").unwrap_err();
        assert!(e.contains("ws-max-frame"), "{e}");
        let e = WorkerConfig::from_settings("ws-idle-timeout = \"soon\"").unwrap_err();
        assert!(e.contains("ws-idle-timeout"), "{e}");
    }

    #[test]
    fn a_key_left_out_keeps_its_default() {
        let c = WorkerConfig::from_settings("ws = [\"/e=echo\"]").unwrap();
        assert_eq!(c.max_message, WorkerConfig::default().max_message);
        assert_eq!(c.routes.len(), 1);
    }
}
