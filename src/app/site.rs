//! The service `serve` runs: its routes (WebSocket paths handed off to the
//! workers, everything else a file).

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};

use super::access::AccessRules;
use super::auth::{BasicAuth, Verdict};
use super::rules::{HeaderRule, VirtualHost};
use crate::files::StaticFiles;
use crate::http::{BodyPlan, Handler, Request, Response};
use crate::ws::handshake;
use crate::ws::origin::OriginPolicy;
use crate::ws::route::{Mode, Route};

/// What `serve` answers: WebSocket paths are handed off to the workers (a
/// bad upgrade gets 400, a wrong version or a plain request 426), anything
/// else is a file.
pub(super) struct Site {
    /// The default root's files.
    pub(super) files: StaticFiles,
    /// Other roots, by host name (`--vhost`), first match wins.
    pub(super) hosts: Vec<(VirtualHost, StaticFiles)>,
    /// A host none names gets 421 (`--vhost-strict`).
    pub(super) strict: bool,
    pub(super) ws_routes: Vec<Route>,
    pub(super) origins: OriginPolicy,
    /// permessage-deflate is offered (`--ws-deflate`).
    pub(super) ws_deflate: bool,
    /// `--header` rules with a path prefix.
    pub(super) headers: Vec<HeaderRule>,
    /// `--redirect` paths and where they go.
    pub(super) redirects: Vec<(String, String)>,
    /// `--redirect-https`: the port plain requests are sent to, set once
    /// the listeners are known (0 before).
    pub(super) to_https: Option<Arc<AtomicU16>>,
    /// `--allow`, `--deny`.
    pub(super) access: AccessRules,
    /// `--basic-auth`.
    pub(super) auth: BasicAuth,
    /// `--cgi` routes, shared by every loop.
    pub(super) cgi: Arc<super::cgi::Cgi>,
    /// `--app` prefixes as segments, in the order of the routes.
    pub(super) apps: Vec<Vec<String>>,
    /// Whether each may keep a connection for the next requests under its
    /// prefix (`app_keep`).
    pub(super) app_keep: Vec<bool>,
    /// Their pool, for the requests relayed rather than lent.
    pub(super) app_pool: Option<crate::apps::Apps>,
}

/// Why a request is answered before routes and files see it.
enum Stop<'a> {
    /// `--allow`/`--deny` refuse its address: 403.
    Address,
    /// `--redirect-https`, to this port.
    Https(u16),
    /// Basic auth over plain HTTP: 403.
    NeedsTls,
    /// No or wrong credentials: 401 for this realm.
    Challenge(&'a str),
}

impl Site {
    /// The files for the request's host: a `--vhost`'s, else the default
    /// root's; `None` for an unknown host under `--vhost-strict`. Inlined:
    /// without `--vhost` it is one test, and the call cost 22 instructions
    /// a request (callgrind).
    #[inline(always)]
    fn files_for(&self, req: &Request<'_>) -> Option<&StaticFiles> {
        if self.hosts.is_empty() {
            // No `--vhost`: no host to look at on every request.
            return Some(&self.files);
        }
        let host = req.host().unwrap_or("");
        match self.hosts.iter().find(|(v, _)| v.matches(host)) {
            Some((_, files)) => Some(files),
            None if self.strict => None,
            None => Some(&self.files),
        }
    }

    /// The HTTPS port a plain request is redirected to (`--redirect-https`).
    fn https_port(&self, req: &Request<'_>) -> Option<u16> {
        let port = self.to_https.as_ref()?.load(Ordering::Relaxed);
        (port != 0 && !req.is_tls()).then_some(port)
    }

