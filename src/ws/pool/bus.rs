//! The pool's side of a broadcast route with a bus (`ws/bus`): what its
//! workers' clients send goes to the publisher, what the reader gives is
//! relayed to every worker with its stream ID, and in the new process of
//! an upgrade, a session that moves in is owed what was read after the
//! last entry it was given.
//!
//! No numbering of our own and nothing up or down the line between the
//! old and the new pool: both read the same stream. A worker gives each
//! session only entries after the last one that session was given
//! (`BUS_ID`), so it does not matter which process read an entry first.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::PoolLoop;
use crate::handoff::wire::{self, BusId, Kind, Message};
use crate::ws::bus::{self, Event, Pub, Publish};

/// Entries kept for sessions still to move in: as many, and as many
/// bytes, per route as the line's own log keeps (`link.rs`).
use super::link::{LOG_BYTES, LOG_MESSAGES as LOG_ENTRIES};
/// Stopping (or moving to a new process), the pool waits this long for
/// its publishers to put what they hold in the stream (Redis away); then
/// it says what was not, and goes.
const PUBLISH_BEFORE_EXIT: Duration = Duration::from_secs(10);

pub(super) struct RouteBus {
    path: String,
    publish: Publish,
    /// The last entry relayed to the workers (before any: where the
    /// reader started).
    last: Option<BusId>,
    /// The new process of an upgrade: what was relayed since `from`.
    log: Option<Log>,
}

struct Log {
    /// Every entry after this one and up to `last` is kept.
    from: Option<BusId>,
    entries: VecDeque<(BusId, Vec<u8>, bool)>,
    bytes: usize,
}

impl RouteBus {
    pub(super) fn new(path: &str, publish: Publish, keep_log: bool) -> RouteBus {
        RouteBus {
            path: path.into(),
            publish,
            last: None,
            log: keep_log.then(|| Log {
                from: None,
                entries: VecDeque::new(),
                bytes: 0,
            }),
        }
    }

    fn remember(&mut self, id: BusId, data: &[u8], binary: bool) {
        let Some(log) = &mut self.log else { return };
        log.bytes += data.len();
        log.entries.push_back((id, data.to_vec(), binary));
        while log.entries.len() > LOG_ENTRIES || log.bytes > LOG_BYTES {
            let Some((gone, d, _)) = log.entries.pop_front() else {
                break;
            };
            log.bytes -= d.len();
            log.from = Some(gone);
        }
    }

    /// For a session that was given everything up to `given`: what it is
    /// owed (as a `BACKLOG`) and the place it is at after that; an error
    /// if some of what it is owed is no longer kept, or not yet known.
    fn owed(&self, given: Option<BusId>) -> Result<(Vec<u8>, Option<BusId>), &'static str> {
        let (Some(log), Some(last)) = (&self.log, self.last) else {
            return Err("the broadcast bus has not started reading yet");
        };
        let Some(given) = given else {
            // It was given nothing by a bus: nothing is owed.
            return Ok((Vec::new(), Some(last)));
        };
        if log.from.is_none_or(|from| given < from) {
            return Err("it is behind by more broadcasts than are kept");
        }
        let mut out = Vec::new();
        for (_, data, binary) in log.entries.iter().filter(|(id, _, _)| *id > given) {
            wire::push_backlog(&mut out, *binary, data);
        }
        Ok((out, Some(given.max(last))))
    }
}

impl PoolLoop {
    /// The bus of the route at `path`, if it has one.
    pub(super) fn bus_of(&self, path: &str) -> Option<usize> {
        self.buses
            .iter()
            .position(|b| b.as_ref().is_some_and(|b| b.path == path))
    }

    /// A message from a worker's client (`origin`), or forwarded by an
    /// older process's pool (`None`), for a route with a bus: to the
    /// publisher. A worker sends its message to each pool it serves, with
    /// `RETURN` on one: that pool publishes it.
    pub(super) fn publish(&mut self, route: usize, m: Message, origin: Option<usize>) {
        if origin.is_some() && m.flags & wire::flags::RETURN == 0 {
            return;
        }
        let Some(b) = &self.buses[route] else { return };
        let sent = b.publish.send(Pub {
            binary: m.flags & wire::flags::BINARY != 0,
            data: m.data,
            worker: origin.unwrap_or(usize::MAX),
            serial: m.id,
        });
        if !sent {
            tracing::error!(route = %b.path, "broadcast bus: the publisher is gone; message dropped");
        }
    }

    pub(super) fn bus_event(&mut self, e: Event) {
        match e {
            Event::From { route, id } => {
                let Some(b) = self.buses.get_mut(route).and_then(Option::as_mut) else {
                    return;
                };
                if b.last.is_none() {
                    b.last = Some(id);
                }
                if let Some(log) = &mut b.log
                    && log.from.is_none()
                {
                    log.from = Some(id);
                }
            }
            Event::Read { route, entries } => {
                for e in entries {
                    self.relay_entry(route, e);
                }
            }
            Event::Refused { worker, serial } if worker < self.workers.len() => {
                let mut m = Message::new(Kind::Broadcast, serial);
                m.flags = wire::flags::REFUSED;
                self.send_worker(worker, &m.encode());
            }
            Event::Refused { .. } => {}
            Event::Drained => self.check_stopped(),
        }
    }

