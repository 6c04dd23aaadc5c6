//! The `handoff` command line. This file only parses arguments; the work is
//! in the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand};
use handoff::app::{
    self, AccessFormat, CertFiles, FileCache, Listen, ListenSpec, LogConfig, OriginPolicy,
    PassConfig, Route, ServeConfig, WorkerArgs, WorkerConfig, WsConfig,
};
use handoff::{Limits, Options, Timeouts};

#[derive(Parser)]
#[command(
    name = "handoff",
    version,
    about = "HTTP/1.1 for sockets handed over by systemd, inetd or a front proxy",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// `serve` is the default command: its options work without it.
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Serve files from a folder (the default command).
    Serve(Box<ServeArgs>),
    /// Accept connections and pass each to one of several control sockets.
    Pass(PassArgs),
    /// Serve WebSocket connections handed over by HTTP processes.
    WsWorker(WsWorkerArgs),
    /// Check a `serve` configuration without serving: the root, the TLS
    /// certificates and keys, the log file. Exits 0, or 78 with the reason
    /// (as nginx's -t: before `systemctl reload`; serve makes the same
    /// checks as it starts).
    Check(Box<ServeArgs>),
    /// Print the man page (roff), made from these definitions.
    Man,
    /// Print a shell completion script.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Replace the running server's binary with the one now at its path,
    /// moving its listeners and connections (asked through its control
    /// socket; exits non-zero with the reason if the old one serves on).
    Upgrade(UpgradeArgs),
}

#[derive(Args)]
struct UpgradeArgs {
    /// The server's control socket (`serve --control PATH`).
    #[arg(long)]
    control: PathBuf,
    /// Seconds to wait for the outcome.
    #[arg(long, default_value_t = Seconds(Duration::from_secs(30)))]
    wait: Seconds,
}

/// What a WebSocket worker does and how much it takes (shared by `serve`,
/// which passes them to the workers it starts, and `ws-worker`).
#[derive(Args, Clone)]
struct WsLimits {
    /// Most WebSocket connections per worker.
    #[arg(long = "ws-max-connections", id = "ws_max_connections", default_value_t = WorkerConfig::default().max_connections)]
    max_connections: usize,
    /// Largest WebSocket message in bytes.
    #[arg(long = "ws-max-message", id = "ws_max_message", default_value_t = WorkerConfig::default().max_message)]
    max_message: usize,
    /// Largest WebSocket frame in bytes.
    #[arg(long = "ws-max-frame", id = "ws_max_frame", default_value_t = WorkerConfig::default().max_frame)]
    max_frame: usize,
    /// Seconds between pings to each WebSocket client.
    #[arg(long = "ws-ping-interval", id = "ws_ping_interval", default_value_t = Seconds(WorkerConfig::default().ping_interval))]
    ping_interval: Seconds,
    /// Seconds without anything from a WebSocket client before it is closed.
    #[arg(long = "ws-idle-timeout", id = "ws_idle_timeout", default_value_t = Seconds(WorkerConfig::default().idle_timeout))]
    idle_timeout: Seconds,
    /// Pass this variable of the server's environment on to `exec:`
    /// commands (repeatable). They get no other: only the request's
    /// CGI variables and PATH=/usr/local/bin:/usr/bin:/bin (unless PATH is
    /// named here).
    #[arg(long = "ws-passenv", id = "ws_passenv", value_name = "NAME", value_parser = app::env_name)]
    passenv: Vec<String>,
}

impl WsLimits {
    fn config(&self, routes: Vec<Route>) -> WorkerConfig {
        WorkerConfig {
            routes,
            max_connections: self.max_connections,
            max_message: self.max_message,
            max_frame: self.max_frame,
            ping_interval: self.ping_interval.0,
            idle_timeout: self.idle_timeout.0,
            allowed_uids: Vec::new(),
            passenv: self.passenv.clone(),
        }
    }
}

#[derive(Args)]
struct WsWorkerArgs {
    /// A socket to an HTTP process, inherited as this fd number. Repeatable.
    #[arg(long)]
    ctl_fd: Vec<i32>,
    /// Listen for HTTP processes on a SOCK_SEQPACKET socket at this path.
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Another uid allowed to connect to --socket (or a systemd socket); our own always is.
    /// Repeatable.
    #[arg(long)]
    allow_uid: Vec<u32>,
    /// A WebSocket path and what it does: PATH=echo, PATH=broadcast, PATH=exec:COMMAND. Repeatable.
    #[arg(long = "ws", value_parser = Route::parse)]
    routes: Vec<Route>,
    #[command(flatten)]
    limits: WsLimits,
    #[command(flatten)]
    log: LogArgs,
}

