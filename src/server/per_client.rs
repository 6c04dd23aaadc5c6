//! Limits per client address (`Options::per_client`): open connections
//! (`--max-conns-per-ip`) and a request rate with a burst
//! (`--rate-per-ip`), keyed by the address the PROXY header gives when
//! there is one, an IPv6 client by its /64 (one host's share of a
//! network, as one IPv4 address is).
//!
//! Memory stays bounded whatever the addresses: the connection counts
//! hold an entry per address with a connection open (at most
//! `max_concurrent` of them), and the rates live in a fixed table of
//! 64 Ki entries, four to a set, where a new address takes the place of
//! the set's least recent one. A flood of new addresses forgets the
//! quiet ones, which then start again with a full burst: it lets through
//! more than the rate, never less.
//!
//! Shared by clones (every loop's server is made from one `Options`), so
//! the limits hold for the process, not per loop.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::sys::Addr;

/// Locks over the tables: loops contend on one only when their clients
/// hash alike.
const SHARDS: usize = 64;
/// Rate entries: sets of `WAYS`, `SETS` of them (64 Ki entries, 1.5 MiB).
const SETS: usize = 16 * 1024;
const WAYS: usize = 4;

/// A request rate: `per` requests a second on average, up to `burst` at
/// once.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    /// The time one request's allowance takes to come back.
    pub interval: Duration,
    /// Requests that may come at once after a quiet spell (at least 1).
    pub burst: u32,
}

impl Rate {
    /// `N/s` or `N/m`, optionally `,burst=B` (else one second's worth,
    /// at least 1).
    pub fn parse(s: &str) -> Result<Rate, String> {
        let usage = || format!("{s:?}: N/s or N/m, optionally ,burst=B (10/s,burst=20)");
        let (rate, burst) = match s.split_once(',') {
            Some((r, b)) => (r, Some(b.strip_prefix("burst=").ok_or_else(usage)?)),
            None => (s, None),
        };
        let (n, unit) = rate.split_once('/').ok_or_else(usage)?;
        let n: u32 = n.trim().parse().map_err(|_| usage())?;
        let per = match unit {
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            _ => return Err(usage()),
        };
        if n == 0 {
            return Err(format!("{s:?}: at least 1 request"));
        }
        let interval = per / n;
        let burst = match burst {
            Some(b) => match b.parse::<u32>() {
                Ok(b) if b >= 1 => b,
                _ => return Err(format!("{s:?}: the burst is at least 1")),
            },
            None => (Duration::from_secs(1).as_nanos() / interval.as_nanos().max(1)).max(1) as u32,
        };
        Ok(Rate { interval, burst })
    }
}

/// Limits per client, off by default. Clones share their counts.
#[derive(Clone, Default)]
pub struct PerClient {
    tables: Option<Arc<Tables>>,
}

impl std::fmt::Debug for PerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.tables {
            None => f.write_str("PerClient(off)"),
            Some(t) => write!(
                f,
                "PerClient {{ max_conns: {:?}, rate: {:?} }}",
                t.max_conns, t.rate
            ),
        }
    }
}

struct Tables {
    max_conns: Option<u32>,
    rate: Option<Rate>,
    hasher: std::collections::hash_map::RandomState,
    conns: Box<[Mutex<HashMap<u64, u32>>]>,
    rates: Box<[Mutex<Box<[Set]>>]>,
    base: Instant,
}

/// One client's rate. GCRA: one number is its whole bucket.
#[derive(Clone, Copy, Default)]
struct Way {
    key: u64,
    /// The theoretical arrival time, in ns after `Tables::base`; 0: empty.
    tat: u64,
    /// When it last asked (ns after `base`): who is forgotten first.
    seen: u64,
}

/// The ways a client's key may sit in.
type Set = [Way; WAYS];

/// What `PerClient::open` says of a new connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admit {
    /// No connection limit (or no address to key): nothing counted.
    Uncounted,
    /// Counted: `close` it when it ends.
    Counted,
    /// Its address has `max_conns` open already.
    Refused,
}

/// The key of a client: an IPv4 address (IPv4-mapped IPv6 alike) or an
/// IPv6 /64. IPv4 sits under ff00::/8 (multicast, never a source), apart
/// from every IPv6 /64.
fn key(peer: &Addr) -> Option<u64> {
    let Addr::Inet(a) = peer else {
        return None;
    };
    Some(match a.ip() {
        std::net::IpAddr::V4(v4) => 0xff00_0000_0000_0000 | u64::from(u32::from(v4)),
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => 0xff00_0000_0000_0000 | u64::from(u32::from(v4)),
            None => (u128::from(v6) >> 64) as u64,
        },
    })
}

