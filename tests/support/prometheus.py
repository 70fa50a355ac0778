"""A private Prometheus (the Debian package's binary) for the live stack test.

Started on a free loopback port with a throw-away storage folder and a config file the
caller wrote; queried through its HTTP API (``/api/v1/query``, ``/api/v1/alerts``) with the
standard library, so this module stays free of pytest like the other server helpers.

    with PrometheusServer.start_new(config_file, base_dir) as prometheus:
        prometheus.query('up{job="users"}')
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import IO, Any

from tests.support.errors import ServerError
from tests.support.ports import free_port
from tests.support.process import (
    DestroyOnExit,
    clean_env,
    require_binary,
    track,
    untrack,
    wait_until,
)

__all__ = ["PrometheusServer"]

_APT_PACKAGE = "prometheus"


class PrometheusServer(DestroyOnExit):
    """One ``prometheus`` child process on 127.0.0.1 with its own storage folder."""

    host = "127.0.0.1"

    def __init__(self, config_file: Path, root: Path, port: int) -> None:
        """Use start_new(); this only records where things are."""
        self.config_file = config_file
        self.root = root
        self.port = port
        self.base_url = f"http://{self.host}:{port}"
        self.log_path = root / "prometheus.log"
        self._binary = require_binary("prometheus", _APT_PACKAGE)
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @classmethod
    def start_new(
        cls, config_file: Path, base_dir: Path, *, port: int | None = None, timeout: float = 30.0
    ) -> PrometheusServer:
        """Start on ``port`` (default: a free one; pass one to write into the config's
        self-scrape job first) and wait until ``/-/ready`` answers."""
        require_binary("prometheus", _APT_PACKAGE)  # before making a folder to orphan
        base_dir.mkdir(parents=True, exist_ok=True)
        root = Path(tempfile.mkdtemp(prefix="bbtest-prometheus-", dir=base_dir))
        server = cls(config_file, root, port or free_port())
        track(server)
        try:
            server._start(timeout)
        except BaseException:
            server.destroy()
            raise
        return server

    def _start(self, timeout: float) -> None:
        argv = [
            self._binary,
            f"--config.file={self.config_file}",
            f"--storage.tsdb.path={self.root / 'data'}",
            f"--web.listen-address={self.host}:{self.port}",
            # As in the compose stack: exemplars (trace ids) are kept.
            "--enable-feature=exemplar-storage",
        ]
        self._log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            argv,
            cwd=self.root,
            env=clean_env(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        wait_until(self._ready, timeout=timeout, what=f"prometheus on {self.base_url}")

    def _ready(self) -> bool:
        if self._process is not None and self._process.poll() is not None:
            code = self._process.returncode
            raise ServerError(f"prometheus exited with {code}:\n{self.log_tail()}")
        try:
            with urllib.request.urlopen(f"{self.base_url}/-/ready", timeout=2) as response:  # noqa: S310 - loopback
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    # -- HTTP API --------------------------------------------------------------------

    def api(self, path: str, **params: str) -> Any:
        """GET ``/api/v1/<path>``; the ``data`` member of a successful answer."""
        url = f"{self.base_url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback
                body = json.loads(response.read())
        except urllib.error.HTTPError as exc:  # 400/422: a bad expression, with the reason
            body = json.loads(exc.read() or b"{}")
        if body.get("status") != "success":
            raise ServerError(f"prometheus {path} {params}: {body.get('error', body)}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector (or scalar, as one sample) ``expr`` evaluates to now."""
        data = self.api("query", query=expr)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        result: list[dict[str, Any]] = data["result"]
        return result

    def alerts(self) -> list[dict[str, Any]]:
        """Active alerts (pending and firing) with their labels and state."""
        alerts: list[dict[str, Any]] = self.api("alerts")["alerts"]
        return alerts

    def targets_up(self, job: str) -> bool:
        """True once every target of ``job`` was scraped successfully."""
        targets = self.api("targets", state="active")["activeTargets"]
        mine = [t for t in targets if t["labels"].get("job") == job]
        return bool(mine) and all(t["health"] == "up" for t in mine)

    # -- lifecycle ---------------------------------------------------------------------

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except FileNotFoundError:
            return ""
        return "\n".join(text)

    def destroy(self) -> None:
        """Stop the process (SIGTERM, SIGKILL after 10 s) and delete its folder."""
        untrack(self)
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        shutil.rmtree(self.root, ignore_errors=True)

    def __repr__(self) -> str:
        return f"<PrometheusServer {self.base_url} {self.root}>"
