"""Nothing lost: a write load through ``python -m app`` rides out a primary restart, a
killed replica and a killed Redis. Every acknowledged write is stored exactly once, every
failed write was a 503 (never a 500, never a hang), and a client that re-sends its failed
creates with the same ids ends with exactly one user each."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import PASSWORD, eventually
from tests.support import PostgresReplica, PostgresServer, RedisServer
from tests.support.app_process import AppProcess
from tests.support.pytest_helpers import started

pytestmark = pytest.mark.postgres

USERS = "/api/v1/users/"
WRITERS = 4
UPDATES_PER_USER = 3
#: Every request is bounded by this; one that reaches it fails the test (a hang).
CLIENT_TIMEOUT = 10.0
REDIS_PASSWORD = "redis-Pa55word"


@dataclass
class Topology:
    primary: PostgresServer
    replica: PostgresReplica
    redis: RedisServer


@pytest.fixture
def topology(tmp_path: Path) -> Iterator[Topology]:
    """A primary, its streaming replica and a password-protected Redis of this test's own."""
    primary = started(
        lambda: PostgresServer.start_primary(tmp_path / "pg", auth="scram", password=PASSWORD)
    )
    with (
        primary,
        PostgresServer.start_replica(primary, tmp_path / "pg") as replica,
        RedisServer.start_new(tmp_path / "redis", password=REDIS_PASSWORD) as redis,
    ):
        yield Topology(primary, replica, redis)


@dataclass
class Ledger:
    """What the clients were told, to compare with what the database holds."""

    statuses: Counter[int] = field(default_factory=Counter)
    created: dict[str, dict[str, Any]] = field(default_factory=dict)  # acknowledged
    failed: dict[str, dict[str, Any]] = field(default_factory=dict)  # 503: maybe stored
    versions: dict[str, int] = field(default_factory=dict)  # last acknowledged version
    # Users whose last update failed with 503: it may have been applied (a lost answer).
    uncertain: set[str] = field(default_factory=set)
    resolved: int = 0  # 409s that showed such an update had been applied, once
    unexpected: list[str] = field(default_factory=list)
    hangs: int = 0

    @property
    def acknowledged(self) -> int:
        return self.statuses[200] + self.statuses[201]


def _body(user_id: str) -> dict[str, Any]:
    tag = user_id[:8] + user_id[-4:]
    return {
        "id": user_id,
        "first_name": "Ada",
        "last_name": "Lovelace",
        "email": f"{tag}@example.com",
        "username": f"u{tag}",
    }


class Writer:
    """One client: creates users with ids of its choosing, then updates each a few times
    with ``If-Match``; a failed update is retried, a failed create is left for later."""

    def __init__(self, client: httpx.AsyncClient, ledger: Ledger) -> None:
        self.client = client
        self.ledger = ledger

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response | None:
        try:
            response = await self.client.request(method, path, **kwargs)
        except httpx.TimeoutException:
            self.ledger.hangs += 1
            return None
        self.ledger.statuses[response.status_code] += 1
        if response.status_code == 503:
            problem = response.headers["content-type"] == "application/problem+json"
            if not (problem and int(response.headers["retry-after"]) >= 1):
                self.ledger.unexpected.append(f"503 without problem/Retry-After: {response}")
        return response

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            user_id = str(uuid.uuid4())
            body = _body(user_id)
            response = await self.request("POST", USERS, json=body)
            if response is None or response.status_code == 503:
                self.ledger.failed[user_id] = body
                await asyncio.sleep(0.05)  # client back-off, not a wait for a condition
                continue
            if response.status_code != 201:
                self.ledger.unexpected.append(f"create: {response.status_code} {response.text}")
                continue
            self.ledger.created[user_id] = body
            self.ledger.versions[user_id] = response.json()["version"]
            updated = 0
            while updated < UPDATES_PER_USER and not stop.is_set():
                updated += await self.update(user_id)

    async def update(self, user_id: str) -> int:
        """One attempt at the next update of ``user_id``; 1 when it is known applied."""
        ledger = self.ledger
        version = ledger.versions[user_id]
        response = await self.request(
            "PATCH",
            f"{USERS}{user_id}",
            json={"last_name": f"v{version + 1}"},
            headers={"If-Match": f'"{version}"'},
        )
        if response is None or response.status_code == 503:
            ledger.uncertain.add(user_id)
            await asyncio.sleep(0.05)
            return 0
        body = response.json()
        if response.status_code == 200 and body["version"] == version + 1:
            pass
        elif (
            response.status_code == 409
            and user_id in ledger.uncertain
            and body.get("current_version") == version + 1
        ):
            ledger.resolved += 1  # the failed attempt was applied after all, and once
        else:
            ledger.unexpected.append(f"update: {response.status_code} {response.text}")
            return 1
        ledger.uncertain.discard(user_id)
        ledger.versions[user_id] = version + 1
        return 1