impl PerClient {
    /// Limits: at most `max_conns` connections open per client, and
    /// requests at `rate` (over it: 429 with `Retry-After`).
    pub fn new(max_conns: Option<u32>, rate: Option<Rate>) -> PerClient {
        if max_conns.is_none() && rate.is_none() {
            return PerClient::default();
        }
        let rates = match rate {
            Some(_) => (0..SHARDS)
                .map(|_| Mutex::new(vec![[Way::default(); WAYS]; SETS / SHARDS].into_boxed_slice()))
                .collect(),
            None => Box::default(),
        };
        PerClient {
            tables: Some(Arc::new(Tables {
                max_conns,
                rate,
                hasher: Default::default(),
                conns: (0..SHARDS).map(|_| Mutex::default()).collect(),
                rates,
                base: Instant::now(),
            })),
        }
    }

    /// Is a request rate set (the handler is wrapped)?
    pub(crate) fn limits_rate(&self) -> bool {
        self.tables.as_ref().is_some_and(|t| t.rate.is_some())
    }

    /// Is a connection limit set?
    pub(crate) fn limits_conns(&self) -> bool {
        self.tables.as_ref().is_some_and(|t| t.max_conns.is_some())
    }

    /// A connection from `peer` begins.
    pub(crate) fn open(&self, peer: &Addr) -> Admit {
        let (Some(t), Some(k)) = (&self.tables, key(peer)) else {
            return Admit::Uncounted;
        };
        let Some(max) = t.max_conns else {
            return Admit::Uncounted;
        };
        let mut shard = lock(&t.conns[t.shard(k)]);
        let n = shard.entry(k).or_insert(0);
        if *n >= max {
            if *n == 0 {
                shard.remove(&k);
            }
            return Admit::Refused;
        }
        *n += 1;
        Admit::Counted
    }

    /// A counted connection from `peer` ended.
    pub(crate) fn close(&self, peer: &Addr) {
        let (Some(t), Some(k)) = (&self.tables, key(peer)) else {
            return;
        };
        let mut shard = lock(&t.conns[t.shard(k)]);
        if let Some(n) = shard.get_mut(&k) {
            *n -= 1;
            if *n == 0 {
                shard.remove(&k);
            }
        }
    }

    /// A request from `peer` at `now`: `Err(wait)` if it comes too soon
    /// (nothing is taken from the bucket then), with how long until one
    /// would pass. `take`: false only looks.
    pub(crate) fn request(&self, peer: &Addr, now: Instant, take: bool) -> Result<(), Duration> {
        let (Some(t), Some(k)) = (&self.tables, key(peer)) else {
            return Ok(());
        };
        let Some(rate) = t.rate else {
            return Ok(());
        };
        let h = t.hasher.hash_one(k) as usize;
        let set = h % SETS;
        let mut shard = lock(&t.rates[set % SHARDS]);
        let ways = &mut shard[set / SHARDS];
        // ns after base, never 0 (0 marks an empty way).
        let now = now.saturating_duration_since(t.base).as_nanos() as u64 + 1;
        let interval = rate.interval.as_nanos() as u64;
        let tolerance = interval * u64::from(rate.burst - 1);
        let way = match ways.iter().position(|w| w.key == k && w.tat != 0) {
            Some(w) => w,
            None => {
                // A full bucket (or an empty way) first: forgetting it
                // loses nothing; else the client that asked least lately.
                let (w, _) = ways
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, w)| (w.tat > now, w.seen))
                    .unwrap_or((0, &Way::default()));
                ways[w] = Way {
                    key: k,
                    tat: now,
                    seen: now,
                };
                w
            }
        };
        let w = &mut ways[way];
        w.seen = now;
        let tat = w.tat.max(now);
        if tat - now > tolerance {
            return Err(Duration::from_nanos(tat - now - tolerance));
        }
        if take {
            w.tat = tat + interval;
        }
        Ok(())
    }

    /// Clients with connections open now.
    #[cfg(test)]
    pub(crate) fn clients_open(&self) -> usize {
        self.tables
            .as_ref()
            .map_or(0, |t| t.conns.iter().map(|s| lock(s).len()).sum())
    }
}

impl Tables {
    fn shard(&self, k: u64) -> usize {
        self.hasher.hash_one(k) as usize % SHARDS
    }
}

/// A poisoned lock still holds numbers: a panic elsewhere cannot leave a
/// count half-changed (each change is one store).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The handler behind `Options::per_client`'s rate: a request over it gets
/// 429 with `Retry-After` (whole seconds, rounded up) and the handler
/// never sees it. A request with a body is looked at in `on_head` too, so
/// that a refused upload is not read into memory for nothing.
pub(crate) struct RateLimited {
    pub(crate) inner: Box<dyn crate::http::Handler>,
    pub(crate) clients: PerClient,
}

impl crate::http::Handler for RateLimited {
    fn handle(&self, req: &crate::http::Request<'_>, res: &mut crate::http::Response<'_>) {
        match self.clients.request(req.peer_addr(), req.now(), true) {
            Ok(()) => self.inner.handle(req, res),
            Err(wait) => {
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                res.header("Retry-After", secs.max(1).to_string())
                    .plain(429, "429 Too Many Requests\n");
            }
        }
    }

