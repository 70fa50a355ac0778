"""Run wrk (the load generator) with one of our Lua scripts and read its result line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["WRK_DIR", "WrkResult", "run_wrk", "wrk_version"]

WRK_DIR = Path(__file__).parent / "wrk"
_MARK = "WRK_JSON "


@dataclass(frozen=True, slots=True)
class WrkResult:
    requests: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    non_2xx: int  # wrk counts non-2xx/3xx answers as "status" errors
    socket_errors: int  # connect + read + write + timeout

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def errors(self) -> int:
        return self.non_2xx + self.socket_errors


def _binary() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise RuntimeError("wrk is missing: run scripts/install-test-deps (Debian package wrk)")
    return found


def wrk_version() -> str:
    out = subprocess.run([_binary(), "-v"], capture_output=True, text=True, check=False)
    return (out.stdout or out.stderr).splitlines()[0].strip()


def run_wrk(
    base_url: str,
    script: str,
    *,
    connections: int,
    seconds: float,
    env: dict[str, str] | None = None,
    threads: int = 1,
    timeout_s: int = 10,
) -> WrkResult:
    """``wrk -t{threads} -c{connections} -d{seconds}s`` with ``bench/wrk/{script}``."""
    argv = [
        _binary(),
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        f"--timeout={timeout_s}s",
        "-s",
        str(WRK_DIR / script),
        base_url,
    ]
    full_env = {**os.environ, "WRK_DIR": str(WRK_DIR), **(env or {})}
    out = subprocess.run(
        argv, capture_output=True, text=True, env=full_env, timeout=seconds + 60, check=False
    )
    for line in out.stdout.splitlines():
        if line.startswith(_MARK):
            data = json.loads(line[len(_MARK) :])
            return WrkResult(
                requests=data["requests"],
                seconds=data["duration_us"] / 1e6,
                p50_ms=data["p50_us"] / 1000,
                p90_ms=data["p90_us"] / 1000,
                p99_ms=data["p99_us"] / 1000,
                max_ms=data["max_us"] / 1000,
                non_2xx=data["status"],
                socket_errors=data["connect"] + data["read"] + data["write"] + data["timeout"],
            )
    raise RuntimeError(f"wrk gave no result (exit {out.returncode}):\n{out.stdout}\n{out.stderr}")