    /// What stops a request before routes and files, in this order: its
    /// address, plain HTTP where HTTPS is wanted, credentials.
    #[inline]
    fn stop(&self, req: &Request<'_>) -> Option<Stop<'_>> {
        if self.access.is_empty() && self.auth.is_empty() && self.to_https.is_none() {
            // None of the three is set: nothing to look at.
            return None;
        }
        self.stop_guarded(req)
    }

    /// `stop` with a rule to apply: out of line, off the common path.
    #[inline(never)]
    fn stop_guarded(&self, req: &Request<'_>) -> Option<Stop<'_>> {
        let guarded = !self.access.is_empty() || !self.auth.is_empty();
        // The rules' prefixes are compared with the path as the files
        // handler reads it (decoded, `.` and empty segments gone), so that
        // `/%61dmin` or `//admin` is under `/admin` too.
        let decoded = guarded.then(|| crate::files::relative_path(req.path()).flatten());
        let segments: Option<Vec<&str>> = decoded
            .as_ref()
            .and_then(|d| d.as_deref())
            .map(|p| p.split('/').filter(|s| !s.is_empty()).collect());
        if guarded && !self.access.allows(segments.as_deref(), req.peer_addr()) {
            return Some(Stop::Address);
        }
        if let Some(port) = self.https_port(req) {
            return Some(Stop::Https(port));
        }
        if self.auth.is_empty() {
            return None;
        }
        let authorization = req.header_bytes("authorization");
        match self
            .auth
            .check(segments.as_deref(), authorization, req.is_tls(), req.now())
        {
            Verdict::Pass => None,
            Verdict::NeedsTls => Some(Stop::NeedsTls),
            Verdict::Challenge(realm) => Some(Stop::Challenge(realm)),
        }
    }

    /// The `--app` route the request's path lies under, the longest
    /// prefix winning (whole segments of the decoded path).
    fn app_route(&self, req: &Request<'_>) -> Option<usize> {
        let decoded = crate::files::relative_path(req.path()).flatten()?;
        let segments: Vec<&str> = decoded.split('/').filter(|s| !s.is_empty()).collect();
        self.apps
            .iter()
            .enumerate()
            .filter(|(_, p)| {
                p.len() <= segments.len() && p.iter().zip(&segments).all(|(a, b)| a == b)
            })
            .max_by_key(|(_, p)| p.len())
            .map(|(i, _)| i)
    }

    /// Where a `--redirect` sends this request's path.
    fn redirect(&self, req: &Request<'_>) -> Option<&str> {
        let (_, to) = self.redirects.iter().find(|(from, _)| from == req.path())?;
        Some(to)
    }
}

impl Handler for Site {
    fn on_head(&self, req: &Request<'_>) -> BodyPlan {
        // In `handle`'s order: a redirect before a WebSocket route.
        if self.stop(req).is_some() || self.redirect(req).is_some() {
            return BodyPlan::Discard;
        }
        if self.ws_routes.iter().any(|r| r.path == req.path()) {
            return BodyPlan::Buffer;
        }
        if !self.apps.is_empty() && self.app_route(req).is_some() {
            return if lendable(req) {
                // Not read here: the app reads the body from the socket.
                BodyPlan::Skip
            } else {
                // Relayed: read here, written to the app's socketpair.
                BodyPlan::Buffer
            };
        }
        if !self.cgi.is_empty()
            && let Some(plan) = self.cgi.on_head(req)
        {
            return plan;
        }
        match self.files_for(req) {
            Some(files) => files.on_head(req),
            None => BodyPlan::Discard,
        }
    }

    fn handle(&self, req: &Request<'_>, res: &mut Response<'_>) {
        match self.stop(req) {
            None => {}
            Some(Stop::Address) => {
                res.plain(403, "403 Forbidden\n");
                return;
            }
            Some(Stop::Https(port)) => return to_https(req, port, res),
            Some(Stop::NeedsTls) => {
                res.plain(403, "403 Forbidden: this path needs HTTPS\n");
                return;
            }
            Some(Stop::Challenge(realm)) => {
                let challenge = format!("Basic realm=\"{realm}\", charset=\"UTF-8\"");
                res.header("WWW-Authenticate", challenge)
                    .plain(401, "401 Unauthorized\n");
                return;
            }
        }
        if let Some(to) = self.redirect(req) {
            // The request's query goes along, unless the target has one.
            let to = match req.query() {
                Some(q) if !to.contains('?') => format!("{to}?{q}"),
                _ => to.to_string(),
            };
            res.header("Location", to)
                .plain(301, "301 Moved Permanently\n");
            return;
        }
        let Some(route) = self.ws_routes.iter().find(|r| r.path == req.path()) else {
            if !self.apps.is_empty()
                && let Some(route) = self.app_route(req)
            {
                return match &self.app_pool {
                    Some(_) if lendable(req) => {
                        let keep = self.app_keep.get(route).copied().unwrap_or(false);
                        res.hand_off_with(crate::apps::ForApp { route, keep });
                    }
                    Some(pool) => crate::apps::relay(pool, route, req, res),
                    None => {
                        res.plain(503, "503 Service Unavailable\n");
                    }
                };
            }
            if !self.cgi.is_empty() && self.cgi.handle(req, res) {
                return;
            }
            let Some(files) = self.files_for(req) else {
                res.plain(421, "421 Misdirected Request: no site by that name here\n");
                return;
            };
            files.handle(req, res);
            if (200..400).contains(&res.status) {
                for h in &self.headers {
                    if req.path().starts_with(&h.prefix) {
                        res.header(&h.name, &h.value);
                    }
                }
            }
            return;
        };
        match handshake::check(req) {
            Ok(()) => match self.origins.check(&route.mode, req) {
                Ok(()) => {
                    // What the worker would otherwise parse again.
                    let key = req.header_bytes("sec-websocket-key").unwrap_or_default();
                    // Only an `exec:` command reads the request's variables;
                    // the others' worker needs the target alone (its log line).
                    let mut env = match route.mode {
                        Mode::Exec { .. } => crate::ws::exec::request_environment(
                            req.method(),
                            req.target(),
                            &route.path,
                            req.headers(),
                        ),
                        _ => vec![("REQUEST_URI".into(), req.target().into())],
                    };
                    // The worker answers it in its 101; an exec command
                    // sees it.
                    let offers = req.header_all("sec-websocket-protocol");
                    if let Some(p) = route.choose_protocol(offers) {
                        env.push((crate::ws::PROTOCOL_VAR.into(), p.into()));
                    }
                    let offers = req.header_all("sec-websocket-extensions");
                    if let Some(e) = self
                        .ws_deflate
                        .then(|| crate::ws::deflate::negotiate(offers))
                        .flatten()
                    {
                        env.push((crate::ws::deflate::EXTENSIONS_VAR.into(), e));
                    }
                    res.hand_off_with(handshake::Accepted {
                        route: route.path.clone(),
                        accept: tungstenite::handshake::derive_accept_key(key.trim_ascii()),
                        env,
                    });
                }
                Err(why) => {
                    tracing::warn!(peer = %req.peer_addr(), origin = req.header("origin").unwrap_or("-"), path = req.path(), "{why}");
                    res.plain(403, format!("403 Forbidden: {why}\n"));
                }
            },
            Err(r) => {
                if r.status == 426 {
                    res.header("Upgrade", "websocket")
                        .header("Sec-WebSocket-Version", "13");
                }
                res.plain(r.status, format!("{} {}\n", r.status, r.reason));
            }
        }
    }
}

/// Which `--app` routes may keep a connection for the client's next
/// requests under their prefix (`--app-keep`): those under which nothing
/// of ours could judge a later request otherwise than the first, since the
/// app reads and answers it without us. What could: credentials
/// (`--basic-auth`, each request's own) above or under the prefix, an
/// address rule under it (one at or above it says the same of every path
/// below for the same client, the connection's), the HTTPS redirect, a
/// `--redirect` or WebSocket path under it, a longer `--app` prefix
/// (another app's requests). There every request comes here, one by one.
pub(super) fn app_keep(cfg: &super::config::ServeConfig, prefixes: &[Vec<String>]) -> Vec<bool> {
    if !cfg.apps.keep || cfg.redirect_https.is_some() {
        return vec![false; prefixes.len()];
    }
    let credentials: Vec<&[String]> = cfg.basic_auth.iter().map(|r| &r.prefix[..]).collect();
    let addresses: Vec<&[String]> = cfg.access.iter().map(|r| &r.prefix[..]).collect();
    let paths: Vec<&str> = (cfg.redirects.iter().map(|(from, _)| from.as_str()))
        .chain(cfg.ws.routes.iter().map(|r| r.path.as_str()))
        .collect();
    keepable(prefixes, (&credentials, &addresses), &paths)
}

/// `app_keep` of the app prefixes, given the prefixes credentials and
/// address rules guard and the paths that are routed elsewhere.
fn keepable(
    prefixes: &[Vec<String>],
    (credentials, addresses): (&[&[String]], &[&[String]]),
    paths: &[&str],
) -> Vec<bool> {
    // Some request path lies under both: one prefix is the other's start.
    let overlap = |a: &[String], b: &[String]| a.starts_with(b) || b.starts_with(a);
    let inside = |a: &[String], p: &[String]| a.len() > p.len() && a.starts_with(p);
    let under = |p: &[String], path: &str| super::access::segments(path).starts_with(p);
    prefixes
        .iter()
        .enumerate()
        .map(|(i, p)| {
            !credentials.iter().any(|g| overlap(g, p))
                && !addresses.iter().any(|g| inside(g, p))
                && !paths.iter().any(|path| under(p, path))
                && !prefixes
                    .iter()
                    .enumerate()
                    .any(|(j, q)| j != i && inside(q, p))
        })
        .collect()
}

/// Can a request for an app go with its connection? A plain HTTP/1.x one
/// can (the app answers on the socket and gives it back when idle); an
/// HTTP/2 stream or a TLS session cannot go with an fd, and is relayed.
fn lendable(req: &Request<'_>) -> bool {
    !req.is_tls() && req.version() != crate::http::Version::Http2
}

/// `--redirect-https`: the same URL with `https://`, on `port`. The host is
/// the request's (its port dropped), or the address it came to when it
/// names none (HTTP/1.0). GET and HEAD get 301; other methods 308, so that
/// a form's POST is sent again as a POST, not turned into a GET.
fn to_https(req: &Request<'_>, port: u16, res: &mut Response<'_>) {
    let host = match req.host() {
        Some(h) => host_part(h).map(str::to_string),
        None => match req.local_addr() {
            crate::sys::Addr::Inet(a) if a.is_ipv6() => Some(format!("[{}]", a.ip())),
            crate::sys::Addr::Inet(a) => Some(a.ip().to_string()),
            _ => None,
        },
    };
    let Some(host) = host else {
        res.plain(400, "400 Bad Request: no host to redirect to\n");
        return;
    };
    let port = if port == 443 {
        String::new()
    } else {
        format!(":{port}")
    };
    let path = match req.path() {
        "" => "/",
        p => p,
    };
    let query = req.query().map_or(String::new(), |q| format!("?{q}"));
    let (status, text) = match req.method() {
        "GET" | "HEAD" => (301, "301 Moved Permanently\n"),
        _ => (308, "308 Permanent Redirect\n"),
    };
    res.header("Location", format!("https://{host}{port}{path}{query}"))
        .plain(status, text);
}

/// A Host field's name without its port, if it is a name or an address
/// (letters, digits, `-`, `.`, or an IPv6 address in brackets): nothing
/// else may reach a `Location`.
fn host_part(authority: &str) -> Option<&str> {
    let host = super::rules::strip_port(authority);
    let ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => {
            !v6.is_empty()
                && v6
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        }
        None => {
            !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        }
    };
    ok.then_some(host)
}

#[cfg(test)]
mod tests {
    use super::super::access::segments;
    use super::keepable;

