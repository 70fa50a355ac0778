"""The hot-path instruments expose what prometheus-client's own would, sample for sample."""

from __future__ import annotations

import math
import os
import random
import threading
import time
from collections.abc import Callable

import pytest
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    values,
)
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.samples import Sample

from building_blocks.telemetry import instruments
from building_blocks.telemetry.instruments import LocalCounter, LocalHistogram, LocalInFlight
from building_blocks.telemetry.metrics import LATENCY_BUCKETS, Metrics
from tests.support.aio import poll_until


def _samples(registry: CollectorRegistry) -> list[tuple[str, str, str, str]]:
    """Every sample but prometheus-client's ``_created`` series, exemplar timestamps
    left out (they are the wall clock of the observation)."""

    def exemplar(sample: Sample) -> str:
        e = sample.exemplar
        return "" if e is None else repr((e.labels, e.value))

    return sorted(
        (s.name, repr(sorted(s.labels.items())), repr(s.value), exemplar(s))
        for family in registry.collect()
        for s in family.samples
        if not s.name.endswith("_created")
    )


def test_a_histogram_exposes_the_samples_of_prometheus_clients() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    labels = ["method", "route"]
    local = LocalHistogram("t_seconds", "doc", labels, buckets=LATENCY_BUCKETS, registry=ours)
    reference = Histogram("t_seconds", "doc", labels, buckets=LATENCY_BUCKETS, registry=theirs)
    rng = random.Random(7)
    # Values on and around every bound (``le`` is inclusive), tiny, huge, and negative.
    values = [b * f for b in LATENCY_BUCKETS for f in (0.5, 1.0, 1.0000001)]
    values += [rng.lognormvariate(-7, 2) for _ in range(2000)] + [0.0, 1e9, -0.5]
    for i, value in enumerate(values):
        key = ("GET", f"/r{i % 3}")
        exemplar = {"trace_id": f"{i:032x}"} if i % 7 == 0 else None
        local.labels(*key).observe(value, exemplar)
        reference.labels(*key).observe(value, exemplar)
    local.labels("POST", "/empty")  # a label set never observed is still exposed
    reference.labels("POST", "/empty")
    assert _samples(ours) == _samples(theirs)
    ours_text, theirs_text = openmetrics_latest(ours), openmetrics_latest(theirs)  # type: ignore[no-untyped-call]
    assert ours_text.count(b"# {") == theirs_text.count(b"# {") > 0


def test_nan_is_counted_in_no_bucket_as_prometheus_client_does() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    LocalHistogram("n_seconds", "doc", [], buckets=(0.1, 1.0), registry=ours).labels().observe(
        math.nan
    )
    Histogram("n_seconds", "doc", [], buckets=(0.1, 1.0), registry=theirs).observe(math.nan)
    assert _samples(ours) == _samples(theirs)  # NaN sums compare by their text
    assert ours.get_sample_value("n_seconds_count") == 0


def test_the_in_flight_gauge_exposes_the_samples_of_prometheus_clients() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    local = LocalInFlight("g", "doc", ["method"], registry=ours)
    reference = Gauge("g", "doc", ["method"], registry=theirs)
    first, second, third = object(), object(), object()
    local.labels("GET")[first] = None
    local.labels("GET")[second] = None
    local.labels("POST")[third] = None
    del local.labels("GET")[first]
    local.labels("PUT")  # a label set seen, nothing in flight
    reference.labels("GET").inc(2)
    reference.labels("POST").inc()
    reference.labels("GET").dec()
    reference.labels("PUT")
    assert _samples(ours) == _samples(theirs)
    assert generate_latest(ours) == generate_latest(theirs)


def _add_while_scraping(work: Callable[[], None], registry: CollectorRegistry, name: str) -> None:
    """``work`` in four threads while another scrapes ``name`` over and over (each
    scrape folds what was added so far), until all four are done."""
    done = threading.Event()

    def scrape() -> None:
        while not done.is_set():
            registry.get_sample_value(name)

    scraper = threading.Thread(target=scrape)
    scraper.start()
    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    scraper.join()


def test_a_counter_exposes_the_samples_of_prometheus_clients() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    local = LocalCounter("c_requests", "doc", ["cache", "result"], registry=ours)
    reference = Counter("c_requests", "doc", ["cache", "result"], registry=theirs)
    for i in range(1000):
        key = ("users", ("hit", "miss", "error")[i % 7 % 3])
        local.labels(*key).inc()
        reference.labels(*key).inc()
    local.labels("users", "bypass")  # a label set never counted is exposed at 0
    reference.labels("users", "bypass")
    assert _samples(ours) == _samples(theirs)
    hits = sum(1 for i in range(1000) if i % 7 % 3 == 0)
    assert ours.get_sample_value("c_requests_total", {"cache": "users", "result": "hit"}) == hits
    expected = [line for line in generate_latest(theirs).splitlines() if b"_created" not in line]
    assert generate_latest(ours).splitlines() == expected


def test_increments_from_many_threads_while_scrapes_fold_are_all_counted_once() -> None:
    registry = CollectorRegistry()
    inc = LocalCounter("t_events", "doc", [], registry=registry).labels().inc

    def work() -> None:
        for _ in range(50_000):
            inc()

    _add_while_scraping(work, registry, "t_events_total")
    assert registry.get_sample_value("t_events_total") == 200_000


async def test_pending_increments_are_folded_without_a_scrape() -> None:
    child = LocalCounter("w_events", "doc", [], registry=None).labels()
    for _ in range(1000):
        child.inc()
    await poll_until(lambda: not child._pending, what="the folder thread")
    assert child._count == 1000


