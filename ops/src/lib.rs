//! Benchmarks and load tools for Đình live in `benches/` and `src/bin/`.
