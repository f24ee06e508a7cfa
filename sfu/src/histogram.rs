//! A lock-free latency histogram for the packet path: log-linear buckets (4 per octave, so
//! a bucket's bounds are within 19 % of each other) from 1 µs to about 17 s, each an atomic
//! counter. Recording is one `fetch_add`; readers take a snapshot and subtract an earlier
//! one to get a window.

use std::sync::atomic::{AtomicU64, Ordering};

const SUB: u32 = 4; // buckets per octave
const OCTAVES: u32 = 24;
/// Number of buckets.
pub const BUCKETS: usize = (SUB * OCTAVES) as usize + 1;

/// Counts of durations in microseconds.
#[derive(Debug)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS],
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// The bucket of a value: values below 4 µs each have their own; above, 4 per octave.
pub fn bucket(us: u64) -> usize {
    if us < SUB as u64 {
        return us as usize;
    }
    let octave = 63 - us.leading_zeros(); // us in [2^octave, 2^(octave+1))
    let sub = ((us >> (octave - 2)) & 3) as u32; // the two bits after the leading one
    (((octave - 1) * SUB + sub) as usize).min(BUCKETS - 1)
}

/// The largest value that falls in a bucket.
pub fn upper_bound(b: usize) -> u64 {
    if b < SUB as usize {
        return b as u64;
    }
    let b = b as u32;
    let octave = b / SUB + 1;
    let sub = (b % SUB) as u64;
    ((4 + sub + 1) << (octave - 2)) - 1
}

impl Histogram {
    /// Count one duration.
    pub fn record(&self, us: u64) {
        self.counts[bucket(us)].fetch_add(1, Ordering::Relaxed);
    }

    /// The count of each bucket now (not cumulative), read without stopping writers.
    pub fn snapshot(&self) -> [u64; BUCKETS] {
        std::array::from_fn(|i| self.counts[i].load(Ordering::Relaxed))
    }
}

/// The `q` quantile (0..1) of some bucket counts, as the upper bound of its bucket.
pub fn quantile(counts: &[u64], q: f64) -> Option<u64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = ((total as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (b, c) in counts.iter().enumerate() {
        seen += c;
        if seen >= rank {
            return Some(upper_bound(b));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_falls_in_a_bucket_whose_bounds_hold_it() {
        let mut prev_upper = None;
        for b in 0..BUCKETS - 1 {
            let up = upper_bound(b);
            if let Some(p) = prev_upper {
                assert_eq!(
                    bucket(p + 1),
                    b,
                    "the value after bucket {} starts bucket {b}",
                    b - 1
                );
            }
            assert_eq!(bucket(up), b, "upper bound {up} of bucket {b}");
            prev_upper = Some(up);
        }
        for v in [0u64, 1, 3, 4, 5, 7, 8, 100, 999, 1000, 123_456, 9_999_999] {
            let b = bucket(v);
            assert!(v <= upper_bound(b));
            if b > 0 {
                assert!(v > upper_bound(b - 1), "{v} in {b}");
            }
            // Within 25 % of the value.
            assert!(
                upper_bound(b) as f64 <= v as f64 * 1.25 + 1.0,
                "{v}: {}",
                upper_bound(b)
            );
        }
    }

    #[test]
    fn quantiles_match_a_sorted_list_within_a_bucket() {
        let h = Histogram::default();
        let values: Vec<u64> = (1..=1000).map(|i| i * 7).collect();
        for v in &values {
            h.record(*v);
        }
        let s = h.snapshot();
        for q in [0.5, 0.9, 0.99] {
            let exact = values[((values.len() as f64 * q).ceil() as usize) - 1];
            let got = quantile(&s, q).unwrap();
            assert!(
                got >= exact && (got as f64) <= exact as f64 * 1.25,
                "q{q}: {got} vs {exact}"
            );
        }
        assert_eq!(quantile(&[0; BUCKETS], 0.5), None);
    }
}
