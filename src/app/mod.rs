//! `handoff serve`: takes the sockets from every source, serves them, and
//! runs the lifecycle (sd_notify, signals, drain). The `cli` room parses
//! the command line into a [`ServeConfig`].

use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicUsize};
use std::time::{Duration, Instant};

mod access;
mod auth;
mod cgi;
mod check;
mod config;
mod lifecycle;
mod rules;
pub mod settings;
mod site;
mod sources;
mod threads;

pub use config::{
    DEFAULT_LISTEN, INTERNAL_ENV, LogConfig, ServeConfig, WorkerArgs, WsConfig, default_root,
    env_name,
};
use lifecycle::{Go, Lifecycle, Upgrades};
use site::Site;

pub use crate::apps::{AppRule, AppTarget, AppsConfig};
pub use crate::files::FileCache;
use crate::handoff::upgrade;
pub use crate::intake::listen::{Listen, ListenSpec};
pub use crate::log::AccessFormat;
pub use crate::log::fatal;
pub use crate::log::flush as flush_logs;
pub use crate::pass::{PassConfig, run as pass};
pub use crate::tls::CertFiles;
pub use crate::ws::origin::OriginPolicy;
pub use crate::ws::route::Route;
pub use crate::ws::worker::WorkerConfig;
pub use access::{AccessRule, Cidr};
pub use auth::AuthRule;
pub use cgi::{CgiConfig, CgiRule};
pub use check::{Stage, check, stage_of, staged_config};
pub use rules::{HeaderRule, VirtualHost, parse_error_page, parse_mime, parse_redirect};
use sources::add_sources;

use crate::files::StaticFiles;
use crate::intake::control::ControlConfig;
use crate::intake::inetd;
use crate::intake::listen;
use crate::intake::systemd::{self, Role};
use crate::notify::Notifier;
use crate::server::{Loops, Server};
use crate::sys::privileges::RunAs;
use crate::sys::{Addr, fdpass};
use crate::tls::{self, TlsMode};
use crate::ws::pool::{self, Pool, PoolConfig};
use crate::ws::worker::Worker;

fn announce(out: &mut Vec<String>, addr: &Addr, tls: TlsMode) {
    // Tests and scripts read these lines to learn the port.
    let scheme = match tls {
        TlsMode::Off => "http",
        TlsMode::On => "https",
        TlsMode::Auto => "http+https",
    };
    out.push(match addr {
        Addr::Inet(a) => format!("listening on {scheme}://{a}"),
        other if tls == TlsMode::Off => format!("listening on {other}"),
        other => format!("listening on {other} ({scheme})"),
    });
}

/// The TLS configuration: the certificates given, or a self-signed one
/// (logged as such, with its fingerprint) when TLS is asked for without:
/// the one the process we replace served (`passed`, its PEM), so that an
/// upgrade keeps a pinned fingerprint, else a new one. Returns the PEM of
/// a self-signed one too, for the process that may replace us.
fn tls_config(
    cfg: &ServeConfig,
    needed: bool,
    passed: Option<String>,
    lines: &mut Vec<String>,
) -> io::Result<(Option<std::sync::Arc<rustls::ServerConfig>>, Option<String>)> {
    if !cfg.tls_certs.is_empty() {
        return Ok((Some(tls::load_all(&cfg.tls_certs)?), None));
    }
    if !needed {
        return Ok((None, None));
    }
    let (key, fingerprint, pem) = match passed {
        Some(pem) => {
            let (key, fingerprint) = tls::from_pem(&pem)?;
            (key, fingerprint, pem)
        }
        None => {
            let names = vec![
                "localhost".to_string(),
                "127.0.0.1".to_string(),
                "::1".to_string(),
            ];
            tls::self_signed(&names)?
        }
    };
    tracing::warn!(%fingerprint, "no --tls-cert: serving TLS with a self-signed certificate for localhost");
    lines.push(format!("tls self-signed sha256 {fingerprint}"));
    Ok((Some(tls::server_config(vec![key])?), Some(pem)))
}

