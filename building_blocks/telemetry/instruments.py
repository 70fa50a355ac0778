"""Histograms, counters and gauges for the per-request hot path, collected like any other
metric.

prometheus-client keeps every value of a histogram (each bucket, the sum) behind a lock
of its own and checks, per call, that the metric has no unbound labels: one observation
is five Python calls, a linear scan of the buckets and two lock round trips (~0.75 µs on
a 2-core machine). An uncached read makes four observations and moves the in-flight
gauge twice; a counter's ``inc`` is four Python calls and a lock. `LocalHistogram`
appends an observation to a list (one call in C, no lock) and counts the list into its
buckets when it is scraped, and once a second from a thread of its own; `LocalCounter`
does the same with its increments. `LocalInFlight` counts requests in progress with no
lock at all. All are ordinary registry collectors, so scrapes, the OpenMetrics format
(exemplars included) and ``registry.get_sample_value`` see the same families and samples
as before, except the ``_created`` series prometheus-client adds to its own histograms
and counters.

They only work inside one process: prometheus-client's multiprocess mode (several
workers behind one ``/metrics``) writes every value to memory-mapped files that the
scraped worker sums. `histogram`, `counter` and `in_flight` therefore build prometheus-client's own
instruments when that mode is on (`multiprocess_mode`), and these otherwise.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from abc import ABC, abstractmethod
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator, Sequence
from functools import partial, reduce
from operator import add
from typing import Any, Generic, Protocol, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, values
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.samples import Exemplar
from prometheus_client.utils import floatToGoString

__all__ = [
    "CounterChild",
    "HistogramChild",
    "InFlightChild",
    "LabelledCounter",
    "LabelledHistogram",
    "LabelledInFlight",
    "LocalCounter",
    "LocalHistogram",
    "LocalInFlight",
    "counter",
    "fold_histograms",
    "histogram",
    "in_flight",
    "multiprocess_mode",
    "set_fold_interval",
]

_INF = float("inf")
_Child = TypeVar("_Child")


class HistogramChild(Protocol):
    """One label set of a histogram. ``add(amount)`` is ``observe(amount)`` for the
    hot path: with `LocalHistogram`, a call in C."""

    @property
    def add(self) -> Callable[[float], None]: ...

    def observe(self, amount: float, exemplar: dict[str, str] | None = None) -> None: ...


class LabelledHistogram(Protocol):
    def labels(self, *labelvalues: str) -> HistogramChild: ...


class CounterChild(Protocol):
    """One label set of a counter. ``inc()`` adds one: with `LocalCounter`, calls in C
    only."""

    @property
    def inc(self) -> Callable[[], None]: ...


class LabelledCounter(Protocol):
    def labels(self, *labelvalues: str) -> CounterChild: ...


class InFlightChild(Protocol):
    """Requests in progress of one label set: ``child[token] = None`` when one starts,
    ``del child[token]`` when it ends (a plain `dict` is one)."""

    def __setitem__(self, token: object, value: None, /) -> None: ...

    def __delitem__(self, token: object, /) -> None: ...


class LabelledInFlight(Protocol):
    def labels(self, *labelvalues: str) -> InFlightChild: ...


def multiprocess_mode() -> bool:
    """Whether prometheus-client writes values to shared files (decided when it was
    imported, from ``PROMETHEUS_MULTIPROC_DIR``). If the flag it keeps for this ever
    moves, the answer is ``True``: its own instruments are right in either mode."""
    return bool(getattr(values.ValueClass, "_multiprocess", True))


class _HistogramValues:
    """One label set's buckets (not cumulative: a bucket counts what fell in it alone),
    sum and latest exemplar per bucket.

    An observation is appended to a list, and nothing else: `add` is that list's own
    ``append``, one call in C with no Python frame and no lock (~500 instructions, where
    finding the bucket per observation cost ~3,200; callgrind). `fold` moves what was
    appended into the buckets: a scrape folds first, and `_Folder` folds every child
    once a second, so the list holds at most about a second of observations. A fold
    takes the first ``n`` items and deletes exactly those, each step one list operation
    in C: what a thread appends meanwhile lands after them and waits for the next fold;
    nothing is lost or counted twice. Sorted, the ``n`` values are counted into the
    buckets with one bisection per bucket, and added to the sum in the order they came,
    as prometheus-client adds them.

    An observation with an exemplar also goes to a second list with the exemplar and
    its time; folding it sets the exemplar of its bucket: the latest one stays.
    """

    __slots__ = (
        "__weakref__",
        "_bounds",
        "_counts",
        "_exemplars",
        "_lock",
        "_marked",
        "_pending",
        "_sum",
        "add",
    )

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self._counts = [0] * len(bounds)
        self._sum = 0.0
        self._exemplars: list[Exemplar | None] = [None] * len(bounds)
        self._pending: list[float] = []
        self._marked: list[tuple[float, dict[str, str], float]] = []
        self._lock = threading.Lock()
        #: Observe an amount with no exemplar: the hot path's call.
        self.add: Callable[[float], None] = self._pending.append
        _FOLDER.watch(self)

    def observe(self, amount: float, exemplar: dict[str, str] | None = None) -> None:
        self._pending.append(amount)
        if exemplar is not None:
            self._marked.append((amount, exemplar, time.time()))

    def fold(self) -> None:
        """Count what was observed since the last fold."""
        with self._lock:
            pending = self._pending
            count = len(pending)
            if count:
                values = pending[:count]
                del pending[:count]
                total = reduce(add, values, self._sum)  # in order: prometheus-client's sum
                self._sum = total
                if total != total:  # noqa: PLR0124 - a NaN (or inf - inf): NaNs fall in no bucket
                    values = [value for value in values if value == value]  # noqa: PLR0124
                values.sort()
                counts = self._counts
                below = 0
                for index, bound in enumerate(self._bounds):
                    upto = bisect_right(values, bound, below)
                    counts[index] += upto - below
                    below = upto
            marked = self._marked
            count = len(marked)
            if count:
                chunk = marked[:count]
                del marked[:count]
                for amount, exemplar, at in chunk:
                    if amount == amount:  # noqa: PLR0124 - NaN: no bucket, no exemplar
                        index = bisect_left(self._bounds, amount)
                        self._exemplars[index] = Exemplar(exemplar, amount, at)

    def snapshot(self) -> tuple[list[int], float, list[Exemplar | None]]:
        self.fold()
        with self._lock:
            return list(self._counts), self._sum, list(self._exemplars)


class _CounterValue:
    """One label set's count, kept the way `_HistogramValues` keeps observations.

    `inc` appends ``None`` to a list: a `functools.partial` of the list's own ``append``,
    so an increment runs no Python frame and takes no lock, where prometheus-client's
    ``Counter.inc`` is four Python calls and a lock round trip. `fold` adds the number of
    items to the count, taking and deleting exactly that many (what is appended meanwhile
    waits for the next fold: nothing is lost or counted twice); a scrape folds first,
    and `_Folder` folds once a second."""

    __slots__ = ("__weakref__", "_count", "_lock", "_pending", "inc")

    def __init__(self) -> None:
        self._count = 0
        self._pending: list[None] = []
        self._lock = threading.Lock()
        #: Add one: the hot path's call.
        self.inc: Callable[[], None] = partial(self._pending.append, None)
        _FOLDER.watch(self)

    def fold(self) -> None:
        with self._lock:
            pending = self._pending
            count = len(pending)
            if count:
                del pending[:count]
                self._count += count

    def value(self) -> int:
        self.fold()
        with self._lock:
            return self._count


class _Foldable(Protocol):
    def fold(self) -> None: ...

    # ``_after_fork_in_child`` gives each a new lock.
    _lock: threading.Lock


class _Folder:
    """Folds the pending values of every live `_HistogramValues` and `_CounterValue`
    every ``interval`` seconds, from one daemon thread started with the first of them
    (and again in a forked child, which does not inherit threads)."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._children: weakref.WeakSet[_Foldable] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def watch(self, child: _Foldable) -> None:
        with self._lock:
            self._children.add(child)
            self._start()

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="histogram-fold", daemon=True)
            self._thread.start()

    def fold_all(self) -> None:
        with self._lock:
            children = list(self._children)
        for child in children:
            child.fold()

    def _run(self) -> None:
        while True:
            time.sleep(self.interval)
            self.fold_all()

    def _after_fork_in_child(self) -> None:
        # Locks a thread of the parent held at the fork would stay held: new ones.
        self._lock = threading.Lock()
        for child in self._children:
            child._lock = threading.Lock()
        self._thread = None
        if self._children:
            self._start()


