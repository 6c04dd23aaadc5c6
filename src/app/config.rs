//! What `serve` and `ws-worker` are told: the configuration types the
//! `cli` room fills in (`ServeConfig`, `LogConfig`, `WsConfig`,
//! `WorkerArgs`), the defaults that need a look around (the root beside
//! the binary), and the flags a worker is started with.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use super::rules::{HeaderRule, VirtualHost};
use crate::files::FileCache;
use crate::handoff::upgrade;
use crate::intake::listen::Listen;
use crate::log::{AccessFormat, LogTarget};
use crate::server::Options;
use crate::tls::CertFiles;
use crate::ws::origin::OriginPolicy;
use crate::ws::route::Route;
use crate::ws::worker::WorkerConfig;

/// Variables of ours that are not settings: none may be the `HANDOFF_*`
/// name of an option (app::settings), or it would be read as one.
#[doc(hidden)]
pub const INTERNAL_ENV: [&str; 3] = [upgrade::ENV_FD, upgrade::ENV_EXE, crate::log::SYSLOG_ENV];

/// Everything `handoff serve` is told on its command line.
pub struct ServeConfig {
    /// Sockets to bind. When empty and no other source gives a socket (no
    /// systemd fds, no inetd, no control socket), `127.0.0.1:8080`.
    pub listen: Vec<Listen>,
    /// Certificate chains and keys, chosen by SNI (the first is the
    /// default). None, with TLS asked for: a self-signed certificate.
    pub tls_certs: Vec<CertFiles>,
    /// The folder served; `None`: [`default_root`].
    pub root: Option<PathBuf>,
    /// The server's options: limits, deadlines, concurrency.
    pub options: Options,
    /// The socket is on fd 0, as inetd hands it over.
    pub inetd: bool,
    /// Event loops, each on its own thread (at least 1).
    pub threads: usize,
    /// How long a new binary started by SIGUSR2 has to become ready.
    pub upgrade_timeout: Duration,
    /// The open-file cache of the static files.
    pub file_cache: FileCache,
    /// Header fields for responses under a path prefix (`--header`; the
    /// ones for every response are `Options::static_headers`).
    pub headers: Vec<HeaderRule>,
    /// Content types by file extension, before the built-in table (`--mime`).
    pub types: Vec<(String, String)>,
    /// Pages of the site's own for error statuses, files beneath the root
    /// (`--error-page 404=errors/404.html`).
    pub error_pages: Vec<(u16, String)>,
    /// Paths answered with a 301 to another path or URL (`--redirect`).
    pub redirects: Vec<(String, String)>,
    /// Plain requests are redirected to HTTPS (`--redirect-https`): to this
    /// port (`--https-port`), or with `Some(None)` the first TLS
    /// listener's.
    pub redirect_https: Option<Option<u16>>,
    /// Address rules (`--allow`, `--deny`).
    pub access: Vec<super::access::AccessRule>,
    /// Paths behind basic authentication (`--basic-auth`).
    pub basic_auth: Vec<super::auth::AuthRule>,
    /// Basic auth over plain HTTP too (`--basic-auth-insecure`).
    pub basic_auth_insecure: bool,
    /// Folders served for host names other than the default root's
    /// (`--vhost`).
    pub vhosts: Vec<VirtualHost>,
    /// A host no `--vhost` names gets 421, not the default root.
    pub vhost_strict: bool,
    /// Become this user (`USER[:GROUP]`) once every socket is bound and
    /// every key read (`--user`); WebSocket workers start as it.
    pub user: Option<String>,
    /// CGI routes and their limits (`--cgi`, `--cgi-max`, ...).
    pub cgi: super::cgi::CgiConfig,
    /// App processes connections are lent to (`--app`, ...).
    pub apps: crate::apps::AppsConfig,
    /// Exit after this long with no connection (inetd `wait` mode).
    pub idle_exit: Option<Duration>,
    /// Create a control socket at this path.
    pub control: Option<PathBuf>,
    /// Uids allowed on the control socket besides our own.
    pub control_allow_uids: Vec<u32>,
    /// After SIGTERM, how long in-flight requests have before the rest is
    /// closed by force.
    pub shutdown_timeout: Duration,
    /// Where the log goes and the access lines' format.
    pub log: LogConfig,
    /// Serve Prometheus metrics at `/metrics` on this address.
    pub metrics: Option<std::net::SocketAddr>,
    /// WebSocket routes and their workers.
    pub ws: WsConfig,
}

