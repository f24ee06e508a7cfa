//! Keyframe requests upstream, at most one per source per interval, and none lost.
//!
//! Every subscriber that joins, and every decoder that loses a picture, wants a keyframe. A
//! keyframe costs the publisher (often on a weak uplink) several times a normal frame, so a
//! room with 30 houses joining at once must send the chair one request, not thirty.
//!
//! A request that comes inside the interval is not dropped: it is owed, and one request goes
//! out when the interval ends, however many came meanwhile. A publisher that sends keyframes
//! only when asked (a downstream hub relaying without decoding, a camera encoder) would
//! otherwise leave every house that joined within the interval after another with no
//! picture at all.
//!
//! What must stay true: for one key, two requests that go out are at least `interval` apart;
//! a request asked for at `t` goes out by `t + interval` (unless the key is forgotten).
//! Pure: `now` comes in as an argument; [`KeyframeThrottle::poll_timeout`] says when the
//! caller must come back with [`KeyframeThrottle::handle_timeout`].

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::forward::SourceId;

/// Rate limit on keyframe requests, per key (the room uses a key per source and layer).
#[derive(Debug)]
pub struct KeyframeThrottle {
    interval: Duration,
    /// Per key: when its last request went out, and whether another is owed.
    last: HashMap<SourceId, (Instant, bool)>,
}

impl KeyframeThrottle {
    /// At most one request per `interval` per key.
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: HashMap::new(),
        }
    }

    /// Whether a keyframe request for `key` should go upstream now. When it should not, one
    /// is owed and [`Self::handle_timeout`] returns it at the end of the interval.
    pub fn request(&mut self, key: SourceId, now: Instant) -> bool {
        match self.last.get_mut(&key) {
            Some((at, owed)) if now.saturating_duration_since(*at) < self.interval => {
                *owed = true;
                false
            }
            _ => {
                self.last.insert(key, (now, false));
                true
            }
        }
    }

    /// When the earliest owed request falls due, if any is owed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.last
            .values()
            .filter(|(_, owed)| *owed)
            .map(|(at, _)| *at + self.interval)
            .min()
    }

    /// The keys whose owed request falls due at `now`: send one request for each. Their next
    /// interval starts now.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<SourceId> {
        let mut due = Vec::new();
        for (&key, (at, owed)) in self.last.iter_mut() {
            if *owed && now.saturating_duration_since(*at) >= self.interval {
                *at = now;
                *owed = false;
                due.push(key);
            }
        }
        due.sort_unstable();
        due
    }

    /// Forget a key whose source has gone (an owed request is dropped with it).
    pub fn forget(&mut self, key: SourceId) {
        self.last.remove(&key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn one_request_per_interval_per_source() {
        let t = Instant::now();
        let mut k = KeyframeThrottle::new(500 * MS);
        assert!(k.request(1, t));
        for i in 0..30 {
            assert!(!k.request(1, t + i * 10 * MS));
        }
        assert!(k.request(2, t), "sources are independent");
        assert_eq!(k.handle_timeout(t + 499 * MS), Vec::<SourceId>::new());
        // The thirty requests inside the window became one, at its end.
        assert_eq!(k.handle_timeout(t + 500 * MS), vec![1]);
        assert_eq!(
            k.handle_timeout(t + 600 * MS),
            Vec::<SourceId>::new(),
            "once"
        );
        assert!(
            !k.request(1, t + 501 * MS),
            "the coalesced one opened a window"
        );
        k.forget(1);
        assert!(k.request(1, t + 502 * MS));
    }

    #[test]
    fn a_throttled_request_is_owed_not_dropped() {
        let t = Instant::now();
        let mut k = KeyframeThrottle::new(500 * MS);
        assert_eq!(k.poll_timeout(), None, "nothing owed");
        assert!(k.request(7, t), "the first house joins: asked at once");
        assert_eq!(k.poll_timeout(), None);
        assert!(!k.request(7, t + 50 * MS), "a second house 50 ms later");
        assert_eq!(
            k.poll_timeout(),
            Some(t + 500 * MS),
            "due at the window's end"
        );
        // A caller late to the timer still sends it, and the next window starts then.
        assert_eq!(k.handle_timeout(t + 520 * MS), vec![7]);
        assert_eq!(k.poll_timeout(), None);
        assert!(!k.request(7, t + 1000 * MS));
        assert_eq!(k.poll_timeout(), Some(t + 1020 * MS));
        assert_eq!(k.handle_timeout(t + 1020 * MS), vec![7]);
        assert!(k.request(7, t + 1520 * MS), "a quiet window: at once again");
    }

    #[test]
    fn requests_stay_an_interval_apart_under_a_steady_stream() {
        // A request every 10 ms for 10 s, the timer serviced on every one: requests go out
        // every 500 ms, never closer, never more than 510 ms apart.
        let t = Instant::now();
        let mut k = KeyframeThrottle::new(500 * MS);
        let mut sent = Vec::new();
        for i in 0..1000 {
            let now = t + i * 10 * MS;
            sent.extend(k.handle_timeout(now).into_iter().map(|_| now));
            if k.request(3, now) {
                sent.push(now);
            }
        }
        assert_eq!(sent.len(), 20);
        for w in sent.windows(2) {
            let gap = w[1] - w[0];
            assert!(gap >= 500 * MS && gap <= 510 * MS, "{gap:?}");
        }
    }

    #[test]
    fn a_forgotten_source_owes_nothing() {
        let t = Instant::now();
        let mut k = KeyframeThrottle::new(500 * MS);
        k.request(1, t);
        k.request(1, t + MS);
        k.forget(1);
        assert_eq!(k.poll_timeout(), None);
        assert!(k.handle_timeout(t + 600 * MS).is_empty());
    }
}
