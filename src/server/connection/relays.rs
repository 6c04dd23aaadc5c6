//! TLS WebSocket connections relayed to workers: the TLS session stays in
//! this process and the worker gets a socketpair of plaintext (see
//! `relay.rs`). Relays have a token space of their own: a relay's
//! client socket is `RELAY_TOKENS + 2 × key`, its pair end the next token,
//! so either socket's readiness finds it.

use std::os::fd::{AsRawFd, OwnedFd};

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use slab::Slab;

use super::relay::Relay;

pub(crate) const RELAY_TOKENS: usize = usize::MAX / 4;

#[derive(Default)]
pub(crate) struct Relays(Slab<Relay>);

impl Relays {
    /// Starts relaying between a TLS client and a worker's socketpair end.
    pub(crate) fn start(
        &mut self,
        registry: &Registry,
        client: OwnedFd,
        tls: Box<rustls::ServerConnection>,
        pair: OwnedFd,
    ) {
        let key = self.0.vacant_key();
        let both = Interest::READABLE | Interest::WRITABLE;
        let token = RELAY_TOKENS + 2 * key;
        if let Err(e) = registry.register(&mut SourceFd(&client.as_raw_fd()), Token(token), both) {
            return tracing::error!("relay: {e}");
        }
        if let Err(e) = registry.register(&mut SourceFd(&pair.as_raw_fd()), Token(token + 1), both)
        {
            let _ = registry.deregister(&mut SourceFd(&client.as_raw_fd()));
            return tracing::error!("relay: {e}");
        }
        self.0.insert(Relay::new(client, tls, pair));
        self.drive(registry, key);
    }

    /// A readiness event for one of a relay's sockets.
    pub(crate) fn ready(&mut self, registry: &Registry, token: usize, ev: &mio::event::Event) {
        let n = token - RELAY_TOKENS;
        let key = n / 2;
        let Some(r) = self.0.get_mut(key) else {
            return;
        };
        let end = if n.is_multiple_of(2) {
            &mut r.client
        } else {
            &mut r.pair
        };
        end.ready.update(ev);
        self.drive(registry, key);
    }

    fn drive(&mut self, registry: &Registry, key: usize) {
        let Some(r) = self.0.get_mut(key) else {
            return;
        };
        match r.drive() {
            Ok(true) => {}
            Ok(false) => self.close(registry, key),
            Err(e) => {
                tracing::info!("relay closed: {e}");
                self.close(registry, key);
            }
        }
    }

    fn close(&mut self, registry: &Registry, key: usize) {
        if let Some(r) = self.0.try_remove(key) {
            for fd in [&r.client.fd, &r.pair.fd] {
                let _ = registry.deregister(&mut SourceFd(&fd.as_raw_fd()));
            }
        }
    }

    pub(crate) fn close_all(&mut self, registry: &Registry) {
        let keys: Vec<usize> = self.0.iter().map(|(k, _)| k).collect();
        for k in keys {
            self.close(registry, k);
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}