/// Where a process logs, and in what format it writes access lines.
#[derive(Clone, Debug, Default)]
pub struct LogConfig {
    /// Append to this file (opened again on SIGUSR1); else stderr (the
    /// journal under systemd), or syslog under `--inetd` or `syslog`.
    pub file: Option<PathBuf>,
    /// The local syslog (/dev/log) rather than stderr.
    pub syslog: bool,
    /// How access lines are written.
    pub access_format: AccessFormat,
}

impl LogConfig {
    pub(super) fn target(&self, inetd: bool) -> LogTarget {
        match (&self.file, self.syslog || inetd) {
            (Some(p), _) => LogTarget::File(p.clone()),
            (None, true) => LogTarget::Syslog,
            (None, false) => LogTarget::Stderr,
        }
    }

    /// The flags that give a worker process the same (a process's own
    /// output, set before it reads any message).
    pub(crate) fn args(&self) -> Vec<String> {
        let mut a = vec![
            "--access-log-format".into(),
            self.access_format.name().into(),
        ];
        if let Some(f) = &self.file {
            a.push("--log-file".into());
            a.push(f.display().to_string());
        }
        if self.syslog {
            a.push("--syslog".into());
        }
        a
    }
}

/// WebSocket paths and the workers that serve them.
#[derive(Clone, Debug)]
pub struct WsConfig {
    /// The routes handed off to workers (`--ws PATH=KIND`).
    pub routes: Vec<Route>,
    /// Worker processes to start.
    pub workers: usize,
    /// Workers running on their own, reached by path.
    pub external: Vec<PathBuf>,
    /// How long a worker has to take a connection before it is taken for
    /// hung.
    pub ack_timeout: Duration,
    /// Which web pages may open WebSockets.
    pub origins: OriginPolicy,
    /// Agree permessage-deflate with clients that offer it.
    pub deflate: bool,
    /// Limits each worker applies.
    pub worker: WorkerConfig,
}

/// `--ws-passenv NAME`: a portable variable name (letters, digits, `_`).
pub fn env_name(name: &str) -> Result<String, String> {
    if crate::ws::exec::valid_env_name(name) {
        Ok(name.to_string())
    } else {
        Err(format!(
            "{name:?} is not a variable name (letters, digits and _, not starting with a digit)"
        ))
    }
}

/// The folder served when `--root` is not given: the demo site installed
/// beside the binary (`PREFIX/share/handoff/site` for `PREFIX/bin/handoff`),
/// or, for a binary built in the repository and run from there, the
/// repository's `site/`. The second item says which, for the start-up log.
pub fn default_root() -> io::Result<(PathBuf, &'static str)> {
    let exe = std::env::current_exe()?;
    if let Some(prefix) = exe.parent().and_then(|bin| bin.parent()) {
        let installed = prefix.join("share/handoff/site");
        if installed.is_dir() {
            return Ok((installed, "the demo site installed beside the binary"));
        }
    }
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    if exe.starts_with(&repo) && repo.join("site").is_dir() {
        return Ok((
            repo.join("site"),
            "the repository's demo site (run from the repository)",
        ));
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!(
            "no --root given, and no demo site beside the binary ({}/../share/handoff/site)",
            exe.parent().unwrap_or(&exe).display()
        ),
    ))
}

/// Where `serve` listens when no source gives it a socket.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// What `handoff ws-worker` is told on its command line.
pub struct WorkerArgs {
    /// Routes and limits.
    pub config: WorkerConfig,
    /// Sockets to HTTP processes inherited by number (a socketpair end).
    pub ctl_fds: Vec<i32>,
    /// Listen here for HTTP processes (`serve --ws-worker-socket`).
    pub socket: Option<PathBuf>,
    /// Where to log, and the access lines' format.
    pub log: LogConfig,
}
