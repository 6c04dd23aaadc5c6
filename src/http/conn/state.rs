//! Where a connection is, in three parts that change together and only
//! here (hyper's `State { reading, writing, keep_alive }`): what is being
//! read, what is being written, and whether another request may follow.
//!
//! Responses to pipelined requests are encoded whole into the output queue
//! in order, so writing a plain response is not a state: `Writing::Queue`
//! covers any number of them. The other writing states are the ones that
//! stop the next request from being dispatched: a step-wise (deferred)
//! response, a hand-off, the linger after our close, an abort.

use std::time::Instant;

use crate::http::chunked::Chunked;
use crate::http::deferred::{Stepwise, WriteState};
use crate::http::sink::BodySink;

pub(super) enum Decoder {
    Length(u64),
    Chunked(Chunked),
}

pub(super) enum Reading {
    /// Between requests: no byte of the next one yet.
    Idle,
    /// Part of a request head has arrived.
    Head,
    /// The head is parsed; its body is arriving, to be read whole or
    /// streamed to a sink.
    Body(Decoder, Option<Box<dyn BodySink>>),
    /// The request was answered before its body (`BodyPlan::Discard`); the
    /// body is read and thrown away, then the next request may begin.
    Discard(Decoder),
    /// The request is read and dispatched; its response is still being
    /// written in steps. `try_keep_alive` decides what follows once it ends.
    KeepAlive,
    /// No more requests are read on this connection.
    Closed,
}

/// What a connection a handler handed off leaves HTTP with.
pub(super) struct HandingOff {
    pub(super) head: Vec<u8>,
    pub(super) context: Option<crate::http::response::HandOffContext>,
    /// What its access line repeats (written by the receiver).
    pub(super) seen: crate::http::events::Kept,
}

/// A step-wise response in progress (`Response::defer`).
pub(super) struct Deferred {
    pub(super) id: u64,
    pub(super) st: Stepwise,
    pub(super) since: Instant,
    /// What the access line repeats of the request.
    pub(super) seen: crate::http::events::Kept,
}

pub(super) enum Writing {
    /// Whole responses are queued in order; more may follow.
    Queue,
    /// A deferred response is being written through a `Reply`; no further
    /// request is dispatched until it ends.
    Deferred(Box<Deferred>),
    /// A handler took the connection over: once the queue is sent, the
    /// socket leaves HTTP with the head and the bytes read after it.
    /// (Boxed, as `Deferred`: every transition moves this enum, and the
    /// hand-off is rare.)
    HandOff(Box<HandingOff>),
    /// Everything is sent and our side is shut down: read and discard until
    /// the peer closes or `until` passes.
    Lingering { until: Instant },
    /// A response cannot be completed properly: close now, no linger (a
    /// cut body must not look whole).
    Aborted,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum KeepAlive {
    /// Between requests.
    Idle,
    /// A request is being read or answered, and another may follow it.
    Busy,
    /// This is the last request (`Connection: close`, a skipped body, a
    /// refusal, draining).
    Disabled,
}

/// What the I/O layer should do with the connection next.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// Keep serving.
    Continue,
    /// A handler took the connection over: call `take_hand_off`.
    HandOff,
    /// Everything is sent: shut down our side and keep reading, discarding,
    /// until the peer closes or the linger deadline passes.
    ShutdownWrite,
    /// Close the socket now.
    Close,
}

pub(super) struct State {
    pub(super) reading: Reading,
    pub(super) writing: Writing,
    pub(super) keep_alive: KeepAlive,
    /// The peer ended its input (a read returned 0).
    pub(super) eof: bool,
}

impl State {
    pub(super) fn new() -> State {
        State {
            reading: Reading::Idle,
            writing: Writing::Queue,
            keep_alive: KeepAlive::Idle,
            eof: false,
        }
    }

    /// The first byte of a request arrived.
    pub(super) fn busy(&mut self) {
        self.reading = Reading::Head;
        if self.keep_alive == KeepAlive::Idle {
            self.keep_alive = KeepAlive::Busy;
        }
    }

    /// This request is the connection's last.
    pub(super) fn disable_keep_alive(&mut self) {
        self.keep_alive = KeepAlive::Disabled;
    }

    /// No more requests will be read (input ended, or nothing after this
    /// point can be parsed).
    pub(super) fn close_read(&mut self) {
        self.reading = Reading::Closed;
        self.keep_alive = KeepAlive::Disabled;
    }

