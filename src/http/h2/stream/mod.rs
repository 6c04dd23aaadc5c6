//! One HTTP/2 stream: its request head rebuilt as HTTP/1.1's and parsed by
//! the one parser (the same rules, the same `Request` for handlers), its
//! body taken as the handler's `BodyPlan` says (the window opens only as
//! the body is taken), the handler's one answer, and the response's DATA
//! sent as the peer's windows allow.

mod body;
mod deferred;

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use h2::server::SendResponse;
use h2::{RecvStream, SendStream};

use crate::http::conn::Ctx;
use crate::http::deferred::{ReadState, Stepwise};
use crate::http::events::{Event, Kept, Seen, Severity};
use crate::http::fields::{rebuild_head, trailer_lines};
use crate::http::head::{self, Head};
use crate::http::output::Output;
use crate::http::reply::ReplyKey;
use crate::http::request::Request;
use crate::http::response::{Body, Response};
use crate::http::sink::{BodyPlan, BodySink};
use crate::http::status::{Reject, has_no_body};
use crate::sys::Addr;
use body::Source;
use deferred::Deferred;

/// Most body bytes offered to `h2` at once: it frames them by the peer's
/// `SETTINGS_MAX_FRAME_SIZE` and sends as its windows allow.
const STEP: usize = 64 * 1024;

/// `METHOD TARGET HTTP/2.0` for the access line.
struct Line<'a>(&'a Request<'a>);

impl fmt::Display for Line<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} HTTP/2.0", self.0.method(), self.0.target())
    }
}

