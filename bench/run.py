"""One benchmark run: start the stack and servers, warm them, measure interleaved rounds."""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench.scenarios import Scenario, scenarios, server_specs
from bench.servers import Server
from bench.stack import Stack, running_stack
from bench.wrk import WrkResult, run_wrk

__all__ = ["API", "Options", "Results", "get_all", "pin_servers_core", "run_benchmark"]

API = "/api/v1/users/"


@dataclass(frozen=True, slots=True)
class Options:
    rounds: int = 3
    seconds: float = 10.0
    warmup: float = 2.0
    users: int = 10_000
    quick: bool = False
    only: tuple[str, ...] = ()  # scenario names; empty: all


@dataclass
class Results:
    options: Options
    runs: dict[str, list[WrkResult]] = field(default_factory=dict)
    peak_rss_mb: dict[str, float] = field(default_factory=dict)
    scenarios: list[Scenario] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    cache_metrics: dict[str, str] = field(default_factory=dict)  # server -> counter lines
    telemetry_seen: bool | None = None  # did the service export HTTP metrics?
    # scenario -> metric -> (count, sum) added during its measured runs (256 connections)
    waits: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)

    def median(self, name: str, pick: Callable[[WrkResult], float]) -> float:
        return statistics.median(pick(r) for r in self.runs[name])


def pin_servers_core(cpus: set[int]) -> int | None:
    """Keep this process and its children (databases, wrk) off the core the servers use;
    returns that core, or ``None`` on a single-core machine."""
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2:
        return None
    server_cpu, rest = available[0], set(available[1:])
    os.sched_setaffinity(0, rest & cpus or rest)
    return server_cpu


async def get_all(base_url: str, paths: Sequence[str], concurrency: int = 32) -> None:
    """GET every path once (fills caches); any failure stops the run."""
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30) as client:
        queue = list(paths)

        async def worker() -> None:
            while queue:
                response = await client.get(queue.pop())
                response.raise_for_status()

        await asyncio.gather(*(worker() for _ in range(concurrency)))


def _list_pages(base_url: str) -> list[str]:
    """Every page of the list (limit=50), following ``next_cursor`` from the first."""
    pages = [f"{API}?limit=50"]
    with httpx.Client(base_url=base_url, timeout=30) as client:
        while True:
            body = client.get(pages[-1]).raise_for_status().json()
            if not body["next_cursor"]:
                return pages
            pages.append(f"{API}?limit=50&cursor={body['next_cursor']}")


def run_benchmark(options: Options, log: Callable[[str], None] = print) -> Results:
    server_cpu = pin_servers_core(set(range(1, os.cpu_count() or 1)))
    results = Results(options)
    if server_cpu is None:
        results.notes.append("single core: servers, databases and wrk share it")
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        work = Path(tmp)
        log(f"starting PostgreSQL primary + replica and Redis; seeding {options.users} users")
        with running_stack(work / "servers", users=options.users) as stack:
            _measure(
                stack=stack,
                work=work,
                server_cpu=server_cpu,
                options=options,
                results=results,
                log=log,
            )
    return results


def _measure(
    *,
    stack: Stack,
    work: Path,
    server_cpu: int | None,
    options: Options,
    results: Results,
    log: Callable[[str], None],
) -> None:
    chosen = [
        s for s in scenarios(quick=options.quick) if not options.only or s.name in options.only
    ]
    results.scenarios = chosen
    needed = {s.server for s in chosen}
    specs = [s for s in server_specs(stack) if s.name in needed]
    servers: dict[str, Server] = {}
    try:
        for spec in specs:
            servers[spec.name] = Server(spec, work, cpu=server_cpu)
        for server in servers.values():
            server.wait_ready()
        files = _prepare(stack, work, servers, log)
        for round_no in range(options.rounds):
            # Rotate the order each round so slow drift (other load, table growth) does
            # not always favour the same scenario.
            shift = round_no % len(chosen)
            for scenario in chosen[shift:] + chosen[:shift]:
                result = _run_scenario(scenario, servers[scenario.server], files, options, results)
                log(
                    f"round {round_no + 1}/{options.rounds} {scenario.name:22} "
                    f"{result.rps:8.0f} req/s  p50 {result.p50_ms:6.2f} ms  "
                    f"p99 {result.p99_ms:7.2f} ms  errors {result.errors}"
                )
        for name, server in servers.items():
            results.peak_rss_mb[name] = server.peak_rss_mb()
        for name in ("service", "service-nocache"):
            if name in servers:
                results.cache_metrics[name] = _cache_lines(servers[name].url)
        if "service-nocache" in servers:
            results.telemetry_seen = "http_server_request_duration_seconds" in _metrics(
                servers["service-nocache"].url
            )
    finally:
        for server in servers.values():
            server.stop()


