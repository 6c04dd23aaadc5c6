//! Routes by method and path, with path parameters (`/api/items/{id}`,
//! `/files/{*rest}`), matched by `matchit` (axum's matcher); a path with
//! no route for the method is answered 405 with `Allow`, an unknown path
//! 404, both rendered by the router's refusal renderer when it has one,
//! like the engine's own refusals, so an API keeps one error format.
//!
//! ```
//! use handoff::api::router::{PathParams, Router};
//! use handoff::{Request, Response};
//!
//! let mut app = Router::new();
//! app.get("/", |_: &Request<'_>, res: &mut Response<'_>, _: &PathParams<'_>| {
//!     res.body("home\n");
//! })
//! .get("/items/{id}", |_: &Request<'_>, res: &mut Response<'_>, p: &PathParams<'_>| {
//!     res.body(format!("item {}\n", p.get("id").unwrap_or("?")));
//! });
//! # let _ = handoff::Server::new(handoff::Options::default(), app);
//! ```

use crate::http::{BodyPlan, Handler, Refusal, Rendered, Request, Response};

/// The parameters of the path pattern that matched, as the client wrote
/// them (percent-encoding left as it is).
pub struct PathParams<'a>(Vec<(&'a str, &'a str)>);

impl<'a> PathParams<'a> {
    /// The value of `{name}` (or `{*name}`).
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.0.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }

    /// Every parameter, in the pattern's order.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, &'a str)> + '_ {
        self.0.iter().copied()
    }
}

