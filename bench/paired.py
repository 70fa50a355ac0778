"""``python -m bench.paired``: telemetry's cost in CPU time, on and off measured in turns.

CPU time per request is what the telemetry target is about, but on a shared virtual
machine the speed of the CPU itself drifts (other tenants, stolen time): measured one
process after the other, the same code moved by 10% and more between runs here. This
harness keeps both processes of a pair (telemetry on, telemetry off) running side by
side and lets them take turns: one serves a short window of requests (64 concurrent
tasks calling the app's ASGI interface, as `bench.inprocess` does) while the other
waits, then the other, ``--turns`` times, the order swapped every turn (ABBA). A drift
then lands on both sides of a turn alike, and each turn gives a ratio of its own.

The turns are shared among ``--processes`` successive pairs of fresh processes: the
same code in another process ran a few percent
faster or slower, more than the turns of one pair scatter. Reported per path: the
ratio of the summed CPU times (off / on: the throughput ratio the target names), each
pair of processes' own ratio, whose spread is the measurement's, and the mean of those
with its 95% interval (`interval`) and whether it shows the target met (`verdict`). With
``--record``, written to bench/RESULTS.md between markers (`python -m bench` keeps the
section). Starts its own PostgreSQL primary + replica and Redis (`bench.stack`).

``--server``: the same turns through the service as deployed, a uvicorn process per side
(`bench.servers`, pinned to one core) driven over HTTP by wrk on the other core; a turn
is ``--seconds`` of wrk, and its CPU time per request is the server process's (every
thread, from ``/proc``) over the requests wrk completed. In process, the ASGI server's
own work per request (HTTP parsing, sockets) is left out, so telemetry's share there is
larger than in the service's throughput; through the server it is the throughput ratio
the target names, at the CPU time a saturated server would spend; wrk's own requests
per second over the same turns, on / off, are reported beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from bench.inprocess import child_app, children_stack, running
from bench.instructions import replace_section
from bench.run import API, get_all, pin_servers_core
from bench.scenarios import server_specs
from bench.servers import Server, ServerSpec
from bench.wrk import run_wrk

__all__ = ["BEGIN", "END", "PAIRS", "SERVED_BEGIN", "SERVED_END", "interval", "main", "verdict"]

RESULTS = Path(__file__).parent / "RESULTS.md"
BEGIN = "<!-- bench.paired: begin -->"
END = "<!-- bench.paired: end -->"
SERVED_BEGIN = "<!-- bench.paired --server: begin -->"
SERVED_END = "<!-- bench.paired --server: end -->"
TARGET = 0.9  # issue 5: telemetry costs at most 10% of throughput
TASKS = 64


#: Two-sided 95% quantiles of Student's t by degrees of freedom (1 to 30), from the
#: standard tables: the standard library has the normal distribution only, and one
#: number per run does not justify SciPy. Past 30, the normal's 1.96 is used (t is
#: within 0.05 of it there).
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
        2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
        2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)  # fmt: skip


def interval(ratios: list[float]) -> tuple[float, float, float] | None:
    """The mean of the pairs' ratios and its 95% confidence interval ``(mean, low,
    high)``, by Student's t over the pairs (each pair of fresh processes is one sample:
    the process-to-process spread is the measurement's largest); ``None`` for fewer than
    two pairs."""
    if len(ratios) < 2:
        return None
    mean = statistics.fmean(ratios)
    df = len(ratios) - 1
    t = _T95[df - 1] if df <= len(_T95) else 1.96
    half = t * statistics.stdev(ratios) / len(ratios) ** 0.5
    return mean, mean - half, mean + half


def verdict(bounds: tuple[float, float, float] | None, target: float = TARGET) -> str:
    """``met`` when the whole 95% interval is at or above ``target``, ``missed`` when it
    is all below, else ``not shown`` (one run cannot tell)."""
    if bounds is None:
        return "not shown"
    _, low, high = bounds
    if low >= target:
        return "met"
    if high < target:
        return "missed"
    return "not shown"


@dataclass(frozen=True, slots=True)
class Pair:
    label: str
    on: str
    off: str


PAIRS = (
    Pair("cached get", "service", "service-notel"),
    Pair("uncached get", "service-nocache", "service-nocache-notel"),
)


async def _serve_turns(variant: str, spec: str, env: dict[str, str]) -> None:
    """In a child: build, warm, then serve one window per line read from stdin (its
    number of requests; an empty line ends), answering with the window's CPU seconds."""
    app, paths = child_app(spec, variant, env)
    async with running(app, paths, ready_timeout=120) as driver:
        await driver.read_all()
        await driver.read_random(3200, TASKS)  # warm
        print("ready", flush=True)
        while line := (await asyncio.to_thread(sys.stdin.readline)).strip():
            requests = int(line)
            started = time.process_time()
            await driver.read_random(requests, TASKS)
            cpu = time.process_time() - started
            print(json.dumps({"cpu": cpu, "requests": requests}), flush=True)


