//! The command line's definitions (clap's derive): `serve` and its
//! options, `pass`, `ws-worker`, `check`, `upgrade`, `man`,
//! `completions`. Each option's doc comment is its `--help` text, the man
//! page's and the settings file's.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::app::{
    self, AccessFormat, AccessRule, AppRule, AppsConfig, AuthRule, CertFiles, CgiConfig, CgiRule,
    FileCache, HeaderRule, Listen, ListenSpec, LogConfig, OriginPolicy, Route, ServeConfig,
    VirtualHost, WorkerConfig, WsConfig, parse_error_page, parse_mime, parse_redirect,
};
use crate::{Limits, Options, PerClient, Rate, Timeouts};

#[derive(Parser)]
#[command(
    name = "handoff",
    version,
    about = "HTTP/1.1 for sockets handed over by systemd, inetd or a front proxy",
    args_conflicts_with_subcommands = true
)]
pub(super) struct Cli {
    #[command(subcommand)]
    pub(super) command: Option<Command>,
    /// `serve` is the default command: its options work without it.
    #[command(flatten)]
    pub(super) serve: ServeArgs,
}

#[derive(Subcommand)]
pub(super) enum Command {
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
pub(super) struct UpgradeArgs {
    /// The server's control socket (`serve --control PATH`).
    #[arg(long)]
    pub(super) control: PathBuf,
    /// Seconds to wait for the outcome.
    #[arg(long, default_value_t = Seconds(Duration::from_secs(30)))]
    pub(super) wait: Seconds,
}

/// What a WebSocket worker does and how much it takes (shared by `serve`,
/// which passes them to the workers it starts, and `ws-worker`).
#[derive(Args, Clone)]
pub(super) struct WsLimits {
    /// Most WebSocket connections per worker.
    #[arg(long = "ws-max-connections", id = "ws_max_connections", default_value_t = WorkerConfig::default().max_connections)]
    pub(super) max_connections: usize,
    /// Largest WebSocket message in bytes.
    #[arg(long = "ws-max-message", id = "ws_max_message", default_value_t = WorkerConfig::default().max_message)]
    pub(super) max_message: usize,
    /// Largest WebSocket frame in bytes.
    #[arg(long = "ws-max-frame", id = "ws_max_frame", default_value_t = WorkerConfig::default().max_frame)]
    pub(super) max_frame: usize,
    /// Seconds between pings to each WebSocket client.
    #[arg(long = "ws-ping-interval", id = "ws_ping_interval", default_value_t = Seconds(WorkerConfig::default().ping_interval))]
    pub(super) ping_interval: Seconds,
    /// Seconds without anything from a WebSocket client before it is closed.
    #[arg(long = "ws-idle-timeout", id = "ws_idle_timeout", default_value_t = Seconds(WorkerConfig::default().idle_timeout))]
    pub(super) idle_timeout: Seconds,
    /// Pass this variable of the server's environment on to `exec:`
    /// commands (repeatable). They get no other: only the request's
    /// CGI variables and PATH=/usr/local/bin:/usr/bin:/bin (unless PATH is
    /// named here).
    #[arg(long = "ws-passenv", id = "ws_passenv", value_name = "NAME", value_parser = app::env_name)]
    pub(super) passenv: Vec<String>,
}

impl WsLimits {
    pub(super) fn config(&self, routes: Vec<Route>) -> WorkerConfig {
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
pub(super) struct WsWorkerArgs {
    /// A socket to an HTTP process, inherited as this fd number. Repeatable.
    #[arg(long)]
    pub(super) ctl_fd: Vec<i32>,
    /// Listen for HTTP processes on a SOCK_SEQPACKET socket at this path.
    #[arg(long)]
    pub(super) socket: Option<PathBuf>,
    /// Another uid allowed to connect to --socket (or a systemd socket); our own always is.
    /// Repeatable.
    #[arg(long)]
    pub(super) allow_uid: Vec<u32>,
    /// A WebSocket path and what it does: PATH=echo, PATH=broadcast, PATH=exec:COMMAND. Repeatable.
    #[arg(long = "ws", value_parser = Route::parse)]
    pub(super) routes: Vec<Route>,
    #[command(flatten)]
    pub(super) limits: WsLimits,
    #[command(flatten)]
    pub(super) log: LogArgs,
}

/// Where the log goes, and the access lines' format (`serve`, `ws-worker`).
#[derive(Args, Clone)]
pub(super) struct LogArgs {
    /// Append the log (access lines included) to this file; SIGUSR1 opens
    /// it again, for logrotate. Default: stderr (the journal under
    /// systemd), or syslog under --inetd.
    #[arg(long)]
    pub(super) log_file: Option<PathBuf>,
    /// Log to the local syslog (/dev/log, facility daemon) instead of stderr.
    #[arg(long, conflicts_with = "log_file")]
    pub(super) syslog: bool,
    /// Access lines: combined (Combined Log Format and the request time in
    /// seconds, as nginx's $request_time), common (CLF), json, or off.
    #[arg(long, default_value = "combined", value_parser = AccessFormat::parse)]
    pub(super) access_log_format: AccessFormat,
}

impl LogArgs {
    pub(super) fn config(self) -> LogConfig {
        LogConfig {
            file: self.log_file,
            syslog: self.syslog,
            access_format: self.access_log_format,
        }
    }
}

#[derive(Args)]
pub(super) struct PassArgs {
    /// Where to accept connections.
    #[arg(long, value_parser = ListenSpec::parse)]
    pub(super) listen: ListenSpec,
    /// A control socket to pass connections to; repeatable (round-robin).
    #[arg(long = "to", required = true)]
    pub(super) to: Vec<PathBuf>,
    /// Seconds a target has to acknowledge a connection.
    #[arg(long, value_parser = seconds, default_value = "2")]
    pub(super) ack_timeout: Duration,
}

/// A number of seconds on the command line (fractions allowed), shown in
/// `--help` from the same `Duration` the library defaults to, so a default
/// is written once.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Seconds(pub(super) Duration);

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

pub(super) fn threads(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n @ 1..=1024) => Ok(n),
        _ => Err(format!("{s:?}: from 1 to 1024 event loops")),
    }
}

pub(super) fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

pub(super) fn seconds(s: &str) -> Result<Duration, String> {
    let v: f64 = s.parse().map_err(|e| format!("{s:?}: {e}"))?;
    if !(v > 0.0 && v.is_finite()) {
        return Err(format!("{s:?}: must be a positive number of seconds"));
    }
    Ok(Duration::from_secs_f64(v))
}

/// `on` or `off`.
fn on_off(v: &str) -> Result<bool, String> {
    match v {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("{v:?}: on or off")),
    }
}

