//! One HTTP/2 stream: its request head rebuilt as HTTP/1.1's and parsed by
//! the one parser (the same rules, the same `Request` for handlers), its
//! body taken as the handler's `BodyPlan` says (the window opens only as
//! the body is taken), the handler's one answer, and the response's DATA
//! sent as the peer's windows allow.

mod body;
mod deferred;

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

use super::fields::response_block;
use super::frame::INTERNAL_ERROR;
use super::hpack;
use super::session::{Opened, Session};
use crate::http::conn::Ctx;
use crate::http::deferred::{ReadState, Stepwise};
use crate::http::events::{Event, Kept, Seen, Severity};
use crate::http::head::{self, Head};
use crate::http::output::Output;
use crate::http::reply::ReplyKey;
use crate::http::request::{Request, Via};
use crate::http::response::{Body, Response};
use crate::http::sink::{BodyPlan, BodySink};
use crate::http::status::{Reject, has_no_body};
use crate::sys::Addr;
use body::Source;
use deferred::Deferred;

/// `METHOD TARGET HTTP/2.0` for the access line.
struct Line<'a>(&'a Request<'a>);

impl fmt::Display for Line<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} HTTP/2.0", self.0.method(), self.0.target())
    }
}

/// How many body bytes a connection may still hold for its streams'
/// handlers before their windows stop being given back, and the stream
/// that may go on anyway (the one holding the most: it finishes first and
/// frees its share, so streams never wait on each other for good).
pub(in crate::http::h2) struct Room {
    pub(in crate::http::h2) bytes: usize,
    pub(in crate::http::h2) leader: Option<u64>,
}

/// What is done with the request body as it arrives.
enum Plan {
    /// Gathered whole, up to `max_body`.
    Buffer(Vec<u8>),
    /// Given to the handler's sink piece by piece.
    Sink(Box<dyn BodySink>, u64),
}

enum Phase {
    /// Reading the request body.
    Receiving(Plan),
    /// Answered; the body goes as the windows allow.
    Sending(Source),
    /// Waiting for a deferred response's jobs, and sending what they wrote.
    Deferred(Box<Deferred>),
    Done,
}

pub(super) struct Stream {
    /// The stream's id: a deferred response's `Reply` names it.
    pub(super) id: u64,
    /// The request head as HTTP/1.1 text, and its parse.
    buf: Vec<u8>,
    head: Head,
    /// The response's HEADERS went.
    answered: bool,
    phase: Phase,
    /// The request's trailer fields, `name: value\r\n` each, as HTTP/1.1's
    /// trailer section (`Request::trailers`).
    trailers: Vec<u8>,
    /// Body bytes held whose window was not given back yet.
    unreleased: usize,
    began: Instant,
    /// When body bytes last came (the body deadline).
    pub(super) progress: Instant,
}

/// Tells the connection's observer of trouble with a stream.
fn trouble(ctx: &mut Ctx<'_>, peer: &Addr, severity: Severity, what: &dyn std::fmt::Display) {
    ctx.observer.event(Event::Trouble {
        peer,
        severity,
        what,
    });
}