def _prepare(
    stack: Stack, work: Path, servers: dict[str, Server], log: Callable[[str], None]
) -> dict[str, Path]:
    """Write the files of paths wrk picks from, and warm the caches."""
    id_paths = [f"{API}{i}" for i in stack.user_ids]
    files = {"ids": work / "ids.txt", "pages": work / "pages.txt"}
    files["ids"].write_text("\n".join(id_paths) + "\n")
    service = next((s for n, s in servers.items() if n.startswith("service")), None)
    if service is not None:
        files["pages"].write_text("\n".join(_list_pages(service.url)) + "\n")
    # The cached service variants share Redis, namespace and schema version, hence keys:
    # warming one warms them all.
    for name in ("service", "redis-aside"):
        if name in servers:
            log(f"warming the cache of {name} ({len(id_paths)} ids)")
            asyncio.run(get_all(servers[name].url, id_paths))
    return files


def _run_scenario(
    scenario: Scenario,
    server: Server,
    files: dict[str, Path],
    options: Options,
    results: Results,
) -> WrkResult:
    """One measured run, recorded; at 256 connections also what the service waited."""
    watch = scenario.connections >= 256 and scenario.server.startswith("service")
    before: dict[str, tuple[float, float]] = {}

    def measuring() -> None:
        before.update(_wait_totals(server.url))

    result = _one(scenario, server, files, options, measuring if watch else None)
    if watch:
        _add_waits(results.waits.setdefault(scenario.name, {}), before, server.url)
    results.runs.setdefault(scenario.name, []).append(result)
    return result


def _one(
    scenario: Scenario,
    server: Server,
    files: dict[str, Path],
    options: Options,
    measuring: Callable[[], None] | None = None,
) -> WrkResult:
    """Warm up, then one measured wrk run (``measuring`` is called just before it)."""
    env = {"WRK_RUN": uuid.uuid4().hex[:10]}
    if scenario.paths is not None:
        env["WRK_PATHS"] = str(files[scenario.paths])
    if options.warmup > 0:
        run_wrk(
            server.url,
            scenario.script,
            connections=scenario.connections,
            seconds=options.warmup,
            env={**env, "WRK_RUN": env["WRK_RUN"] + "w"},
        )
    time.sleep(0.5)  # let the previous run's connections close before measuring
    if measuring is not None:
        measuring()
    return run_wrk(
        server.url,
        scenario.script,
        connections=scenario.connections,
        seconds=options.seconds,
        env=env,
    )


def _metrics(base_url: str) -> str:
    try:
        response = httpx.get(base_url + "/metrics", timeout=10)
    except httpx.HTTPError:
        return ""
    return response.text if response.status_code == 200 else ""


#: Histograms whose count/sum show waiting for a connection (database pool, Redis calls).
WAIT_METRICS = ("db_client_connection_wait_time_seconds", "cache_operation_duration_seconds")


def _wait_totals(base_url: str) -> dict[str, tuple[float, float]]:
    """``{metric: (count, sum)}`` over all label sets, from the service's /metrics."""
    totals: dict[str, list[float]] = {m: [0.0, 0.0] for m in WAIT_METRICS}
    for family in text_string_to_metric_families(_metrics(base_url)):
        if family.name not in totals:
            continue
        for sample in family.samples:
            if sample.name.endswith("_count"):
                totals[family.name][0] += sample.value
            elif sample.name.endswith("_sum"):
                totals[family.name][1] += sample.value
    return {m: (c, s) for m, (c, s) in totals.items()}


def _add_waits(
    into: dict[str, tuple[float, float]], before: dict[str, tuple[float, float]], url: str
) -> None:
    after = _wait_totals(url)
    for metric, (count, total) in after.items():
        count0, total0 = before.get(metric, (0.0, 0.0))
        prev_count, prev_total = into.get(metric, (0.0, 0.0))
        into[metric] = (prev_count + count - count0, prev_total + total - total0)


def _cache_lines(base_url: str) -> str:
    """The service's cache counters, if it exposes any (to tell a hit run from a miss)."""
    text = _metrics(base_url)
    return "\n".join(line for line in text.splitlines() if line.startswith("cache_requests"))