    /// A request was read whole and its response queued whole.
    pub(super) fn answered(&mut self, keep: bool) {
        if !keep {
            self.disable_keep_alive();
        }
        self.reading = Reading::KeepAlive;
        self.try_keep_alive();
    }

    /// The request was answered before its body: if the answer left the
    /// connection open for another request, the body is read and dropped
    /// first. False when it did not (the answer closes, is written in
    /// steps, or the socket is leaving): the body is then never read.
    pub(super) fn discard(&mut self, d: Decoder) -> bool {
        match (&self.reading, &self.writing) {
            (Reading::Idle, Writing::Queue) => {
                self.reading = Reading::Discard(d);
                self.keep_alive = KeepAlive::Busy;
                true
            }
            _ => false,
        }
    }

    /// The discarded body ended: the next request may begin.
    pub(super) fn discarded(&mut self) {
        self.reading = Reading::Idle;
        if self.keep_alive == KeepAlive::Busy {
            self.keep_alive = KeepAlive::Idle;
        }
    }

    /// A request was read whole and its response will be written in steps.
    pub(super) fn deferred(&mut self, d: Deferred) {
        self.reading = Reading::KeepAlive;
        self.writing = Writing::Deferred(Box::new(d));
    }

    /// A handler took the connection over.
    pub(super) fn hand_off(
        &mut self,
        head: Vec<u8>,
        context: Option<crate::http::response::HandOffContext>,
        seen: crate::http::events::Kept,
    ) {
        self.reading = Reading::Closed;
        self.writing = Writing::HandOff(Box::new(HandingOff {
            head,
            context,
            seen,
        }));
    }

    /// The deferred response ended; the queue takes over again.
    pub(super) fn deferred_finished(&mut self, keep: bool) {
        self.writing = Writing::Queue;
        self.answered(keep);
    }

    /// The request is refused with an answer queued whole: nothing more is
    /// read, and a deferred response that had sent nothing is replaced.
    pub(super) fn refuse(&mut self) {
        self.close_read();
        self.writing = Writing::Queue;
    }

    /// What was begun cannot be finished: close without lingering.
    pub(super) fn abort(&mut self) {
        self.close_read();
        self.writing = Writing::Aborted;
    }

    /// Once the request is read and its response written, the next request
    /// may begin (`Idle`) or the connection is done reading (`Closed`).
    /// Anything still being read or written stays as it is.
    pub(super) fn try_keep_alive(&mut self) {
        match (&self.reading, &self.writing, self.keep_alive) {
            (Reading::KeepAlive, Writing::Queue, KeepAlive::Busy | KeepAlive::Idle) => {
                self.reading = Reading::Idle;
                self.keep_alive = KeepAlive::Idle;
            }
            (Reading::KeepAlive, Writing::Queue, KeepAlive::Disabled)
            | (_, Writing::Lingering { .. } | Writing::Aborted, _) => self.close_read(),
            _ => {}
        }
    }

    /// A deferred response still writing, if there is one.
    pub(super) fn deferred_mut(&mut self, id: u64) -> Option<&mut Deferred> {
        match &mut self.writing {
            Writing::Deferred(d) if d.id == id => Some(d),
            _ => None,
        }
    }

    /// Is the next request parsed and dispatched now? Not while a response
    /// is written in steps or the socket is leaving.
    pub(super) fn dispatching(&self) -> bool {
        matches!(self.writing, Writing::Queue)
    }

    pub(super) fn linger_until(&self) -> Option<Instant> {
        match self.writing {
            Writing::Lingering { until } => Some(until),
            _ => None,
        }
    }

    /// Between requests with no request begun and nothing being written in
    /// steps (the caller checks the buffers).
    pub(super) fn is_between_requests(&self) -> bool {
        matches!(
            (&self.reading, &self.writing),
            (Reading::Idle, Writing::Queue)
        )
    }

