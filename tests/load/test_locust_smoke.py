"""CI smoke run of every load scenario: the service started natively (``python -m app`` on
a temporary SQLite file), Locust headless for a few seconds per scenario; each scenario
must send requests and see no failure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
LOCUSTFILES = ROOT / "tests" / "load"

pytestmark = pytest.mark.timeout(300)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - local http
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture(scope="module")
def service_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The users service on a free port, on a fresh SQLite file, until the module ends."""
    folder = tmp_path_factory.mktemp("load")
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite+aiosqlite:///{folder / 'users.db'}",
        "LOG_LEVEL": "WARNING",
    }
    env.pop("REDIS_URL", None)
    log = (folder / "app.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "--port", str(port)],
        cwd=folder,  # from any working directory
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: process.poll() is not None or _answers(f"{url}/health/ready"),
            timeout=60,
            what="the service to answer /health/ready",
        )
        assert process.poll() is None, (folder / "app.log").read_text()
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def _locust(url: str, tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> list[dict]:  # type: ignore[type-arg]
    stats_file = tmp_path / "stats.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "locust",
            "--headless",
            "--only-summary",
            "--host",
            url,
            "--json-file",
            str(stats_file.with_suffix("")),
            *args,
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "LOAD_IDS": "60", **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "LOAD SUMMARY" in output
    stats: list[dict] = json.loads(stats_file.read_text())  # type: ignore[type-arg]
    return stats


@pytest.mark.parametrize(
    "user_class", ["ReadUser", "ListUser", "WriteUser", "MixedUser", "PoolUser"]
)
def test_each_scenario_sends_requests_without_a_failure(
    service_url: str, tmp_path: Path, user_class: str
) -> None:
    stats = _locust(
        service_url,
        tmp_path,
        "-f",
        str(LOCUSTFILES / "locustfile.py"),
        "-u",
        "8",
        "-r",
        "8",
        "-t",
        "3s",
        user_class,
    )
    assert sum(s["num_requests"] for s in stats) > 0
    assert sum(s["num_failures"] for s in stats) == 0


def test_the_spike_shape_runs_its_stages_and_stops_without_a_failure(
    service_url: str, tmp_path: Path
) -> None:
    stats = _locust(
        service_url,
        tmp_path,
        "-f",
        str(LOCUSTFILES / "spike.py"),
        env={"LOAD_STAGE_SECONDS": "1", "LOAD_SPIKE_USERS": "20"},
    )
    assert sum(s["num_requests"] for s in stats) > 0
    assert sum(s["num_failures"] for s in stats) == 0
