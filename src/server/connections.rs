//! The table of served connections, by token, and their deadlines: a
//! connection enters (`insert`), is driven (`drive`, `fire_timers`,
//! `reply`) and leaves (`remove`) here. What leaves by a hand-off is given
//! back to the server, which knows where it goes. Slots under
//! `max_concurrent` are counted by `Budget`, deadlines by `Timers`.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Instant;

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use slab::Slab;

use super::Shared;
use super::budget::Budget;
use super::connection::{Connection, Engine, Io, Outcome, Readiness, Transport, Wrapping};
use super::returning::{Back, Claimed, GoingBack};
use super::timers::Timers;
use crate::http::reply::{Letter, ReplyKey};
use crate::http::{Conn, Expired};
use crate::sys::Addr;

/// A connection to serve: its socket, peer, the bytes read already, how
/// it is framed, and the state of an HTTP/2 connection another process
/// parked, if it is one.
pub(super) type NewConnection<'a> = (OwnedFd, Addr, &'a [u8], Wrapping, Option<&'a [u8]>);

/// A connection a handler handed off, out of the table: the request head
/// and the bytes read after it go with it.
pub(super) type Leaving = (Connection, Option<crate::http::Taken>);

pub(super) struct Connections {
    entries: Slab<Box<Connection>>,
    timers: Timers,
    next_gen: u64,
    /// Connections handed off, out of the table, for the server to give
    /// to its hook (`next_handed`).
    handed: VecDeque<Leaving>,
    /// Slots under `max_concurrent`; kept up to date as connections
    /// enter and leave.
    pub(super) budget: Budget,
    /// Handing over (`Server::hand_over`): where idle connections go.
    mover: Option<Mover>,
    /// Connections that yielded with more to write (token, generation):
    /// driven again after this turn's events.
    again: Vec<(usize, u64)>,
    /// Connections open per client (`Options::per_client`).
    pub(super) clients: super::PerClient,
    /// Lent connections, by token, and where each goes back when idle
    /// (`Socket::returning`). Empty unless this process is an app worker.
    pub(super) back: std::collections::HashMap<usize, Back>,
    /// Connections gone idle this turn, their buffers given back already
    /// (but `keeping`'s): each is parked once a whole turn has passed
    /// without its serving a request (`rest_idle`). A keep-alive client
    /// whose next request comes within a turn so costs no park and resume
    /// (about 200 instructions a request, callgrind); one that does not
    /// keeps its engine for a turn, or 1 ms (`IDLE_REST`) when nothing
    /// else happens. At most `MAX_RESTING` wait so; more are parked at
    /// once.
    resting: Vec<Resting>,
    /// Those that went idle in the turn before: parked at the end of this
    /// one unless they served a request meanwhile.
    rested: Vec<Resting>,
    /// The resting connection that went idle last (token, generation):
    /// it keeps its buffers until it is parked or another goes idle. A
    /// client asking again at once, one request after another, so takes
    /// no buffers from the pool and gives none back (about 130
    /// instructions a request, callgrind), for one pair of buffers more
    /// a loop at most.
    keeping: Option<(usize, u64)>,
}

/// A connection gone idle: its token, generation, and requests served
/// then (a connection has no room for a turn number of its own).
type Resting = (usize, u64, u64);

/// Idle connections a turn may leave unparked. Each engine left so ends
/// in the spare list once parked: with 64, 9,500 connections answered in
/// a burst then idle cost 14 B of RSS each more than when every one was
/// parked at once (`scripts/bench.sh`'s memory case, 192 B against
/// 178 B), with 16, 5 B (183 B); 16 covers a loop's share of the bench's
/// 32 keep-alive clients.
const MAX_RESTING: usize = 16;

/// `token` (gone idle, resting) keeps its buffers (`Connections::keeping`);
/// the one that kept them before gives them back, if it is still idle.
/// Inlined, its usual case (one client asking again and again, kept
/// already) being the first test: a call cost 14 instructions a request.
#[inline(always)]
fn keep_buffers(
    (keeping, entries): (&mut Option<(usize, u64)>, &mut Slab<Box<Connection>>),
    token: usize,
    generation: u64,
    pool: &mut crate::http::BufPool,
) {
    if *keeping == Some((token, generation)) {
        return;
    }
    let Some((t, g)) = keeping.replace((token, generation)) else {
        return;
    };
    if t != token
        && let Some(c) = entries.get_mut(t)
        && c.generation == g
    {
        c.release(pool);
    }
}