    /// What the socket does after this turn, given whether output is
    /// pending. `idle_and_draining`: the server is shutting down and the
    /// connection has nothing in flight, so it closes at once.
    pub(super) fn next(
        &mut self,
        out_empty: bool,
        idle_and_draining: bool,
        linger_until: Instant,
    ) -> Next {
        match &self.writing {
            Writing::Lingering { .. } if self.eof => Next::Close,
            Writing::Lingering { .. } => Next::Continue,
            Writing::Aborted => Next::Close,
            _ if idle_and_draining => Next::Close,
            Writing::HandOff(_) if out_empty => Next::HandOff,
            // Our side is shut down even when the peer has ended its input:
            // a TLS peer gets its close_notify. With `eof` the linger ends
            // on the next call.
            Writing::Queue if out_empty && matches!(self.reading, Reading::Closed) => {
                self.writing = Writing::Lingering {
                    until: linger_until,
                };
                Next::ShutdownWrite
            }
            _ => Next::Continue,
        }
    }

    /// A handler took the connection over and it has not gone yet.
    pub(super) fn is_handing_off(&self) -> bool {
        matches!(self.writing, Writing::HandOff(_))
    }

    /// After `Next::HandOff`: what the hand-off carries (`Writing::HandOff`);
    /// the connection is done.
    pub(super) fn take_hand_off(&mut self) -> Option<Box<HandingOff>> {
        match std::mem::replace(&mut self.writing, Writing::Aborted) {
            Writing::HandOff(h) => Some(h),
            other => {
                self.writing = other;
                None
            }
        }
    }