/// Where the log goes, and the access lines' format (`serve`, `ws-worker`).
#[derive(Args, Clone)]
struct LogArgs {
    /// Append the log (access lines included) to this file; SIGUSR1 opens
    /// it again, for logrotate. Default: stderr (the journal under
    /// systemd), or syslog under --inetd.
    #[arg(long)]
    log_file: Option<PathBuf>,
    /// Log to the local syslog (/dev/log, facility daemon) instead of stderr.
    #[arg(long, conflicts_with = "log_file")]
    syslog: bool,
    /// Access lines: combined (Combined Log Format and the request time in
    /// seconds, as nginx's $request_time), common (CLF), json, or off.
    #[arg(long, default_value = "combined", value_parser = AccessFormat::parse)]
    access_log_format: AccessFormat,
}

impl LogArgs {
    fn config(self) -> LogConfig {
        LogConfig {
            file: self.log_file,
            syslog: self.syslog,
            access_format: self.access_log_format,
        }
    }
}

#[derive(Args)]
struct PassArgs {
    /// Where to accept connections.
    #[arg(long, value_parser = ListenSpec::parse)]
    listen: ListenSpec,
    /// A control socket to pass connections to; repeatable (round-robin).
    #[arg(long = "to", required = true)]
    to: Vec<PathBuf>,
    /// Seconds a target has to acknowledge a connection.
    #[arg(long, value_parser = seconds, default_value = "2")]
    ack_timeout: Duration,
}

/// A number of seconds on the command line (fractions allowed), shown in
/// `--help` from the same `Duration` the library defaults to, so a default
/// is written once.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Seconds(Duration);

impl std::fmt::Display for Seconds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0.as_secs_f64())
    }
}

impl std::str::FromStr for Seconds {
    type Err = String;
    fn from_str(s: &str) -> Result<Seconds, String> {
        seconds(s).map(Seconds)
    }
}

fn threads(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n @ 1..=1024) => Ok(n),
        _ => Err(format!("{s:?}: from 1 to 1024 event loops")),
    }
}

fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
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
    /// Read settings from this TOML file: each key is one of these options'
    /// long names (`root = "/srv/www"`, `listen = ["[::]:80", "[::]:443,tls=on"]`,
    /// `inetd = true`). Options given as flags or HANDOFF_* variables win.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Where to listen: host:port, [v6]:port or a Unix socket path, optionally with
    /// ,tls=auto|on|off (default off) and ,proxy=v1|v2|any (each connection starts
    /// with a PROXY protocol header, from a front such as HAProxy). Repeatable.
    /// Default 127.0.0.1:8080 when no other source (systemd, inetd, control) gives
    /// a socket.
    #[arg(long, value_parser = Listen::parse)]
    listen: Vec<Listen>,
    /// A PEM certificate chain; repeatable, paired in order with --tls-key. Several are
    /// chosen by SNI, the first being the default. None with TLS asked for: self-signed.
    #[arg(long)]
    tls_cert: Vec<PathBuf>,
    /// The PEM private key (PKCS#8, PKCS#1 or SEC1) of the --tls-cert at the same position.
    #[arg(long)]
    tls_key: Vec<PathBuf>,
    /// The socket is on fd 0, as inetd gives it (a listener for `wait`, a connection for `nowait`).
    #[arg(long)]
    inetd: bool,
    /// Exit after this many seconds without a connection (for inetd `wait`).
    #[arg(long, value_parser = seconds)]
    idle_exit: Option<Duration>,
    /// Event loops, each on its own thread, sharing the listeners (the
    /// kernel spreads connections). Default: the CPUs this process may use.
    #[arg(long, default_value_t = default_threads(), value_parser = threads)]
    threads: usize,
    /// Seconds a new binary started by SIGUSR2 has to say it is ready
    /// before it is killed and this process serves on.
    #[arg(long, default_value_t = Seconds(Duration::from_secs(10)))]
    upgrade_timeout: Seconds,
    /// Most files kept open (with their metadata, and in memory when
    /// small), so a hot file costs no open, stat or close; 0 turns it off.
    #[arg(long, default_value_t = FileCache::default().entries)]
    file_cache: usize,
    /// Seconds a cached file is trusted before its path is looked at again
    /// (a changed file is served fresh within this).
    #[arg(long, default_value_t = Seconds(FileCache::default().check))]
    file_cache_check: Seconds,
    /// Create a control socket (SOCK_SEQPACKET) at this path, on which a front proxy passes sockets.
    #[arg(long)]
    control: Option<PathBuf>,
    /// Another uid allowed on the control socket (our own always is). Repeatable.
    #[arg(long)]
    control_allow_uid: Vec<u32>,
    /// Seconds that requests in flight get after SIGTERM before the rest is closed.
    #[arg(long, value_parser = seconds, default_value = "30")]
    shutdown_timeout: Duration,
    #[command(flatten)]
    log: LogArgs,
    /// Serve Prometheus metrics at http://ADDR/metrics (host:port; port 0
    /// picks one). Off by default: bind it to loopback or a private address.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<std::net::SocketAddr>,
    /// A WebSocket path and what it does: PATH=echo, PATH=broadcast, PATH=exec:COMMAND,
    /// PATH=exec-binary:COMMAND. Repeatable. Upgrades there go to the WebSocket workers.
    #[arg(long = "ws", value_parser = Route::parse)]
    ws: Vec<Route>,
    /// WebSocket worker processes to start (when there are --ws paths).
    #[arg(long, default_value_t = 2)]
    ws_workers: usize,
    /// A WebSocket worker running on its own (`handoff ws-worker --socket PATH`). Repeatable.
    #[arg(long)]
    ws_worker_socket: Vec<PathBuf>,
    /// Seconds a WebSocket worker has to take an upgraded connection. One that does not is
    /// taken for hung: a worker we started is killed and its connections get 503.
    #[arg(long, value_parser = seconds, default_value = "2")]
    ws_ack_timeout: Duration,
    /// A web page origin (scheme://host[:port], or host[:port] for any scheme) allowed to
    /// open WebSockets, on every path. Repeatable. Without it, exec: paths take only
    /// same-origin pages and echo/broadcast paths any page.
    #[arg(long)]
    ws_origin: Vec<String>,
    /// Only same-origin pages (and --ws-origin ones) may open WebSockets, on every path.
    #[arg(long)]
    ws_same_origin: bool,
    #[command(flatten)]
    ws_limits: WsLimits,
    /// Folder to serve (default: the demo site installed beside the binary,
    /// PREFIX/share/handoff/site, or the repository's when run from it).
    #[arg(long)]
    root: Option<PathBuf>,
    /// Most connections served at once; at the limit, accepting stops.
    #[arg(long, default_value_t = Options::default().max_concurrent)]
    max_concurrent: usize,
    /// Most connected sockets (from the control socket or systemd) that may
    /// wait for a slot; past it they are refused.
    #[arg(long, default_value_t = Options::default().max_queued)]
    max_queued: usize,
    /// Seconds from accept to the end of the first request head (and from
    /// first byte to end of head for later requests).
    #[arg(long, default_value_t = Seconds(Timeouts::default().connection_setup))]
    setup_timeout: Seconds,
    /// Bytes per second a request body must average after its first
    /// --body-timeout seconds (each such many bytes buy a second more, as
    /// Apache's mod_reqtimeout MinRate); 0: no minimum.
    #[arg(long, default_value_t = Timeouts::default().body_min_rate)]
    body_min_rate: u32,
    /// Seconds an idle keep-alive connection may wait for its next request.
    #[arg(long, default_value_t = Seconds(Timeouts::default().intra_stream))]
    idle_timeout: Seconds,
    /// Longest gap, in seconds, between request-body bytes.
    #[arg(long, default_value_t = Seconds(Timeouts::default().body_progress))]
    body_timeout: Seconds,
    /// Longest gap, in seconds, in writing a response to a client that does not read.
    #[arg(long, default_value_t = Seconds(Timeouts::default().write_progress))]
    write_timeout: Seconds,
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
    fn config(self) -> Result<ServeConfig, String> {
        if self.tls_cert.len() != self.tls_key.len() {
            return Err("--tls-cert and --tls-key come in pairs".into());
        }
        let tls_certs = self
            .tls_cert
            .iter()
            .zip(&self.tls_key)
            .map(|(c, k)| CertFiles {
                cert: c.clone(),
                key: k.clone(),
            })
            .collect();
        let options = Options {
            max_concurrent: self.max_concurrent,
            max_queued: self.max_queued,
            limits: Limits {
                max_request_line: self.max_request_line,
                max_header_bytes: self.max_header_bytes,
                max_headers: self.max_headers,
                max_body: self.max_body,
                ..Limits::default()
            },
            timeouts: Timeouts {
                connection_setup: self.setup_timeout.0,
                intra_stream: self.idle_timeout.0,
                body_progress: self.body_timeout.0,
                body_min_rate: self.body_min_rate,
                write_progress: self.write_timeout.0,
                ..Timeouts::default()
            },
            ..Options::default()
        };
        Ok(ServeConfig {
            tls_certs,
            listen: self.listen,
            root: self.root,
            options,
            inetd: self.inetd,
            threads: self.threads,
            upgrade_timeout: self.upgrade_timeout.0,
            file_cache: FileCache {
                entries: self.file_cache,
                check: self.file_cache_check.0,
                ..FileCache::default()
            },
            idle_exit: self.idle_exit,
            control: self.control,
            control_allow_uids: self.control_allow_uid,
            shutdown_timeout: self.shutdown_timeout,
            ws: WsConfig {
                workers: self.ws_workers,
                external: self.ws_worker_socket,
                ack_timeout: self.ws_ack_timeout,
                origins: OriginPolicy {
                    allow: self.ws_origin,
                    same_origin: self.ws_same_origin,
                },
                worker: self.ws_limits.config(self.ws.clone()),
                routes: self.ws,
            },
            log: self.log.config(),
            metrics: self.metrics,
        })
    }
}