/// Runs `handoff serve` until it is stopped (or idle, with `idle_exit`).
pub fn serve(cfg: ServeConfig) -> io::Result<()> {
    // Inherited fds are taken before any thread exists: taking them edits
    // the environment.
    let activated = systemd::take()?;
    let upgrade_chan = upgrade::take_channel()?;
    let mut successor = upgrade::Successor::of_this_process()?;
    let inetd_fd = if cfg.inetd {
        Some(inetd::take()?)
    } else {
        None
    };
    crate::log::init(cfg.log.target(cfg.inetd), cfg.log.access_format)
        .map_err(|e| check::staged(Stage::Config, e))?;

    // Everything that can fail for the configuration or an address comes
    // before anything starts (a worker, the metrics thread) or says it
    // serves: a wrong root, certificate or busy port is one message, and
    // the process has started nothing to take down.
    let (root, whence) = check::root(&cfg)?;
    let run_as = cfg
        .user
        .as_deref()
        .map(RunAs::resolve)
        .transpose()
        .map_err(|e| check::staged(Stage::Config, e))?;
    let mut lines = Vec::new();
    let mut passed = match &upgrade_chan {
        Some(c) => Some(upgrade::receive_listeners(c)?),
        None => None,
    };
    let needs_tls = cfg.listen.iter().any(|l| l.tls != TlsMode::Off)
        || activated.iter().any(|a| a.role == Role::Https)
        || passed
            .iter()
            .flat_map(|p| &p.listeners)
            .any(|s| s.tls_mode() != TlsMode::Off);
    let self_signed = passed.as_mut().and_then(|p| p.self_signed.take());
    let (tls_cfg, self_signed) = tls_config(&cfg, needs_tls, self_signed, &mut lines)
        .map_err(|e| check::staged(Stage::Config, e))?;
    successor.self_signed = self_signed;
    let bound = sources::bind_listeners(&cfg, &activated, inetd_fd.is_some(), passed.is_some())
        .map_err(|e| check::staged(Stage::Bind, e))?;
    let mut metrics_line = None;
    if let Some(addr) = cfg.metrics {
        let local = crate::metrics::serve(addr).map_err(|e| check::staged(Stage::Bind, e))?;
        tracing::info!(%local, "metrics at /metrics");
        metrics_line = Some(format!("metrics on http://{local}/metrics"));
    }

    tracing::info!(root = %root.display(), from = whence, "serving files");
    if tls_cfg.is_some() {
        tracing::info!(
            kernel_tls = tls::kernel_tls_available(),
            "TLS ready (TLS 1.3 and 1.2, ALPN {})",
            if cfg.options.http2 {
                "h2, http/1.1"
            } else {
                "http/1.1"
            }
        );
    }
    let ws_pool = start_ws_pool(&cfg, passed.as_mut(), run_as.as_ref())?;
    let apps = if cfg.apps.rules.is_empty() {
        None
    } else {
        Some(crate::apps::start(crate::apps::AppsConfig {
            run_as: run_as.as_ref().map(|r| (r.uid.as_raw(), r.gid.as_raw())),
            ..cfg.apps.clone()
        })?)
    };
    let (control_cfg, upgrade_requests) = control_config(&cfg);
    let answering = control_cfg.answering.clone();
    let to_https = cfg.redirect_https.map(|_| Arc::new(AtomicU16::new(0)));
    let make = server_maker(
        &cfg,
        root,
        tls_cfg,
        (ws_pool.clone(), apps.clone()),
        to_https.clone(),
    );
    let mut server = make()?;
    let inbox = server.inbox();
    let others = threads::Others::spawn(cfg.threads.max(1) - 1, make, inbox.clone())?;
    let loops = Loops::new(
        std::iter::once(inbox.clone())
            .chain(others.inboxes.iter().cloned())
            .collect(),
    );
    if let Some(apps) = &apps {
        apps.set_loops(loops.clone());
    }
    let given = sources::Given {
        activated,
        inetd: inetd_fd,
        upgrade: passed,
    };
    let (listeners, controls, control_line) = add_sources(
        &cfg,
        &mut server,
        given,
        &loops,
        control_cfg,
        bound,
        &mut lines,
    )
    .map_err(|e| check::staged(Stage::Bind, e))?;
    if let (Some(port), Some(set)) = (cfg.redirect_https, &to_https) {
        let port = https_port(port, &server).map_err(|e| check::staged(Stage::Config, e))?;
        set.store(port, std::sync::atomic::Ordering::Relaxed);
        lines.push(format!(
            "redirecting plain requests to HTTPS on port {port}"
        ));
    }
    // Every socket is bound and every key read: root is no longer needed.
    if let Some(r) = &run_as {
        let was_root = !r.is_current();
        r.become_it().map_err(|e| check::staged(Stage::Config, e))?;
        if was_root {
            tracing::info!(uid = %r.uid, gid = %r.gid, "dropped root");
        }
    }
    let single_connection = listeners == 0 && controls.is_empty();
    // Everything this thread needs opened before the other loops may
    // accept: a burst of connections could take the last fds.
    let sig_rx = lifecycle::signals(inbox.clone())?;
    let mut notifier = Notifier::from_env();
    if single_connection {
        // One connection (inetd nowait, Accept=yes): one loop serves it.
        others.close();
    } else {
        others.share_listeners(&server)?;
    }
    if server.is_empty() && controls.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "no socket to serve",
        ));
    }
    lines.extend(control_line);
    // First: a reader may stop at the last "listening on" line.
    if let Some(m) = metrics_line {
        lines.insert(0, m);
    }
    if !cfg.inetd {
        print_lines(&lines);
    }

    // Before READY: once systemd hears READY it may restart us at once.
    store_sockets(&notifier, &server, &controls);
    notifier.ready(status(&server), upgrade_chan.is_some());
    if let Some(c) = upgrade_chan {
        // The process we replace hands its connections over once it hears
        // this.
        upgrade::say_ready(c, loops.clone())?;
        tracing::info!("upgrade: serving; the old process hands its connections over");
    }
    let mut life = Lifecycle {
        cfg: &cfg,
        notifier,
        signals: sig_rx,
        ws_pool,
        apps,
        inbox,
        others,
        single_connection,
        deadline: None,
        workers_done: None,
        idle_since: Instant::now(),
        upgrades: Upgrades {
            successor,
            upgrading: None,
            cancel: Arc::default(),
            stop_after: false,
            requests: upgrade_requests,
            waiting: Vec::new(),
            answering,
            controls,
        },
    };
    loop {
        // The clock as the loop last read it: the lifecycle's deadlines
        // are coarse (seconds), and a read per turn is what a request costs.
        let now = server.now();
        server.turn(life.next_wake().map(|w| w.saturating_duration_since(now)))?;
        let now = server.now();
        if life.after_step(&mut server, now) == Go::Exit {
            return Ok(());
        }
    }
}

