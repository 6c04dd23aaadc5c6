//! The `handoff` command line: parsing (flags, `HANDOFF_*` variables and
//! the settings file, `app::settings`), a hint where another server's
//! option is tried, the exit statuses a unit acts on, and running the
//! command. `main.rs` calls `main` here and does nothing else; the work
//! is in `app/`.

mod args;
mod man;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::CommandFactory;

use crate::app::{self, PassConfig, WorkerArgs, WorkerConfig};
use args::{Cli, Command};

/// Exit statuses (also in the man page): 1 a failure at run time, 2 a
/// command line clap refused, and two from sysexits.h that a unit can act
/// on: `RestartPreventExitStatus=78` stops a restart loop on a broken
/// configuration, while 69 (the address is taken) may pass on a retry.
const EXIT_UNAVAILABLE: u8 = 69;
const EXIT_CONFIG: u8 = 78;

/// The command line's definitions, with a `HANDOFF_*` variable for every
/// option of `serve` and `check` (and the default command).
fn command() -> clap::Command {
    use app::settings::with_env;
    with_env(Cli::command())
        .mut_subcommand("serve", with_env)
        .mut_subcommand("check", with_env)
}

/// Parses the command line, the environment and, where `--config` names
/// one, the settings file (app::settings says in which order). A file
/// that cannot be used is a configuration error: its message, exit 78.
fn parse() -> Result<Cli, (String, ExitCode)> {
    use clap::FromArgMatches;
    let mut argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let done = |m: &clap::ArgMatches| Cli::from_arg_matches(m).map_err(|e| e.exit());
    let cli = command();
    let m = cli
        .clone()
        .try_get_matches_from(&argv)
        .unwrap_or_else(|e| hint(e).exit());
    let (cmd, sub) = match m.subcommand() {
        Some((name @ ("serve" | "check"), sub)) => (cli.find_subcommand(name), sub),
        Some(_) => return done(&m),
        None => (Some(&cli), &m),
    };
    let (Some(cmd), Some(path)) = (cmd, sub.get_one::<PathBuf>("config")) else {
        return done(&m);
    };
    let config = |e: String| (e, ExitCode::from(EXIT_CONFIG));
    let extra = app::settings::file_args(path, cmd, sub).map_err(|e| config(e.0))?;
    argv.extend(extra);
    match cli.try_get_matches_from(&argv) {
        Ok(m) => done(&m),
        // The command line alone parsed: what fails now came from the file.
        Err(e) => {
            let e = e.to_string();
            let first = e.lines().next().unwrap_or_default();
            let first = first.strip_prefix("error: ").unwrap_or(first);
            Err(config(format!("{}: {first}", path.display())))
        }
    }
}

/// Options other servers have that we spell otherwise: clap's own "a
/// similar argument exists" tip, pointing at ours.
fn hint(mut e: clap::Error) -> clap::Error {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let theirs = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(a)) if e.kind() == ErrorKind::UnknownArgument => a.clone(),
        _ => return e,
    };
    let name = theirs.split('=').next().unwrap_or_default();
    if matches!(
        name,
        "--port" | "-p" | "--bind" | "-b" | "--host" | "--address" | "--addr" | "--listen-port"
    ) {
        e.insert(
            ContextKind::SuggestedArg,
            ContextValue::String(
                "--listen 127.0.0.1:8080 (address and port in one, repeatable)".into(),
            ),
        );
    }
    e
}

