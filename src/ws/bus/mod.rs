//! A broadcast route's bus: its messages go through a Redis stream, so
//! that every instance's clients on the route hear each other, in one
//! order (`docs/bus.md`).
//!
//! Two threads per route, each with its own blocking connection (the
//! `redis` crate's; no event loop waits on Redis):
//! - the publisher (`publish.rs`) `XADD`s what the pool's workers' clients
//!   send, in order, with a bounded `MAXLEN ~`; while Redis is away it
//!   queues up to the route's bound and refuses past it;
//! - the reader (`read.rs`) `XREAD BLOCK`s from the last ID it saw and
//!   gives the pool each entry; after a lost connection it goes on from
//!   that ID, so it misses nothing the stream still holds.
//!
//! The pool relays each entry to every worker with its stream ID
//! (`BUS_ID`), and a worker gives a session only entries after the last
//! one that session was given: the stream's order is the order every
//! client sees, on every instance, across upgrades.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::handoff::wire::BusId;

mod publish;
mod read;

pub(crate) use publish::{Pub, Publish};

use crate::metrics::BUS_DOWN as DOWN;

/// `,bus=redis://…` and its options on a broadcast route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BusSpec {
    /// `redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]` or `rediss://…`.
    pub url: String,
    /// The stream's key is this followed by the route's path.
    pub prefix: String,
    /// `XADD … MAXLEN ~ N`: about how many entries the stream keeps, so
    /// how far behind an instance may fall and still catch up.
    pub maxlen: u64,
    /// Messages held while Redis is away; past it a sender is closed (1013).
    pub queue: usize,
    /// A CA certificate (PEM) for `rediss://`, instead of the system's.
    pub ca: Option<PathBuf>,
}

pub(crate) const DEFAULT_PREFIX: &str = "handoff:";
pub(crate) const DEFAULT_MAXLEN: u64 = 100_000;
pub(crate) const DEFAULT_QUEUE: usize = 4096;

impl BusSpec {
    pub(crate) fn new(url: &str) -> Result<BusSpec, String> {
        if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
            return Err(format!(
                "{url:?}: a bus is redis://HOST:PORT/ or rediss://…"
            ));
        }
        redis::Client::open(url).map_err(|e| format!("{}: {e}", masked(url)))?;
        Ok(BusSpec {
            url: url.into(),
            prefix: DEFAULT_PREFIX.into(),
            maxlen: DEFAULT_MAXLEN,
            queue: DEFAULT_QUEUE,
            ca: None,
        })
    }

    /// Sets `bus-prefix=`, `bus-maxlen=`, `bus-queue=` or `bus-ca=`.
    pub(crate) fn set(&mut self, name: &str, value: &str) -> Result<(), String> {
        let number = |v: &str| {
            v.parse::<u64>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| format!("{name}={v:?}: a whole number above 0"))
        };
        match name {
            "bus-prefix" => self.prefix = value.into(),
            "bus-maxlen" => self.maxlen = number(value)?,
            "bus-queue" => self.queue = number(value)? as usize,
            "bus-ca" => self.ca = Some(value.into()),
            _ => return Err(format!("{name}: not a bus option")),
        }
        Ok(())
    }

    /// The stream that carries `path`'s messages.
    pub(crate) fn key(&self, path: &str) -> String {
        format!("{}{path}", self.prefix)
    }

    /// A client for the URL (and CA, for `rediss://`).
    fn client(&self) -> redis::RedisResult<redis::Client> {
        // rustls needs its process-wide provider; ours is ring's (our TLS
        // passes one explicitly, so none may be installed yet).
        let _ = rustls::crypto::ring::default_provider().install_default();
        match &self.ca {
            None => redis::Client::open(self.url.as_str()),
            Some(ca) => {
                let pem = std::fs::read(ca).map_err(|e| {
                    redis::RedisError::from((
                        redis::ErrorKind::Io,
                        "bus-ca",
                        format!("{}: {e}", ca.display()),
                    ))
                })?;
                redis::Client::build_with_tls(
                    self.url.as_str(),
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(pem),
                    },
                )
            }
        }
    }
}

/// The URL with its password, if any, as `***` (for logs and messages).
pub(crate) fn masked(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.into();
    };
    let (auth, host) = match rest.split_once('/') {
        Some((a, _)) => (a, &rest[a.len()..]),
        None => (rest, ""),
    };
    match auth.rsplit_once('@') {
        Some((user, at)) => match user.split_once(':') {
            Some((name, _)) => format!("{scheme}://{name}:***@{at}{host}"),
            None => url.into(),
        },
        None => url.into(),
    }
}

impl fmt::Display for BusSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, ",bus={}", masked(&self.url))?;
        if self.prefix != DEFAULT_PREFIX {
            write!(f, ",bus-prefix={}", self.prefix)?;
        }
        if self.maxlen != DEFAULT_MAXLEN {
            write!(f, ",bus-maxlen={}", self.maxlen)?;
        }
        if self.queue != DEFAULT_QUEUE {
            write!(f, ",bus-queue={}", self.queue)?;
        }
        if let Some(ca) = &self.ca {
            write!(f, ",bus-ca={}", ca.display())?;
        }
        Ok(())
    }
}