def test_observations_from_many_threads_are_all_counted() -> None:
    registry = CollectorRegistry()
    child = LocalHistogram("c_seconds", "doc", [], buckets=(1.0,), registry=registry).labels()
    in_flight = LocalInFlight("c_active", "doc", [], registry=registry).labels()
    most = 0

    def work() -> None:
        nonlocal most
        for _ in range(20_000):
            token = object()
            in_flight[token] = None
            child.observe(0.5)
            most = max(most, len(in_flight))
            del in_flight[token]

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert registry.get_sample_value("c_seconds_count") == 80_000
    assert registry.get_sample_value("c_seconds_sum") == 40_000
    assert registry.get_sample_value("c_active") == 0
    assert 1 <= most <= 4


def test_nothing_added_while_scrapes_fold_is_lost_or_counted_twice() -> None:
    registry = CollectorRegistry()
    child = LocalHistogram("f_seconds", "doc", [], buckets=(0.1, 1.0), registry=registry).labels()

    def work() -> None:
        for i in range(50_000):
            child.add(0.5 if i % 2 else 0.05)

    _add_while_scraping(work, registry, "f_seconds_count")
    assert registry.get_sample_value("f_seconds_bucket", {"le": "0.1"}) == 100_000
    assert registry.get_sample_value("f_seconds_bucket", {"le": "1.0"}) == 200_000
    assert registry.get_sample_value("f_seconds_count") == 200_000
    assert registry.get_sample_value("f_seconds_sum") == pytest.approx(100_000 * 0.55)


async def test_pending_observations_are_folded_without_a_scrape() -> None:
    # Nobody scrapes: the folder thread still moves them into the buckets, so the list
    # of pending values stays short however long the process runs.
    child = LocalHistogram("p_seconds", "doc", [], buckets=(1.0,), registry=None).labels()
    for _ in range(1000):
        child.add(0.5)
    await poll_until(lambda: not child._pending, what="the folder thread")
    assert child.snapshot()[:2] == ([1000, 0], 500.0)


def test_a_forked_child_folds_its_observations_without_the_parents_thread() -> None:
    child = LocalHistogram("k_seconds", "doc", [], buckets=(1.0,), registry=None).labels()
    child.add(0.5)
    child.snapshot()  # the folder thread runs in this process
    pid = os.fork()
    if pid == 0:  # the child: no thread was inherited, its own must start
        code = 1
        try:
            child.add(0.25)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                if not child._pending:
                    code = 0 if child.snapshot()[:2] == ([2, 0], 0.75) else 2
                    break
                time.sleep(0.01)
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the child's observation was never folded"
    assert child.snapshot()[:2] == ([1, 0], 0.5)  # the parent's own count, untouched


def test_labels_are_checked_and_names_are_unique_in_a_registry() -> None:
    registry = CollectorRegistry()
    histogram = LocalHistogram("u_seconds", "doc", ["a", "b"], buckets=(1.0,), registry=registry)
    with pytest.raises(ValueError, match="takes 2 label values"):
        histogram.labels("only-one")
    assert histogram.labels("x", 1) is histogram.labels("x", "1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        Histogram("u_seconds", "doc", ["a"], registry=registry)


def test_metrics_use_prometheus_clients_instruments_in_multiprocess_mode(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert not instruments.multiprocess_mode()  # the test process: one process
    assert isinstance(Metrics(CollectorRegistry()).http_duration, LocalHistogram)
    assert isinstance(Metrics(CollectorRegistry()).cache_requests, LocalCounter)
    monkeypatch.setattr(values.ValueClass, "_multiprocess", True)
    metrics = Metrics(CollectorRegistry())
    # Its counter is prometheus-client's, with the same ``inc()``.
    assert isinstance(metrics.cache_requests, Counter)
    metrics.cache_requests.labels("users", "hit").inc()
    assert (
        metrics.registry.get_sample_value(
            "cache_requests_total", {"cache_name": "users", "result": "hit"}
        )
        == 1
    )
    # Its histograms are prometheus-client's, observed through `add` as well.
    child = metrics.http_duration.labels("GET", "/r", "200")
    child.add(0.25)
    child.observe(0.5, {"trace_id": "ab"})  # exemplars are dropped in that mode
    assert (
        metrics.registry.get_sample_value(
            "http_server_request_duration_seconds_count",
            {"http_request_method": "GET", "http_route": "/r", "http_response_status_code": "200"},
        )
        == 2
    )
    # The in-flight gauge is prometheus-client's, moved by tokens in and out.
    active = metrics.http_active.labels("GET")
    token = object()
    active[token] = None
    assert (
        metrics.registry.get_sample_value(
            "http_server_active_requests", {"http_request_method": "GET"}
        )
        == 1
    )
    del active[token]
    # If prometheus-client stops keeping the flag, its own instruments are used.
    monkeypatch.delattr(values.ValueClass, "_multiprocess")
    assert instruments.multiprocess_mode()


def test_pending_observations_can_be_folded_at_once_and_the_interval_set() -> None:
    child = LocalHistogram("q_seconds", "doc", [], buckets=(1.0,), registry=None).labels()
    child.add(0.5)
    instruments.fold_histograms()
    assert not child._pending
    assert child.snapshot()[:2] == ([1, 0], 0.5)
    with pytest.raises(ValueError, match="positive"):
        instruments.set_fold_interval(0)
    instruments.set_fold_interval(0.5)
    try:
        assert instruments._FOLDER.interval == 0.5
    finally:
        instruments.set_fold_interval(1.0)
