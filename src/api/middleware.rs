//! Middleware that cannot forget a method: it says what it does with a
//! request's head and with a response ([`Middleware`]), and [`Wrap`] puts
//! it around any handler, forwarding `handle`, `on_head` (so a streamed
//! upload stays streamed) and `refusal` itself.
//!
//! ```
//! use handoff::api::middleware::{Middleware, Wrap};
//! use handoff::{Answer, Request, Response};
//!
//! struct Bearer(&'static str);
//!
//! impl Middleware for Bearer {
//!     fn check(&self, req: &Request<'_>) -> Result<(), Answer> {
//!         let ok = req.method() == "GET"
//!             || req.header("Authorization").and_then(|v| v.strip_prefix("Bearer ")) == Some(self.0);
//!         if ok { Ok(()) } else { Err(Answer::new(401).body("who are you?\n")) }
//!     }
//! }
//!
//! let app = Wrap::new(|_: &Request<'_>, res: &mut Response<'_>| { res.body("hi\n"); }, Bearer("secret"));
//! # let _ = handoff::Server::new(handoff::Options::default(), app);
//! ```

use std::rc::Rc;

use crate::http::{
    Answer, BodyPlan, BodySink, Handler, Refusal, Rendered, Request, Response, SinkError,
};

/// What a middleware does around a handler.
pub trait Middleware {
    /// Looks at a request's head before the handler does, and before any
    /// of its body is read: `Err(answer)` answers instead (its body is
    /// then read and thrown away, or the connection closes). It runs once
    /// for a request without a body; for one with a body it runs at the
    /// head and again before the answer, so keep it a function of the
    /// head alone.
    fn check(&self, req: &Request<'_>) -> Result<(), Answer> {
        let _ = req;
        Ok(())
    }

    /// Runs on each response the handler gave (header fields to add, a
    /// status to log), streamed uploads' included. A deferred response
    /// is written later, by its `Reply`: what this sets on it is not sent.
    fn respond(&self, req: &Request<'_>, res: &mut Response<'_>) {
        let _ = (req, res);
    }
}

/// `inner` with `middleware` around it: a `Handler` itself, so wrappers
/// nest.
pub struct Wrap<H, M> {
    inner: H,
    middleware: Rc<M>,
}

impl<H: Handler, M: Middleware> Wrap<H, M> {
    /// Puts `middleware` around `inner`.
    pub fn new(inner: H, middleware: M) -> Self {
        Wrap {
            inner,
            middleware: Rc::new(middleware),
        }
    }
}

impl<H: Handler, M: Middleware + 'static> Handler for Wrap<H, M> {
    fn handle(&self, req: &Request<'_>, res: &mut Response<'_>) {
        match self.middleware.check(req) {
            Ok(()) => {
                self.inner.handle(req, res);
                self.middleware.respond(req, res);
            }
            Err(answer) => answer.apply(res),
        }
    }

    fn on_head(&self, req: &Request<'_>) -> BodyPlan {
        if self.middleware.check(req).is_err() {
            // `handle` answers with the refusal now; the body is not kept.
            return BodyPlan::Discard;
        }
        match self.inner.on_head(req) {
            BodyPlan::Stream(sink) => BodyPlan::Stream(Box::new(Streamed {
                sink,
                middleware: self.middleware.clone(),
            })),
            plan => plan,
        }
    }

    fn refusal(&self, refusal: &Refusal<'_>) -> Option<Rendered> {
        self.inner.refusal(refusal)
    }
}

/// A streamed body of the inner handler's, whose answer the middleware
/// sees too.
struct Streamed<M> {
    sink: Box<dyn BodySink>,
    middleware: Rc<M>,
}

impl<M: Middleware> BodySink for Streamed<M> {
    fn data(&mut self, chunk: &[u8]) -> Result<(), SinkError> {
        self.sink.data(chunk)
    }

    fn finish(&mut self, req: &Request<'_>, res: &mut Response<'_>) {
        self.sink.finish(req, res);
        self.middleware.respond(req, res);
    }
}