/// The WebSocket pool, when there are `--ws` paths; in an upgrade, linked
/// to the old process's pool, whose sessions come on that line (a process
/// with no pool lets it close: the old one's say goodbye).
fn start_ws_pool(
    cfg: &ServeConfig,
    passed: Option<&mut upgrade::Passed>,
    run_as: Option<&RunAs>,
) -> io::Result<Option<Pool>> {
    if cfg.ws.routes.is_empty() {
        return Ok(None);
    }
    let upgrading = passed.as_ref().is_some_and(|p| p.pool_line.is_some());
    let pool = pool::start(PoolConfig {
        upgrading,
        workers: cfg.ws.workers,
        worker: cfg.ws.worker.clone(),
        log_args: cfg.log.args(),
        external: cfg.ws.external.clone(),
        ack_timeout: cfg.ws.ack_timeout,
        run_as: run_as.map(|r| (r.uid.as_raw(), r.gid.as_raw())),
    })?;
    if let Some(line) = passed.and_then(|p| p.pool_line.take()) {
        pool.link_to_old(line);
    }
    Ok(Some(pool))
}

/// The control socket's settings, and where its `handoff upgrade`
/// requests arrive.
fn control_config(
    cfg: &ServeConfig,
) -> (
    ControlConfig,
    std::sync::mpsc::Receiver<crate::intake::control::UpgradeRequest>,
) {
    let mut control_cfg = ControlConfig::default();
    control_cfg.allowed_uids.extend(&cfg.control_allow_uids);
    let (upgrade_tx, upgrade_requests) = std::sync::mpsc::channel();
    control_cfg.upgrades = Some(upgrade_tx);
    control_cfg.upgrade_wait = cfg.upgrade_timeout + Duration::from_secs(5);
    (control_cfg, upgrade_requests)
}