_FOLDER = _Folder(interval=1.0)
os.register_at_fork(after_in_child=_FOLDER._after_fork_in_child)


def set_fold_interval(seconds: float) -> None:
    """How often the pending values of every `LocalHistogram` and `LocalCounter` are
    counted (1 s by
    default; from the next fold on). A scrape counts them first whatever this is. For a
    process that runs far slower than usual (``bench.instructions`` under valgrind): at
    full speed thousands of requests share a fold, and the interval keeps it so."""
    if seconds <= 0:
        raise ValueError("the fold interval must be positive")
    _FOLDER.interval = seconds


def fold_histograms() -> None:
    """Count every `LocalHistogram`'s pending observations, and every `LocalCounter`'s
    increments, now (a scrape does it too)."""
    _FOLDER.fold_all()


class _Labelled(Collector, ABC, Generic[_Child]):
    """What both instruments share: children by label values, created once under a lock,
    and ``describe``, which lets the registry refuse a second metric of the same name as
    it does for its own instruments."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        *,
        registry: CollectorRegistry | None,
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._labelnames = tuple(labelnames)
        self._lock = threading.Lock()
        self._children: dict[tuple[str, ...], _Child] = {}
        if registry is not None:
            registry.register(self)

    @abstractmethod
    def _new_child(self) -> _Child: ...

    @abstractmethod
    def _family(self) -> Metric:
        """An empty family of this metric's name, type, help and label names."""

    def labels(self, *labelvalues: str) -> _Child:
        """The child of these label values (as strings, as prometheus-client keeps
        them). Callers on a hot path keep the child: this runs once per label set."""
        if len(labelvalues) != len(self._labelnames):
            raise ValueError(
                f"{self._name} takes {len(self._labelnames)} label values "
                f"({', '.join(self._labelnames)}), got {len(labelvalues)}"
            )
        key = tuple(str(v) for v in labelvalues)
        child = self._children.get(key)
        if child is None:
            with self._lock:
                child = self._children.setdefault(key, self._new_child())
        return child

    def _items(self) -> list[tuple[tuple[str, ...], _Child]]:
        with self._lock:
            return list(self._children.items())

    def describe(self) -> Iterator[Metric]:
        yield self._family()


