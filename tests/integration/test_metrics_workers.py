"""``python -m app --workers 2``: counters and histograms add up across workers, and
each worker reports its own pool gauges (label ``pid``)."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.support.app_process import AppProcess
from tests.support.process import wait_until
from tests.support.telemetry import sample_value, samples

REQUESTS = 24


def test_two_workers_report_every_request_and_a_pool_per_worker(tmp_path: Path) -> None:
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    stale = metrics_dir / "counter_1.db"  # left by an earlier run: must not be summed in
    stale.write_bytes(b"stale")
    env = {
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'users.db'}",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }
    with AppProcess(env, log_path=tmp_path / "app.log", args=["--workers", "2"]) as app:
        # A fresh connection per request, so the kernel spreads them over both workers.
        for _ in range(REQUESTS):
            assert httpx.get(f"{app.base_url}/health/live", timeout=10).status_code == 200
        pids: set[str] = set()

        def both_workers_seen() -> bool:
            text = httpx.get(f"{app.base_url}/metrics", timeout=10).text
            used = samples(text, "db_client_connection_max")
            pids.update(s.labels["pid"] for s in used)
            return len(pids) == 2

        wait_until(both_workers_seen, timeout=30, what="pool gauges of both workers")
        assert not stale.exists()
        # Whichever worker answers, the count is the sum over both.
        for _ in range(3):
            text = httpx.get(f"{app.base_url}/metrics", timeout=10).text
            count = sample_value(
                text,
                "http_server_request_duration_seconds_count",
                http_route="/health/live",
                http_response_status_code="200",
            )
            assert count == REQUESTS