    #[test]
    fn an_app_route_is_kept_only_where_nothing_of_ours_applies_under_it() {
        let apps = [segments("/api"), segments("/api/admin"), segments("/shop")];
        let (admin, files) = (segments("/admin"), segments("/files"));
        let root = segments("/");
        let (deep, shop) = (segments("/shop/private"), segments("/shop"));
        type Case<'a> = (
            &'a [&'a [String]],
            &'a [&'a [String]],
            &'a [&'a str],
            [bool; 3],
        );
        let cases: [Case<'_>; 9] = [
            // Only a longer app prefix inside /api.
            (&[], &[], &[], [false, true, true]),
            // Credentials elsewhere change nothing; above or inside, they do.
            (&[&admin, &files], &[], &[], [false, true, true]),
            (&[&root], &[], &[], [false, false, false]),
            (&[&apps[1]], &[], &[], [false, false, true]),
            // An address rule above or at a prefix judges every path below
            // alike; one inside it does not.
            (&[], &[&root, &shop], &[], [false, true, true]),
            (&[], &[&deep], &[], [false, true, false]),
            (&[], &[&admin], &[], [false, true, true]),
            // A redirect or WebSocket path under a prefix; one above it
            // is not under it.
            (&[], &[], &["/shop/old", "/"], [false, true, false]),
            (&[], &[], &["/chat"], [false, true, true]),
        ];
        for (credentials, addresses, paths, want) in cases {
            assert_eq!(
                keepable(&apps, (credentials, addresses), paths),
                want,
                "{credentials:?} {addresses:?} {paths:?}"
            );
        }
    }

    use super::host_part;

    #[test]
    fn the_host_of_a_redirect_to_https_is_a_name_or_an_address_without_its_port() {
        for (authority, host) in [
            ("example.org", Some("example.org")),
            ("Example.org:8080", Some("Example.org")),
            ("127.0.0.1:80", Some("127.0.0.1")),
            ("[::1]:8080", Some("[::1]")),
            ("[2001:db8::1]", Some("[2001:db8::1]")),
            ("", None),
            (":80", None),
            ("[]", None),
            ("[::1", None),
            ("[::1]x", None),
            ("evil.org/path", None),
            ("user@evil.org", None),
            ("a b", None),
        ] {
            assert_eq!(host_part(authority), host, "{authority:?}");
        }
    }
}
