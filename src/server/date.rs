//! The IMF-fixdate for `Date`, formatted once a second, not per response.

use std::time::SystemTime;

#[derive(Default)]
pub(super) struct DateCache {
    secs: u64,
    text: Vec<u8>,
}

impl DateCache {
    pub(super) fn refresh(&mut self) {
        let now = SystemTime::now();
        // The access log's clock for this turn: one clock read, not one a line.
        crate::log::set_turn_time(now);
        let secs = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        if secs != self.secs || self.text.is_empty() {
            self.secs = secs;
            self.text = httpdate::fmt_http_date(now).into_bytes();
        }
    }

    pub(super) fn text(&self) -> &[u8] {
        &self.text
    }
}