#[derive(Args)]
pub(super) struct ServeArgs {
    /// Read settings from this TOML file: each key is one of these options'
    /// long names (`root = "/srv/www"`, `listen = ["[::]:80", "[::]:443,tls=on"]`,
    /// `inetd = true`). Options given as flags or HANDOFF_* variables win.
    #[arg(long)]
    pub(super) config: Option<PathBuf>,
    /// Where to listen: host:port, [v6]:port or a Unix socket path, optionally with
    /// ,tls=auto|on|off (default off), ,proxy=v1|v2|any (each connection starts
    /// with a PROXY protocol header, from a front such as HAProxy) and ,http2=on|off
    /// (default on: HTTP/2 by ALPN or its preface there too); on TCP ,reuseport
    /// (SO_REUSEPORT) and ,v6only[=on|off] (IPV6_V6ONLY); on a Unix socket
    /// ,mode=0660,owner=USER,group=GROUP. Repeatable.
    /// Default 127.0.0.1:8080 when no other source (systemd, inetd, control) gives
    /// a socket.
    #[arg(long, value_parser = Listen::parse)]
    pub(super) listen: Vec<Listen>,
    /// A PEM certificate chain; repeatable, paired in order with --tls-key. Several are
    /// chosen by SNI, the first being the default. None with TLS asked for: self-signed.
    #[arg(long)]
    pub(super) tls_cert: Vec<PathBuf>,
    /// The PEM private key (PKCS#8, PKCS#1 or SEC1) of the --tls-cert at the same position.
    #[arg(long)]
    pub(super) tls_key: Vec<PathBuf>,
    /// The socket is on fd 0, as inetd gives it (a listener for `wait`, a connection for `nowait`).
    #[arg(long)]
    pub(super) inetd: bool,
    /// Exit after this many seconds without a connection (for inetd `wait`).
    #[arg(long, value_parser = seconds)]
    pub(super) idle_exit: Option<Duration>,
    /// Event loops, each on its own thread, sharing the listeners (the
    /// kernel spreads connections). Default: the CPUs this process may use.
    #[arg(long, default_value_t = default_threads(), value_parser = threads)]
    pub(super) threads: usize,
    /// Seconds a new binary started by SIGUSR2 has to say it is ready
    /// before it is killed and this process serves on.
    #[arg(long, default_value_t = Seconds(Duration::from_secs(10)))]
    pub(super) upgrade_timeout: Seconds,
    /// Most files kept open (with their metadata, and in memory when
    /// small), so a hot file costs no open, stat or close; 0 turns it off.
    #[arg(long, default_value_t = FileCache::default().entries)]
    pub(super) file_cache: usize,
    /// Seconds a cached file is trusted before its path is looked at again
    /// (a changed file is served fresh within this).
    #[arg(long, default_value_t = Seconds(FileCache::default().check))]
    pub(super) file_cache_check: Seconds,
    /// Compress text files (text/*, JSON, JavaScript, SVG, XML; 1 KiB to
    /// 2 MiB) on the fly for clients that accept brotli or gzip, once per
    /// file, kept with the open-file cache (on|off). Precompressed siblings
    /// (style.css.br, .zst, .gz) are served whenever present.
    #[arg(long, value_name = "on|off", default_value = "on", value_parser = on_off, action = clap::ArgAction::Set)]
    pub(super) compress: bool,
    /// A header field added to responses. Repeatable. Without a prefix, to
    /// every response (Strict-Transport-Security:max-age=63072000); with a
    /// path prefix, to the 2xx and 3xx answers under it
    /// (/assets/Cache-Control:max-age=31536000, immutable). Framing and
    /// connection fields (Content-Length, Connection, ...) are refused.
    #[arg(long = "header", value_name = "[PATH_PREFIX]NAME:VALUE", value_parser = HeaderRule::parse)]
    pub(super) headers: Vec<HeaderRule>,
    /// The Content-Type of files ending .EXT, before the built-in table
    /// (md=text/markdown). Repeatable. Text types get "; charset=utf-8"
    /// unless TYPE has parameters of its own.
    #[arg(long, value_name = "EXT=TYPE", value_parser = parse_mime)]
    pub(super) mime: Vec<(String, String)>,
    /// A page of the site's own for an error status (400 to 599), a file
    /// beneath the root, sent with the status kept (404=errors/404.html).
    /// Repeatable. The files handler's answers use it (404, 403, 405, 412,
    /// 416, 500, 503); a page that does not open at start stops the start.
    #[arg(long, value_name = "STATUS=FILE", value_parser = parse_error_page)]
    pub(super) error_page: Vec<(u16, String)>,
    /// A path answered with a 301 to another path or an http(s):// URL, the
    /// request's query kept unless TO has one (/old=/new). Repeatable; the
    /// path matches exactly and comes before files and WebSocket routes.
    #[arg(long, value_name = "FROM=TO", value_parser = parse_redirect)]
    pub(super) redirect: Vec<(String, String)>,
    /// Requests on plain connections get a redirect to the same URL over
    /// HTTPS (301; 308 for methods other than GET and HEAD, which must not
    /// become a GET), to the first TLS listener's port or --https-port.
    #[arg(long)]
    pub(super) redirect_https: bool,
    /// The port --redirect-https sends clients to (443 is left out of the
    /// URL), when it is not the first TLS listener's: a front's, or a
    /// listener another process holds.
    #[arg(long, value_name = "PORT", requires = "redirect_https", value_parser = clap::value_parser!(u16).range(1..))]
    pub(super) https_port: Option<u16>,
    /// Clients allowed, by network ([PATH_PREFIX=]CIDR: 10.0.0.0/8,
    /// /admin=2001:db8::/32, an address, or all). Repeatable. Within one
    /// prefix the narrowest network holding the client's address decides
    /// (a --deny wins a tie), and an address none holds is refused if the
    /// prefix has any --allow; a request must pass every prefix its path
    /// lies under. The PROXY header's address counts when there is one.
    #[arg(long, value_name = "[PATH_PREFIX=]CIDR", value_parser = AccessRule::allow)]
    pub(super) allow: Vec<AccessRule>,
    /// Clients refused with 403, by network ([PATH_PREFIX=]CIDR); see --allow.
    #[arg(long, value_name = "[PATH_PREFIX=]CIDR", value_parser = AccessRule::deny)]
    pub(super) deny: Vec<AccessRule>,
    /// Paths under PATH_PREFIX need a user of an htpasswd file with bcrypt
    /// (htpasswd -B), SHA-512-crypt (-5) or SHA-256-crypt (-2) passwords
    /// (MD5, crypt, SHA-1 and plain text are refused at start). Repeatable;
    /// the longest prefix wins. Over TLS only, unless --basic-auth-insecure.
    #[arg(long, value_name = "PATH_PREFIX=HTPASSWD_FILE", value_parser = AuthRule::parse)]
    pub(super) basic_auth: Vec<AuthRule>,
    /// Let --basic-auth paths take credentials over plain HTTP (a TLS front
    /// on the same host, a private network); without it they get 403 there.
    #[arg(long)]
    pub(super) basic_auth_insecure: bool,
    /// Become USER (and GROUP, else the user's own) once every socket is
    /// bound and every key and file of the configuration read: for hosts
    /// without systemd's User=. The WebSocket workers and their exec:
    /// children run as it too. Any step that fails stops the start.
    #[arg(long, value_name = "USER[:GROUP]")]
    pub(super) user: Option<String>,
    /// Paths under PATH_PREFIX run the executable they name in DIR (CGI,
    /// RFC 3875): /cgi-bin/app/x?q runs DIR/app with PATH_INFO=/x. The
    /// request body goes to its stdin, its output to the client. Repeatable.
    #[arg(long, value_name = "PATH_PREFIX=DIR", value_parser = CgiRule::parse)]
    pub(super) cgi: Vec<CgiRule>,
    /// CGI scripts running at once; past it, 503.
    #[arg(long, value_name = "N", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    pub(super) cgi_max: u32,
    /// Seconds a CGI script may take from its start to its last byte;
    /// past it its process group is killed (504 if nothing was sent yet).
    #[arg(long, value_name = "SECONDS", default_value_t = Seconds(Duration::from_secs(60)))]
    pub(super) cgi_timeout: Seconds,
    /// Pass this variable of the server's environment on to CGI scripts
    /// (repeatable). They get no other: only the CGI variables and
    /// PATH=/usr/local/bin:/usr/bin:/bin (unless PATH is named here).
    #[arg(long = "cgi-passenv", value_name = "NAME", value_parser = app::env_name)]
    pub(super) cgi_passenv: Vec<String>,
    /// Requests under PATH_PREFIX go to an app process, which answers on
    /// the client's own socket and gives the connection back when idle:
    /// unix:PATH, processes listening there (SOCK_SEQPACKET, the library's
    /// handoff::worker), or exec:COMMAND, started by us (/bin/sh -c) and
    /// started again if it dies. Repeatable; the longest prefix wins.
    #[arg(long, value_name = "PATH_PREFIX=unix:PATH|exec:COMMAND", value_parser = AppRule::parse)]
    pub(super) app: Vec<AppRule>,
    /// Processes started for each exec: app.
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub(super) app_workers: u32,
    /// Seconds an app has to take a connection; past it one we started is
    /// killed and restarted (the request gets 502).
    #[arg(long, value_parser = seconds, default_value = "2")]
    pub(super) app_ack_timeout: Duration,
    /// Whether an app keeps a connection for the client's next requests
    /// under its prefix (read and answered there, not routed here: not in
    /// our access log or metrics), giving it back when one is not or when
    /// it has been idle for the app's keep-alive timeout. Never where one
    /// of our own settings could judge a later request otherwise than the
    /// first (--basic-auth above or under the prefix, --allow/--deny
    /// under it, --redirect-https, a --redirect or WebSocket path under
    /// it, a longer --app prefix). off: back after each response, every
    /// request routed here.
    #[arg(long, value_name = "on|off", default_value = "on", value_parser = on_off, action = clap::ArgAction::Set)]
    pub(super) app_keep: bool,
    /// The folder served for a host name (the Host field, or :authority on
    /// HTTP/2): exact (example.org=/srv/example) or every name under a
    /// domain (*.example.org=/srv/all). Repeatable; the first that matches
    /// wins; other hosts get --root (or 421 with --vhost-strict).
    #[arg(long, value_name = "HOST=ROOT", value_parser = VirtualHost::parse)]
    pub(super) vhost: Vec<VirtualHost>,
    /// A request for a host no --vhost names gets 421 Misdirected Request
    /// instead of --root's files.
    #[arg(long)]
    pub(super) vhost_strict: bool,
    /// Create a control socket (SOCK_SEQPACKET) at this path, on which a front proxy passes sockets.
    #[arg(long)]
    pub(super) control: Option<PathBuf>,
    /// Another uid allowed on the control socket (our own always is). Repeatable.
    #[arg(long)]
    pub(super) control_allow_uid: Vec<u32>,
    /// Seconds that requests in flight get after SIGTERM before the rest is closed.
    #[arg(long, value_parser = seconds, default_value = "30")]
    pub(super) shutdown_timeout: Duration,
    #[command(flatten)]
    pub(super) log: LogArgs,
    /// Serve Prometheus metrics at http://ADDR/metrics (host:port; port 0
    /// picks one). Off by default: bind it to loopback or a private address.
    #[arg(long, value_name = "ADDR")]
    pub(super) metrics: Option<std::net::SocketAddr>,
    /// A WebSocket path and what it does: PATH=echo, PATH=broadcast, PATH=exec:COMMAND,
    /// PATH=exec-binary:COMMAND, then ,protocols=P1|P2; a broadcast across instances
    /// through Redis with ,bus=redis://HOST:PORT/ (or rediss://) and ,bus-prefix=,
    /// ,bus-maxlen=, ,bus-queue=, ,bus-ca= (docs/bus.md). Repeatable. Upgrades there
    /// go to the WebSocket workers.
    #[arg(long = "ws", value_parser = Route::parse)]
    pub(super) ws: Vec<Route>,
    /// WebSocket worker processes to start (when there are --ws paths).
    #[arg(long, default_value_t = 2)]
    pub(super) ws_workers: usize,
    /// A WebSocket worker running on its own (`handoff ws-worker --socket PATH`). Repeatable.
    #[arg(long)]
    pub(super) ws_worker_socket: Vec<PathBuf>,
    /// Seconds a WebSocket worker has to take an upgraded connection. One that does not is
    /// taken for hung: a worker we started is killed and its connections get 503.
    #[arg(long, value_parser = seconds, default_value = "2")]
    pub(super) ws_ack_timeout: Duration,
    /// A web page origin (scheme://host[:port], or host[:port] for any scheme) allowed to
    /// open WebSockets, on every path. Repeatable. Without it, exec: paths take only
    /// same-origin pages and echo/broadcast paths any page.
    #[arg(long)]
    pub(super) ws_origin: Vec<String>,
    /// Agree permessage-deflate (RFC 7692) with WebSocket clients that
    /// offer it (browsers do): each message compressed on its own, no
    /// context kept between messages, so an idle connection holds no
    /// compression state. Such a session stays with its worker in a live
    /// upgrade.
    #[arg(long)]
    pub(super) ws_deflate: bool,
    /// Only same-origin pages (and --ws-origin ones) may open WebSockets, on every path.
    #[arg(long)]
    pub(super) ws_same_origin: bool,
    #[command(flatten)]
    pub(super) ws_limits: WsLimits,
    /// Folder to serve (default: the demo site installed beside the binary,
    /// PREFIX/share/handoff/site, or the repository's when run from it).
    #[arg(long)]
    pub(super) root: Option<PathBuf>,
    /// Serve HTTP/2 as well as HTTP/1.1 (on|off): on TLS listeners to clients
    /// that offer h2 by ALPN, on plain ones to clients that begin with its
    /// preface (prior knowledge). WebSockets stay on HTTP/1.1.
    #[arg(long, value_name = "on|off", default_value = "on", value_parser = on_off, action = clap::ArgAction::Set)]
    pub(super) http2: bool,
    /// HTTP/2 streams one connection may have open at once
    /// (SETTINGS_MAX_CONCURRENT_STREAMS); more are refused with REFUSED_STREAM.
    #[arg(long, default_value_t = Limits::default().max_concurrent_streams)]
    pub(super) max_concurrent_streams: u32,
    /// HTTP/2 SETTINGS, PING, PRIORITY and empty DATA frames one connection
    /// may send a second; past it, GOAWAY ENHANCE_YOUR_CALM.
    #[arg(long, default_value_t = Limits::default().max_control_frames_per_second)]
    pub(super) max_control_frames_per_second: u32,
    /// HTTP/2 streams one connection may reset a second (rapid reset);
    /// past it, GOAWAY ENHANCE_YOUR_CALM.
    #[arg(long, default_value_t = Limits::default().max_resets_per_second)]
    pub(super) max_resets_per_second: u32,
    /// Most connections served at once; at the limit, accepting stops.
    #[arg(long, default_value_t = Options::default().max_concurrent)]
    pub(super) max_concurrent: usize,
    /// Most connected sockets (from the control socket or systemd) that may
    /// wait for a slot; past it they are refused.
    #[arg(long, default_value_t = Options::default().max_queued)]
    pub(super) max_queued: usize,
    /// Most connections open at once from one client (an IPv4 address, an
    /// IPv6 /64; the PROXY header's when there is one). Past it a new
    /// connection is closed at once, before any request is read.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub(super) max_conns_per_ip: Option<u32>,
    /// Requests per second (N/s) or minute (N/m) one client may make on
    /// average, with a burst (10/s,burst=20; without: one second's
    /// worth). Past it: 429 Too Many Requests with Retry-After.
    #[arg(long, value_name = "N/s[,burst=B]", value_parser = Rate::parse)]
    pub(super) rate_per_ip: Option<Rate>,
    /// Seconds from accept to the end of the first request head (and from
    /// first byte to end of head for later requests).
    #[arg(long, default_value_t = Seconds(Timeouts::default().connection_setup))]
    pub(super) setup_timeout: Seconds,
    /// Bytes per second a request body must average after its first
    /// --body-timeout seconds (each such many bytes buy a second more, as
    /// Apache's mod_reqtimeout MinRate); 0: no minimum.
    #[arg(long, default_value_t = Timeouts::default().body_min_rate)]
    pub(super) body_min_rate: u32,
    /// Seconds an idle keep-alive connection may wait for its next request.
    #[arg(long, default_value_t = Seconds(Timeouts::default().intra_stream))]
    pub(super) idle_timeout: Seconds,
    /// Longest gap, in seconds, between request-body bytes.
    #[arg(long, default_value_t = Seconds(Timeouts::default().body_progress))]
    pub(super) body_timeout: Seconds,
    /// Longest gap, in seconds, in writing a response to a client that does not read.
    #[arg(long, default_value_t = Seconds(Timeouts::default().write_progress))]
    pub(super) write_timeout: Seconds,
    /// Largest request body in bytes (413 past it).
    #[arg(long, default_value_t = Limits::default().max_body)]
    pub(super) max_body: u64,
    /// Largest request head in bytes (431 past it).
    #[arg(long, default_value_t = Limits::default().max_header_bytes)]
    pub(super) max_header_bytes: usize,
    /// Most header fields in a request (431 past it).
    #[arg(long, default_value_t = Limits::default().max_headers)]
    pub(super) max_headers: usize,
    /// Longest request line in bytes (414 past it).
    #[arg(long, default_value_t = Limits::default().max_request_line)]
    pub(super) max_request_line: usize,
}

