"""``python -m bench`` (``make bench``): the whole benchmark, from a clean clone, in one command.

Starts its own PostgreSQL primary + streaming replica and Redis, seeds users, serves the
users service and the hand-written baselines (bench/baselines) with one uvicorn worker
each, drives them with wrk in interleaved rounds and writes bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench import instructions, paired
from bench.report import render
from bench.run import Options, run_benchmark


def keep_recorded_sections(old: str, new: str) -> str:
    """``new`` (a fresh wrk report) with the sections `bench.instructions` and
    `bench.paired` (in process and ``--server``) recorded in ``old``: each harness
    rewrites only its own."""
    new = instructions.carry_section(old, new)
    new = instructions.carry_section(old, new, begin=paired.BEGIN, end=paired.END)
    return instructions.carry_section(old, new, begin=paired.SERVED_BEGIN, end=paired.SERVED_END)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1 round of 3 s: a sanity check")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 3)")
    parser.add_argument("--seconds", type=float, help="seconds per measurement (default 10)")
    parser.add_argument("--users", type=int, default=10_000, help="users to seed")
    parser.add_argument("--only", action="append", default=[], help="scenario name (repeat)")
    parser.add_argument(
        "--output",
        type=Path,
        help="where to write the report (default bench/RESULTS.md; --quick: print only)",
    )
    args = parser.parse_args(argv)
    options = Options(
        rounds=args.rounds or (1 if args.quick else 3),
        seconds=args.seconds or (3.0 if args.quick else 10.0),
        warmup=1.0 if args.quick else 2.0,
        users=args.users,
        quick=args.quick,
        only=tuple(args.only),
    )
    results = run_benchmark(options)
    command = "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:])
    report = render(results, command.strip())
    output = args.output or (None if args.quick else Path(__file__).parent / "RESULTS.md")
    if output is not None:
        if output.exists():
            report = keep_recorded_sections(output.read_text(encoding="utf-8"), report)
        output.write_text(report, encoding="utf-8")
        print(f"wrote {output}")
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
