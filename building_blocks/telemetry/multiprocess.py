"""Several worker processes behind one ``/metrics``: prometheus-client multiprocess mode.

With ``--workers N`` a scrape reaches one worker at random, so each worker's counters and
histograms live in memory-mapped files in a shared directory (``PROMETHEUS_MULTIPROC_DIR``,
which prometheus-client reads when it is first imported: the launcher sets it before the
workers start) and the scraped worker sums them all. Pool gauges cannot be read from
another process's pools, so each worker writes its own into per-process gauges (label
``pid``) every second and right before it answers a scrape.

Limits of the mode, from prometheus-client: no exemplars, and custom collectors only see
the scraped process (hence `PoolGaugeWriter`).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from prometheus_client import Gauge
from prometheus_client.multiprocess import mark_process_dead

from building_blocks.telemetry.metrics import POOL
from building_blocks.telemetry.pool import PoolCollector

__all__ = ["PoolGaugeWriter", "prepare_multiprocess_dir"]


def prepare_multiprocess_dir(path: Path) -> Path:
    """Create ``path`` empty: files of a previous run would be summed into this one."""
    if path.exists():
        for child in path.iterdir():
            if child.is_dir():
                shutil.rmtree(child)
            else:
                child.unlink()
    path.mkdir(parents=True, exist_ok=True)
    return path


class PoolGaugeWriter:
    """This worker's pool gauges, written to the shared directory (``liveall``: one series
    per live worker, labelled ``pid``; a worker's series go away when it stops)."""

    def __init__(self, collector: PoolCollector, directory: Path) -> None:
        self._collector = collector
        self._directory = directory
        state = "db_client_connection_state"
        # registry=None: these are only read back through the multiprocess files.
        self._count = Gauge(
            "db_client_connection_count",
            "Connections in the pool, by state (idle: checked in, used: checked out).",
            [POOL, state],
            registry=None,
            multiprocess_mode="liveall",
        )
        self._gauges = {
            field: Gauge(name, doc, [POOL], registry=None, multiprocess_mode="liveall")
            for field, name, doc in (
                ("max", "db_client_connection_max",
                 "Maximum number of open connections the pool allows (size + overflow)."),
                ("idle_max", "db_client_connection_idle_max",
                 "Maximum number of idle connections the pool keeps."),
                ("idle_min", "db_client_connection_idle_min",
                 "Minimum number of idle connections the pool keeps open."),
                ("pending", "db_client_connection_pending_requests",
                 "Requests (tasks) waiting for a connection from the pool right now."),
            )
        }  # fmt: skip

    def refresh(self) -> None:
        for name, snap in self._collector.snapshots():
            self._count.labels(name, "idle").set(snap.idle)
            self._count.labels(name, "used").set(snap.used)
            for field, gauge in self._gauges.items():
                gauge.labels(name).set(getattr(snap, field))

    def close(self) -> None:
        """Drop this worker's live gauges (a crashed worker's stay until the next start)."""
        mark_process_dead(os.getpid(), str(self._directory))  # type: ignore[no-untyped-call]
