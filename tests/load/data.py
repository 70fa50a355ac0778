"""Test data for the load scenarios: ids come from the deployment under test, never from
the code. The first user of a process lists the users that exist (following
``next_cursor``) and creates more when there are too few; everyone then draws from that.
"""

from __future__ import annotations

import os
import random
import threading
import uuid
from typing import Any

__all__ = ["API", "TRANSIENT_PREFIX", "IdPool", "env_float", "env_int", "new_user_body"]

API = "/api/v1/users/"
# Usernames of the users a write cycle creates and deletes again: the id pool skips them,
# or a read running beside the writes would pick an id that is about to be deleted.
TRANSIENT_PREFIX = "load-tmp-"


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def new_user_body(*, transient: bool = False) -> dict[str, Any]:
    """A valid create body whose email and username are unique (per run and user);
    ``transient`` for a user that will be deleted (see `TRANSIENT_PREFIX`)."""
    tag = uuid.uuid4().hex[:16]
    prefix = TRANSIENT_PREFIX if transient else "load-"
    return {
        "first_name": "Load",
        "last_name": f"Test {tag[:6]}",
        "email": f"{prefix}{tag}@example.com",
        "username": f"{prefix}{tag}",
    }


class IdPool:
    """Ids of users that exist, split into a small hot set and the cold rest.

    ``LOAD_IDS`` (default 500) ids are gathered: listed first, created if the deployment
    has fewer. ``LOAD_HOT_SET`` (default 50) of them are "hot"; a read picks a hot id with
    probability ``LOAD_HOT_SHARE`` (default 0.9): with a cache, that is roughly the share
    of cache hits (hot ids stay cached, cold ids are read rarely and mostly miss).
    """

    def __init__(self) -> None:
        # Locust runs users as gevent greenlets and patches threading: this lock yields.
        self._lock = threading.Lock()
        self.ids: list[str] = []
        self.hot_size = env_int("LOAD_HOT_SET", 50)
        self.hot_share = env_float("LOAD_HOT_SHARE", 0.9)

    def ensure(self, client: Any) -> None:
        """Fill the pool once per process (other users wait for the first one)."""
        if self.ids:
            return
        with self._lock:
            if self.ids:
                return
            wanted = env_int("LOAD_IDS", 500)
            found = self._listed(client, wanted)
            while len(found) < wanted:
                response = client.post(API, json=new_user_body(), name="setup: create user")
                found.append(response.json()["id"])
            random.shuffle(found)
            self.ids = found

    @staticmethod
    def _listed(client: Any, wanted: int) -> list[str]:
        found: list[str] = []
        cursor: str | None = None
        while len(found) < wanted:
            query = f"{API}?limit=100" + (f"&cursor={cursor}" if cursor else "")
            page = client.get(query, name="setup: list users").json()
            found += [
                item["id"]
                for item in page["items"]
                if not str(item.get("username", "")).startswith(TRANSIENT_PREFIX)
            ]
            cursor = page["next_cursor"]
            if not cursor:
                break
        return found[:wanted]

    def pick(self) -> str:
        """A hot id with probability ``hot_share``, otherwise a cold one."""
        hot = self.ids[: self.hot_size]
        cold = self.ids[self.hot_size :] or hot
        return random.choice(hot if random.random() < self.hot_share else cold)