impl ServeArgs {
    pub(super) fn config(self) -> Result<ServeConfig, String> {
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
                max_concurrent_streams: self.max_concurrent_streams,
                max_control_frames_per_second: self.max_control_frames_per_second,
                max_resets_per_second: self.max_resets_per_second,
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
            http2: self.http2,
            per_client: PerClient::new(self.max_conns_per_ip, self.rate_per_ip),
            static_headers: self
                .headers
                .iter()
                .filter(|h| h.prefix.is_empty())
                .map(|h| (h.name.clone(), h.value.clone()))
                .collect(),
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
                compress: self.compress,
                ..FileCache::default()
            },
            headers: self
                .headers
                .into_iter()
                .filter(|h| !h.prefix.is_empty())
                .collect(),
            types: self.mime,
            error_pages: self.error_page,
            redirects: self.redirect,
            redirect_https: self.redirect_https.then_some(self.https_port),
            access: self.allow.into_iter().chain(self.deny).collect(),
            basic_auth: self.basic_auth,
            basic_auth_insecure: self.basic_auth_insecure,
            user: self.user,
            cgi: CgiConfig {
                rules: self.cgi,
                max: self.cgi_max as usize,
                timeout: self.cgi_timeout.0,
                passenv: self.cgi_passenv,
                max_body: self.max_body,
            },
            apps: AppsConfig {
                rules: self.app,
                workers: self.app_workers as usize,
                ack_timeout: self.app_ack_timeout,
                run_as: None,
                keep: self.app_keep,
            },
            vhosts: self.vhost,
            vhost_strict: self.vhost_strict,
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
                deflate: self.ws_deflate,
                worker: self.ws_limits.config(self.ws.clone()),
                routes: self.ws,
            },
            log: self.log.config(),
            metrics: self.metrics,
        })
    }
}
