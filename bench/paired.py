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
ratio of the summed CPU times (off / on: the throughput ratio the target names) and
each pair of processes' own ratio, whose spread is the measurement's. With
``--record``, written to bench/RESULTS.md between markers (`python -m bench` keeps the
section). Starts its own PostgreSQL primary + replica and Redis (`bench.stack`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from bench.inprocess import child_app, children_stack, running
from bench.instructions import replace_section

__all__ = ["BEGIN", "END", "PAIRS", "main"]

RESULTS = Path(__file__).parent / "RESULTS.md"
BEGIN = "<!-- bench.paired: begin -->"
END = "<!-- bench.paired: end -->"
TARGET = 0.9  # issue 5: telemetry costs at most 10% of throughput
TASKS = 64


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

    def turn(self, requests: int) -> None:
        stdin = self._pipes()[0]
        stdin.write(f"{requests}\n")
        stdin.flush()
        window = json.loads(self._answer())
        self.cpu.append(window["cpu"] / window["requests"] * 1e6)

    def close(self) -> None:
        if self.process.poll() is None:
            self._pipes()[0].write("\n")
            self._pipes()[0].close()
            self.process.wait(timeout=120)


def _measure(
    pair: Pair, spec: str, *, turns: int, requests: int, on_env: list[str], processes: int
) -> dict[str, Any]:
    """``turns`` turns, shared among ``processes`` successive pairs of fresh processes:
    each process runs a few percent faster or slower than the next (why is not known; not
    its hash seed), more than the turns of one pair scatter, so one pair of processes is
    one sample of that."""
    on_cpu: list[float] = []
    off_cpu: list[float] = []
    by_process: list[float] = []
    for index in range(processes):
        share = turns // processes + (index < turns % processes)
        # The off process starts first: on the cached pair it fills the cache both share.
        with _Child(pair.off, spec, []) as off, _Child(pair.on, spec, on_env) as on:
            for turn in range(share):
                for child in (on, off) if turn % 2 == 0 else (off, on):
                    child.turn(requests)
        by_process.append(sum(off.cpu) / sum(on.cpu))
        on_cpu += on.cpu
        off_cpu += off.cpu
    return {
        "on": statistics.fmean(on_cpu),
        "off": statistics.fmean(off_cpu),
        "ratio": sum(off_cpu) / sum(on_cpu),
        "by_process": by_process,
    }


def _listed(ratios: list[float]) -> str:
    return ", ".join(f"{r:.3f}x" for r in ratios)


def _render(results: dict[str, dict[str, Any]], command: str, turns: int, requests: int) -> str:
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [
        "## Telemetry cost in CPU time, on and off in turns",
        "",
        f"Recorded {when} with `{command}`: {turns} turns of {requests} requests per",
        f"side ({TASKS} concurrent tasks, in process; bench/paired.py), the two",
        "processes of a pair alive together and served in alternation, the turns shared",
        "among successive pairs of fresh processes. CPU time per request of the whole",
        "process; throughput ratio = off / on.",
        "",
        "| path | CPU µs/request off | on | on / off (throughput) | each pair of "
        "processes | target |",
        "|---|---|---|---|---|---|",
    ]
    for pair in PAIRS:
        if pair.label not in results:
            continue
        r = results[pair.label]
        lines.append(
            f"| {pair.label} | {r['off']:.1f} | {r['on']:.1f} | {r['ratio']:.3f}x "
            f"| {_listed(r['by_process'])} | >= {TARGET}x |"
        )
    return "\n".join(lines) + "\n"


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
    with children_stack(args.users, "bench-paired-") as (_, spec, _):
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
            )
            print(
                f"{pair.label}: off {r['off']:.1f} µs, on {r['on']:.1f} µs, "
                f"{r['ratio']:.3f}x (each pair of processes: {_listed(r['by_process'])})",
                flush=True,
            )
    command = " ".join(["python -m bench.paired", *(argv if argv is not None else sys.argv[1:])])
    section = _render(results, command, args.turns, args.requests)
    print(section)
    if args.record:
        text = RESULTS.read_text(encoding="utf-8")
        RESULTS.write_text(replace_section(text, section, begin=BEGIN, end=END))
    return 0


if __name__ == "__main__":
    sys.exit(main())