/// The binary's `main`: parses the command line and runs the command.
pub fn main() -> ExitCode {
    let cli = match parse() {
        Ok(cli) => cli,
        Err((e, code)) => {
            eprintln!("handoff: {e}");
            return code;
        }
    };
    let what = cli
        .command
        .unwrap_or_else(|| Command::Serve(Box::new(cli.serve)));
    let printing = matches!(what, Command::Man | Command::Completions { .. });
    let config =
        |e: String| app::staged_config(std::io::Error::new(std::io::ErrorKind::InvalidInput, e));
    let result = match what {
        Command::Serve(args) => match args.config() {
            Ok(c) => app::serve(c),
            Err(e) => Err(config(e)),
        },
        Command::Check(args) => match (args.config.clone(), args.config()) {
            (file, Ok(c)) => app::check(&c).map(|said| {
                if let Some(f) = file {
                    println!("ok: settings read from {}", f.display());
                }
                for line in said {
                    println!("ok: {line}");
                }
                println!("configuration ok");
            }),
            (_, Err(e)) => Err(config(e)),
        },
        Command::Man => man::man(&mut std::io::stdout().lock()),
        Command::Completions { shell } => {
            // Into memory first: clap_complete panics on a failed write.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command(), "handoff", &mut script);
            std::io::Write::write_all(&mut std::io::stdout().lock(), &script)
        }
        Command::Pass(a) => app::pass(PassConfig {
            listen: a.listen,
            to: a.to,
            ack_timeout: a.ack_timeout,
        }),
        Command::Upgrade(a) => app::upgrade(&a.control, a.wait.0).map(|pid| {
            println!("upgraded: the new process is {pid}");
        }),
        Command::WsWorker(a) => app::ws_worker(WorkerArgs {
            config: WorkerConfig {
                allowed_uids: a.allow_uid,
                ..a.limits.config(a.routes)
            },
            ctl_fds: a.ctl_fd,
            socket: a.socket,
            log: a.log.config(),
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // `handoff man | head`: the reader left, which is no failure.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe && printing => ExitCode::SUCCESS,
        Err(e) => {
            app::fatal(&e);
            match app::stage_of(&e) {
                Some(app::Stage::Config) => ExitCode::from(EXIT_CONFIG),
                Some(app::Stage::Bind) => ExitCode::from(EXIT_UNAVAILABLE),
                None => ExitCode::FAILURE,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn no_internal_variable_is_read_as_a_setting() {
        let cmd = command();
        let mut names: Vec<String> = Vec::new();
        for c in std::iter::once(&cmd).chain(cmd.get_subcommands()) {
            for a in c.get_arguments() {
                if let Some(e) = a.get_env() {
                    names.push(e.to_string_lossy().into_owned());
                }
            }
        }
        assert!(names.contains(&"HANDOFF_ROOT".to_string()));
        for internal in app::INTERNAL_ENV {
            assert!(
                !names.iter().any(|n| n == internal),
                "{internal} is also a setting"
            );
        }
    }

    #[test]
    fn the_command_line_is_well_formed() {
        command().debug_assert();
    }

    /// `serve` gives the workers it starts their routes and limits in a
    /// `CONFIGURE` message; read there, they must be the ones `serve` has,
    /// and the same as `ws-worker` given the same flags.
    #[test]
    fn a_worker_is_given_the_configuration_serve_has() {
        let args = [
            "handoff",
            "serve",
            "--ws",
            "/e=echo",
            "--ws",
            "/x=exec:cat -n",
            "--ws-max-connections",
            "7",
            "--ws-max-message",
            "1000",
            "--ws-max-frame",
            "500",
            "--ws-ping-interval",
            "2.5",
            "--ws-idle-timeout",
            "9",
            "--ws-passenv",
            "LANG",
            "--ws-passenv",
            "PGHOST",
        ];
        let Some(Command::Serve(serve)) = Cli::parse_from(args).command else {
            panic!("not serve");
        };
        let cfg = serve.config().unwrap();
        let sent = cfg.ws.worker.to_settings();
        assert_eq!(WorkerConfig::from_settings(&sent).unwrap(), cfg.ws.worker);
        let mut worker = vec!["handoff".to_string(), "ws-worker".into()];
        worker.extend(args[2..].iter().map(|a| a.to_string()));
        let Some(Command::WsWorker(w)) = Cli::parse_from(worker).command else {
            panic!("not ws-worker");
        };
        assert_eq!(w.limits.config(w.routes), cfg.ws.worker);
    }
}