/// What a route does: a [`Handler`] given the path's parameters. Any
/// `Fn(&Request, &mut Response, &PathParams)` is one; a route that
/// streams its request body implements `on_head` too.
pub trait Route {
    /// Answers a complete request (see `Handler::handle`).
    fn handle(&self, req: &Request<'_>, res: &mut Response<'_>, params: &PathParams<'_>);

    /// What to do with the body (see `Handler::on_head`); read whole by
    /// default.
    fn on_head(&self, req: &Request<'_>, params: &PathParams<'_>) -> BodyPlan {
        let _ = (req, params);
        BodyPlan::Buffer
    }
}

impl<F> Route for F
where
    F: Fn(&Request<'_>, &mut Response<'_>, &PathParams<'_>),
{
    fn handle(&self, req: &Request<'_>, res: &mut Response<'_>, params: &PathParams<'_>) {
        self(req, res, params)
    }
}

/// A route that streams its request body: `on_head` says how (a
/// `BodyPlan::Stream` whose sink answers at the end); a request that came
/// without a body is answered 400.
pub fn streamed<F>(on_head: F) -> Streamed<F>
where
    F: Fn(&Request<'_>, &PathParams<'_>) -> BodyPlan,
{
    Streamed(on_head)
}

/// See [`streamed`].
pub struct Streamed<F>(F);

impl<F> Route for Streamed<F>
where
    F: Fn(&Request<'_>, &PathParams<'_>) -> BodyPlan,
{
    fn handle(&self, _: &Request<'_>, res: &mut Response<'_>, _: &PathParams<'_>) {
        res.plain(400, "400 Bad Request: a body was expected\n");
    }

    fn on_head(&self, req: &Request<'_>, params: &PathParams<'_>) -> BodyPlan {
        (self.0)(req, params)
    }
}

type Render = Box<dyn Fn(&Refusal<'_>) -> Option<Rendered>>;

/// Routes by method and path (see the module).
#[derive(Default)]
pub struct Router {
    paths: matchit::Router<usize>,
    /// Per path pattern: its methods and their routes.
    entries: Vec<Vec<(String, Box<dyn Route>)>>,
    patterns: Vec<String>,
    render: Option<Render>,
}

/// What a request finds.
enum Lookup<'a> {
    Route(&'a dyn Route, PathParams<'a>),
    /// The path exists, not for this method: these do.
    NotAllowed(String),
    NotFound,
}

impl Router {
    /// A router with no routes (every request 404).
    pub fn new() -> Router {
        Router::default()
    }

    /// Adds `route` for `method` on `pattern` (`/a/{param}/b`,
    /// `/static/{*rest}`). A `GET` route answers `HEAD` too.
    ///
    /// # Panics
    /// On a pattern `matchit` refuses (malformed, or in conflict with one
    /// added before) or a method given twice for a pattern: a mistake in
    /// the program, found when it starts, as axum does.
    pub fn route(&mut self, method: &str, pattern: &str, route: impl Route + 'static) -> &mut Self {
        let i = match self.patterns.iter().position(|p| p == pattern) {
            Some(i) => i,
            None => {
                let i = self.entries.len();
                if let Err(e) = self.paths.insert(pattern, i) {
                    panic!("route {pattern:?}: {e}");
                }
                self.entries.push(Vec::new());
                self.patterns.push(pattern.to_string());
                i
            }
        };
        let method = method.to_ascii_uppercase();
        assert!(
            !self.entries[i].iter().any(|(m, _)| *m == method),
            "route {method} {pattern:?} given twice"
        );
        self.entries[i].push((method, Box::new(route)));
        self
    }

    /// A `GET` (and `HEAD`) route.
    pub fn get(&mut self, pattern: &str, route: impl Route + 'static) -> &mut Self {
        self.route("GET", pattern, route)
    }

    /// A `POST` route.
    pub fn post(&mut self, pattern: &str, route: impl Route + 'static) -> &mut Self {
        self.route("POST", pattern, route)
    }

    /// A `PUT` route.
    pub fn put(&mut self, pattern: &str, route: impl Route + 'static) -> &mut Self {
        self.route("PUT", pattern, route)
    }

    /// A `DELETE` route.
    pub fn delete(&mut self, pattern: &str, route: impl Route + 'static) -> &mut Self {
        self.route("DELETE", pattern, route)
    }

    /// Renders the router's 404 and 405 and the engine's refusals (see
    /// `Handler::refusal`): `None` keeps plain text.
    pub fn on_refusal(
        &mut self,
        render: impl Fn(&Refusal<'_>) -> Option<Rendered> + 'static,
    ) -> &mut Self {
        self.render = Some(Box::new(render));
        self
    }

    fn find<'a>(&'a self, req: &Request<'a>) -> Lookup<'a> {
        let Ok(m) = self.paths.at(req.path()) else {
            return Lookup::NotFound;
        };
        let methods = &self.entries[*m.value];
        let method = req.method();
        let route = methods
            .iter()
            .find(|(mm, _)| mm == method)
            .or_else(|| (method == "HEAD").then(|| methods.iter().find(|(m, _)| m == "GET"))?);
        match route {
            Some((_, r)) => {
                let params = m.params.iter().collect();
                Lookup::Route(r.as_ref(), PathParams(params))
            }
            None => {
                let mut allow: Vec<&str> = methods.iter().map(|(m, _)| m.as_str()).collect();
                if allow.contains(&"GET") {
                    allow.push("HEAD");
                }
                allow.sort_unstable();
                Lookup::NotAllowed(allow.join(", "))
            }
        }
    }

    /// Answers `status` for the router itself, rendered like a refusal.
    fn refuse(&self, status: u16, reason: &str, res: &mut Response<'_>) {
        let refusal = Refusal { status, reason };
        let r = self.refusal(&refusal).unwrap_or_else(|| {
            Rendered::new("text/plain; charset=utf-8", format!("{status} {reason}\n"))
        });
        res.status(status)
            .header("Content-Type", r.content_type.as_bytes())
            .body(r.body);
    }
}

impl Handler for Router {
    fn handle(&self, req: &Request<'_>, res: &mut Response<'_>) {
        match self.find(req) {
            Lookup::Route(r, params) => r.handle(req, res, &params),
            Lookup::NotAllowed(allow) => {
                res.header("Allow", allow.as_bytes());
                self.refuse(405, "method not allowed", res);
            }
            Lookup::NotFound => self.refuse(404, "not found", res),
        }
    }

    fn on_head(&self, req: &Request<'_>) -> BodyPlan {
        match self.find(req) {
            Lookup::Route(r, params) => r.on_head(req, &params),
            // Answered without the body, which is read and thrown away.
            _ => BodyPlan::Discard,
        }
    }

    fn refusal(&self, refusal: &Refusal<'_>) -> Option<Rendered> {
        self.render.as_ref().and_then(|f| f(refusal))
    }
}
