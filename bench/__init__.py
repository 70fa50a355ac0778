"""Benchmark harness: see bench/RESULTS.md and docs/performance.md."""
