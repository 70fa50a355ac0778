"""The HTTP servers under test: one uvicorn worker each, pinned to one core."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import free_port

__all__ = ["Server", "ServerSpec"]

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, slots=True)
class ServerSpec:
    """What to serve: a uvicorn app factory and its environment."""

    name: str
    factory: str  # "module:function"
    env: dict[str, str] = field(default_factory=dict)
    ready_path: str = "/docs"


class Server:
    """A running ``uvicorn --factory`` process (no access log, like a production setup)."""

    def __init__(self, spec: ServerSpec, log_dir: Path, *, cpu: int | None) -> None:
        self.spec = spec
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = (log_dir / f"{spec.name}.log").open("wb")
        argv = [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            spec.factory,
            "--host=127.0.0.1",
            f"--port={self.port}",
            "--workers=1",
            "--no-access-log",
            "--log-level=warning",
        ]
        if cpu is not None:
            argv = ["taskset", "-c", str(cpu), *argv]
        env = {**os.environ, "PYTHONPATH": str(ROOT), **spec.env}
        self.process = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def wait_ready(self, timeout: float = 180.0) -> None:
        """Until the server answers its ready path. Generous: `python -m bench` starts
        eleven servers at once on one core, each importing FastAPI, SQLAlchemy and the
        OpenTelemetry SDK (on a slow VM the first took more than 60 s)."""
        deadline = time.monotonic() + timeout
        pause = 0.02
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.spec.name} exited: see {self._log.name}")
            try:
                with urllib.request.urlopen(self.url + self.spec.ready_path, timeout=2):  # noqa: S310 - our own http URL
                    return
            except (urllib.error.URLError, OSError):
                time.sleep(pause)
                pause = min(pause * 2, 0.5)
        raise RuntimeError(f"{self.spec.name} did not answer within {timeout:g}s")

    def peak_rss_mb(self) -> float:
        """VmHWM of the worker: the most resident memory it ever had."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