/// Exit statuses (also in the man page): 1 a failure at run time, 2 a
/// command line clap refused, and two from sysexits.h that a unit can act
/// on: `RestartPreventExitStatus=78` stops a restart loop on a broken
/// configuration, while 69 (the address is taken) may pass on a retry.
const EXIT_UNAVAILABLE: u8 = 69;
const EXIT_CONFIG: u8 = 78;

/// The man page's sections that clap does not know.
const MAN_EXTRA: &str = r#".SH "EXIT STATUS"
.TP
\fB0\fR
Stopped as asked (SIGTERM, idle exit), or \fBcheck\fR found nothing wrong.
.TP
\fB1\fR
A failure while running.
.TP
\fB2\fR
The command line is wrong.
.TP
\fB69\fR
A listening socket could not be had (address in use, or not ours).
.TP
\fB78\fR
The configuration is wrong: the root, a certificate or key, the log file,
or options that do not go together.
.SH SIGNALS
.TP
\fBSIGTERM\fR, \fBSIGINT\fR
Stop accepting, answer what is in flight (up to \fB--shutdown-timeout\fR), exit.
.TP
\fBSIGHUP\fR
Reload the TLS certificates; a broken file keeps the old ones. Under
systemd, RELOADING=1 then READY=1 with the outcome in STATUS.
.TP
\fBSIGUSR2\fR
Replace the binary with the one now at its path, moving listeners,
connections and WebSocket sessions (as \fBhandoff upgrade\fR). Under
systemd, RELOADING=1, then the new process's MAINPID= and READY=1 (or,
if it fails, READY=1 again from the old one).
.TP
\fBSIGUSR1\fR
Open the log file again (after logrotate moved it), and pass the signal on
to the WebSocket workers (\fBsystemctl kill --kill-who=main -s USR1
handoff\fR: the main process alone, as programs of exec routes would die
of it).
.SH ENVIRONMENT
Each option of \fBserve\fR and \fBcheck\fR is also a variable:
\fBHANDOFF_\fR and its long name in capitals, \fB-\fR as \fB_\fR
(\fBHANDOFF_MAX_BODY\fR). A flag wins over its variable, and a variable
over the \fB--config\fR file.
.SH FILES
.TP
\fI/etc/handoff/handoff.toml\fR
The settings of handoff.service (\fB--config\fR): each key a long option.
.TP
\fI/etc/default/handoff\fR
Its HANDOFF_* variables (\fBEnvironmentFile=\fR).
.TP
\fI/var/log/handoff\fR, \fI/etc/logrotate.d/handoff\fR
Where \fBlog-file\fR may point (the unit's \fBLogsDirectory=\fR), and its rotation.
.TP
\fI/usr/share/handoff/site\fR
The demo site, served when no \fB--root\fR is given.
.TP
\fI/usr/lib/systemd/system/handoff.service\fR, \fIhandoff.socket\fR, \fIhandoff-control.socket\fR
The units: socket activation, readiness, reload by upgrade.
.SH "SEE ALSO"
\fBsystemd.socket\fR(5), \fBxinetd.conf\fR(5), \fBsystemd-socket-activate\fR(1)
"#;

fn man(w: &mut dyn std::io::Write) -> std::io::Result<()> {
    let m = clap_mangen::Man::new(command());
    m.render_title(w)?;
    m.render_name_section(w)?;
    m.render_synopsis_section(w)?;
    m.render_description_section(w)?;
    m.render_options_section(w)?;
    m.render_subcommands_section(w)?;
    w.write_all(MAN_EXTRA.as_bytes())?;
    m.render_version_section(w)
}

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

fn main() -> ExitCode {
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
        Command::Man => man(&mut std::io::stdout().lock()),
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

    /// `serve` starts its workers with flags made by `WsConfig::worker_args`;
    /// parsed by `ws-worker`, they must give the same configuration.
    #[test]
    fn a_workers_flags_give_back_the_configuration_serve_has() {
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
        let mut worker = vec!["handoff".to_string(), "ws-worker".into()];
        worker.extend(cfg.ws.worker_args(&cfg.log));
        let Some(Command::WsWorker(w)) = Cli::parse_from(worker).command else {
            panic!("not ws-worker");
        };
        assert_eq!(w.limits.config(w.routes), cfg.ws.worker);
    }
}