/// Makes every loop's server alike: its own handler (and open-file cache),
/// the TLS configuration, the one WebSocket pool, and one budget under
/// `max_concurrent` for the whole process.
fn server_maker(
    cfg: &ServeConfig,
    root: std::path::PathBuf,
    tls_cfg: Option<Arc<rustls::ServerConfig>>,
    (ws_pool, apps): (Option<Pool>, Option<crate::apps::Apps>),
    to_https: Option<Arc<AtomicU16>>,
) -> threads::MakeServer {
    let app_prefixes: Vec<Vec<String>> = cfg
        .apps
        .rules
        .iter()
        .map(|r| access::segments(&r.prefix))
        .collect();
    let app_keep = site::app_keep(cfg, &app_prefixes);
    let budget = Arc::new(AtomicUsize::new(0));
    let (opts, routes, origins, file_cache) = (
        cfg.options.clone(),
        cfg.ws.routes.clone(),
        cfg.ws.origins.clone(),
        cfg.file_cache.clone(),
    );
    let (headers, types, pages, redirects) = (
        cfg.headers.clone(),
        cfg.types.clone(),
        cfg.error_pages.clone(),
        cfg.redirects.clone(),
    );
    let (vhosts, vhost_strict) = (cfg.vhosts.clone(), cfg.vhost_strict);
    let ws_deflate = cfg.ws.deflate;
    let access = access::AccessRules::new(&cfg.access);
    let (auth_rules, auth_insecure) = (cfg.basic_auth.clone(), cfg.basic_auth_insecure);
    let cgi = cfg.cgi.clone();
    // One set of CGI routes (one count of running scripts) for every loop,
    // made by the first.
    let shared_cgi: Arc<std::sync::OnceLock<Arc<cgi::Cgi>>> = Arc::default();
    Arc::new(move || {
        let cgi = match shared_cgi.get() {
            Some(c) => c.clone(),
            None => {
                let made = Arc::new(cgi::Cgi::new(&cgi)?);
                shared_cgi.get_or_init(|| made).clone()
            }
        };
        let mut hosts = Vec::new();
        for v in &vhosts {
            let files = StaticFiles::new(&v.root, file_cache.clone()).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("vhost {}={}: {e}", v.host, v.root.display()),
                )
            })?;
            hosts.push((v.clone(), files.with_types(&types)));
        }
        let site = Site {
            files: StaticFiles::new(&root, file_cache.clone())?
                .with_types(&types)
                .with_error_pages(&pages)?,
            hosts,
            strict: vhost_strict,
            ws_routes: routes.clone(),
            origins: origins.clone(),
            ws_deflate,
            headers: headers.clone(),
            redirects: redirects.clone(),
            to_https: to_https.clone(),
            access: access.clone(),
            auth: auth::BasicAuth::new(&auth_rules, auth_insecure)?,
            cgi,
            apps: app_prefixes.clone(),
            app_keep: app_keep.clone(),
            app_pool: apps.clone(),
        };
        let mut server = Server::new(opts.clone(), site)?;
        server.share_limit(budget.clone());
        if let Some(c) = &tls_cfg {
            server.set_tls(c.clone());
        }
        let (ws, apps) = (ws_pool.clone(), apps.clone());
        if ws.is_some() || apps.is_some() {
            // The handler says whose a connection is by what it hands off
            // with it: an app's route, else a WebSocket upgrade.
            server.on_hand_off(move |h| {
                let for_app = h
                    .context
                    .as_ref()
                    .is_some_and(|c| c.is::<crate::apps::ForApp>());
                match (&apps, &ws) {
                    (Some(apps), _) if for_app => apps.hand_off(h),
                    (_, Some(ws)) => ws.hand_off(h),
                    (Some(apps), None) => apps.hand_off(h),
                    (None, None) => {}
                }
            });
        }
        Ok(server)
    })
}

/// Where `--redirect-https` sends plain requests: `--https-port`, else the
/// port of the first listener serving TLS.
fn https_port(given: Option<u16>, server: &Server) -> io::Result<u16> {
    if let Some(p) = given {
        return Ok(p);
    }
    for socket in server.listener_sockets()? {
        let tls = socket.tls_mode() != TlsMode::Off;
        let (fd, _) = socket.into_parts();
        if let (true, Addr::Inet(a)) = (tls, crate::sys::local_addr(std::os::fd::AsFd::as_fd(&fd)))
        {
            return Ok(a.port());
        }
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        "--redirect-https: no TCP listener serves TLS here; add one (--listen ADDR,tls=on) or say where with --https-port",
    ))
}

/// Prints where it serves on stdout. A courtesy: a closed stdout must not
/// stop a server.
fn print_lines(lines: &[String]) {
    let mut stdout = io::stdout().lock();
    let announced = lines
        .iter()
        .try_for_each(|l| writeln!(stdout, "{l}"))
        .and_then(|()| stdout.flush());
    if let Err(e) = announced {
        tracing::warn!("could not print the addresses on stdout: {e}");
    }
}