/// How long an idle connection keeps its engine if no turn comes sooner.
pub(super) const IDLE_REST: std::time::Duration = std::time::Duration::from_millis(1);

/// Gives an idle plain connection (its fd, who is at the other end, and,
/// for an HTTP/2 connection, its state: empty for HTTP/1.1) to another
/// owner, typically another process over the wire format (`H2_STATE`).
/// `Ok`: taken, this server closes its copy; `Err`: not taken, it serves
/// on.
pub type Mover = Arc<
    dyn Fn(std::os::fd::BorrowedFd<'_>, &crate::sys::Addr, &[u8]) -> io::Result<()> + Send + Sync,
>;

impl Connections {
    pub(super) fn new(load: Arc<AtomicUsize>, clients: super::PerClient) -> Connections {
        Connections {
            entries: Slab::new(),
            timers: Timers::default(),
            next_gen: 0,
            again: Vec::new(),
            handed: VecDeque::new(),
            budget: Budget::new(load),
            mover: None,
            clients,
            back: std::collections::HashMap::new(),
            resting: Vec::new(),
            rested: Vec::new(),
            keeping: None,
        }
    }

    /// Idle connections not parked yet: the loop comes back within
    /// `IDLE_REST` to park them.
    #[inline]
    pub(super) fn has_resting(&self) -> bool {
        !(self.resting.is_empty() && self.rested.is_empty())
    }

    /// At the end of a turn: parks the connections that went idle in the
    /// turn before and served nothing in this one.
    #[inline]
    pub(super) fn rest_idle(&mut self, shared: &mut Shared) {
        for &(token, generation, served) in &self.rested {
            if let Some(c) = self.entries.get_mut(token)
                && c.generation == generation
                && c.idle_awake() == Some(served)
            {
                c.rest(&mut shared.pool, &mut shared.spare);
            }
        }
        self.rested.clear();
        std::mem::swap(&mut self.rested, &mut self.resting);
    }

    /// From now on, idle plain connections go to `mover`, those idle now
    /// at once; idle TLS ones (their session cannot move) are closed.
    pub(super) fn hand_over(&mut self, mover: Mover, shared: &mut Shared, registry: &Registry) {
        self.mover = Some(mover);
        let tokens: Vec<usize> = self.entries.iter().map(|(t, _)| t).collect();
        for t in tokens {
            if let Some(c) = self.entries.get_mut(t) {
                c.rest(&mut shared.pool, &mut shared.spare);
            }
            self.move_if_idle(t, shared, registry);
        }
    }

    /// Gives a lent connection back once it is idle (`Socket::returning`):
    /// HTTP/1.1 between requests, nothing read ahead, no TLS session here.
    /// One we may keep stays, idle, until a request that is not ours goes
    /// back with its bytes (`returning::Claimed`), its idle deadline passes
    /// (`back_when_idle_too_long`) or its line finishes (`return_kept`).
    fn return_if_idle(&mut self, token: usize, shared: &mut Shared, registry: &Registry) {
        if self.back.get(&token).is_some_and(Back::kept) {
            return;
        }
        self.give_back(token, shared, registry);
    }

    /// Gives a lent connection back now if it is idle.
    fn give_back(&mut self, token: usize, shared: &mut Shared, registry: &Registry) {
        let Some(back) = self.back.get(&token) else {
            return;
        };
        let Some(c) = self.entries.get(token) else {
            return;
        };
        let (Engine::Parked(p), Transport::Plain(_)) = (&c.engine, &c.io.transport) else {
            return;
        };
        match (back.mover)(c.io.fd.as_fd(), p.peer(), &[]) {
            Ok(()) => drop(self.remove(registry, token, shared)),
            Err(e) => {
                tracing::debug!(peer = %p.peer(), "a lent connection stays: {e}");
                self.back.remove(&token);
            }
        }
    }

    /// A kept connection idle too long goes back rather than being closed:
    /// the lender's own idle policy applies. `true`: it went. Out of line:
    /// the timers' loop runs every turn.
    #[inline(never)]
    fn back_when_idle_too_long(
        &mut self,
        token: usize,
        shared: &mut Shared,
        registry: &Registry,
    ) -> bool {
        if self.back.get(&token).is_none_or(|b| b.keep.is_none()) {
            return false;
        }
        // Not taken: it closes here as any idle one.
        self.give_back(token, shared, registry);
        !self.entries.contains(token)
    }

    /// The lines told to finish: kept connections idle now go back.
    pub(super) fn return_kept(&mut self, shared: &mut Shared, registry: &Registry) {
        let tokens: Vec<usize> = self
            .back
            .iter()
            .filter(|(_, b)| b.keep.is_some() && !b.kept())
            .map(|(t, _)| *t)
            .collect();
        for t in tokens {
            self.give_back(t, shared, registry);
        }
    }

    pub(super) fn is_handing_over(&self) -> bool {
        self.mover.is_some()
    }

    /// Moves one connection if it is parked (never mid-response). Whether
    /// a mover waits is asked inline: there is none but during a hand-over,
    /// and the call to learn so cost 18 instructions a request.
    #[inline(always)]
    fn move_if_idle(&mut self, token: usize, shared: &mut Shared, registry: &Registry) {
        if self.mover.is_some() {
            self.move_now(token, shared, registry);
        }
    }

    /// `move_if_idle` with a mover.
    #[inline(never)]
    fn move_now(&mut self, token: usize, shared: &mut Shared, registry: &Registry) {
        let Some(mover) = &self.mover else {
            return;
        };
        let Some(c) = self.entries.get_mut(token) else {
            return;
        };
        // An HTTP/2 connection moves with its state once it is between
        // requests with nothing owed; over TLS (its session cannot move),
        // or if the new process will not take it, it is told to go away
        // gracefully, its streams finish here, and its client opens its
        // next connection to the new process.
        if let Engine::H2(h) = &mut c.engine {
            if matches!(c.io.transport, Transport::Plain(_)) {
                match h.park() {
                    Some(state) => match mover(c.io.fd.as_fd(), h.peer(), &state) {
                        Ok(()) => {
                            drop(self.remove(registry, token, shared));
                            return;
                        }
                        Err(e) => {
                            tracing::warn!(peer = %h.peer(), "handing over: an HTTP/2 connection stays: {e}")
                        }
                    },
                    // Not between requests yet: judged again after its turn.
                    None if !h.is_ending() => return,
                    None => {}
                }
            }
            if h.go_away() {
                tracing::debug!(peer = %h.peer(), "handing over: GOAWAY to an HTTP/2 connection");
                self.drive(token, Instant::now(), shared, registry);
            }
            return;
        }
        let Engine::Parked(p) = &c.engine else {
            return;
        };
        match c.io.transport {
            Transport::Plain(_) => {}
            // Nothing read yet on an `auto` listener: whether it speaks TLS
            // is not known; it moves (or closes) once it has said.
            Transport::Sniff(_) => return,
            // Its PROXY header is not in yet: likewise.
            Transport::Proxy { .. } => return,
            // Mid-handshake: its client has asked for nothing yet and
            // would see a reset; once it has (and been answered, or gone
            // HTTP/2 and been told to go away) it is judged again.
            Transport::Tls(ref t) if t.is_handshaking() => return,
            Transport::Tls(_) => {
                tracing::debug!(peer = %p.peer(), "handing over: an idle TLS connection is closed");
                drop(self.remove(registry, token, shared));
                return;
            }
        }
        match mover(c.io.fd.as_fd(), p.peer(), &[]) {
            Ok(()) => drop(self.remove(registry, token, shared)),
            Err(e) => tracing::warn!(peer = %p.peer(), "handing over: kept a connection: {e}"),
        }
    }

    /// Connections served; counted by the slab.
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether a handler handed a connection off since it was last asked.
    #[inline]
    pub(super) fn has_handed(&self) -> bool {
        !self.handed.is_empty()
    }

    /// A connection a handler handed off, out of the table.
    pub(super) fn next_handed(&mut self) -> Option<Leaving> {
        self.handed.pop_front()
    }

    /// The earliest deadline of any connection.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Fills a reserved slot: registers the socket for both directions,
    /// edge-triggered, once, and puts the connection in the table, with the
    /// bytes already read from it. On an error the slot is given back.
    pub(super) fn insert(
        &mut self,
        registry: &Registry,
        new: NewConnection<'_>,
        now: Instant,
        shared: &mut Shared,
    ) -> io::Result<usize> {
        let r = self.try_insert(registry, new, now, shared);
        if r.is_err() {
            self.budget.unreserve();
        }
        r
    }

    fn try_insert(
        &mut self,
        registry: &Registry,
        (fd, peer, pre_read, wrapping, resume_h2): NewConnection<'_>,
        now: Instant,
        shared: &mut Shared,
    ) -> io::Result<usize> {
        let http2 = shared.opts.http2 && wrapping.http2;
        // A moved connection's TLS session does not move with it, and its
        // PROXY header was read by the process it comes from.
        let plain = wrapping.tls == crate::tls::TlsMode::Off && wrapping.proxy.is_none();
        if resume_h2.is_some() && !(http2 && plain) {
            let e = "an HTTP/2 state for a socket not served plain with HTTP/2 here";
            return Err(io::Error::new(io::ErrorKind::InvalidInput, e));
        }
        let tls = if http2 {
            &shared.tls
        } else {
            &shared.tls_http1
        };
        let mut transport = Transport::for_wrapping(wrapping, tls.as_ref())?;
        let engine = match resume_h2 {
            Some(state) => {
                let limits = &shared.opts.limits;
                let h2 = crate::http::h2::H2Conn::resume(peer, now, state, pre_read, limits)
                    .map_err(|why| io::Error::new(io::ErrorKind::InvalidData, why))?;
                crate::metrics::inc(crate::metrics::M::H2Connections);
                Engine::H2(Box::new(h2))
            }
            None => {
                let mut conn = Conn::new(peer, now);
                match &mut transport {
                    // A front's DATA starts with the PROXY header: read it
                    // first.
                    Transport::Proxy { buf, .. } => buf.extend_from_slice(pre_read),
                    _ => conn.feed(pre_read, &mut shared.pool, now),
                }
                Engine::Busy(Box::new(conn))
            }
        };
        let token = self.entries.vacant_key();
        registry.register(
            &mut SourceFd(&fd.as_raw_fd()),
            Token(token),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        self.next_gen += 1;
        self.entries.insert(Box::new(Connection {
            io: Io {
                fd,
                transport,
                ready: Readiness {
                    // Draining, a connection from the backlog is read at
                    // once: its request is what it is being accepted for,
                    // and without bytes it would be judged idle and closed.
                    readable: shared.draining,
                    writable: true,
                    fin_queued: false,
                },
                http2,
            },
            engine,
            generation: self.next_gen,
            timer_at: None,
        }));
        crate::metrics::inc(crate::metrics::M::Opened);
        self.budget.publish(self.entries.len());
        Ok(token)
    }

    /// Takes a connection out of the table: deregistered (the same socket
    /// may be open elsewhere, as inetd's fds 0, 1 and 2 are, and epoll
    /// forgets an fd only when every copy is closed), buffers returned.
    pub(super) fn remove(
        &mut self,
        registry: &Registry,
        token: usize,
        shared: &mut Shared,
    ) -> Option<Connection> {
        let c = self.entries.try_remove(token)?;
        if !self.back.is_empty() {
            self.back.remove(&token);
        }
        crate::metrics::inc(crate::metrics::M::Closed);
        // Counted once its client was known (`Connection::ready`, `serve`);
        // no flag of its own: the connection has no byte to spare for it.
        if self.clients.limits_conns() && c.io.past_proxy() {
            self.clients.close(c.engine.peer());
        }
        // Amortised: a sweep follows at least 1,024 closes more than there
        // are connections.
        if self.timers.len() > 2 * self.entries.len() + 1024 {
            let entries = &self.entries;
            self.timers.sweep(|token, generation, at| {
                entries
                    .get(token)
                    .is_some_and(|c| c.generation == generation && c.timer_at == Some(at))
            });
        }
        self.budget.publish(self.entries.len());
        self.budget.unreserve();
        let _ = registry.deregister(&mut SourceFd(&c.io.fd.as_raw_fd()));
        let mut c = *c;
        if let Engine::Busy(b) = &mut c.engine {
            b.release_buffers(&mut shared.pool);
        }
        Some(c)
    }

    /// Adds what an event reports, then drives the connection.
    pub(super) fn ready(
        &mut self,
        token: usize,
        ev: &mio::event::Event,
        now: Instant,
        shared: &mut Shared,
        registry: &Registry,
    ) {
        if let Some(c) = self.entries.get_mut(token) {
            c.io.ready.update(ev);
            self.drive(token, now, shared, registry);
        }
    }

    /// Lets one connection do what it can, then acts on the outcome: a
    /// deadline to wait for, a close, or a hand-off (`next_handed`).
    pub(super) fn drive(
        &mut self,
        token: usize,
        now: Instant,
        shared: &mut Shared,
        registry: &Registry,
    ) {
        let Some(c) = self.entries.get_mut(token) else {
            return;
        };
        // Declared before the context that borrows it.
        let claimed;
        let mut ctx = shared.ctx(Some((token, c.generation)));
        // Empty unless this process is lent connections: asked first.
        let back = match self.back.is_empty() {
            true => None,
            false => self.back.get(&token),
        };
        if let Some(back) = back {
            claimed = Claimed {
                inner: ctx.handler,
                back,
            };
            ctx.handler = &claimed;
        }
        // One call: from two places it is no longer inlined (63
        // instructions a request, callgrind).
        let outcome = c.ready(now, &mut ctx, &self.clients);
        let yielded = matches!(outcome, Outcome::Yield);
        match outcome {
            Outcome::Wait | Outcome::Yield => {
                let deadline = c.engine.deadline(ctx.timeouts);
                self.timers
                    .schedule(deadline, token, c.generation, &mut c.timer_at);
                if yielded {
                    self.again.push((token, c.generation));
                } else {
                    if let Some(served) = c.idle_awake() {
                        // Handing over or lent, it goes as soon as it is
                        // parked; otherwise it may be asked again soon.
                        // Its engine stays, up to `MAX_RESTING` of them;
                        // its buffers too, until another goes idle (a
                        // burst of connections going idle together would
                        // otherwise hold a pair each).
                        if self.mover.is_none()
                            && self.back.is_empty()
                            && self.resting.len() < MAX_RESTING
                        {
                            let generation = c.generation;
                            self.resting.push((token, generation, served));
                            let keeping = (&mut self.keeping, &mut self.entries);
                            keep_buffers(keeping, token, generation, ctx.pool);
                        } else {
                            c.rest(ctx.pool, ctx.spare);
                        }
                    }
                    self.move_if_idle(token, shared, registry);
                    if !self.back.is_empty() {
                        self.return_if_idle(token, shared, registry);
                    }
                }
            }
            Outcome::Close(why) => {
                if let Some(why) = why {
                    c.log_close(&why);
                }
                drop(self.remove(registry, token, shared));
            }
            Outcome::HandOff(taken) => {
                let back = self.back.get(&token).map(|b| b.mover.clone());
                if let Some(c) = self.remove(registry, token, shared) {
                    match (back, taken) {
                        (Some(mover), Some(t))
                            if t.context.as_ref().is_some_and(|c| c.is::<GoingBack>()) =>
                        {
                            go_back(&c, &mover, t);
                        }
                        (_, taken) => self.handed.push_back((c, taken)),
                    }
                }
            }
        }
    }

    /// Has a connection yielded, to be driven again without waiting?
    pub(super) fn has_again(&self) -> bool {
        !self.again.is_empty()
    }

    /// Drives again the connections that yielded.
    #[inline]
    pub(super) fn run_again(&mut self, now: Instant, shared: &mut Shared, registry: &Registry) {
        if self.again.is_empty() {
            return;
        }
        for (token, generation) in std::mem::take(&mut self.again) {
            if self
                .entries
                .get(token)
                .is_some_and(|c| c.generation == generation)
            {
                self.drive(token, now, shared, registry);
            }
        }
    }

    /// Runs a deferred response's job (`None`: every handle to it is gone)
    /// on the connection it was meant for, if it is still there.
    pub(super) fn reply(
        &mut self,
        key: ReplyKey,
        letter: Letter,
        now: Instant,
        shared: &mut Shared,
        registry: &Registry,
    ) {
        let Some(c) = self.entries.get_mut(key.token) else {
            return;
        };
        if c.generation != key.generation {
            return; // that connection is gone and its slot reused
        }
        let mut ctx = shared.ctx(None);
        let via = c.io.via();
        match (&mut c.engine, letter) {
            // A streamed body has more: driving the connection pulls it.
            (_, Letter::Wake) => {}
            (Engine::Busy(conn), Letter::Job(job)) => {
                conn.write_deferred(key.id, job, (now, via), &mut ctx)
            }
            (Engine::Busy(conn), Letter::Dropped) => conn.abandon(key.id, now, &mut ctx),
            // On HTTP/2 the reply names its stream.
            (Engine::H2(h), Letter::Job(job)) => h.reply(key.id, Some(job), (now, via), &mut ctx),
            (Engine::H2(h), Letter::Dropped) => h.reply(key.id, None, (now, via), &mut ctx),
            // A parked connection has no deferred response: nothing to run.
            (Engine::Parked(_), _) => return,
        }
        self.drive(key.token, now, shared, registry)
    }

    /// Acts on every deadline that has passed.
    #[inline]
    pub(super) fn fire_timers(&mut self, now: Instant, shared: &mut Shared, registry: &Registry) {
        // Most turns have none due: asked before the loop's setup (about
        // 25 instructions a turn, callgrind).
        if self.timers.next().is_some_and(|t| t <= now) {
            self.fire_due(now, shared, registry);
        }
    }

    #[inline(never)]
    fn fire_due(&mut self, now: Instant, shared: &mut Shared, registry: &Registry) {
        while let Some((token, generation)) = self.timers.pop_due(now) {
            let Some(c) = self.entries.get_mut(token) else {
                continue;
            };
            if c.generation != generation {
                continue;
            }
            c.timer_at = None;
            // A stale entry for a parked connection: reschedule it without
            // waking it.
            if let Engine::Parked(p) = &c.engine {
                let due = p.deadline(&shared.opts.timeouts);
                if due > now {
                    self.timers
                        .schedule(Some(due), token, generation, &mut c.timer_at);
                    continue;
                }
                if !self.back.is_empty() && self.back_when_idle_too_long(token, shared, registry) {
                    continue;
                }
            }
            let Some(c) = self.entries.get_mut(token) else {
                continue;
            };
            let mut ctx = shared.ctx(None);
            let expired = c.engine.on_timeout(now, &mut ctx);
            if let Some(e) = &expired {
                use crate::metrics::{M, inc};
                inc(match e {
                    Expired::Idle => M::CutIdle,
                    Expired::Request => M::CutRequest,
                    Expired::Write => M::CutWrite,
                    Expired::Linger => M::CutLinger,
                });
            }
            match expired {
                Some(Expired::Write | Expired::Linger) => {
                    tracing::debug!(peer = %c.engine.peer(), "deadline passed; closing");
                    drop(self.remove(registry, token, shared));
                }
                Some(Expired::Idle | Expired::Request) => {
                    self.drive(token, now, shared, registry);
                }
                None => {
                    let deadline = c.engine.deadline(ctx.timeouts);
                    self.timers
                        .schedule(deadline, token, generation, &mut c.timer_at);
                }
            }
        }
    }

    /// Draining: every connection is read once more (bytes may have arrived
    /// after its last readiness was handled) and judged.
    pub(super) fn reread_all(&mut self, now: Instant, shared: &mut Shared, registry: &Registry) {
        let tokens: Vec<usize> = self.entries.iter().map(|(t, _)| t).collect();
        for t in tokens {
            if let Some(c) = self.entries.get_mut(t) {
                c.io.ready.readable = true;
                self.drive(t, now, shared, registry);
            }
        }
    }

    /// Closes every connection now.
    pub(super) fn close_all(&mut self, registry: &Registry, shared: &mut Shared) {
        let tokens: Vec<usize> = self.entries.iter().map(|(t, _)| t).collect();
        for t in tokens {
            drop(self.remove(registry, t, shared));
        }
    }
}

/// A request on a lent connection that is not ours goes back to the
/// lender with what was read of it; if the lender does not take it, the
/// client is told, since nobody here may answer it.
fn go_back(c: &Connection, mover: &Mover, t: crate::http::Taken) {
    let mut read = t.head;
    read.extend_from_slice(&t.rest);
    if let Err(e) = mover(c.io.fd.as_fd(), c.engine.peer(), &read) {
        tracing::warn!(peer = %c.engine.peer(), "a request for the lender could not go back: {e}; 503");
        super::connection::answer_untaken(
            c.io.fd.as_fd(),
            503,
            "the server could not route this request",
        );
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::time::Duration;

    use super::super::{Options, Server};
    use super::Engine;

    fn parked(s: &Server) -> Vec<bool> {
        s.conns
            .entries
            .iter()
            .map(|(_, c)| matches!(c.engine, Engine::Parked(_)))
            .collect()
    }

    /// A server answering "hi" on a loopback port, not stepped yet.
    fn serving_hi() -> (Server, std::net::SocketAddr) {
        let mut s = Server::new(
            Options::default(),
            |_: &crate::Request<'_>, res: &mut crate::Response<'_>| {
                res.body("hi");
            },
        )
        .unwrap();
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        s.add_socket(std::os::fd::OwnedFd::from(l)).unwrap();
        (s, addr)
    }

    fn ask(s: &mut Server, client: &mut std::net::TcpStream) {
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let mut got = Vec::new();
        while !got.ends_with(b"hi") {
            s.step(Some(Duration::from_millis(50))).unwrap();
            let mut buf = [0u8; 512];
            if let Ok(n) = client.read(&mut buf) {
                got.extend_from_slice(&buf[..n]);
            }
        }
    }

    /// Whether each connection's engine holds buffers, in slot order.
    fn holding(s: &Server) -> Vec<bool> {
        s.conns
            .entries
            .iter()
            .map(|(_, c)| match &c.engine {
                Engine::Busy(b) => b.holds_buffers(),
                _ => false,
            })
            .collect()
    }

    #[test]
    fn the_last_connection_gone_idle_keeps_its_buffers_until_it_is_parked_a_turn_later() {
        let (mut s, addr) = serving_hi();
        let mut client = std::net::TcpStream::connect(addr).unwrap();
        client.set_nonblocking(true).unwrap();
        ask(&mut s, &mut client);
        // Answered in the turn that read the request: idle, not parked
        // yet, its buffers kept, and the loop means to come back within
        // `IDLE_REST`.
        assert_eq!(parked(&s), [false]);
        assert_eq!(holding(&s), [true]);
        assert_eq!(s.shared.pool.free_buffers(), 0);
        assert!(s.timeout().is_some_and(|t| t <= super::IDLE_REST));
        // A turn with nothing for it parks it, and its buffers go back.
        s.step(Some(Duration::ZERO)).unwrap();
        assert_eq!(parked(&s), [true]);
        assert_eq!(s.shared.pool.free_buffers(), 2);
        // Asked again, it is served with the same two, and parked a turn
        // later again.
        ask(&mut s, &mut client);
        assert_eq!(parked(&s), [false]);
        assert_eq!(s.shared.pool.free_buffers(), 0);
        s.step(Some(Duration::ZERO)).unwrap();
        assert_eq!(parked(&s), [true]);
        assert_eq!(s.shared.pool.free_buffers(), 2);
        assert_eq!(s.timeout().map(|t| t > super::IDLE_REST), Some(true));
    }

    /// `n` clients' requests all in before the loop looks, so that they
    /// are accepted, read, answered and go idle together; `each` looks at
    /// the server after every turn until all are answered.
    fn answer_together(
        s: &mut Server,
        addr: std::net::SocketAddr,
        n: usize,
        each: impl Fn(&Server),
    ) {
        let mut clients: Vec<_> = (0..n)
            .map(|_| {
                let mut c = std::net::TcpStream::connect(addr).unwrap();
                c.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
                c.set_nonblocking(true).unwrap();
                c
            })
            .collect();
        let mut answered = vec![false; n];
        while answered.contains(&false) {
            s.step(Some(Duration::from_millis(50))).unwrap();
            for (c, done) in clients.iter_mut().zip(&mut answered) {
                let mut buf = [0u8; 512];
                if let Ok(k) = c.read(&mut buf) {
                    *done |= buf[..k].ends_with(b"hi");
                }
            }
            each(s);
        }
    }

    #[test]
    fn no_more_than_one_idle_connection_keeps_its_buffers() {
        let (mut s, addr) = serving_hi();
        answer_together(&mut s, addr, 6, |s| {
            let held = holding(s).iter().filter(|h| **h).count();
            assert!(held <= 1, "{held} idle connections hold buffers");
        });
        // The last one still keeps its pair; parked, it gives them back.
        assert_eq!(holding(&s).iter().filter(|h| **h).count(), 1);
        s.step(Some(Duration::ZERO)).unwrap();
        s.step(Some(Duration::ZERO)).unwrap();
        assert!(parked(&s).iter().all(|p| *p));
        assert!(!holding(&s).contains(&true));
    }

    #[test]
    fn no_more_than_max_resting_idle_connections_are_left_unparked() {
        let (mut s, addr) = serving_hi();
        answer_together(&mut s, addr, super::MAX_RESTING + 4, |s| {
            let awake = parked(s).iter().filter(|p| !**p).count();
            assert!(awake <= super::MAX_RESTING, "{awake} idle and not parked");
        });
        assert!(parked(&s).iter().filter(|p| **p).count() >= 4);
    }
}
