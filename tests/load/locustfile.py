"""Load scenarios for the users service, against any deployment (``--host``).

Pick one by user class (``make loadtest SCENARIO=read``, or name the class after
``locust -f tests/load/locustfile.py``); the spike lives in ``spike.py`` (it brings its own
load shape). Tasks are also tagged (``--tags read write``) for filtering the mixed profile.

    ReadUser       get by id; LOAD_HOT_SHARE of reads hit a small hot set (cache hits)
    ListUser       list pages, following next_cursor to the end and starting over
    WriteUser      create, update with If-Match (its ETag), delete with If-Match
    MixedUser      a realistic blend: mostly reads, some lists, a few writes
    PoolUser       pool exhaustion: more concurrent slow reads (pages of 100) than the
                   pool has connections; expect waiting, not failures

Every scenario fails a request on any unexpected status, so a run with failures exits 1.
"""

from __future__ import annotations

from typing import Any

from locust import FastHttpUser, between, constant, events, tag, task

from tests.load.data import API, IdPool, new_user_body
from tests.load.summary import print_summary

ids = IdPool()
events.quitting.add_listener(print_summary)  # type: ignore[no-untyped-call]  # locust is untyped here


def _get_user(user: FastHttpUser) -> None:
    with user.client.get(
        f"{API}{ids.pick()}", name=f"{API}{{id}}", catch_response=True
    ) as response:
        if response.status_code != 200:
            response.failure(f"get by id answered {response.status_code}")


class _Users(FastHttpUser):
    abstract = True

    def on_start(self) -> None:
        ids.ensure(self.client)


class ReadUser(_Users):
    """Get by id, hot set vs cold ids (see `IdPool`)."""

    wait_time = constant(0)

    @tag("read")
    @task
    def get_by_id(self) -> None:
        _get_user(self)


class _Pages:
    """A cursor walk over the list: each call reads the next page, restarting at the end."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.cursor: str | None = None

    def next(self, user: FastHttpUser, name: str) -> None:
        query = f"{API}?limit={self.limit}" + (f"&cursor={self.cursor}" if self.cursor else "")
        with user.client.get(query, name=name, catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"list answered {response.status_code}")
                self.cursor = None
                return
            self.cursor = response.json()["next_cursor"]


class ListUser(_Users):
    wait_time = constant(0)

    def on_start(self) -> None:
        self.pages = _Pages(limit=50)

    @tag("list")
    @task
    def list_page(self) -> None:
        self.pages.next(self, f"{API}?limit=50[&cursor]")


def _etag(response: Any) -> str:
    return str(response.headers["ETag"])


def _write_cycle(user: FastHttpUser) -> None:
    """Create a user, change it under its ETag, delete it under the new ETag."""
    created = user.client.post(API, json=new_user_body(transient=True), name=API)
    if created.status_code != 201:
        return  # FastHttpUser already counted the non-2xx as a failure
    user_id, etag = created.json()["id"], _etag(created)
    path, name = f"{API}{user_id}", f"{API}{{id}}"
    changed = user.client.patch(
        path, json={"last_name": "Changed"}, headers={"If-Match": etag}, name=name
    )
    if changed.status_code != 200:
        return
    user.client.delete(path, headers={"If-Match": _etag(changed)}, name=name)


class WriteUser(_Users):
    wait_time = constant(0)

    def on_start(self) -> None:
        pass  # writes bring their own data

    @tag("write")
    @task
    def write_cycle(self) -> None:
        _write_cycle(self)


class MixedUser(_Users):
    """Roughly what a users API sees: reads dominate, writes are a few percent."""

    wait_time = between(0.05, 0.5)

    def on_start(self) -> None:
        super().on_start()
        self.pages = _Pages(limit=20)

    @tag("read")
    @task(16)
    def get_by_id(self) -> None:
        _get_user(self)

    @tag("list")
    @task(3)
    def list_page(self) -> None:
        self.pages.next(self, f"{API}?limit=20[&cursor]")

    @tag("write")
    @task(1)
    def write_cycle(self) -> None:
        _write_cycle(self)


class PoolUser(_Users):
    """Pages of 100 rows as fast as possible: run with more users than the pool has
    connections (5 + 10 by default), e.g. ``USERS=64``, to queue requests on the pool."""

    wait_time = constant(0)

    def on_start(self) -> None:
        self.pages = _Pages(limit=100)

    @tag("pool")
    @task
    def list_big_page(self) -> None:
        self.pages.next(self, f"{API}?limit=100[&cursor]")


__all__ = ["ListUser", "MixedUser", "PoolUser", "ReadUser", "WriteUser"]