    fn on_head(&self, req: &crate::http::Request<'_>) -> crate::http::BodyPlan {
        match self.clients.request(req.peer_addr(), req.now(), false) {
            Ok(()) => self.inner.on_head(req),
            Err(_) => crate::http::BodyPlan::Discard,
        }
    }

    fn refusal(&self, refusal: &crate::http::Refusal<'_>) -> Option<crate::http::Rendered> {
        self.inner.refusal(refusal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Addr {
        Addr::Inet(std::net::SocketAddr::new(s.parse().unwrap(), 9))
    }

    #[test]
    fn reads_a_rate_with_or_without_a_burst() {
        let r = Rate::parse("10/s").unwrap();
        assert_eq!((r.interval, r.burst), (Duration::from_millis(100), 10));
        let r = Rate::parse("30/m,burst=5").unwrap();
        assert_eq!((r.interval, r.burst), (Duration::from_secs(2), 5));
        assert_eq!(Rate::parse("1/m").unwrap().burst, 1);
        for bad in ["0/s", "10", "10/h", "x/s", "10/s,burst=0", "10/s,b=3", ""] {
            assert!(Rate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn groups_ipv6_by_its_64_and_ipv4_mapped_as_ipv4() {
        assert_eq!(
            key(&at("2001:db8:1:2::1")),
            key(&at("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(key(&at("2001:db8:1:2::1")), key(&at("2001:db8:1:3::1")));
        assert_eq!(key(&at("192.0.2.1")), key(&at("::ffff:192.0.2.1")));
        assert_ne!(key(&at("192.0.2.1")), key(&at("192.0.2.2")));
        assert_ne!(key(&at("::1")), key(&at("0.0.0.1")));
        assert_eq!(key(&Addr::Unknown), None);
    }

    #[test]
    fn counts_connections_per_client_and_forgets_a_client_with_none() {
        let p = PerClient::new(Some(2), None);
        let (a, b) = (at("192.0.2.1"), at("2001:db8::1"));
        assert_eq!(p.open(&a), Admit::Counted);
        assert_eq!(p.open(&a), Admit::Counted);
        assert_eq!(p.open(&a), Admit::Refused);
        assert_eq!(p.open(&b), Admit::Counted);
        assert_eq!(p.open(&at("2001:db8::2")), Admit::Counted, "the same /64");
        assert_eq!(p.open(&at("2001:db8::3")), Admit::Refused);
        assert_eq!(p.open(&Addr::Unknown), Admit::Uncounted);
        p.close(&a);
        assert_eq!(p.open(&a), Admit::Counted);
        for peer in [&a, &a, &b, &b] {
            p.close(peer);
        }
        assert_eq!(p.clients_open(), 0);
        // A clone shares the counts.
        let q = p.clone();
        assert_eq!(p.open(&a), Admit::Counted);
        assert_eq!(q.clients_open(), 1);
        assert_eq!(PerClient::default().open(&a), Admit::Uncounted);
    }

    #[test]
    fn lets_a_burst_through_then_one_request_per_interval() {
        let p = PerClient::new(None, Some(Rate::parse("10/s,burst=3").unwrap()));
        let a = at("192.0.2.1");
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(p.request(&a, t0, true), Ok(()));
        }
        let wait = p.request(&a, t0, true).unwrap_err();
        assert!(wait <= Duration::from_millis(100) && wait > Duration::from_millis(99));
        // Looking takes nothing; another client has its own bucket.
        assert!(p.request(&a, t0, false).is_err());
        assert_eq!(p.request(&at("192.0.2.2"), t0, true), Ok(()));
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(p.request(&a, t1, false), Ok(()));
        assert_eq!(p.request(&a, t1, true), Ok(()));
        assert!(p.request(&a, t1, true).is_err());
        // A quiet second fills the bucket again, to the burst and no more.
        let t2 = t1 + Duration::from_secs(1);
        for _ in 0..3 {
            assert_eq!(p.request(&a, t2, true), Ok(()));
        }
        assert!(p.request(&a, t2, true).is_err());
    }

    #[test]
    fn a_flood_of_new_addresses_stays_in_the_fixed_table_and_a_busy_client_keeps_its_limit() {
        let p = PerClient::new(None, Some(Rate::parse("1/s,burst=1").unwrap()));
        let busy = at("198.51.100.7");
        let t0 = Instant::now();
        assert_eq!(p.request(&busy, t0, true), Ok(()));
        let mut refused = 0;
        for i in 0..200_000u32 {
            let flood = Addr::Inet(std::net::SocketAddr::new(
                std::net::Ipv4Addr::from(0x0a00_0000 + i).into(),
                1,
            ));
            let t = t0 + Duration::from_micros(u64::from(i));
            assert_eq!(
                p.request(&flood, t, true),
                Ok(()),
                "each new address passes once"
            );
            if i % 1000 == 0 && p.request(&busy, t, true).is_err() {
                refused += 1;
            }
        }
        // Busy asks every millisecond at 1/s: mostly refused, though the
        // flood may push it out of its set now and then (a fresh bucket).
        assert!(refused > 150, "{refused} of 200 refused");
    }
}
