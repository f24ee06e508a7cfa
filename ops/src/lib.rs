//! Benchmarks and load tools for Đình live in `benches/` and `src/bin/`.

/// The subscriber counts given on the command line, or the 10, 50, 100 and 200.
pub fn subscriber_counts() -> Vec<usize> {
    let ns: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    if ns.is_empty() {
        vec![10, 50, 100, 200]
    } else {
        ns
    }
}