/// What the bus threads tell the pool (through its channel, then its
/// waker).
pub(crate) enum Event {
    /// The reader's starting place on `route`'s stream (its last entry
    /// when the reader first connected): sessions that arrive before any
    /// entry has are given what follows it.
    From { route: usize, id: BusId },
    /// Entries read, in the stream's order.
    Read { route: usize, entries: Vec<Entry> },
    /// A message the publisher could not take (Redis away, queue full):
    /// close the session that sent it.
    Refused { worker: usize, serial: u64 },
    /// The pool is stopping and a publisher has nothing left to publish.
    Drained,
}

pub(crate) struct Entry {
    pub id: BusId,
    /// The message; none in an entry someone else wrote (no `d` field).
    pub data: Option<Vec<u8>>,
    pub binary: bool,
}

/// Gives the pool an event (its channel, then its waker); false once the
/// pool is gone.
pub(crate) type Tell = Arc<dyn Fn(Event) -> bool + Send + Sync>;

/// A route's bus: starts its two threads; the publisher's queue is the
/// handle.
pub(crate) fn start(
    route: usize,
    path: &str,
    spec: &BusSpec,
    tell: Tell,
) -> std::io::Result<Publish> {
    let client = spec
        .client()
        .map_err(|e| std::io::Error::other(format!("{}: {e}", masked(&spec.url))))?;
    let key = spec.key(path);
    // Nothing is published before the reader knows where it starts: our
    // clients hear their own first messages too.
    let placed = Arc::new(AtomicBool::new(false));
    read::start(
        route,
        key.clone(),
        client.clone(),
        spec.url.clone(),
        tell.clone(),
        placed.clone(),
    )?;
    publish::start(key, client, spec.clone(), tell, placed)
}

/// How long to wait for Redis before calling it away.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// A reply slower than this (beyond `XREAD`'s own block) means Redis is gone.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Short: while Redis is away, broadcasts wait (`publish.rs`).
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// One thread's view of whether it has Redis: logs and `DOWN` change only
/// when that changes.
struct Health {
    up: bool,
    what: &'static str,
    url: String,
    backoff: Duration,
}

impl Health {
    fn new(what: &'static str, url: &str) -> Health {
        // Counted as down until it first connects.
        DOWN.fetch_add(1, Ordering::Relaxed);
        Health {
            up: false,
            what,
            url: masked(url),
            backoff: FIRST_BACKOFF,
        }
    }

    fn connected(&mut self) {
        self.backoff = FIRST_BACKOFF;
        if !self.up {
            self.up = true;
            DOWN.fetch_sub(1, Ordering::Relaxed);
            crate::metrics::inc(crate::metrics::M::BusConnects);
            tracing::info!(bus = %self.url, "broadcast bus {}: connected to Redis", self.what);
        }
    }

    /// Lost or could not reach Redis: says so once, then waits a back-off.
    fn lost(&mut self, e: &dyn fmt::Display) {
        if self.up {
            self.up = false;
            DOWN.fetch_add(1, Ordering::Relaxed);
            crate::metrics::inc(crate::metrics::M::BusLosses);
            tracing::error!(bus = %self.url, "broadcast bus {}: Redis lost: {e}; retrying", self.what);
        } else if self.backoff == FIRST_BACKOFF {
            tracing::error!(bus = %self.url, "broadcast bus {}: no Redis: {e}; retrying", self.what);
        }
    }

    fn next_backoff(&mut self) -> Duration {
        let b = self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        b
    }
}

/// Opens a connection with the bus's timeouts.
fn connect(client: &redis::Client) -> redis::RedisResult<redis::Connection> {
    let c = client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
    c.set_read_timeout(Some(REPLY_TIMEOUT))?;
    c.set_write_timeout(Some(REPLY_TIMEOUT))?;
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hides_a_password_in_a_bus_url() {
        assert_eq!(
            masked("redis://:s3cret@db:6379/0"),
            "redis://:***@db:6379/0"
        );
        assert_eq!(masked("rediss://app:pw@db/"), "rediss://app:***@db/");
        assert_eq!(masked("redis://db:6379/"), "redis://db:6379/");
        assert_eq!(masked("redis://user@db/"), "redis://user@db/");
    }

    #[test]
    fn takes_bus_options_and_refuses_bad_ones() {
        let mut b = BusSpec::new("redis://127.0.0.1:6379/").unwrap();
        b.set("bus-prefix", "site1:").unwrap();
        b.set("bus-maxlen", "5000").unwrap();
        b.set("bus-queue", "10").unwrap();
        assert_eq!(b.key("/chat"), "site1:/chat");
        assert_eq!((b.maxlen, b.queue), (5000, 10));
        assert!(b.set("bus-queue", "0").is_err());
        assert!(b.set("bus-maxlen", "lots").is_err());
        assert!(BusSpec::new("http://127.0.0.1/").is_err());
        assert!(BusSpec::new("redis://").is_err());
    }
}
