//! Where `serve` and `check` take their settings from, first found wins:
//! the command line, then `HANDOFF_*` environment variables (for a unit's
//! `EnvironmentFile=`), then the TOML file named by `--config`, then the
//! defaults.
//!
//! Both extra sources are made from the clap definitions themselves, so
//! neither can drift from `--help`: every option `--some-name` is the
//! variable `HANDOFF_SOME_NAME` (clap's own `env`) and the key
//! `some-name` in the file. The file is turned into the flags it stands
//! for and parsed by clap with the rest, so each value is checked by the
//! same parser as on the command line.
//!
//! Why not serde into a struct of our own: that would be a second list of
//! every setting, with its own types and defaults, beside the clap one.

use std::ffi::OsString;
use std::path::Path;

use clap::{Arg, ArgAction, ArgMatches, Command};

/// The environment variable prefix.
const PREFIX: &str = "HANDOFF_";

/// The variable for an option: `HANDOFF_` and its long name in capitals,
/// `-` as `_`.
pub fn env_name(long: &str) -> String {
    let mut s = String::from(PREFIX);
    s.extend(long.chars().map(|c| {
        if c == '-' {
            '_'
        } else {
            c.to_ascii_uppercase()
        }
    }));
    s
}

/// Gives every long option of `cmd` (not `--help`, `--version`) its
/// `HANDOFF_*` variable. A repeatable option takes one value from its
/// variable (a list would need a separator no value may contain: a
/// WebSocket route's command line may hold anything); more go in the file.
pub fn with_env(cmd: Command) -> Command {
    cmd.mut_args(|a| match a.get_long() {
        Some(long) if !matches!(long, "help" | "version") => {
            let name = env_name(long);
            a.env(name)
        }
        _ => a,
    })
}

/// Why a configuration file was refused.
#[derive(Debug)]
pub struct FileError(pub String);

impl std::fmt::Display for FileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Reads the TOML file at `path` and returns the flags it stands for,
/// leaving out options `matches` already has from the command line or the
/// environment (those win). `cmd` is the (sub)command the options belong
/// to: a key that is none of its long options is an error, as is a value
/// of the wrong shape (a list for a single option, a table anywhere).
pub fn file_args(
    path: &Path,
    cmd: &Command,
    matches: &ArgMatches,
) -> Result<Vec<OsString>, FileError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| FileError(format!("{}: {e}", path.display())))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| FileError(format!("{}: {e}", path.display())))?;
    let mut out = Vec::new();
    let settings = || {
        cmd.get_arguments()
            .filter_map(Arg::get_long)
            .filter(|l| !matches!(*l, "config" | "help" | "version"))
    };
    for (key, value) in &table {
        // `max_body` (the library's field, TOML's habit) is `max-body`.
        let key = &key.replace('_', "-");
        let arg = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(key.as_str()))
            .filter(|_| !matches!(key.as_str(), "config" | "help" | "version"))
            .ok_or_else(|| {
                let near = settings()
                    .map(|l| (strsim::jaro(l, key), l))
                    .filter(|(score, _)| *score > 0.8)
                    .max_by(|a, b| a.0.total_cmp(&b.0))
                    .map(|(_, l)| format!("did you mean `{l}`? "))
                    .unwrap_or_default();
                FileError(format!(
                    "{}: unknown setting `{key}` ({near}the settings are `{} --help`'s long options, without the dashes)",
                    path.display(),
                    cmd.get_name()
                ))
            })?;
        let given = matches!(
            matches.value_source(arg.get_id().as_str()),
            Some(clap::parser::ValueSource::CommandLine | clap::parser::ValueSource::EnvVariable)
        );
        if given {
            continue;
        }
        flags(arg, key, value, &mut out)
            .map_err(|e| FileError(format!("{}: `{key}`: {e}", path.display())))?;
    }
    Ok(out)
}

/// The flags one key stands for.
fn flags(arg: &Arg, key: &str, value: &toml::Value, out: &mut Vec<OsString>) -> Result<(), String> {
    match arg.get_action() {
        ArgAction::SetTrue => match value {
            toml::Value::Boolean(true) => out.push(format!("--{key}").into()),
            toml::Value::Boolean(false) => {}
            _ => return Err("true or false".into()),
        },
        ArgAction::Append => {
            let items: &[toml::Value] = match value {
                toml::Value::Array(a) => a,
                one => std::slice::from_ref(one),
            };
            for v in items {
                out.push(format!("--{key}={}", scalar(v)?).into());
            }
        }
        _ => out.push(format!("--{key}={}", scalar(value)?).into()),
    }
    Ok(())
}

fn scalar(v: &toml::Value) -> Result<String, String> {
    match v {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Float(f) => Ok(f.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        _ => Err(
            "a string, a number or a boolean (or a list of them, where the option repeats)".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd() -> Command {
        with_env(
            Command::new("t")
                .arg(Arg::new("config").long("config"))
                .arg(Arg::new("root").long("root"))
                .arg(
                    Arg::new("max_body")
                        .long("max-body")
                        .value_parser(clap::value_parser!(u64)),
                )
                .arg(Arg::new("inetd").long("inetd").action(ArgAction::SetTrue))
                .arg(Arg::new("listen").long("listen").action(ArgAction::Append)),
        )
    }

    fn from_file(toml: &str, argv: &[&str]) -> Result<Vec<String>, String> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("h.toml");
        std::fs::write(&p, toml).unwrap();
        let m = cmd().try_get_matches_from(argv).unwrap();
        file_args(&p, &cmd(), &m)
            .map(|v| v.into_iter().map(|s| s.into_string().unwrap()).collect())
            .map_err(|e| e.0)
    }

    #[test]
    fn each_key_becomes_the_flag_of_the_same_name() {
        let got = from_file(
            "root = \"/srv\"\nmax-body = 5\ninetd = true\nlisten = [\"a:1\", \"b:2\"]\n",
            &["t"],
        )
        .unwrap();
        let mut got = got;
        got.sort();
        assert_eq!(
            got,
            [
                "--inetd",
                "--listen=a:1",
                "--listen=b:2",
                "--max-body=5",
                "--root=/srv"
            ]
        );
    }

    #[test]
    fn the_command_line_wins_over_the_file_for_lists_too() {
        let got = from_file(
            "root = \"/srv\"\nlisten = [\"a:1\"]\n",
            &["t", "--listen", "c:3"],
        )
        .unwrap();
        assert_eq!(got, ["--root=/srv"]);
    }

    #[test]
    fn refuses_an_unknown_key_and_a_list_for_a_single_option() {
        let e = from_file("rot = \"/srv\"\n", &["t"]).unwrap_err();
        assert!(e.contains("unknown setting `rot`"), "{e}");
        let e = from_file("root = [\"/a\", \"/b\"]\n", &["t"]).unwrap_err();
        assert!(e.contains("`root`"), "{e}");
        let e = from_file("config = \"/x\"\n", &["t"]).unwrap_err();
        assert!(e.contains("unknown setting `config`"), "{e}");
    }

    #[test]
    fn refuses_a_file_that_is_not_toml_with_the_line() {
        let e = from_file("root = /srv\n", &["t"]).unwrap_err();
        assert!(e.contains("line 1"), "{e}");
    }

    #[test]
    fn names_each_variable_after_its_flag() {
        assert_eq!(env_name("ws-max-frame"), "HANDOFF_WS_MAX_FRAME");
        let c = cmd();
        let root = c.get_arguments().find(|a| a.get_id() == "root").unwrap();
        assert_eq!(
            root.get_env().and_then(|e| e.to_str()),
            Some("HANDOFF_ROOT")
        );
    }
}
