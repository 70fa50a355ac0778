"""Render a run as ``bench/RESULTS.md``: machine, versions, command, the table, ratios."""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import UTC, datetime
from importlib import metadata

from bench.run import Results
from bench.scenarios import RATIOS
from bench.wrk import wrk_version

__all__ = ["machine_lines", "render"]


def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):  # noqa: SIM115 - read once
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _tool_version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "missing"
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else "?"


def machine_lines() -> list[str]:
    packages = ["fastapi", "uvicorn", "starlette", "pydantic", "sqlalchemy", "asyncpg", "redis"]
    versions = ", ".join(f"{p} {metadata.version(p)}" for p in packages)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
        f"- machine: {_cpu_model()}, {os.cpu_count()} cores, {platform.system()} "
        f"{platform.release()}; load average at the end of the run: {load}",
        f"- Python {platform.python_version()}; {versions}",
        f"- {_tool_version(['postgres', '--version'])}; "
        f"{_tool_version(['redis-server', '--version'])}; {wrk_version()}",
    ]


#: Per request of the service on a warm connection; not measured by this run.
ROUND_TRIPS = [
    "## Round trips per request (service)",
    "",
    "| request | Redis | PostgreSQL | how we know |",
    "|---|---|---|---|",
    "| get by id, cache hit | 1 (`HMGET`, on the shared pipelined connection: concurrent "
    "lookups share one write) | 0 | by construction (`RedisCacheBackend.get`, `PipelinedRedis`) "
    "and the hit counter |",
    "| get by id, cache off | 0 | 1 (`SELECT`, autocommit, replica) "
    "| tests/integration/test_direct_reads.py (asyncpg query logger) |",
    "| get by id, cache miss | 3 (`HMGET`, lease, fill) | 1 | docs/cache.md |",
    "| list page, cache off | 0 | 1 | same read path as get by id |",
    "| create | 1 (invalidation, after the commit) | 3 (`BEGIN`, `INSERT`, `COMMIT`) "
    "| docs/performance.md |",
    "",
    "A PostgreSQL connection idle for more than 1 s is pinged first (+3 round trips).",
    "",
    "## Where the missed targets' time goes",
    "",
    "Profiles (py-spy, and CPU per request from `python -m bench.inprocess`) and what each "
    "miss is made of: docs/performance.md, section *What remains, and why*.",
]


def _row(results: Results, name: str) -> str:
    runs = results.runs[name]
    rps = [r.rps for r in runs]
    scenario = next(s for s in results.scenarios if s.name == name)
    rss = results.peak_rss_mb.get(scenario.server, float("nan"))
    non_2xx = sum(r.non_2xx for r in runs)
    sockets = sum(r.socket_errors for r in runs)
    return (
        f"| {name} | {scenario.connections} | {results.median(name, lambda r: r.rps):,.0f} "
        f"| {min(rps):,.0f} to {max(rps):,.0f} | {results.median(name, lambda r: r.p50_ms):.2f} "
        f"| {results.median(name, lambda r: r.p99_ms):.2f} | {non_2xx} | {sockets} "
        f"| {rss:.0f} | {scenario.what} |"
    )


def _other_targets(results: Results) -> list[str]:
    out = []
    service_rss = [mb for name, mb in results.peak_rss_mb.items() if name.startswith("service")]
    if service_rss:
        peak = max(service_rss)
        verdict = "met" if peak <= 150 else "missed"
        out.append(
            f"- peak RSS of one service worker under load: {peak:.0f} MB (<= 150 MB: {verdict})"
        )
    for name in ("svc get hit c256", "svc get miss c256"):
        if name in results.runs:
            failed = sum(r.errors for r in results.runs[name])
            p99 = results.median(name, lambda r: r.p99_ms)
            out.append(
                f"- {name}: {failed} failed requests over all rounds (target 0), "
                f"p99 {p99:.0f} ms (bounded by the 10 s pool timeout)"
            )
            for metric, (count, total) in results.waits.get(name, {}).items():
                mean = f", mean {total / count * 1000:.2f} ms" if count else ""
                out.append(
                    f"  - `{metric}` during its measured runs: count {count:,.0f}, "
                    f"sum {total:.2f} s{mean}"
                )
    if results.telemetry_seen is False:
        out.append(
            "- telemetry on vs off: not measurable on this build (the service exports no "
            "`http_server_request_duration_seconds`): both servers run the same code, so "
            "their ratio shows only the run's noise"
        )
    return out


TELEMETRY_ON = (
    "telemetry on (`service`, `svc get hit`, `svc get miss`) is the configuration the "
    "compose stack and the Kubernetes base ship: a JSON access line per request, the "
    "Prometheus metrics, and 1 trace in 100 recorded and exported over OTLP/HTTP "
    "(`parentbased_traceidratio`, 0.01) to a receiver in the bench stack that decodes "
    "them; the `t10` rows record and export 1 trace in 10 (the default before), the "
    "`alltraces` rows every trace; `notel` is `TELEMETRY_ENABLED=false`"
)


def render(results: Results, command: str) -> str:
    o = results.options
    lines = [
        "# Benchmark results",
        "",
        f"Recorded {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `{command}`: {o.rounds} "
        f"interleaved rounds of {o.seconds:g} s per scenario (after {o.warmup:g} s of "
        f"warm-up), medians reported. One uvicorn worker per server pinned to one core; "
        "PostgreSQL, Redis and wrk (`-t1`) on the other.",
        "",
        *machine_lines(),
        *(f"- note: {n}" for n in results.notes),
        "- note: the machine is shared (other engineers run test suites on the same 2 "
        "cores), so absolute numbers move between runs; only ratios within one run mean "
        "anything, and the min-max spread shows how much a scenario moved between rounds",
        f"- {TELEMETRY_ON}",
        "",
        "| scenario | conns | req/s (median) | req/s (min to max) | p50 ms | p99 ms | non-2xx "
        "| socket errors | peak RSS MB (server) | what |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *(_row(results, s.name) for s in results.scenarios if s.name in results.runs),
        "",
        "Errors are summed over all rounds; peak RSS is the server's VmHWM over the whole run.",
        "",
        "## Ratios (medians of this run)",
        "",
        "| ratio | value | target |",
        "|---|---|---|",
    ]
    for label, top, bottom, target in RATIOS:
        if top in results.runs and bottom in results.runs:
            value = results.median(top, lambda r: r.rps) / results.median(bottom, lambda r: r.rps)
            goal = (
                "—"
                if target is None
                else f">= {target:g}x"
                if "telemetry" not in label
                else (f">= {target:g}x (costs <= {1 - target:.0%})")
            )
            lines.append(f"| {label} | {value:.2f}x | {goal} |")
    lines += ["", "## Other targets", "", *_other_targets(results)]
    lines += ["", *ROUND_TRIPS]
    lines += ["", "## Service cache counters after the run", ""]
    for server, text in results.cache_metrics.items():
        lines.append(
            f"{server}:\n\n```\n{text}\n```\n"
            if text
            else f"{server}: no `cache_requests_total` exposed.\n"
        )
    return "\n".join(lines) + "\n"