class LocalHistogram(_Labelled[_HistogramValues]):
    """A labelled histogram of this process (see the module docstring)."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        *,
        buckets: Sequence[float],
        registry: CollectorRegistry | None,
    ) -> None:
        bounds = tuple(sorted(float(b) for b in buckets))
        if not bounds or bounds[-1] != _INF:
            bounds = (*bounds, _INF)
        self._bounds = bounds
        self._bucket_names = tuple(floatToGoString(b) for b in bounds)  # type: ignore[no-untyped-call]
        super().__init__(name, documentation, labelnames, registry=registry)

    def _new_child(self) -> _HistogramValues:
        return _HistogramValues(self._bounds)

    def _family(self) -> HistogramMetricFamily:
        return HistogramMetricFamily(self._name, self._documentation, labels=list(self._labelnames))

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        for key, child in self._items():
            counts, total, exemplars = child.snapshot()
            buckets: list[tuple[str, float] | tuple[str, float, Exemplar]] = []
            cumulative = 0.0  # floats, as prometheus-client exposes counts
            for name, count, exemplar in zip(self._bucket_names, counts, exemplars, strict=True):
                cumulative += count
                if exemplar is None:
                    buckets.append((name, cumulative))
                else:
                    buckets.append((name, cumulative, exemplar))
            family.add_metric(list(key), buckets, total)
        yield family


class LocalCounter(_Labelled[_CounterValue]):
    """A labelled counter of this process (see the module docstring). Its children add
    one at a time (``inc()``), which is all the hot path needs."""

    def _new_child(self) -> _CounterValue:
        return _CounterValue()

    def _family(self) -> CounterMetricFamily:
        return CounterMetricFamily(self._name, self._documentation, labels=list(self._labelnames))

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        for key, child in self._items():
            family.add_metric(list(key), float(child.value()))  # as prometheus-client does
        yield family


class LocalInFlight(_Labelled[dict[object, None]]):
    """A gauge of the requests in progress in this process, counted at scrape time.

    A request puts a token of its own (any hashable object unique to it) into its label
    set's child, a plain `dict`, and deletes it when it ends; the sample is the child's
    size. Each step is one dict operation in C, atomic under the GIL: no lock, no Python
    call, where a locked ``inc``/``dec`` pair cost ~5,500 instructions per request
    (callgrind). Like the pool gauges (`building_blocks.telemetry.pool`), the value is
    read from what is there, so it cannot drift.
    """

    def _new_child(self) -> dict[object, None]:
        return {}

    def _family(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(self._name, self._documentation, labels=list(self._labelnames))

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        for key, child in self._items():
            family.add_metric(list(key), float(len(child)))  # as prometheus-client exposes it
        yield family


class _GaugeTokens:
    """`InFlightChild` over a prometheus-client gauge child (multiprocess mode, where the
    value must be in its files): a token in is ``inc``, a token out is ``dec``."""

    __slots__ = ("_gauge",)

    def __init__(self, gauge: Any) -> None:
        self._gauge = gauge

    def __setitem__(self, token: object, value: None) -> None:
        self._gauge.inc()

    def __delitem__(self, token: object) -> None:
        self._gauge.dec()


class _MultiprocessInFlight:
    """`LabelledInFlight` over prometheus-client's `Gauge` (``livesum`` across workers)."""

    def __init__(self, gauge: Gauge) -> None:
        self._gauge = gauge

    def labels(self, *labelvalues: str) -> _GaugeTokens:
        # Not kept here: callers on a hot path keep their children (the middleware does).
        return _GaugeTokens(self._gauge.labels(*labelvalues))


