//! TLS WebSocket connections relayed to workers: the TLS session stays in
//! this process and the worker gets a socketpair of plaintext (see
//! `crate::relay`). Each relay has two slab entries, one per socket, so
//! that either socket's readiness finds it.

use std::os::fd::{AsRawFd, OwnedFd};

use mio::Interest;
use mio::Token;
use mio::unix::SourceFd;

use super::{Entry, Server};
use crate::relay::Relay;

impl Server {
    pub(super) fn start_relay(
        &mut self,
        client: OwnedFd,
        tls: Box<rustls::ServerConnection>,
        pair: OwnedFd,
    ) {
        let both = Interest::READABLE | Interest::WRITABLE;
        let registry = self.poll.registry();
        let k1 = self.entries.vacant_entry().key();
        if let Err(e) = registry.register(&mut SourceFd(&client.as_raw_fd()), Token(k1), both) {
            return tracing::error!("relay: {e}");
        }
        let pair_raw = pair.as_raw_fd();
        self.entries
            .insert(Entry::Relay(Box::new(Relay::new(client, tls, pair)), None));
        let k2 = self.entries.vacant_entry().key();
        if let Err(e) = registry.register(&mut SourceFd(&pair_raw), Token(k2), both) {
            tracing::error!("relay: {e}");
            return self.close_relay(k1);
        }
        self.entries.insert(Entry::RelayPair(k1));
        if let Some(Entry::Relay(_, t)) = self.entries.get_mut(k1) {
            *t = Some(k2);
        }
        self.drive_relay(k1);
    }

    pub(super) fn drive_relay(&mut self, k1: usize) {
        let Some(Entry::Relay(r, _)) = self.entries.get_mut(k1) else {
            return;
        };
        match r.drive() {
            Ok(true) => {}
            Ok(false) => self.close_relay(k1),
            Err(e) => {
                tracing::info!("relay closed: {e}");
                self.close_relay(k1);
            }
        }
    }

    pub(super) fn close_relay(&mut self, k1: usize) {
        if let Some(Entry::Relay(r, k2)) = self.entries.try_remove(k1) {
            for fd in [&r.client, &r.pair] {
                let _ = self
                    .poll
                    .registry()
                    .deregister(&mut SourceFd(&fd.as_raw_fd()));
            }
            if let Some(k2) = k2 {
                self.entries.try_remove(k2);
            }
        }
    }

    /// TLS WebSocket connections being relayed to workers.
    pub fn relays(&self) -> usize {
        self.entries
            .iter()
            .filter(|(_, e)| matches!(e, Entry::Relay(..)))
            .count()
    }
}
