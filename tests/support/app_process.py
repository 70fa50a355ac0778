"""Run the service as users do (``python -m app``) in a subprocess, on a free port.

Used by the tests that need a real server (schemathesis, locust smoke, the stack test)
and by the benchmark harness; pytest-free like the rest of `tests.support`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from tests.support.ports import free_port
from tests.support.process import clean_env, wait_until

__all__ = ["AppProcess"]

REPO_ROOT = Path(__file__).resolve().parents[2]


class AppProcess:
    """``python -m app`` with ``env`` (no inherited app settings), ready when entered."""

    def __init__(
        self,
        env: Mapping[str, str],
        *,
        log_path: Path,
        args: Sequence[str] = (),
        port: int | None = None,
        ready_path: str = "/health/ready",
        cwd: Path | None = None,
    ) -> None:
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._env = dict(env)
        self._args = list(args)
        self._ready_path = ready_path
        self._cwd = cwd or log_path.parent
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> None:
        app_vars = ("DATABASE_", "DB_", "REDIS_", "CACHE_", "OTEL_", "LOG_", "PROMETHEUS_")
        env = {k: v for k, v in clean_env().items() if not k.startswith(app_vars)}
        env.update(self._env)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app", "--port", str(self.port), *self._args],
            cwd=self._cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        wait_until(
            self._ready, timeout=timeout, what=f"the app on {self.base_url}", details=self.log_tail
        )

    def _ready(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"the app exited with {self.process.returncode}:\n{self.log_tail()}")
        try:
            with urllib.request.urlopen(self.base_url + self._ready_path, timeout=2) as response:  # noqa: S310 - loopback
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (graceful), then SIGKILL after ``timeout``; returns the exit code."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(timeout)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
