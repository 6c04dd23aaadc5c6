//! Responses written in steps (`Response::defer`).

use super::*;

/// A handler that defers; the test then writes the response in steps.
fn deferring(_: &Request<'_>, res: &mut Response<'_>) {
    let _reply = res.defer();
}

fn job(f: impl FnOnce(&mut Writer<'_>) + Send + 'static) -> reply::Job {
    Box::new(f)
}

#[test]
fn writes_a_deferred_response_in_steps_and_keeps_pipelined_requests_waiting() {
    let mut h = Harness::new(deferring);
    h.feed(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(
        h.take(),
        "",
        "nothing before the deferred response is written"
    );
    let now = h.now();
    h.conn.write_deferred(
        1,
        job(|w| {
            assert_eq!(w.write_state(), WriteState::Empty);
            w.status(200).unwrap();
            w.header("X-Step", "1").unwrap();
            w.write(b"part one, ").unwrap();
            assert_eq!(w.write_state(), WriteState::MetadataIssued);
            assert_eq!(
                w.header("X-Late", "no").unwrap_err().0,
                "a header after the header section was sent"
            );
        }),
        (now, Default::default()),
        &mut h.env.ctx(),
    );
    let first = h.take();
    assert!(
        first.contains("Transfer-Encoding: chunked\r\n") && first.ends_with("a\r\npart one, \r\n"),
        "{first}"
    );
    h.conn.write_deferred(
        1,
        job(|w| {
            w.write(b"two").unwrap();
            w.finish_with_trailers(&[("X-Done", b"yes")]).unwrap();
            assert_eq!(w.write_state(), WriteState::Finished);
        }),
        (now, Default::default()),
        &mut h.env.ctx(),
    );
    let rest = h.take();
    assert!(
        rest.starts_with("3\r\ntwo\r\n0\r\nX-Done: yes\r\n\r\n"),
        "{rest}"
    );
    // The pipelined request is parsed only now, and deferred in its turn.
    h.conn.write_deferred(
        2,
        job(|w| {
            w.status(204).unwrap();
            w.finish().unwrap();
        }),
        (now, Default::default()),
        &mut h.env.ctx(),
    );
    assert!(h.take().starts_with("HTTP/1.1 204 No Content\r\n"));
}

#[test]
fn answers_500_when_a_deferred_response_is_dropped_and_cuts_a_half_written_one() {
    let mut h = Harness::new(deferring);
    h.feed(GET);
    let now = h.now();
    h.conn.abandon(1, now, &mut h.env.ctx());
    let out = h.take();
    assert_eq!(statuses(&out), ["500"]);

    let mut h = Harness::new(deferring);
    h.feed(GET);
    h.conn.write_deferred(
        1,
        job(|w| {
            w.status(200).unwrap();
            w.write(b"half").unwrap();
        }),
        (now, Default::default()),
        &mut h.env.ctx(),
    );
    h.conn.abandon(1, now, &mut h.env.ctx());
    h.take();
    assert_eq!(
        h.next(),
        Next::Close,
        "a half-written response must not end cleanly"
    );
}

#[test]
fn answers_504_when_a_deferred_response_is_late() {
    let mut h = Harness::new(deferring);
    h.feed(GET);
    let d = h.deadline();
    assert_eq!(d, h.now() + h.env.timeouts.response);
    assert_eq!(h.timeout(d), Some(Expired::Request));
    assert_eq!(statuses(&h.take()), ["504"]);
}

#[test]
fn a_handler_sees_the_read_state() {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    struct Probe(std::sync::Arc<std::sync::Mutex<Vec<ReadState>>>);
    impl Handler for Probe {
        fn on_head(&self, req: &Request<'_>) -> BodyPlan {
            self.0.lock().unwrap().push(req.read_state());
            BodyPlan::Buffer
        }
        fn handle(&self, req: &Request<'_>, _: &mut Response<'_>) {
            self.0.lock().unwrap().push(req.read_state());
        }
    }
    let mut h = Harness::new(Probe(seen.clone()));
    h.feed(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nz");
    assert_eq!(
        *seen.lock().unwrap(),
        [ReadState::MessageReady, ReadState::Finished]
    );
}

/// Skips the body and answers later.
struct SkipThenDefer;

impl Handler for SkipThenDefer {
    fn on_head(&self, _: &Request<'_>) -> BodyPlan {
        BodyPlan::Skip
    }
    fn handle(&self, _: &Request<'_>, res: &mut Response<'_>) {
        let _reply = res.defer();
    }
}

#[test]
fn a_deferred_answer_to_a_request_whose_body_is_skipped_is_written_and_then_the_connection_closes()
{
    let mut h = Harness::new(SkipThenDefer);
    h.feed(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello");
    assert_eq!(h.take(), "");
    assert_eq!(h.next(), Next::Continue, "the deferred answer is awaited");
    let now = h.now();
    h.conn.write_deferred(
        1,
        job(|w| {
            w.status(413).unwrap();
            w.write(b"too big").unwrap();
            w.finish().unwrap();
        }),
        (now, Default::default()),
        &mut h.env.ctx(),
    );
    let out = h.take();
    assert_eq!(statuses(&out), ["413"], "{out}");
    assert!(out.contains("Connection: close"), "{out}");
    assert_eq!(h.next(), Next::ShutdownWrite);
}

/// Defers `/later`; answers anything else at once with its path.
fn defers_later(req: &Request<'_>, res: &mut Response<'_>) {
    if req.path() == "/later" {
        let _reply = res.defer();
    } else {
        res.header("X-Method", req.method()).body(format!(
            "{} {}\n",
            req.path(),
            req.query().unwrap_or("-")
        ));
    }
}

#[test]
fn a_deferred_response_is_answered_as_the_handler_answers_another_request() {
    let mut h = Harness::new(defers_later);
    h.feed(b"POST /later HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi");
    assert_eq!(h.take(), "");
    let now = h.now();
    h.conn.write_deferred(
        1,
        job(|w| {
            w.reprocess(b"GET /other?q=1 HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            assert_eq!(w.write_state(), WriteState::Finished);
        }),
        (now, Default::default()),
        &mut h.env.ctx(),
    );
    let out = h.take();
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    assert!(out.contains("X-Method: GET\r\n"), "{out}");
    assert!(out.contains("Content-Length: 11\r\n"), "{out}");
    assert!(out.ends_with("\r\n\r\n/other q=1\n"), "{out}");
}

#[test]
fn a_request_answered_later_or_that_does_not_parse_is_not_answered_again() {
    let mut h = Harness::new(defers_later);
    h.feed(b"GET /later HTTP/1.1\r\nHost: x\r\n\r\n");
    let now = h.now();
    h.conn.write_deferred(
        1,
        job(|w| {
            assert!(
                w.reprocess(b"GET /later HTTP/1.1\r\nHost: x\r\n\r\n")
                    .is_err()
            );
            assert!(w.reprocess(b"GET /a b c HTTP/1.1\r\n\r\n").is_err());
            assert_eq!(w.write_state(), WriteState::Empty);
            w.status(502).unwrap();
            w.finish().unwrap();
        }),
        (now, Default::default()),
        &mut h.env.ctx(),
    );
    assert!(h.take().starts_with("HTTP/1.1 502"));
}
