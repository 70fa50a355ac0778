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
    lines += ["", "## Service cache counters after the run", ""]
    lines.append(
        f"```\n{results.cache_metrics}\n```"
        if results.cache_metrics
        else "The service exposed no `cache_requests_total`: no cache in this build, so "
        '"svc get hit" measured the uncached path.'
    )
    return "\n".join(lines) + "\n"
