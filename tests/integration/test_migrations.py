"""Migrations: they create exactly the schema the code declares, on every backend, and
several instances starting at once apply them exactly once."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import create_async_engine

from app.users.tables import metadata
from tests.support import PostgresServer
from tests.support.app_process import REPO_ROOT, AppProcess


def _diff(conn: Connection) -> list[object]:
    context = MigrationContext.configure(conn, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


@pytest.mark.parametrize("backend", ["sqlite", "postgresql", "mariadb"])
def test_migrated_schema_matches_the_declared_tables(
    backend: str, request: pytest.FixtureRequest
) -> None:
    # A sync test: the URL fixtures run migrations with asyncio.run(), outside any loop.
    url: str = request.getfixturevalue(f"{backend}_url")

    async def diff() -> list[object]:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(_diff)
        finally:
            await engine.dispose()

    assert asyncio.run(diff()) == []


def test_concurrent_starts_apply_each_migration_once(
    pg_primary: PostgresServer,
) -> None:
    pg_primary.create_database("concurrent_migrations")
    url = pg_primary.url(database="concurrent_migrations")
    code = "import sys; from app.migrations import upgrade_sync; upgrade_sync(sys.argv[1])"
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", code, url], cwd=REPO_ROOT, stderr=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    errors = [(run.wait(timeout=120), run.stderr.read() if run.stderr else "") for run in runs]
    assert [code for code, _ in errors] == [0, 0, 0, 0], errors
    versions = pg_primary.psql(
        "SELECT version_num FROM alembic_version", database="concurrent_migrations"
    )
    assert versions.split() == ["0001"]


async def test_python_m_app_with_no_env_serves_on_a_sqlite_file(tmp_path: Path) -> None:
    """The embedded default: no DATABASE_URL, from an unrelated working directory."""
    with AppProcess(
        {"XDG_DATA_HOME": str(tmp_path / "data")}, log_path=tmp_path / "app.log"
    ) as app:
        assert (tmp_path / "data" / "fastapi-building-blocks" / "users.db").exists()
        assert f"users service on {app.base_url}" in app.log_tail()
    engine = create_async_engine(
        f"sqlite+aiosqlite:///{tmp_path / 'data' / 'fastapi-building-blocks' / 'users.db'}"
    )
    async with engine.connect() as conn:
        version = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
    await engine.dispose()
    assert version == "0001"
