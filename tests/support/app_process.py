"""`python -m app` as a child process on a free port, for tests of what only a real
process shows: several workers, OTLP export on shutdown, the logs it writes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx

from tests.support.ports import free_port
from tests.support.process import wait_until

__all__ = ["AppProcess"]

ROOT = Path(__file__).resolve().parents[2]


class AppProcess:
    def __init__(self, log_path: Path, env: Mapping[str, str], workers: int = 1) -> None:
        self.port = free_port()
        self.log_path = log_path
        # Only what the test gives (plus PATH/HOME): the developer's OTEL_*, DATABASE_URL
        # or PROMETHEUS_MULTIPROC_DIR must not leak into the child.
        base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app", "--port", str(self.port), "--workers", str(workers)],
            cwd=ROOT,
            env={**base, **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.base_url = f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 60.0) -> None:
        def live() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"the app exited early:\n{self.log()}")
            try:
                return httpx.get(f"{self.base_url}/health/live", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(live, timeout=timeout, what="the app to answer /health/live", details=self.log)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM (a graceful shutdown: the lifespan closes) and wait."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        finally:
            self._log.close()

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def __enter__(self) -> Self:
        try:
            self.wait_ready()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.process.poll() is None:
            try:
                self.stop()
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()
