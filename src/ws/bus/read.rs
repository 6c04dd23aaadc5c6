//! The reader: `XREAD BLOCK` on the route's stream from the last ID seen,
//! each batch given to the pool in the stream's order. A lost connection
//! is opened again and reading goes on from that ID: what was added
//! meanwhile (and the stream still holds) comes first.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use redis::Value;

use super::{Entry, Event, Health, Tell, connect};
use crate::handoff::wire::BusId;

/// Entries asked for per `XREAD`.
const BATCH: usize = 512;
/// How long one `XREAD` blocks (then it is asked again).
const BLOCK_MS: u64 = 1000;

pub(super) fn start(
    route: usize,
    key: String,
    client: redis::Client,
    url: String,
    tell: Tell,
    placed: Arc<AtomicBool>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("ws-bus-read".into())
        .spawn(move || Reader::new(route, key, &url, tell, placed).run(&client))?;
    Ok(())
}

struct Reader {
    route: usize,
    key: String,
    health: Health,
    tell: Tell,
    /// The last entry given to the pool.
    last: Option<BusId>,
    /// Set once `last` is first known (the publisher waits for it).
    placed: Arc<AtomicBool>,
}

impl Reader {
    fn new(route: usize, key: String, url: &str, tell: Tell, placed: Arc<AtomicBool>) -> Reader {
        Reader {
            placed,
            route,
            key,
            health: Health::new("reader", url),
            tell,
            last: None,
        }
    }

    /// Until the pool is gone.
    fn run(&mut self, client: &redis::Client) {
        loop {
            let r = connect(client).and_then(|mut c| {
                self.start_place(&mut c)?;
                self.health.connected();
                self.read(&mut c)
            });
            match r {
                Ok(()) => return, // the pool is gone
                Err(e) => {
                    self.health.lost(&e);
                    std::thread::sleep(self.health.next_backoff());
                }
            }
        }
    }

    /// The first time: where reading starts (the stream's last entry, or
    /// its beginning if it has none), told to the pool. After a lost
    /// connection: where it was, and a word if the stream was trimmed past
    /// it meanwhile (those entries are gone for this instance).
    fn start_place(&mut self, c: &mut redis::Connection) -> redis::RedisResult<()> {
        let Some(last) = self.last else {
            let v: Value = redis::cmd("XREVRANGE")
                .arg(&self.key)
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(1)
                .query(c)?;
            let id = entries(v).first().map_or(BusId(0, 0), |e| e.id);
            self.last = Some(id);
            self.placed.store(true, Ordering::Release);
            return if (self.tell)(Event::From {
                route: self.route,
                id,
            }) {
                Ok(())
            } else {
                Err(gone())
            };
        };
        // XINFO STREAM (Redis 7): did entries after `last` go while we
        // were away? Trimmed past it (MAXLEN), or the stream is behind it
        // (Redis came back without its data). A missing stream is no news.
        let info: redis::RedisResult<Value> =
            redis::cmd("XINFO").arg("STREAM").arg(&self.key).query(c);
        if let Ok(info) = info {
            let field = |name: &str| info_field(&info, name).and_then(|v| BusId::parse(&text(v)?));
            let why = if field("max-deleted-entry-id").is_some_and(|d| d > last) {
                Some("the stream was trimmed past it (raise bus-maxlen)")
            } else if field("last-generated-id").is_some_and(|g| g < last) {
                Some("Redis came back without the stream's entries (keep its data: appendonly)")
            } else {
                None
            };
            if let Some(why) = why {
                tracing::error!(
                    stream = %self.key,
                    last = %last,
                    "broadcast bus: messages after the last entry this instance read are lost: {why}"
                );
                crate::metrics::inc(crate::metrics::M::BusGaps);
            }
        }
        Ok(())
    }

    fn read(&mut self, c: &mut redis::Connection) -> redis::RedisResult<()> {
        loop {
            let from = self.last.unwrap_or_default().to_string();
            let v: Value = redis::cmd("XREAD")
                .arg("COUNT")
                .arg(BATCH)
                .arg("BLOCK")
                .arg(BLOCK_MS)
                .arg("STREAMS")
                .arg(&self.key)
                .arg(&from)
                .query(c)?;
            let mut read = streams(v);
            let Some(last) = read.last() else {
                continue; // nothing within BLOCK_MS
            };
            self.last = Some(last.id);
            // An entry without a message (`d`) is someone else's: read past.
            read.retain(|e| e.data.is_some());
            crate::metrics::add(crate::metrics::M::BusRead, read.len() as u64);
            if !(self.tell)(Event::Read {
                route: self.route,
                entries: read,
            }) {
                return Ok(());
            }
        }
    }
}