class _ObservedChild:
    """`HistogramChild` over a prometheus-client histogram child (multiprocess mode)."""

    __slots__ = ("add", "observe")

    def __init__(self, child: Any) -> None:
        self.observe = child.observe
        self.add = child.observe


class _MultiprocessHistogram:
    """`LabelledHistogram` over prometheus-client's `Histogram` (values in its files)."""

    def __init__(self, histogram: Histogram) -> None:
        self._histogram = histogram

    def labels(self, *labelvalues: str) -> _ObservedChild:
        # Not kept here: callers on a hot path keep their children.
        return _ObservedChild(self._histogram.labels(*labelvalues))


def histogram(
    name: str,
    documentation: str,
    labelnames: Sequence[str],
    *,
    buckets: Sequence[float],
    registry: CollectorRegistry,
) -> LabelledHistogram:
    """A `LocalHistogram`, or prometheus-client's `Histogram` in multiprocess mode."""
    if multiprocess_mode():
        return _MultiprocessHistogram(
            Histogram(name, documentation, labelnames, buckets=buckets, registry=registry)
        )
    return LocalHistogram(name, documentation, labelnames, buckets=buckets, registry=registry)


def counter(
    name: str,
    documentation: str,
    labelnames: Sequence[str],
    *,
    registry: CollectorRegistry,
) -> LabelledCounter:
    """A `LocalCounter`, or prometheus-client's `Counter` in multiprocess mode (its
    children have the same ``inc()``)."""
    if multiprocess_mode():
        return Counter(name, documentation, labelnames, registry=registry)
    return LocalCounter(name, documentation, labelnames, registry=registry)


def in_flight(
    name: str,
    documentation: str,
    labelnames: Sequence[str],
    *,
    registry: CollectorRegistry,
) -> LabelledInFlight:
    """A `LocalInFlight`, or prometheus-client's `Gauge` summed across workers
    (``livesum``) in multiprocess mode."""
    if multiprocess_mode():
        gauge = Gauge(
            name, documentation, labelnames, registry=registry, multiprocess_mode="livesum"
        )
        return _MultiprocessInFlight(gauge)
    return LocalInFlight(name, documentation, labelnames, registry=registry)
