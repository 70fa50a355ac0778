"""Property-based fuzzing of every route from the OpenAPI schema, against the real server
(``python -m app``) on PostgreSQL: no 500, no undocumented status, responses matching their
schemas, valid data accepted and invalid data rejected, stateful sequences included.

PostgreSQL rather than the embedded SQLite: it is the production database, and the stricter
one (a NUL in a filter was a 500 there and an empty answer on SQLite). The other backends'
handling of hostile strings is pinned by test_bad_input.py.

``SCHEMATHESIS_MAX_EXAMPLES`` (default 500: about 2,200 cases, under a minute on two
cores) sets the examples per operation. Runs the schemathesis CLI: its pytest plugin does
not support this project's pytest yet.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import PostgresServer
from tests.support.app_process import AppProcess

EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "500"))

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def live_app(
    tmp_path_factory: pytest.TempPathFactory, pg_primary: PostgresServer
) -> Iterator[AppProcess]:
    folder = tmp_path_factory.mktemp("schemathesis")
    pg_primary.create_database("fuzz")  # the app migrates it at start-up
    env = {"DATABASE_URL": pg_primary.url(database="fuzz"), "LOG_LEVEL": "WARNING"}
    with AppProcess(env, log_path=folder / "app.log") as app:
        yield app


def test_no_route_answers_500_or_breaks_its_documented_contract(
    live_app: AppProcess, tmp_path: Path
) -> None:
    cli = Path(sys.executable).with_name("schemathesis")
    result = subprocess.run(
        [
            str(cli), "run", f"{live_app.base_url}/openapi.json",
            "--checks", "all",
            "--exclude-checks", "ignored_auth,object_level_authorization",  # no auth here
            "--max-examples", str(EXAMPLES),
            "--seed", "20261126",
            "--workers", "2",
            "--request-timeout", "10",
            "--no-color",
            "--report", "junit", "--report-dir", str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )  # fmt: skip
    summary = result.stdout[-6000:]
    assert result.returncode == 0, (
        f"{summary}\n{result.stderr[-2000:]}\n--- app log ---\n{live_app.log_tail()}"
    )
    assert "passed" in summary.lower()
    generated = re.search(r"(\d+) generated", summary)
    print(f"\nschemathesis: {generated.group(1) if generated else '?'} cases")