class _Child:
    def __init__(self, variant: str, spec: str, env: list[str]) -> None:
        self.variant = variant
        argv = [sys.executable, "-m", "bench.paired", "--child", variant, "--stack", spec]
        argv += [f"--on-env={e}" for e in env]
        self.process = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.cpu: list[float] = []  # µs per request, per turn

    def _pipes(self) -> tuple[IO[str], IO[str]]:
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None  # made with PIPE
        assert stdout is not None
        return stdin, stdout

    def _answer(self) -> str:
        line = self._pipes()[1].readline()
        if not line:
            raise RuntimeError(f"{self.variant} exited (code {self.process.wait()})")
        return line

    def __enter__(self) -> _Child:
        """Ready to serve: built, warmed up (a child that dies first is stopped too)."""
        try:
            while self._answer().strip() != "ready":
                pass
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def turn(self, requests: float) -> None:
        stdin = self._pipes()[0]
        stdin.write(f"{int(requests)}\n")
        stdin.flush()
        window = json.loads(self._answer())
        self.cpu.append(window["cpu"] / window["requests"] * 1e6)

    def close(self) -> None:
        if self.process.poll() is None:
            self._pipes()[0].write("\n")
            self._pipes()[0].close()
            self.process.wait(timeout=120)


def _task_cpu_ns(pid: int) -> int:
    """CPU time of every thread of process ``pid`` so far, in ns (``/proc/<pid>/task/*/
    schedstat``: nanoseconds, where ``/proc/<pid>/stat`` counts 10 ms ticks)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):  # a thread that just ended
            continue
    return total


class _ServedSide:
    """One side served by uvicorn and driven by wrk (``--server``)."""

    CONNECTIONS = 64

    def __init__(self, spec: ServerSpec, work: Path, ids: Path, cpu: int | None) -> None:
        self.variant = spec.name
        self.server = Server(spec, work, cpu=cpu)
        self._ids = ids
        self.cpu: list[float] = []  # µs per request, per turn
        self.rates: list[float] = []  # requests per second wrk completed, per turn

    def _wrk(self, seconds: float) -> tuple[int, int]:
        """Requests completed and server CPU ns over ``seconds`` of wrk; any error raises."""
        before = _task_cpu_ns(self.server.process.pid)
        result = run_wrk(
            self.server.url,
            "paths.lua",
            connections=self.CONNECTIONS,
            seconds=seconds,
            env={"WRK_PATHS": str(self._ids), "WRK_RUN": self.variant},
        )
        used = _task_cpu_ns(self.server.process.pid) - before
        if result.errors or not result.requests:
            raise RuntimeError(f"{self.variant}: {result.errors} errors, {result.requests} ok")
        return result.requests, used

    def __enter__(self) -> _ServedSide:
        try:
            self.server.wait_ready()
            self._wrk(2)  # warm
        except BaseException:
            self.server.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.stop()

    def turn(self, seconds: float) -> None:
        requests, used = self._wrk(seconds)
        self.cpu.append(used / requests / 1000)
        self.rates.append(requests / seconds)


_Side = _Child | _ServedSide


def _turns(on: _Side, off: _Side, share: int, size: float) -> None:
    for turn in range(share):
        for child in (on, off) if turn % 2 == 0 else (off, on):
            child.turn(size)  # requests (in process) or seconds of wrk (through the server)


def _in_process(
    pair: Pair, spec: str, on_env: list[str], share: int, requests: int
) -> tuple[_Child, _Child]:
    """``share`` turns of a pair of fresh processes: µs per request, on and off."""
    # The off process starts first: on the cached pair it fills the cache both share.
    with _Child(pair.off, spec, []) as off, _Child(pair.on, spec, on_env) as on:
        _turns(on, off, share, requests)
    return on, off


def _through_server(
    pair: Pair, served: ServedRun, on_env: list[str], share: int, *, warm: bool
) -> tuple[_ServedSide, _ServedSide]:
    """`_in_process` with a pair of fresh uvicorn servers (``warm``: read every row
    first, through the off server, which fills the cache both share)."""
    with (
        served.side(pair.off, {}) as off,
        served.side(pair.on, _settings_of(on_env)) as on,
    ):
        if warm:
            asyncio.run(get_all(off.server.url, served.paths.read_text().split()))
        _turns(on, off, share, served.seconds)
    return on, off


@dataclass(frozen=True, slots=True)
class ServedRun:
    """``--server``: where the servers' specs, paths file and core come from, and a turn's
    seconds of wrk."""

    specs: dict[str, ServerSpec]
    work: Path
    paths: Path
    cpu: int | None
    seconds: float

    def side(self, variant: str, env: dict[str, str]) -> _ServedSide:
        spec = self.specs[variant]
        spec = ServerSpec(spec.name, spec.factory, {**spec.env, **env})
        return _ServedSide(spec, self.work, self.paths, self.cpu)


def _measure(
    pair: Pair,
    spec: str,
    *,
    turns: int,
    requests: int,
    on_env: list[str],
    processes: int,
    served: ServedRun | None = None,
) -> dict[str, Any]:
    """``turns`` turns, shared among ``processes`` successive pairs of fresh processes:
    each process runs a few percent faster or slower than the next (why is not known; not
    its hash seed), more than the turns of one pair scatter, so one pair of processes is
    one sample of that. ``served``: each side a uvicorn server driven by wrk."""
    on_cpu: list[float] = []
    off_cpu: list[float] = []
    on_rates: list[float] = []
    off_rates: list[float] = []
    by_process: list[float] = []
    for index in range(processes):
        share = turns // processes + (index < turns % processes)
        on: _Side
        off: _Side
        if served is None:
            on, off = _in_process(pair, spec, on_env, share, requests)
        else:
            on, off = _through_server(pair, served, on_env, share, warm=index == 0)
            on_rates += on.rates
            off_rates += off.rates
        by_process.append(sum(off.cpu) / sum(on.cpu))
        on_cpu += on.cpu
        off_cpu += off.cpu
    return {
        "on": statistics.fmean(on_cpu),
        "off": statistics.fmean(off_cpu),
        "ratio": sum(off_cpu) / sum(on_cpu),
        "by_process": by_process,
        "interval": interval(by_process),
        # Through the server: what wrk completed in the same turns, on / off.
        "rate_ratio": sum(on_rates) / sum(off_rates) if off_rates else None,
    }


def _listed(ratios: list[float]) -> str:
    return ", ".join(f"{r:.3f}x" for r in ratios)


def _render(
    results: dict[str, dict[str, Any]], command: str, turns: int, size: str, served: bool
) -> str:
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    if served:
        head = [
            "## Telemetry cost in CPU time through the server, on and off in turns",
            "",
            f"Recorded {when} with `{command}`: {turns} turns of {size} per side",
            f"(wrk, {_ServedSide.CONNECTIONS} connections, over HTTP to one uvicorn process per",
            "side, both pinned to one core; bench/paired.py), the two servers of a pair",
            "alive together and driven in alternation, the turns shared among successive",
            "pairs of fresh servers. CPU time per request of the whole server process (every",
            "thread); throughput ratio = off / on.",
        ]
    else:
        head = [
            "## Telemetry cost in CPU time, on and off in turns",
            "",
            f"Recorded {when} with `{command}`: {turns} turns of {size} per",
            f"side ({TASKS} concurrent tasks, in process; bench/paired.py), the two",
            "processes of a pair alive together and served in alternation, the turns shared",
            "among successive pairs of fresh processes. CPU time per request of the whole",
            "process; throughput ratio = off / on.",
        ]
    rates = "wrk req/s on / off, same turns | " if served else ""
    header = (
        "| path | CPU µs/request off | on | on / off (throughput) | each pair of "
        f"processes | mean of the pairs, 95% interval | {rates}target | shown? |"
    )
    lines = [*head, "", header, "|" + "---|" * (header.count("|") - 1)]
    for pair in PAIRS:
        if pair.label not in results:
            continue
        r = results[pair.label]
        rate = f"{r['rate_ratio']:.3f}x | " if served else ""
        lines.append(
            f"| {pair.label} | {r['off']:.1f} | {r['on']:.1f} | {r['ratio']:.3f}x "
            f"| {_listed(r['by_process'])} | {_bounds(r['interval'])} | {rate}>= {TARGET}x "
            f"| {verdict(r['interval'])} |"
        )
    lines += [
        "",
        "Shown? `met` when the 95% interval of the pairs' mean (Student's t over the",
        "pairs of processes) lies wholly at or above the target, `missed` when wholly",
        "below, `not shown` otherwise.",
    ]
    return "\n".join(lines) + "\n"


def _bounds(bounds: tuple[float, float, float] | None) -> str:
    if bounds is None:
        return "one pair: none"
    mean, low, high = bounds
    return f"{mean:.3f}x ({low:.3f}x to {high:.3f}x)"


def _settings_of(given: list[str]) -> dict[str, str]:
    """``--on-env`` values as a mapping; a value without ``NAME=`` is refused."""
    settings = {}
    for item in given:
        name, equals, value = item.partition("=")
        if not (name and equals):
            raise SystemExit(f"--on-env takes NAME=VALUE, got {item!r}")
        settings[name] = value
    return settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.paired", description=__doc__)
    parser.add_argument("--turns", type=int, default=80)
    parser.add_argument(
        "--processes", type=int, default=8, help="successive pairs of processes per path"
    )
    parser.add_argument("--requests", type=int, default=1280, help="per side and turn")
    parser.add_argument("--only", choices=[p.label for p in PAIRS])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--record", action="store_true", help="write bench/RESULTS.md")
    parser.add_argument(
        "--on-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set on the telemetry-on side only, after its variant's settings (repeat): "
        "what one part costs, e.g. --on-env OTEL_SDK_DISABLED=true",
    )
    parser.add_argument(
        "--server", action="store_true", help="through uvicorn, driven by wrk over HTTP"
    )
    parser.add_argument(
        "--seconds", type=float, default=2.0, help="per side and turn, with --server"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--stack", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.processes < 1 or args.turns < 2 * args.processes:
        parser.error("--turns must be at least 2 per process, --processes at least 1")
    on_env = _settings_of(args.on_env)  # a malformed one fails here, not in a child
    if args.child:
        asyncio.run(_serve_turns(args.child, args.stack, on_env))
        return 0
    results: dict[str, dict[str, Any]] = {}
    # Through the server: the servers on one core, this process and wrk on the others.
    server_cpu = pin_servers_core(set(range(1, os.cpu_count() or 1))) if args.server else None
    with children_stack(args.users, "bench-paired-") as (stack, spec, work):
        served = None
        if args.server:
            paths = work / "paths.txt"
            paths.write_text("".join(f"{API}{i}\n" for i in stack.user_ids))
            specs = {s.name: s for s in server_specs(stack)}
            served = ServedRun(specs, work, paths, server_cpu, args.seconds)
        for pair in PAIRS:
            if args.only and pair.label != args.only:
                continue
            r = results[pair.label] = _measure(
                pair,
                spec,
                turns=args.turns,
                requests=args.requests,
                on_env=args.on_env,
                processes=args.processes,
                served=served,
            )
            print(
                f"{pair.label}: off {r['off']:.1f} µs, on {r['on']:.1f} µs, "
                f"{r['ratio']:.3f}x (each pair of processes: {_listed(r['by_process'])}; "
                f"mean and 95% interval {_bounds(r['interval'])}: {verdict(r['interval'])}"
                + (
                    f"; wrk req/s on / off {r['rate_ratio']:.3f}x)"
                    if r["rate_ratio"] is not None
                    else ")"
                ),
                flush=True,
            )
    command = " ".join(["python -m bench.paired", *(argv if argv is not None else sys.argv[1:])])
    size = f"{args.seconds:g} s of wrk" if args.server else f"{args.requests} requests"
    section = _render(results, command, args.turns, size, args.server)
    print(section)
    if args.record:
        begin, end = (SERVED_BEGIN, SERVED_END) if args.server else (BEGIN, END)
        text = RESULTS.read_text(encoding="utf-8")
        RESULTS.write_text(replace_section(text, section, begin=begin, end=end))
    return 0


if __name__ == "__main__":
    sys.exit(main())
