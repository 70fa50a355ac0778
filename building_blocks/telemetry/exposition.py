"""What ``GET /metrics`` answers: the Prometheus text format, or OpenMetrics (with
exemplars) when the scraper's ``Accept`` asks for ``application/openmetrics-text``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector

__all__ = ["MetricsExposition"]


class MetricsExposition:
    """Renders one registry; ``before_scrape`` hooks run first (refresh per-worker gauges)."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        before_scrape: Sequence[Callable[[], None]] = (),
    ) -> None:
        self.registry = registry
        self._before = tuple(before_scrape)

    @classmethod
    def multiprocess(
        cls, directory: Path, *, before_scrape: Sequence[Callable[[], None]] = ()
    ) -> MetricsExposition:
        """Sum the files every worker writes under ``directory`` at each scrape."""
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
        return cls(registry, before_scrape=before_scrape)

    def render(self, accept: str | None) -> tuple[bytes, str]:
        """``(body, content type)`` for a scrape with this ``Accept`` header."""
        for hook in self._before:
            hook()
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type
