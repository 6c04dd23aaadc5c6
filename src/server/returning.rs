//! Connections lent by another process and given back (`Socket::returning`):
//! where each goes, and which of the client's requests are ours to answer.
//!
//! The request a connection was lent for is ours. After it, a request is
//! ours only if the lender let us keep the connection (`KEEP`, an app's
//! side of `--app`) and its path lies under the route's prefix: any other,
//! pipelined behind the first or sent later, goes back with the bytes read
//! of it, unanswered, for the lender to route as if it had never left (its
//! rules, its other routes). So a client that keeps asking an app costs
//! no hop per request, and one that asks for something else, or sends a
//! second request the lender never saw, gets what the lender would give.

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::Mover;
use crate::http::{BodyPlan, Handler, Refusal, Rendered, Request, Response};

/// Where a lent connection goes once idle, and what may be kept here.
#[derive(Clone)]
pub(crate) struct Back {
    /// Gives the connection back, with the bytes read of a request that
    /// is not ours (empty when it is idle).
    pub(crate) mover: Mover,
    pub(crate) keep: Option<Arc<Keep>>,
    /// The request it was lent for is not answered yet.
    pub(crate) lent: Cell<bool>,
}

impl Back {
    pub(crate) fn new(mover: Mover) -> Back {
        Back {
            mover,
            keep: None,
            lent: Cell::new(true),
        }
    }

    /// May it stay here, idle, for the client's next request?
    pub(crate) fn kept(&self) -> bool {
        self.keep.as_ref().is_some_and(|k| k.holds())
    }

    fn ours(&self, req: &Request<'_>) -> bool {
        self.lent.get()
            || self
                .keep
                .as_ref()
                .is_some_and(|k| k.holds() && k.claims(req.path()))
    }
}

/// What a lender let us keep: requests under `prefix` (segments), until
/// the line is told to finish.
pub(crate) struct Keep {
    prefix: Vec<String>,
    finishing: Arc<AtomicBool>,
}

impl Keep {
    pub(crate) fn new(prefix: &str, finishing: Arc<AtomicBool>) -> Keep {
        Keep {
            prefix: prefix
                .split('/')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            finishing,
        }
    }

    /// Still ours to keep: the line is not finishing.
    pub(crate) fn holds(&self) -> bool {
        !self.finishing.load(Ordering::Relaxed)
    }

    /// Does a request for `path` (still percent-encoded) lie under the
    /// prefix, as the lender reads paths (`Site::app_route`): decoded,
    /// `.` and empty segments gone, nothing that climbs with `..`?
    pub(crate) fn claims(&self, path: &str) -> bool {
        let Some(Some(decoded)) = crate::files::relative_path(path) else {
            return false;
        };
        let mut segments = decoded.split('/').filter(|s| !s.is_empty());
        self.prefix
            .iter()
            .all(|p| segments.next().is_some_and(|s| s == p))
    }
}

/// What a request that is not ours is handed off with: it goes back.
pub(crate) struct GoingBack;

/// The server's handler, for a lent connection: ours are answered by it,
/// the others handed off to go back (`GoingBack`), their bodies unread.
pub(crate) struct Claimed<'a> {
    pub(crate) inner: &'a dyn Handler,
    pub(crate) back: &'a Back,
}

impl Handler for Claimed<'_> {
    fn handle(&self, req: &Request<'_>, res: &mut Response<'_>) {
        if self.back.ours(req) {
            self.back.lent.set(false);
            self.inner.handle(req, res);
        } else {
            res.hand_off_with(GoingBack);
        }
    }

    fn on_head(&self, req: &Request<'_>) -> BodyPlan {
        if self.back.ours(req) {
            self.inner.on_head(req)
        } else {
            BodyPlan::Skip
        }
    }

    fn refusal(&self, refusal: &Refusal<'_>) -> Option<Rendered> {
        // A request the engine answered itself (a body too large for us,
        // say) is answered: the lent one too, and what follows is judged.
        self.back.lent.set(false);
        self.inner.refusal(refusal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_under_the_prefix_is_claimed_as_the_lender_reads_it() {
        let k = Keep::new("/api", Arc::default());
        for (path, want) in [
            ("/api", true),
            ("/api/", true),
            ("/api/x", true),
            ("//api/./x", true),
            ("/%61pi/x", true),
            ("/apix", false),
            ("/index.html", false),
            ("/api/../index.html", false),
            ("/api/%00", false),
            ("/%ff", false),
            ("", false),
        ] {
            assert_eq!(k.claims(path), want, "{path:?}");
        }
    }

    #[test]
    fn a_root_prefix_claims_every_path_that_decodes() {
        let k = Keep::new("/", Arc::default());
        assert!(k.claims("/"));
        assert!(k.claims("/a/b"));
        assert!(!k.claims("/a/%00"));
    }

    #[test]
    fn a_finishing_line_keeps_nothing() {
        let finishing = Arc::new(AtomicBool::new(false));
        let k = Keep::new("/api/v1/", finishing.clone());
        assert!(k.holds());
        assert!(k.claims("/api/v1/x"));
        assert!(!k.claims("/api/v2/x"));
        finishing.store(true, Ordering::Relaxed);
        assert!(!k.holds());
    }
}
