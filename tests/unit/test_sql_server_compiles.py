"""SQL Server: no server exists on CI, so prove every statement compiles for its dialect."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime

from alembic import command
from sqlalchemy.dialects import mssql
from sqlalchemy.engine import Dialect

from app.migrations import alembic_config
from app.users.domain import User
from app.users.repository import SqlUserRepository
from building_blocks.db.testing import CompilingConnection

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _sql_server() -> Dialect:
    dialect: Dialect = mssql.dialect()  # type: ignore[no-untyped-call]  # untyped in stubs
    return dialect


def _user(n: int) -> User:
    return User(uuid.uuid4(), "A", "B", f"u{n}@x.io", f"user{n}", True, NOW, NOW)


async def test_every_repository_operation_compiles_for_sql_server() -> None:
    conn = CompilingConnection(_sql_server())
    repo = SqlUserRepository(conn)
    user = _user(1)
    await repo.get_or_none(user.id)
    await repo.get_many([user.id, uuid.uuid4()])
    await repo.list(filters={"is_active": True}, limit=10, offset=5)
    await repo.count(filters={"is_active": [True, False]})
    await repo.exists(user.id)
    await repo.add(user)
    await repo.add_many([_user(n) for n in range(2, 400)])
    await repo.update(user)
    await repo.delete(user.id, expected_version=1)
    await repo.get_by_email("U1@x.io")
    sql = "\n".join(conn.statements)
    # SQL Server has no LIMIT: pages are TOP, OFFSET/FETCH or ROW_NUMBER() windows.
    assert "LIMIT" not in sql
    assert any(word in sql for word in ("TOP", "FETCH", "ROW_NUMBER"))


async def test_bulk_inserts_stay_under_sql_servers_2100_parameters() -> None:
    conn = CompilingConnection(_sql_server())
    await SqlUserRepository(conn).add_many([_user(n) for n in range(1000)])
    assert len(conn.statements) > 1
    assert all(s.count("?") < 2100 for s in conn.statements)


def test_migrations_render_as_sql_server_ddl() -> None:
    config = alembic_config("mssql+aioodbc://u:p@db/users?driver=ODBC+Driver+18+for+SQL+Server")
    out = io.StringIO()
    config.output_buffer = out
    command.upgrade(config, "head", sql=True)
    ddl = out.getvalue()
    assert "CREATE TABLE users" in ddl
    assert "UNIQUEIDENTIFIER" in ddl
    assert "CONSTRAINT uq_users_email_key UNIQUE (email_key)" in ddl
