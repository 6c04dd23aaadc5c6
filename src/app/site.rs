//! The service `serve` runs: its routes (WebSocket paths handed off to the
//! workers, everything else a file).

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
    /// `--header` rules with a path prefix.
    pub(super) headers: Vec<HeaderRule>,
    /// `--redirect` paths and where they go.
    pub(super) redirects: Vec<(String, String)>,
}

impl Site {
    /// The files for the request's host: a `--vhost`'s, else the default
    /// root's; `None` for an unknown host under `--vhost-strict`.
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

    /// Where a `--redirect` sends this request's path.
    fn redirect(&self, req: &Request<'_>) -> Option<&str> {
        let (_, to) = self.redirects.iter().find(|(from, _)| from == req.path())?;
        Some(to)
    }
}

impl Handler for Site {
    fn on_head(&self, req: &Request<'_>) -> BodyPlan {
        // In `handle`'s order: a redirect before a WebSocket route.
        if self.redirect(req).is_some() {
            return BodyPlan::Discard;
        }
        if self.ws_routes.iter().any(|r| r.path == req.path()) {
            return BodyPlan::Buffer;
        }
        match self.files_for(req) {
            Some(files) => files.on_head(req),
            None => BodyPlan::Discard,
        }
    }

    fn handle(&self, req: &Request<'_>, res: &mut Response<'_>) {
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
                    let env = match route.mode {
                        Mode::Exec { .. } => crate::ws::exec::request_environment(
                            req.method(),
                            req.target(),
                            &route.path,
                            req.headers(),
                        ),
                        _ => vec![("REQUEST_URI".into(), req.target().into())],
                    };
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
