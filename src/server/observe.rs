//! The server's side of the engine's events (`http::events`): each becomes
//! the access line, the metrics and the error log's lines, here and
//! nowhere in the engine.

use crate::http::events::{Event, Observer, Severity, Wants};
use crate::log::{self, Access};

/// What a server's connections report to.
pub(super) struct Record {
    /// Access lines are written (`log::access_on`): asked once a turn
    /// (`Record::look`), not for each request and event (34 instructions
    /// a small request, callgrind).
    access: bool,
}

impl Record {
    pub(super) fn new() -> Record {
        Record {
            access: log::access_on(),
        }
    }

    /// Asks again whether access lines are written; what it says.
    pub(super) fn look(&mut self) -> bool {
        self.access = log::access_on();
        self.access
    }
}

impl Observer for Record {
    fn wants(&self) -> Wants {
        if !self.access {
            Wants::Nothing
        } else if log::access::wants_client_fields() {
            Wants::LineAndClient
        } else {
            Wants::Line
        }
    }

    fn event(&mut self, e: Event<'_>) {
        // An answer, unlogged, is every request's event: the others, with
        // their log lines' frames, out of line (the frame the whole match
        // needed cost 20 instructions a request, callgrind).
        match e {
            Event::Answered {
                status,
                sent,
                http2,
                ..
            } if !self.access => count_answer(status, sent, http2),
            e => self.logged(e),
        }
    }
}

impl Record {
    #[inline(never)]
    fn logged(&mut self, e: Event<'_>) {
        match e {
            Event::Answered {
                peer,
                request,
                status,
                sent,
                took,
                note,
                http2,
            } => {
                count_answer(status, sent, http2);
                if self.access {
                    Access {
                        peer,
                        line: request.map(|r| r.line),
                        status: Some(status),
                        sent,
                        referer: request.and_then(|r| r.referer),
                        agent: request.and_then(|r| r.agent),
                        took,
                        note,
                    }
                    .log();
                }
            }
            // Its access line travels with the connection
            // (`HandedOff::access`): the receiver writes it with the outcome.
            Event::HandedOff { peer } => {
                crate::metrics::answered(None, 0);
                tracing::debug!(%peer, "handed off");
            }
            Event::Refused {
                peer,
                status,
                reason,
            } => {
                crate::metrics::answered(Some(status), 0);
                // The reason goes to the log as a line of its own (the
                // access line's formats have no field for it but JSON's),
                // as nginx's error log says why it answered 400.
                tracing::info!(%peer, status, "refused: {reason}");
                if self.access {
                    Access::bare(peer, None)
                        .status(Some(status), 0)
                        .note(reason)
                        .log();
                }
            }
            Event::GoAway { peer, code, why } => {
                use crate::metrics::{M, inc};
                inc(if code == 0xb {
                    M::H2Calmed
                } else {
                    M::H2GoAway
                });
                tracing::info!(%peer, code, "HTTP/2: {why}; GOAWAY");
            }
            Event::Trouble {
                peer,
                severity,
                what,
            } => match severity {
                Severity::Error => tracing::error!(%peer, "{what}"),
                Severity::Warn => tracing::warn!(%peer, "{what}"),
                Severity::Info => tracing::info!(%peer, "{what}"),
                Severity::Debug => tracing::debug!(%peer, "{what}"),
            },
        }
    }
}

/// The metrics of one answer.
#[inline(always)]
fn count_answer(status: u16, sent: u64, http2: bool) {
    crate::metrics::answered(Some(status), sent);
    if http2 {
        crate::metrics::inc(crate::metrics::M::H2Requests);
    }
}