/// Gives systemd's fd store a copy of every listener and control socket,
/// named by role. Only under systemd; a failure (out of fds) costs the
/// store, not the service.
fn store_sockets(
    notifier: &Notifier,
    server: &Server,
    controls: &[crate::intake::control::Control],
) {
    use std::os::fd::AsFd;
    if !notifier.enabled() {
        return;
    }
    let stored: Vec<(String, std::os::fd::OwnedFd)> = match server.listener_sockets() {
        Ok(l) => l
            .into_iter()
            .map(|s| {
                let (fd, framing) = s.into_parts();
                (systemd::name_for(framing), fd)
            })
            .collect(),
        Err(e) => {
            tracing::warn!("fd store: cannot copy the listeners: {e}");
            return;
        }
    };
    let mut named: Vec<(&str, std::os::fd::BorrowedFd<'_>)> = stored
        .iter()
        .map(|(name, fd)| (name.as_str(), fd.as_fd()))
        .collect();
    named.extend(controls.iter().map(|c| ("control", c.listener.as_fd())));
    notifier.store(&named);
}

/// SIGHUP: load the certificate files again. New connections get the new
/// certificates, live ones keep their session; a broken file keeps the old
/// certificates and says why.
fn reload_certificates(cfg: &ServeConfig, server: &mut Server, others: &threads::Others) -> String {
    if cfg.tls_certs.is_empty() {
        tracing::info!("SIGHUP: no certificate files to reload");
        return "no certificate files to reload".into();
    }
    match tls::load_all(&cfg.tls_certs) {
        Ok(c) => {
            others.set_tls(&c);
            server.set_tls(c);
            tracing::info!("SIGHUP: certificates reloaded");
            "certificates reloaded".into()
        }
        Err(e) => {
            tracing::error!("SIGHUP: certificate reload failed, keeping the old certificates: {e}");
            format!("certificate reload failed, keeping the old certificates: {e}")
        }
    }
}

/// What sd_notify's STATUS reports: connections served (by every loop),
/// sockets queued.
fn status(server: &Server) -> (usize, usize) {
    (server.connections_in_budget(), server.queued())
}

/// `handoff upgrade`: asks the server behind the control socket at `path`
/// to replace its binary (`docs/upgrade.md`), and returns the new process's
/// PID once it is ready, or why the old one serves on.
pub fn upgrade(path: &std::path::Path, wait: Duration) -> io::Result<u32> {
    use crate::handoff::wire::{Kind, Message};
    let c = fdpass::seqpacket_connect(path)?;
    fdpass::set_recv_timeout(std::os::fd::AsFd::as_fd(&c), wait)?;
    let m = Message::new(Kind::Upgrade, 1);
    let mut buf = vec![0u8; crate::handoff::wire::MAX_MESSAGE];
    let r = fdpass::request(std::os::fd::AsFd::as_fd(&c), &m.encode(), &[], &mut buf)?
        .ok_or_else(|| io::Error::other("the server closed the control connection"))?;
    let answer = Message::decode(&buf[..r.len])
        .map_err(|(_, why)| io::Error::other(format!("garbled answer: {why}")))?;
    match answer.kind() {
        Kind::Ack => answer
            .name
            .as_deref()
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| io::Error::other("the answer names no process")),
        _ => Err(io::Error::other(
            answer.reason.unwrap_or_else(|| "refused".into()),
        )),
    }
}

/// `handoff ws-worker`: serves WebSocket connections handed over by HTTP
/// processes, on a socketpair from its parent, on a socket of its own, or on
/// a systemd socket.
pub fn ws_worker(args: WorkerArgs) -> io::Result<()> {
    // `pgrep handoff` finds the workers too.
    crate::sys::process::name_after_argv0();
    let activated = systemd::take()?;
    let mut ctl = Vec::new();
    for raw in &args.ctl_fds {
        ctl.push(crate::sys::process::take_inherited_fd(*raw)?);
    }
    crate::log::init(args.log.target(false), args.log.access_format)?;
    let mut worker = Worker::new(args.config)?;
    for fd in ctl {
        worker.add_ctl(fd)?;
    }
    for a in activated {
        worker.add_ctl_listener(a.fd)?;
    }
    if let Some(path) = &args.socket {
        listen::remove_stale(path)?;
        worker.add_ctl_listener(fdpass::seqpacket_listen(path)?)?;
        println!("control on {}", path.display());
    }
    worker.run()
}
