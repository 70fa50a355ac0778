"""A compact end-of-run summary (req/s, p50/p95/p99, failures per request name), printed
by every headless run in addition to Locust's own tables."""

from __future__ import annotations

from typing import Any

__all__ = ["print_summary"]


def print_summary(environment: Any, **_kwargs: Any) -> None:
    stats = environment.stats
    rows = [*sorted(stats.entries.values(), key=lambda e: (e.method or "", e.name)), stats.total]
    print("\nLOAD SUMMARY")
    print(f"{'request':44} {'reqs':>8} {'fails':>6} {'req/s':>8} {'p50':>6} {'p95':>6} {'p99':>6}")
    for entry in rows:
        label = "TOTAL" if entry is stats.total else f"{entry.method} {entry.name}"
        print(
            f"{label[:44]:44} {entry.num_requests:8d} {entry.num_failures:6d} "
            f"{entry.total_rps:8.1f} {entry.get_response_time_percentile(0.50):6.0f} "
            f"{entry.get_response_time_percentile(0.95):6.0f} "
            f"{entry.get_response_time_percentile(0.99):6.0f}"
        )
    print("(latencies in ms)", flush=True)