async def _wait_for_acks(ledger: Ledger, more: int, timeout: float = 20.0) -> float:
    target = ledger.acknowledged + more
    return await eventually(lambda: ledger.acknowledged >= target, timeout=timeout)


def _stored(primary: PostgresServer) -> dict[str, tuple[int, str]]:
    rows = primary.psql("SELECT id, version, last_name FROM users").splitlines()
    stored: dict[str, tuple[int, str]] = {}
    for row in rows:
        user_id, version, last_name = row.split("|")
        assert user_id not in stored
        stored[user_id] = (int(version), last_name)
    return stored


async def test_no_acknowledged_write_is_lost_through_primary_restart_and_replica_and_redis_deaths(
    topology: Topology, tmp_path: Path
) -> None:
    env = {
        "DATABASE_URL": topology.primary.url(),
        "DATABASE_REPLICA_URLS": topology.replica.url(),
        "REDIS_URL": topology.redis.url,
        "DB_CONNECT_TIMEOUT": "2",
        "DB_STATEMENT_TIMEOUT": "5",
    }
    ledger = Ledger()
    with AppProcess(env, log_path=tmp_path / "app.log") as app:
        async with httpx.AsyncClient(base_url=app.base_url, timeout=CLIENT_TIMEOUT) as client:
            stop = asyncio.Event()
            writers = [
                asyncio.create_task(Writer(client, ledger).run(stop)) for _ in range(WRITERS)
            ]
            try:
                await _wait_for_acks(ledger, 30)
                await asyncio.to_thread(topology.primary.stop, "fast")
                failed_before = ledger.statuses[503]
                # Down long enough for every writer to be refused at least once.
                await eventually(lambda: ledger.statuses[503] >= failed_before + WRITERS)
                await asyncio.to_thread(topology.primary.start)
                primary_back = await _wait_for_acks(ledger, 30)
                await asyncio.to_thread(topology.replica.stop, "immediate")
                await _wait_for_acks(ledger, 30)
                await asyncio.to_thread(topology.redis.kill)
                await _wait_for_acks(ledger, 30)
            finally:
                stop.set()
                await asyncio.gather(*writers)

            # The client re-sends each failed create, same id and body, until it is answered.
            replays: Counter[int] = Counter()
            for body in ledger.failed.values():

                async def answered(body: dict[str, Any] = body) -> bool:
                    response = await client.post(USERS, json=body)
                    replays[response.status_code] += 1
                    return response.status_code in (200, 201)

                await eventually(answered, timeout=10)
        log = app.log_path.read_text(errors="replace")

    print(
        f"\nnothing lost: {ledger.acknowledged} acknowledged writes, {ledger.statuses[503]}"
        f" answered 503, {len(ledger.failed)} creates re-sent ({replays[200]} had been"
        f" stored: 200), {ledger.resolved} updates applied despite a 503;"
        f" first write {primary_back:.2f}s after the primary restarted"
    )
    assert ledger.hangs == 0, f"{ledger.hangs} requests ran past {CLIENT_TIMEOUT}s"
    assert not ledger.unexpected, ledger.unexpected[:5]
    assert set(ledger.statuses) <= {200, 201, 409, 503}, ledger.statuses
    assert ledger.statuses[409] == ledger.resolved
    assert ledger.statuses[503] > 0, "the faults caused no failed write: nothing was tested"
    assert "unhandled error" not in log  # what a 500 logs

    stored = _stored(topology.primary)
    # Exactly the users the client created: each acknowledged or re-sent id once, no other.
    assert set(stored) == set(ledger.created) | set(ledger.failed)
    for user_id, (version, last_name) in stored.items():
        # Each applied update set last_name to its own version: a repeat would show.
        assert last_name == ("Lovelace" if version == 1 else f"v{version}"), user_id
        acknowledged = ledger.versions.get(user_id, 1)
        maybe_applied = 1 if user_id in ledger.uncertain else 0
        assert acknowledged <= version <= acknowledged + maybe_applied, user_id