    /// The deferred response has not begun: it can still be replaced by an
    /// error answer.
    pub(super) fn deferred_unsent(&self) -> bool {
        matches!(&self.writing, Writing::Deferred(d) if d.st.state == WriteState::Empty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &State) -> (&'static str, &'static str, KeepAlive) {
        let r = match s.reading {
            Reading::Idle => "idle",
            Reading::Head => "head",
            Reading::Body(..) => "body",
            Reading::Discard(_) => "discard",
            Reading::KeepAlive => "keep-alive",
            Reading::Closed => "closed",
        };
        let w = match s.writing {
            Writing::Queue => "queue",
            Writing::Deferred(_) => "deferred",
            Writing::HandOff(_) => "hand-off",
            Writing::Lingering { .. } => "lingering",
            Writing::Aborted => "aborted",
        };
        (r, w, s.keep_alive)
    }

    fn state(r: &str, w: &str, k: KeepAlive) -> State {
        let now = Instant::now();
        State {
            reading: match r {
                "idle" => Reading::Idle,
                "head" => Reading::Head,
                "body" => Reading::Body(Decoder::Length(1), None),
                "discard" => Reading::Discard(Decoder::Length(1)),
                "keep-alive" => Reading::KeepAlive,
                _ => Reading::Closed,
            },
            writing: match w {
                "queue" => Writing::Queue,
                "deferred" => Writing::Deferred(Box::new(Deferred {
                    id: 1,
                    st: Stepwise::new(false, 1, true),
                    since: now,
                    seen: crate::http::events::Kept::default(),
                })),
                "hand-off" => Writing::HandOff(Box::new(HandingOff {
                    head: Vec::new(),
                    context: None,
                    seen: Default::default(),
                })),
                "lingering" => Writing::Lingering { until: now },
                _ => Writing::Aborted,
            },
            keep_alive: k,
            eof: false,
        }
    }

    #[test]
    fn try_keep_alive_decides_from_reading_and_writing_together() {
        use KeepAlive::{Busy, Disabled, Idle};
        // (reading, writing, keep-alive) before → after.
        let table = [
            // A request read and answered whole: the next may begin, unless
            // this one was the last.
            (("keep-alive", "queue", Busy), ("idle", "queue", Idle)),
            (
                ("keep-alive", "queue", Disabled),
                ("closed", "queue", Disabled),
            ),
            // Still writing in steps: wait for the response to end.
            (
                ("keep-alive", "deferred", Busy),
                ("keep-alive", "deferred", Busy),
            ),
            (
                ("keep-alive", "deferred", Disabled),
                ("keep-alive", "deferred", Disabled),
            ),
            // Still reading: nothing to decide yet.
            (("idle", "queue", Idle), ("idle", "queue", Idle)),
            (("head", "queue", Busy), ("head", "queue", Busy)),
            (("body", "queue", Busy), ("body", "queue", Busy)),
            (("discard", "queue", Busy), ("discard", "queue", Busy)),
            // Leaving or closing: never another request.
            (
                ("closed", "hand-off", Disabled),
                ("closed", "hand-off", Disabled),
            ),
            (
                ("idle", "lingering", Idle),
                ("closed", "lingering", Disabled),
            ),
            (
                ("keep-alive", "aborted", Busy),
                ("closed", "aborted", Disabled),
            ),
            (("closed", "queue", Disabled), ("closed", "queue", Disabled)),
        ];
        for ((r, w, k), want) in table {
            let mut s = state(r, w, k);
            s.try_keep_alive();
            assert_eq!(name(&s), want, "from ({r}, {w}, {k:?})");
        }
    }

    #[test]
    fn next_says_what_the_socket_does_for_each_writing_state() {
        use KeepAlive::{Busy, Disabled, Idle};
        let later = Instant::now() + std::time::Duration::from_secs(5);
        // (reading, writing, output empty, idle and draining, eof) → next.
        let table = [
            ("idle", "queue", true, false, false, Next::Continue),
            ("idle", "queue", true, true, false, Next::Close),
            ("closed", "queue", false, false, false, Next::Continue),
            ("closed", "queue", true, false, false, Next::ShutdownWrite),
            ("closed", "queue", true, false, true, Next::ShutdownWrite),
            ("keep-alive", "deferred", true, false, false, Next::Continue),
            ("closed", "hand-off", false, false, false, Next::Continue),
            ("closed", "hand-off", true, false, false, Next::HandOff),
            ("closed", "lingering", true, false, false, Next::Continue),
            ("closed", "lingering", true, false, true, Next::Close),
            ("closed", "aborted", false, false, false, Next::Close),
        ];
        for (r, w, out_empty, draining, eof, want) in table {
            let k = if r == "idle" {
                Idle
            } else if r == "closed" {
                Disabled
            } else {
                Busy
            };
            let mut s = state(r, w, k);
            s.eof = eof;
            assert_eq!(s.next(out_empty, draining, later), want, "({r}, {w})");
        }
    }

    #[test]
    fn a_closed_queue_lingers_after_its_shutdown() {
        let mut s = state("closed", "queue", KeepAlive::Disabled);
        let until = Instant::now();
        assert_eq!(s.next(true, false, until), Next::ShutdownWrite);
        assert_eq!(s.linger_until(), Some(until));
        s.eof = true;
        assert_eq!(s.next(true, false, until), Next::Close);
    }

    #[test]
    fn a_refusal_replaces_an_unsent_deferred_response_and_ends_reading() {
        let mut s = state("keep-alive", "deferred", KeepAlive::Busy);
        assert!(s.deferred_unsent());
        s.refuse();
        assert_eq!(name(&s), ("closed", "queue", KeepAlive::Disabled));
    }

    #[test]
    fn a_deferred_response_that_ends_lets_the_next_request_in() {
        let mut s = state("keep-alive", "deferred", KeepAlive::Busy);
        assert!(!s.dispatching());
        assert!(s.deferred_mut(2).is_none(), "another request's reply");
        assert!(s.deferred_mut(1).is_some());
        s.deferred_finished(true);
        assert_eq!(name(&s), ("idle", "queue", KeepAlive::Idle));
        assert!(s.dispatching() && s.is_between_requests());
    }

    #[test]
    fn a_body_is_discarded_only_when_the_answer_keeps_the_connection() {
        let mut s = state("idle", "queue", KeepAlive::Idle);
        assert!(s.discard(Decoder::Length(3)));
        assert_eq!(name(&s), ("discard", "queue", KeepAlive::Busy));
        assert!(!s.is_between_requests());
        s.discarded();
        assert_eq!(name(&s), ("idle", "queue", KeepAlive::Idle));
        for (r, w, k) in [
            ("closed", "queue", KeepAlive::Disabled),
            ("keep-alive", "deferred", KeepAlive::Busy),
            ("closed", "hand-off", KeepAlive::Disabled),
        ] {
            let mut s = state(r, w, k);
            assert!(!s.discard(Decoder::Length(3)), "({r}, {w})");
            assert_eq!(name(&s), (r, w, k));
        }
    }

    #[test]
    fn a_hand_off_is_taken_once() {
        let mut s = state("closed", "hand-off", KeepAlive::Disabled);
        assert!(s.take_hand_off().is_some());
        assert!(s.take_hand_off().is_none());
        assert_eq!(s.next(true, false, Instant::now()), Next::Close);
    }
}
