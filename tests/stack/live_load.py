"""Load for the live stack test: the locust scenarios, headless, plus the few requests
that the scenarios never send but a dashboard panel shows (a read forced to the primary).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.stack.live_stack import http_get
from tests.support.process import wait_until

__all__ = ["LOCUSTFILE", "force_primary_read", "read_until_cache_hit", "run_locust"]

ROOT = Path(__file__).resolve().parents[2]
LOCUSTFILE = ROOT / "tests" / "load" / "locustfile.py"


def run_locust(
    url: str,
    work_dir: Path,
    *,
    user_classes: Sequence[str],
    users: int,
    seconds: int,
    env: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Run ``user_classes`` of the locustfile against ``url``; the per-request stats.

    Raises ``AssertionError`` with locust's output when it exits non-zero (any failed
    request does that: the scenarios fail on every unexpected status).
    """
    stats_file = work_dir / "locust-stats.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "locust",
            "--headless",
            "--only-summary",
            *("-f", str(LOCUSTFILE), "--host", url),
            *("-u", str(users), "-r", str(users), "-t", f"{seconds}s"),
            *("--json-file", str(stats_file.with_suffix(""))),
            *user_classes,
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=False,
    )
    output = done.stdout + done.stderr
    if done.returncode != 0:
        raise AssertionError(f"locust exited {done.returncode}:\n{output[-4000:]}")
    stats: list[dict[str, Any]] = json.loads(stats_file.read_text())
    return stats


def force_primary_read(url: str) -> int:
    """List one page with ``X-Force-Primary: true`` (a fallback, reason ``forced``)."""
    status, body = http_get(f"{url}/api/v1/users/?limit=5", {"X-Force-Primary": "true"})
    if status != 200:
        raise AssertionError(f"forced-primary read answered {status}: {body[:300]!r}")
    return len(json.loads(body)["items"])


def read_until_cache_hit(url: str, *, timeout: float = 20.0) -> None:
    """Read one user by id until the answer comes from the cache (``X-Cache: hit``).

    The load is write-heavy by design (its listings are invalidated all the time, and the
    users it reads were just created, so their keys are fenced for the replica lag bound
    + 1 s): whether it also produced a hit is a matter of timing. This makes one certain,
    so the cache dashboards always have a hit to show."""
    status, body = http_get(f"{url}/api/v1/users/?limit=1")
    if status != 200 or not json.loads(body)["items"]:
        raise AssertionError(f"no user to read: {status} {body[:300]!r}")
    user_url = f"{url}/api/v1/users/{json.loads(body)['items'][0]['id']}"

    def hit() -> bool:
        with urllib.request.urlopen(user_url, timeout=10) as response:  # noqa: S310 - loopback
            return bool(response.headers.get("x-cache") == "hit")

    wait_until(hit, timeout=timeout, what="a read served from the cache")
