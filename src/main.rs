//! The `handoff` command line. This file only parses arguments; the work is
//! in the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use handoff::app::{self, ServeConfig};
use handoff::intake::listen::ListenSpec;
use handoff::{Limits, Options, Timeouts};

#[derive(Parser)]
#[command(
    name = "handoff",
    version,
    about = "HTTP/1.1 for sockets handed over by systemd, inetd or a front proxy"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve files from a folder (the default command).
    Serve(ServeArgs),
}

fn seconds(s: &str) -> Result<Duration, String> {
    let v: f64 = s.parse().map_err(|e| format!("{s:?}: {e}"))?;
    if !(v > 0.0 && v.is_finite()) {
        return Err(format!("{s:?}: must be a positive number of seconds"));
    }
    Ok(Duration::from_secs_f64(v))
}

#[derive(Args)]
struct ServeArgs {
    /// Where to listen: host:port, [v6]:port or a Unix socket path. Repeatable.
    #[arg(long, value_parser = ListenSpec::parse, default_value = "127.0.0.1:8080")]
    listen: Vec<ListenSpec>,
    /// Folder to serve (default: the demo site in the repository).
    #[arg(long)]
    root: Option<PathBuf>,
    /// Most connections served at once; at the limit, accepting stops.
    #[arg(long, default_value_t = Options::default().max_concurrent)]
    max_concurrent: usize,
    /// Seconds from accept to the end of the first request head (and from
    /// first byte to end of head for later requests).
    #[arg(long, value_parser = seconds, default_value = "10")]
    setup_timeout: Duration,
    /// Seconds an idle keep-alive connection may wait for its next request.
    #[arg(long, value_parser = seconds, default_value = "60")]
    idle_timeout: Duration,
    /// Longest gap, in seconds, between request-body bytes.
    #[arg(long, value_parser = seconds, default_value = "30")]
    body_timeout: Duration,
    /// Longest gap, in seconds, in writing a response to a client that does not read.
    #[arg(long, value_parser = seconds, default_value = "30")]
    write_timeout: Duration,
    /// Largest request body in bytes (413 past it).
    #[arg(long, default_value_t = Limits::default().max_body)]
    max_body: u64,
    /// Largest request head in bytes (431 past it).
    #[arg(long, default_value_t = Limits::default().max_header_bytes)]
    max_header_bytes: usize,
    /// Most header fields in a request (431 past it).
    #[arg(long, default_value_t = Limits::default().max_headers)]
    max_headers: usize,
    /// Longest request line in bytes (414 past it).
    #[arg(long, default_value_t = Limits::default().max_request_line)]
    max_request_line: usize,
}

impl ServeArgs {
    fn config(self) -> ServeConfig {
        let options = Options {
            max_concurrent: self.max_concurrent,
            limits: Limits {
                max_request_line: self.max_request_line,
                max_header_bytes: self.max_header_bytes,
                max_headers: self.max_headers,
                max_body: self.max_body,
                ..Limits::default()
            },
            timeouts: Timeouts {
                connection_setup: self.setup_timeout,
                intra_stream: self.idle_timeout,
                body_progress: self.body_timeout,
                write_progress: self.write_timeout,
                ..Timeouts::default()
            },
            ..Options::default()
        };
        ServeConfig {
            listen: self.listen,
            root: self.root.unwrap_or_else(app::default_root),
            options,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Some(Command::Serve(args)) = cli
        .command
        .or_else(|| Cli::parse_from(["handoff", "serve"]).command)
    else {
        return ExitCode::FAILURE;
    };
    match app::serve(args.config()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("handoff: {e}");
            ExitCode::FAILURE
        }
    }
}