/// Room in the peer's windows for up to `want` bytes of a stream's DATA
/// (asked for now): `Some(0)` none yet, `None` the stream is gone (reset
/// by the peer, or the connection ended).
fn window(send: &mut SendStream<Bytes>, want: usize, cx: &mut Context<'_>) -> Option<usize> {
    send.reserve_capacity(want.max(1));
    match send.poll_capacity(cx) {
        Poll::Ready(Some(Ok(n))) => Some(n),
        Poll::Ready(Some(Err(_)) | None) => None,
        // Capacity already there raises no new readiness.
        Poll::Pending => Some(send.capacity()),
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
    Receiving(RecvStream, Plan),
    /// Answered; reading and throwing away the rest of the body while
    /// the response goes out (`BodyPlan::Discard`, or a refused body).
    Sending(SendStream<Bytes>, Source),
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
    respond: Option<SendResponse<Bytes>>,
    phase: Phase,
    /// A body still coming after the answer, read and dropped.
    drain: Option<RecvStream>,
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
    /// A new stream: its head rebuilt and checked; a request without a body
    /// is answered at once.
    pub(super) fn open(
        req: http::Request<RecvStream>,
        respond: SendResponse<Bytes>,
        peer: &Addr,
        now: Instant,
        ctx: &mut Ctx<'_>,
    ) -> Stream {
        let (parts, recv) = req.into_parts();
        let buf = rebuild_head(&parts);
        let mut s = Stream {
            id: u64::from(u32::from(respond.stream_id())),
            buf,
            head: Head::default(),
            respond: Some(respond),
            phase: Phase::Done,
            drain: None,
            trailers: Vec::new(),
            unreleased: 0,
            began: now,
            progress: now,
        };
        let mut scanned = 0;
        match head::parse(&s.buf, &mut scanned, ctx.limits, &mut s.head) {
            Ok(true) => {}
            Ok(false) => {
                let rej = Reject::new(400, "an incomplete request head");
                s.refuse(rej, Some(recv), peer, ctx);
                return s;
            }
            Err(rej) => {
                s.refuse(rej, Some(recv), peer, ctx);
                return s;
            }
        }
        if recv.is_end_stream() {
            s.answer(&[], None, peer, now, ctx);
            return s;
        }
        let plan = {
            let req = s.request(&[], peer, ReadState::MessageReady, now);
            catch_unwind(AssertUnwindSafe(|| ctx.handler.on_head(&req)))
        };
        // A client waiting for `100 Continue` before it sends the body
        // (RFC 9110 §10.1.1) hears it only when the body will be read.
        let reads_body = matches!(plan, Ok(BodyPlan::Buffer | BodyPlan::Stream(_)));
        if reads_body
            && s.head.expect_continue
            && let Some(respond) = s.respond.as_mut()
        {
            let mut continue_ = http::Response::new(());
            *continue_.status_mut() = http::StatusCode::CONTINUE;
            let _ = respond.send_informational(continue_);
        }
        match plan {
            Ok(BodyPlan::Buffer) => s.phase = Phase::Receiving(recv, Plan::Buffer(Vec::new())),
            Ok(BodyPlan::Stream(sink)) => s.phase = Phase::Receiving(recv, Plan::Sink(sink, 0)),
            Ok(BodyPlan::Skip | BodyPlan::Discard) => {
                s.drain = Some(recv);
                s.answer(&[], None, peer, now, ctx);
            }
            Err(_) => {
                let what = "on_head panicked; answered 500";
                trouble(ctx, peer, Severity::Error, &what);
                s.refuse(Reject::new(500, "handler panicked"), Some(recv), peer, ctx);
            }
        }
        s
    }

    /// Nothing more to do: answered, sent, and the body read.
    pub(super) fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Done) && self.drain.is_none()
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
            Phase::Deferred(d) => d.send.is_some() && !d.queued.is_empty(),
            _ => false,
        }
    }

    fn request<'a>(
        &'a self,
        body: &'a [u8],
        peer: &'a Addr,
        state: ReadState,
        now: Instant,
    ) -> Request<'a> {
        Request::new(
            &self.buf,
            &self.head,
            body,
            &self.trailers,
            peer,
            state,
            true,
            now,
        )
    }

    /// Body bytes held for the handler (a `BodyPlan::Buffer` body).
    pub(super) fn buffered(&self) -> usize {
        match &self.phase {
            Phase::Receiving(_, Plan::Buffer(b)) => b.len(),
            _ => 0,
        }
    }

    /// Moves what can move. `true` if anything did. `room`: body bytes the
    /// connection may still hold for its streams' handlers, beyond what
    /// they hold (`Buffers`).
    pub(super) fn drive(
        &mut self,
        cx: &mut Context<'_>,
        peer: &Addr,
        now: Instant,
        ctx: &mut Ctx<'_>,
        room: &mut Room,
    ) -> bool {
        let mut progress = self.drain_body(cx);
        self.release_held(room);
        loop {
            let moved = match &mut self.phase {
                Phase::Receiving(..) => self.receive(cx, peer, now, ctx, room),
                Phase::Sending(..) => self.send(cx, peer, ctx),
                Phase::Deferred(..) => self.send_deferred(cx),
                Phase::Done => false,
            };
            progress |= moved;
            if !moved {
                return progress;
            }
        }
    }

    /// A body being thrown away: read it and give its window back.
    fn drain_body(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(recv) = &mut self.drain else {
            return false;
        };
        let mut moved = false;
        loop {
            match recv.poll_data(cx) {
                Poll::Ready(Some(Ok(d))) => {
                    let _ = recv.flow_control().release_capacity(d.len());
                    moved = true;
                }
                Poll::Ready(_) => {
                    self.drain = None;
                    return true;
                }
                Poll::Pending => return moved,
            }
        }
    }

    /// Gives back the window of body bytes held unreleased, as far as the
    /// connection's room allows (always, for the stream holding the most).
    fn release_held(&mut self, room: &mut Room) {
        if self.unreleased == 0 {
            return;
        }
        let Phase::Receiving(recv, Plan::Buffer(_)) = &mut self.phase else {
            self.unreleased = 0;
            return;
        };
        let give = if room.leader == Some(self.id) {
            self.unreleased
        } else {
            self.unreleased.min(room.bytes)
        };
        if give > 0 {
            let _ = recv.flow_control().release_capacity(give);
            room.bytes = room.bytes.saturating_sub(give);
            self.unreleased -= give;
        }
    }

    fn receive(
        &mut self,
        cx: &mut Context<'_>,
        peer: &Addr,
        now: Instant,
        ctx: &mut Ctx<'_>,
        room: &mut Room,
    ) -> bool {
        let Phase::Receiving(recv, plan) = &mut self.phase else {
            return false;
        };
        match recv.poll_data(cx) {
            Poll::Pending => false,
            Poll::Ready(Some(Ok(data))) => {
                self.progress = now;
                let n = data.len();
                let refused = match plan {
                    Plan::Buffer(b) if (b.len() + n) as u64 > ctx.limits.max_body => {
                        Some(Reject::new(413, "request body too large"))
                    }
                    Plan::Buffer(b) => {
                        b.extend_from_slice(&data);
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
                // Taken: the peer may send as much again, at once if the
                // handler's sink took it, else as the connection's room for
                // held bodies allows (`release_held`).
                if matches!(plan, Plan::Buffer(_)) && refused.is_none() {
                    self.unreleased += n;
                    self.release_held(room);
                } else {
                    let _ = recv.flow_control().release_capacity(n);
                }
                if let Some(rej) = refused {
                    let Phase::Receiving(recv, _) = std::mem::replace(&mut self.phase, Phase::Done)
                    else {
                        return true;
                    };
                    self.refuse(rej, Some(recv), peer, ctx);
                }
                true
            }
            Poll::Ready(Some(Err(e))) => {
                // The peer reset the stream: nobody to answer.
                let what = format_args!("HTTP/2 stream reset while its body came: {e}");
                trouble(ctx, peer, Severity::Debug, &what);
                self.phase = Phase::Done;
                self.respond = None;
                true
            }
            Poll::Ready(None) => {
                // The body has ended; trailers, if the client sent some,
                // are here by now.
                match recv.poll_trailers(cx) {
                    Poll::Ready(Ok(Some(map))) => self.trailers = trailer_lines(&map),
                    // Not yet: asked again on the next turn.
                    Poll::Pending => return false,
                    Poll::Ready(_) => {}
                }
                let Phase::Receiving(_, plan) = std::mem::replace(&mut self.phase, Phase::Done)
                else {
                    return true;
                };
                match plan {
                    Plan::Buffer(body) => self.answer(&body, None, peer, now, ctx),
                    Plan::Sink(mut sink, _) => self.answer(&[], Some(&mut *sink), peer, now, ctx),
                }
                true
            }
        }
    }

    /// Sends what the windows allow. `true` if anything went.
    fn send(&mut self, cx: &mut Context<'_>, peer: &Addr, ctx: &mut Ctx<'_>) -> bool {
        let Phase::Sending(send, source) = &mut self.phase else {
            return false;
        };
        let mut moved = false;
        loop {
            let Some(cap) = window(send, source.wants(), cx) else {
                // Reset by the peer (or the connection ended).
                self.phase = Phase::Done;
                return true;
            };
            if cap == 0 {
                return moved;
            }
            let (chunk, last) = match source.take(cap) {
                Ok(c) => c,
                Err(e) => {
                    let what = format_args!("HTTP/2 response body failed: {e}; stream reset");
                    trouble(ctx, peer, Severity::Warn, &what);
                    send.send_reset(h2::Reason::INTERNAL_ERROR);
                    self.phase = Phase::Done;
                    return true;
                }
            };
            if chunk.is_empty() && !last {
                // A stream body with nothing yet: asked again next turn.
                return moved;
            }
            if send.send_data(chunk, last).is_err() || last {
                self.phase = Phase::Done;
                return true;
            }
            moved = true;
        }
    }

    /// Answers a request the engine refuses (its head, its body).
    fn refuse(&mut self, rej: Reject, recv: Option<RecvStream>, peer: &Addr, ctx: &mut Ctx<'_>) {
        ctx.observer.event(Event::Refused {
            peer,
            status: rej.status,
            reason: &rej.reason,
        });
        let plain = || format!("{} {}\n", rej.status, rej.reason);
        let (lines, body) = crate::http::refusal::render(ctx.handler, &rej, plain);
        self.respond_with(rej.status, &lines, body, ctx);
        // What the client still sends is read and dropped (its window
        // given back), so the connection's window does not close.
        self.drain = recv;
    }

    /// Runs the handler on the complete request and starts the response.
    fn answer(
        &mut self,
        body: &[u8],
        sink: Option<&mut dyn BodySink>,
        peer: &Addr,
        now: Instant,
        ctx: &mut Ctx<'_>,
    ) {
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
            let req = self.request(body, peer, ReadState::Finished, now);
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
                        let req = self.request(&[], peer, ReadState::Finished, now);
                        let line = Line(&req);
                        Seen::of(&req, &line, ctx.observer.wants())
                            .map_or_else(Kept::default, |s| Kept::of(s, self.began))
                    };
                    self.phase = Phase::Deferred(Box::new(Deferred {
                        st: Stepwise::for_h2(self.head.is_head).linked(res.deferred.take()),
                        out: Output::default(),
                        send: None,
                        queued: Default::default(),
                        kept,
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
        self.respond_with(status, &headers, body, ctx);
        let mut headers = headers;
        headers.clear();
        *ctx.scratch = headers;
        let req = self.request(&[], peer, ReadState::Finished, now);
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
    fn respond_with(&mut self, status: u16, lines: &[u8], body: Body, ctx: &mut Ctx<'_>) {
        let Some(mut respond) = self.respond.take() else {
            self.phase = Phase::Done;
            return;
        };
        let no_body = self.head.is_head || has_no_body(status);
        let length = if has_no_body(status) {
            None
        } else {
            body.len()
        };
        let Some(head) = ctx
            .heads
            .response(status, ctx.date, ctx.static_headers, lines, length)
        else {
            // A field `http` refuses though our checks let it through.
            respond.send_reset(h2::Reason::INTERNAL_ERROR);
            self.phase = Phase::Done;
            return;
        };
        let end = no_body || body.is_empty();
        match respond.send_response(head, end) {
            Ok(send) if !end => self.phase = Phase::Sending(send, Source::of(body)),
            _ => self.phase = Phase::Done,
        }
    }
}
