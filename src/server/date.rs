//! The IMF-fixdate for `Date`, formatted once a second, not per response.

use std::time::{Duration, Instant, SystemTime};

#[derive(Default)]
pub(super) struct DateCache {
    text: Vec<u8>,
    /// The wall clock and the loop's clock read together, and when the
    /// wall clock's second next changes, by the loop's clock.
    read: Option<(SystemTime, Instant, Instant)>,
}

impl DateCache {
    /// For the turn that began at `now`. The wall clock is read only when
    /// its second may have changed: a turn that reads it costs 150
    /// instructions a request (callgrind), the comparison none. A step of
    /// the wall clock (NTP) shows at the next second.
    pub(super) fn refresh(&mut self, now: Instant, access: bool) {
        if let Some((wall, at, next)) = self.read
            && now < next
        {
            if access {
                crate::log::set_turn_time(wall + now.saturating_duration_since(at));
            }
            return;
        }
        let wall = SystemTime::now();
        // The access log's clock for this turn: one clock read, not one a line.
        crate::log::set_turn_time(wall);
        let since = wall
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let to_next = Duration::from_secs(1) - Duration::from_nanos(since.subsec_nanos().into());
        self.read = Some((wall, now, now + to_next));
        self.text = httpdate::fmt_http_date(wall).into_bytes();
    }

    pub(super) fn text(&self) -> &[u8] {
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_date_is_formatted_again_only_when_its_second_may_have_changed() {
        let mut d = DateCache::default();
        let t0 = Instant::now();
        d.refresh(t0, true);
        let first = d.text().to_vec();
        assert_eq!(
            first,
            httpdate::fmt_http_date(SystemTime::now()).into_bytes()
        );
        let (_, _, next) = d.read.unwrap();
        assert!(next > t0 && next <= t0 + Duration::from_secs(1));
        // Before the next second, the text stands without a clock read.
        d.text.clear();
        d.refresh(next - Duration::from_nanos(1), true);
        assert!(d.text().is_empty(), "no new reading before the second ends");
        d.refresh(next + Duration::from_millis(1), true);
        assert!(!d.text().is_empty(), "read again once the second is over");
    }
}