fn gone() -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::Io, "the WebSocket pool is gone"))
}

/// `XREAD`'s reply for one stream: its entries (nil: none).
fn streams(v: Value) -> Vec<Entry> {
    // RESP2: [[key, entries]]; RESP3: {key: entries}.
    match v {
        Value::Array(mut s) if !s.is_empty() => match s.swap_remove(0) {
            Value::Array(mut pair) if pair.len() == 2 => entries(pair.swap_remove(1)),
            _ => Vec::new(),
        },
        Value::Map(mut m) if !m.is_empty() => entries(m.swap_remove(0).1),
        _ => Vec::new(),
    }
}

/// `XRANGE`-shaped entries: `[[id, [field, value, …]], …]`; one without
/// our `d` field (someone else's) has no data.
fn entries(v: Value) -> Vec<Entry> {
    let Value::Array(list) = v else {
        return Vec::new();
    };
    list.into_iter().filter_map(entry).collect()
}

fn entry(v: Value) -> Option<Entry> {
    let Value::Array(mut e) = v else { return None };
    if e.len() != 2 {
        return None;
    }
    let fields = e.pop()?;
    let id = BusId::parse(&text(e.pop()?)?)?;
    let mut data = None;
    let mut binary = false;
    if let Value::Array(f) = fields {
        let mut it = f.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            match (bytes(k)?.as_slice(), bytes(v)?) {
                (b"d", d) => data = Some(d),
                (b"b", b) => binary = b == b"1",
                _ => {}
            }
        }
    }
    Some(Entry { id, data, binary })
}

/// A field of `XINFO STREAM`'s reply (RESP2: a flat list; RESP3: a map).
fn info_field(info: &Value, name: &str) -> Option<Value> {
    let is = |k: &Value| {
        matches!(k, Value::BulkString(b) if b == name.as_bytes())
            || matches!(k, Value::SimpleString(s) if s == name)
    };
    match info {
        Value::Array(a) => a
            .chunks(2)
            .find(|p| p.len() == 2 && is(&p[0]))
            .map(|p| p[1].clone()),
        Value::Map(m) => m.iter().find(|(k, _)| is(k)).map(|(_, v)| v.clone()),
        _ => None,
    }
}

fn bytes(v: Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.into_bytes()),
        _ => None,
    }
}

fn text(v: Value) -> Option<String> {
    String::from_utf8(bytes(v)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &[u8]) -> Value {
        Value::BulkString(s.to_vec())
    }

    #[test]
    fn reads_entries_from_an_xread_reply() {
        let e = |id: &str, d: &[u8], b: &[u8]| {
            Value::Array(vec![
                bulk(id.as_bytes()),
                Value::Array(vec![
                    bulk(b"o"),
                    bulk(b"x:1"),
                    bulk(b"d"),
                    bulk(d),
                    bulk(b"b"),
                    bulk(b),
                ]),
            ])
        };
        let foreign = Value::Array(vec![
            bulk(b"5-2"),
            Value::Array(vec![bulk(b"x"), bulk(b"y")]),
        ]);
        let reply = Value::Array(vec![Value::Array(vec![
            bulk(b"handoff:/chat"),
            Value::Array(vec![
                e("5-0", b"hi", b"0"),
                e("5-1", &[0, 255], b"1"),
                foreign,
            ]),
        ])]);
        let got = streams(reply);
        assert_eq!(got.len(), 3);
        assert_eq!((got[2].id, got[2].data.as_deref()), (BusId(5, 2), None));
        assert_eq!(
            (got[0].id, got[0].data.as_deref(), got[0].binary),
            (BusId(5, 0), Some(&b"hi"[..]), false)
        );
        assert_eq!(
            (got[1].id, got[1].data.as_deref(), got[1].binary),
            (BusId(5, 1), Some(&[0u8, 255][..]), true)
        );
        assert!(streams(Value::Nil).is_empty());
        assert!(BusId(5, 1) > BusId(5, 0) && BusId(6, 0) > BusId(5, 9));
    }
}
