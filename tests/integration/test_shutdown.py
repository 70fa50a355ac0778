"""Graceful shutdown: SIGTERM under load lets accepted requests finish, loses no
acknowledged write, and exits 0."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import uuid
from pathlib import Path

import httpx

from tests.support.app_process import AppProcess


async def test_sigterm_during_writes_finishes_in_flight_requests_and_exits_zero(
    tmp_path: Path,
) -> None:
    db = tmp_path / "shutdown.db"
    app = AppProcess({"DATABASE_URL": f"sqlite+aiosqlite:///{db}"}, log_path=tmp_path / "app.log")
    app.start()
    acknowledged: list[str] = []
    failures: list[str] = []
    under_way = asyncio.Event()

    async def create(client: httpx.AsyncClient, n: int) -> None:
        user_id = str(uuid.uuid4())
        body = {
            "id": user_id,
            "first_name": "F",
            "last_name": "L",
            "email": f"u{n}@x.io",
            "username": f"user{n}",
        }
        try:
            response = await client.post(f"{app.base_url}/api/v1/users/", json=body)
        except httpx.TransportError:
            return  # refused or cut before the request was accepted: not acknowledged
        if response.status_code == 201:
            acknowledged.append(user_id)
            if len(acknowledged) >= 50:
                under_way.set()
        elif response.status_code != 503:
            failures.append(f"{response.status_code} {response.text}")

    limits = httpx.Limits(max_connections=50)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        tasks = [asyncio.create_task(create(client, n)) for n in range(400)]
        await asyncio.wait_for(under_way.wait(), timeout=30)
        assert app.process is not None
        app.process.send_signal(signal.SIGTERM)
        await asyncio.gather(*tasks)
        exit_code = await asyncio.to_thread(app.process.wait, 30)

    assert exit_code == 0, app.log_tail()
    assert failures == []
    with sqlite3.connect(db) as conn:
        stored = {row[0] for row in conn.execute("SELECT id FROM users")}
    assert {uuid.UUID(u).hex for u in acknowledged} <= stored
