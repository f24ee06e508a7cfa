//! Keyframe requests upstream, at most one per source per interval.
//!
//! Every subscriber that joins, and every decoder that loses a picture, wants a keyframe. A
//! keyframe costs the publisher (often on a weak uplink) several times a normal frame, so a
//! room with 30 houses joining at once must send the chair one request, not thirty.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::forward::SourceId;

/// Rate limit on keyframe requests, per source.
#[derive(Debug)]
pub struct KeyframeThrottle {
    interval: Duration,
    last: HashMap<SourceId, Instant>,
}

impl KeyframeThrottle {
    /// At most one request per `interval` per source.
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: HashMap::new(),
        }
    }

    /// Whether a keyframe request for `source` should go upstream now.
    pub fn request(&mut self, source: SourceId, now: Instant) -> bool {
        match self.last.get(&source) {
            Some(&at) if now.saturating_duration_since(at) < self.interval => false,
            _ => {
                self.last.insert(source, now);
                true
            }
        }
    }

    /// Forget a source that has gone.
    pub fn forget(&mut self, source: SourceId) {
        self.last.remove(&source);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_request_per_interval_per_source() {
        let t = Instant::now();
        let mut k = KeyframeThrottle::new(Duration::from_millis(500));
        assert!(k.request(1, t));
        for i in 0..30 {
            assert!(!k.request(1, t + Duration::from_millis(i * 10)));
        }
        assert!(k.request(2, t), "sources are independent");
        assert!(k.request(1, t + Duration::from_millis(500)));
        k.forget(1);
        assert!(k.request(1, t + Duration::from_millis(501)));
    }
}