    /// One entry read from the stream, to every worker.
    fn relay_entry(&mut self, route: usize, e: bus::Entry) {
        let Some(b) = self.buses.get_mut(route).and_then(Option::as_mut) else {
            return;
        };
        if b.last.is_some_and(|l| e.id <= l) {
            return; // read again after a reconnection
        }
        let Some(data) = e.data else { return };
        b.last = Some(e.id);
        b.remember(e.id, &data, e.binary);
        let mut m = Message::new(Kind::Broadcast, 0);
        m.name = Some(b.path.clone());
        m.bus_id = Some(e.id);
        if e.binary {
            m.flags = wire::flags::BINARY;
        }
        m.data = data;
        self.relay(&m, None);
    }

    /// A new session's place: the last entry relayed (it is given what
    /// comes after).
    pub(super) fn bus_place(&self, route: usize) -> Option<BusId> {
        self.buses[route].as_ref().and_then(|b| b.last)
    }

    /// The new side: what a session moving in on a route with a bus is
    /// owed, put in its message (`BACKLOG`, and `BUS_ID` its place after
    /// it); or why it cannot come yet.
    pub(super) fn bus_owed(&self, route: usize, m: &mut Message) -> Result<(), &'static str> {
        let Some(b) = &self.buses[route] else {
            return Ok(());
        };
        let (backlog, place) = b.owed(m.bus_id)?;
        if !backlog.is_empty() {
            tracing::debug!(
                bytes = backlog.len(),
                "a moved session is owed bus entries read before it came"
            );
        }
        m.backlog = backlog;
        m.bus_id = place;
        Ok(())
    }

    /// Stopping: publishers say when they are done, and are waited for
    /// up to `PUBLISH_BEFORE_EXIT`.
    pub(super) fn watch_buses(&mut self) {
        if self.buses.iter().flatten().next().is_none() {
            return;
        }
        for b in self.buses.iter().flatten() {
            b.publish.watch();
        }
        self.bus_until = Some(Instant::now() + PUBLISH_BEFORE_EXIT);
    }

    /// While messages wait to be published and the wait is not over.
    pub(super) fn bus_deadline(&self) -> Option<Instant> {
        self.bus_until
            .filter(|_| self.buses.iter().flatten().any(|b| b.publish.waiting() > 0))
    }

    /// Nothing waits to be published, or the wait is over (what waits is
    /// then said in the log: never dropped without a word).
    pub(super) fn buses_published(&mut self, now: Instant) -> bool {
        let waiting: usize = self
            .buses
            .iter()
            .flatten()
            .map(|b| b.publish.waiting())
            .sum();
        if waiting == 0 {
            return true;
        }
        if self.bus_until.is_some_and(|t| t <= now) {
            tracing::error!(
                messages = waiting,
                "broadcast bus: Redis did not take these before this process ended; they are lost"
            );
            crate::metrics::add(crate::metrics::M::BusRefused, waiting as u64);
            self.bus_until = None;
            return true;
        }
        if self.bus_until.is_none() {
            return true; // the wait was over once already
        }
        tracing::info!(
            messages = waiting,
            "broadcast bus: waiting for Redis to take these before ending"
        );
        false
    }

    /// The line to the old process closed: no session will move in.
    pub(super) fn forget_bus_logs(&mut self) {
        for b in self.buses.iter_mut().flatten() {
            b.log = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route_bus() -> RouteBus {
        let (tx, _rx) = std::sync::mpsc::channel();
        RouteBus::new("/chat", Publish::from_sender(tx), true)
    }

    #[test]
    fn a_session_moving_in_is_owed_what_was_read_after_its_place() {
        let mut b = route_bus();
        assert!(b.owed(Some(BusId(5, 0))).is_err(), "nothing read yet");
        b.last = Some(BusId(5, 0));
        b.log.as_mut().unwrap().from = Some(BusId(5, 0));
        for (id, d) in [(BusId(6, 0), "a"), (BusId(6, 1), "b"), (BusId(7, 0), "c")] {
            b.last = Some(id);
            b.remember(id, d.as_bytes(), false);
        }
        let (backlog, place) = b.owed(Some(BusId(6, 0))).unwrap();
        assert_eq!(
            wire::read_backlog(&backlog).unwrap(),
            vec![(false, b"b".to_vec()), (false, b"c".to_vec())]
        );
        assert_eq!(place, Some(BusId(7, 0)));
        // Ahead of this process's reader: owed nothing, and keeps its place.
        let (backlog, place) = b.owed(Some(BusId(9, 0))).unwrap();
        assert!(backlog.is_empty());
        assert_eq!(place, Some(BusId(9, 0)));
        // Behind where this process began reading: not known here.
        assert!(b.owed(Some(BusId(4, 0))).is_err());
    }

    #[test]
    fn the_log_forgets_its_oldest_entries_past_its_bounds() {
        let mut b = route_bus();
        b.log.as_mut().unwrap().from = Some(BusId(0, 0));
        for i in 1..=(LOG_ENTRIES as u64 + 2) {
            b.last = Some(BusId(i, 0));
            b.remember(BusId(i, 0), b"x", false);
        }
        assert_eq!(b.log.as_ref().unwrap().from, Some(BusId(2, 0)));
        assert!(b.owed(Some(BusId(1, 0))).is_err());
        assert!(b.owed(Some(BusId(2, 0))).is_ok());
    }
}