impl Stream {
    /// A new stream: its head checked; a request without a body is
    /// answered at once.
    pub(super) fn open(
        o: Opened,
        sess: &mut Session,
        (peer, via): (&Addr, Via<'_>),
        now: Instant,
        ctx: &mut Ctx<'_>,
    ) -> Stream {
        let mut s = Stream {
            id: u64::from(o.id),
            buf: o.head,
            head: Head::default(),
            answered: false,
            phase: Phase::Done,
            trailers: Vec::new(),
            unreleased: 0,
            began: now,
            progress: now,
        };
        if o.oversized {
            let rej = Reject::new(431, "request header fields too large");
            s.refuse(rej, sess, peer, ctx);
            return s;
        }
        let mut scanned = 0;
        match head::parse(&s.buf, &mut scanned, ctx.limits, &mut s.head) {
            Ok(true) => {}
            Ok(false) => {
                let rej = Reject::new(400, "an incomplete request head");
                s.refuse(rej, sess, peer, ctx);
                return s;
            }
            Err(rej) => {
                s.refuse(rej, sess, peer, ctx);
                return s;
            }
        }
        if o.end {
            s.answer(&[], None, sess, (peer, via), now, ctx);
            return s;
        }
        let plan = {
            let req = s.request(&[], (peer, via), ReadState::MessageReady, now);
            catch_unwind(AssertUnwindSafe(|| ctx.handler.on_head(&req)))
        };
        // A client waiting for `100 Continue` before it sends the body
        // (RFC 9110 §10.1.1) hears it only when the body will be read.
        let reads_body = matches!(plan, Ok(BodyPlan::Buffer | BodyPlan::Stream(_)));
        if reads_body && s.head.expect_continue {
            sess.send_headers(o.id, false, |b| hpack::status(b, 100));
        }
        match plan {
            Ok(BodyPlan::Buffer) => s.phase = Phase::Receiving(Plan::Buffer(Vec::new())),
            Ok(BodyPlan::Stream(sink)) => s.phase = Phase::Receiving(Plan::Sink(sink, 0)),
            Ok(BodyPlan::Skip | BodyPlan::Discard) => {
                s.answer(&[], None, sess, (peer, via), now, ctx)
            }
            Err(_) => {
                let what = "on_head panicked; answered 500";
                trouble(ctx, peer, Severity::Error, &what);
                s.refuse(Reject::new(500, "handler panicked"), sess, peer, ctx);
            }
        }
        s
    }

    pub(super) fn sid(&self) -> u32 {
        self.id as u32
    }

    /// Nothing more to do: answered and sent.
    pub(super) fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Done)
    }

    /// Still reading its request body (the body deadline applies).
    pub(super) fn is_receiving(&self) -> bool {
        matches!(self.phase, Phase::Receiving(..))
    }

    /// Has a response that waits for the peer's windows (a body being
    /// sent, or a deferred one's bytes queued).
    pub(super) fn awaits_window(&self) -> bool {
        match &self.phase {
            Phase::Sending(..) => true,
            Phase::Deferred(d) => self.answered && d.pos < d.queued.len(),
            _ => false,
        }
    }

    fn request<'a>(
        &'a self,
        body: &'a [u8],
        at: (&'a Addr, Via<'a>),
        state: ReadState,
        now: Instant,
    ) -> Request<'a> {
        Request::new(
            &self.buf,
            &self.head,
            body,
            &self.trailers,
            at,
            state,
            true,
            now,
        )
    }

    /// Body bytes held for the handler (a `BodyPlan::Buffer` body).
    pub(super) fn buffered(&self) -> usize {
        match &self.phase {
            Phase::Receiving(Plan::Buffer(b)) => b.len(),
            _ => 0,
        }
    }

    /// Moves what can move. `true` if anything did. `room`: body bytes the
    /// connection may still hold for its streams' handlers, beyond what
    /// they hold (`Buffers`).
    pub(super) fn drive(
        &mut self,
        sess: &mut Session,
        (peer, via): (&Addr, Via<'_>),
        now: Instant,
        ctx: &mut Ctx<'_>,
        room: &mut Room,
    ) -> bool {
        let mut progress = false;
        self.release_held(sess, room);
        loop {
            let moved = match &mut self.phase {
                Phase::Receiving(..) => self.receive(sess, (peer, via), now, ctx, room),
                Phase::Sending(..) => self.send(sess, peer, ctx),
                Phase::Deferred(..) => self.send_deferred(sess),
                Phase::Done => false,
            };
            progress |= moved;
            if !moved {
                return progress;
            }
        }
    }

    /// Gives back the window of body bytes held unreleased, as far as the
    /// connection's room allows (always, for the stream holding the most).
    fn release_held(&mut self, sess: &mut Session, room: &mut Room) {
        if self.unreleased == 0 {
            return;
        }
        if !matches!(self.phase, Phase::Receiving(Plan::Buffer(_))) {
            // The session gave it back when the stream's side ended.
            self.unreleased = 0;
            return;
        }
        let give = if room.leader == Some(self.id) {
            self.unreleased
        } else {
            self.unreleased.min(room.bytes)
        };
        if give > 0 {
            sess.release(self.sid(), give);
            room.bytes = room.bytes.saturating_sub(give);
            self.unreleased -= give;
        }
    }

    fn receive(
        &mut self,
        sess: &mut Session,
        (peer, via): (&Addr, Via<'_>),
        now: Instant,
        ctx: &mut Ctx<'_>,
        room: &mut Room,
    ) -> bool {
        let id = self.sid();
        let Some(data) = sess.take_data(id) else {
            // The peer reset the stream: nobody to answer.
            trouble(
                ctx,
                peer,
                Severity::Debug,
                &"HTTP/2 stream reset while its body came",
            );
            self.phase = Phase::Done;
            return true;
        };
        let Phase::Receiving(plan) = &mut self.phase else {
            return false;
        };
        if data.is_empty() {
            if sess.remote_ended(id) != Some(true) {
                return false;
            }
            // The body has ended, and its trailers came with the end.
            self.trailers = sess.take_trailers(id);
            let Phase::Receiving(plan) = std::mem::replace(&mut self.phase, Phase::Done) else {
                return true;
            };
            match plan {
                Plan::Buffer(body) => self.answer(&body, None, sess, (peer, via), now, ctx),
                Plan::Sink(mut sink, _) => {
                    self.answer(&[], Some(&mut *sink), sess, (peer, via), now, ctx)
                }
            }
            return true;
        }
        self.progress = now;
        let n = data.len();
        let refused = match plan {
            Plan::Buffer(b) if (b.len() + n) as u64 > ctx.limits.max_body => {
                Some(Reject::new(413, "request body too large"))
            }
            Plan::Buffer(b) => {
                if b.is_empty() {
                    *b = data;
                } else {
                    b.extend_from_slice(&data);
                }
                None
            }
            Plan::Sink(_, got) if *got + n as u64 > ctx.limits.max_streamed_body => {
                Some(Reject::new(413, "request body too large"))
            }
            Plan::Sink(sink, got) => {
                *got += n as u64;
                match catch_unwind(AssertUnwindSafe(|| sink.data(&data))) {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => {
                        let (severity, what) = e.logged();
                        trouble(ctx, peer, severity, &what);
                        Some(Reject {
                            status: e.status,
                            reason: e.reason,
                        })
                    }
                    Err(_) => Some(Reject::new(500, "handler panicked")),
                }
            }
        };
        // Taken: the peer may send as much again, at once if the handler's
        // sink took it, else as the connection's room for held bodies
        // allows (`release_held`).
        if matches!(plan, Plan::Buffer(_)) && refused.is_none() {
            self.unreleased += n;
            self.release_held(sess, room);
        } else {
            sess.release(id, n);
        }
        if let Some(rej) = refused {
            self.phase = Phase::Done;
            self.refuse(rej, sess, peer, ctx);
        }
        true
    }

    /// Sends what the windows allow. `true` if anything went.
    fn send(&mut self, sess: &mut Session, peer: &Addr, ctx: &mut Ctx<'_>) -> bool {
        let id = self.sid();
        let Phase::Sending(source) = &mut self.phase else {
            return false;
        };
        let mut moved = false;
        loop {
            let Some(cap) = sess.capacity(id) else {
                // Reset by the peer (or the connection ended).
                self.phase = Phase::Done;
                return true;
            };
            if cap == 0 {
                return moved;
            }
            match sess.send_data_with(id, cap, |out, max| source.fill(out, max)) {
                Ok((_, true)) => {
                    self.phase = Phase::Done;
                    return true;
                }
                // A stream body with nothing yet: asked again next turn.
                Ok((0, false)) => return moved,
                Ok(_) => moved = true,
                Err(e) => {
                    let what = format_args!("HTTP/2 response body failed: {e}; stream reset");
                    trouble(ctx, peer, Severity::Warn, &what);
                    sess.reset(id, INTERNAL_ERROR);
                    self.phase = Phase::Done;
                    return true;
                }
            }
        }
    }

    /// Answers a request the engine refuses (its head, its body). What
    /// the client still sends is dropped, its window given back, so the
    /// connection's window does not close.
    fn refuse(&mut self, rej: Reject, sess: &mut Session, peer: &Addr, ctx: &mut Ctx<'_>) {
        ctx.observer.event(Event::Refused {
            peer,
            status: rej.status,
            reason: &rej.reason,
        });
        sess.discard_body(self.sid());
        let plain = || format!("{} {}\n", rej.status, rej.reason);
        let (lines, body) = crate::http::refusal::render(ctx.handler, &rej, plain);
        self.respond_with(rej.status, &lines, body, sess, ctx);
    }

    /// Runs the handler on the complete request and starts the response.
    fn answer(
        &mut self,
        body: &[u8],
        sink: Option<&mut dyn BodySink>,
        sess: &mut Session,
        (peer, via): (&Addr, Via<'_>),
        now: Instant,
        ctx: &mut Ctx<'_>,
    ) {
        // Whatever of the body the handler did not ask for is dropped.
        sess.discard_body(self.sid());
        let mut res = Response::new(ctx.scratch);
        let id = self.id;
        res.reply = ctx.replies.map(|(m, token, generation)| {
            (
                m,
                ReplyKey {
                    token,
                    generation,
                    id,
                },
            )
        });
        let outcome = {
            let req = self.request(body, (peer, via), ReadState::Finished, now);
            catch_unwind(AssertUnwindSafe(|| match sink {
                Some(s) => s.finish(&req, &mut res),
                None => ctx.handler.handle(&req, &mut res),
            }))
        };
        let failed: &'static [u8] = b"500 Internal Server Error\n";
        let text: &'static [u8] = b"content-type: text/plain; charset=utf-8\r\n";
        let (status, body, headers, note, trouble): (u16, Body, Vec<u8>, &str, Option<&str>) =
            match outcome {
                Ok(()) if res.hand_off => (
                    500,
                    Body::Static(failed),
                    text.to_vec(),
                    "hand_off on an HTTP/2 stream",
                    Some(
                        "a handler handed off an HTTP/2 stream: only an HTTP/1.1 connection can be taken over; answered 500",
                    ),
                ),
                Ok(()) if res.deferred.is_some() && res.misuse.is_none() => {
                    let kept = {
                        let req = self.request(&[], (peer, via), ReadState::Finished, now);
                        let line = Line(&req);
                        Seen::of(&req, &line, ctx.observer.wants())
                            .map_or_else(Kept::default, |s| Kept::of(s, self.began))
                    };
                    self.phase = Phase::Deferred(Box::new(Deferred {
                        st: Stepwise::for_h2(self.head.is_head).linked(res.deferred.take()),
                        out: Output::default(),
                        queued: Vec::new(),
                        pos: 0,
                        kept,
                        stream: None,
                    }));
                    return;
                }
                Ok(()) if res.misuse.is_none() => {
                    let body = std::mem::replace(&mut res.body, Body::Empty);
                    // Taken, not copied: the loop's scratch buffer, given
                    // back below.
                    (res.status, body, std::mem::take(res.headers), "", None)
                }
                Ok(()) => (
                    500,
                    Body::Static(failed),
                    text.to_vec(),
                    "handler misused the response",
                    Some("handler misused the response"),
                ),
                Err(_) => (
                    500,
                    Body::Static(failed),
                    text.to_vec(),
                    "handler panicked",
                    Some("handler panicked; answered 500"),
                ),
            };
        if let Some(what) = trouble {
            self::trouble(ctx, peer, Severity::Error, &what);
        }
        let sent = if self.head.is_head || has_no_body(status) {
            0
        } else {
            body.len().unwrap_or(0)
        };
        self.respond_with(status, &headers, body, sess, ctx);
        let mut headers = headers;
        headers.clear();
        *ctx.scratch = headers;
        let req = self.request(&[], (peer, via), ReadState::Finished, now);
        let line = Line(&req);
        let seen = Seen::of(&req, &line, ctx.observer.wants());
        ctx.observer.event(Event::Answered {
            peer,
            request: seen,
            status,
            sent,
            took: Some(now.saturating_duration_since(self.began)),
            note,
            http2: true,
        });
    }

    /// Sends the response head, and then the body as the windows allow.
    /// `lines`: `Name: value` lines (the connection-specific ones are left
    /// out); `date`, the static fields and `content-length` are ours.
    fn respond_with(
        &mut self,
        status: u16,
        lines: &[u8],
        body: Body,
        sess: &mut Session,
        ctx: &mut Ctx<'_>,
    ) {
        self.phase = Phase::Done;
        if self.answered {
            return;
        }
        let no_body = self.head.is_head || has_no_body(status);
        let length = if has_no_body(status) {
            None
        } else {
            body.len()
        };
        let end = no_body || body.len() == Some(0);
        let (date, statics, blocks) = (ctx.date, ctx.static_headers, &mut *ctx.heads);
        let sent = sess.send_headers(self.sid(), end, |b| {
            response_block(b, blocks, status, date, statics, lines, length)
        });
        self.answered = sent;
        if sent && !end {
            self.phase = Phase::Sending(Source::of(body));
        }
    }
}
