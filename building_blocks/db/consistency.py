"""Read-your-writes: consistency tokens, the request's consistency scope, force-primary.

After a writing unit of work commits on the primary, the session records where the primary
was: a `ConsistencyToken`. For PostgreSQL that is a WAL position (``lsn:0/3000148``); for
dialects without one it is the commit time (``time:1712345678901``, milliseconds). A
read-only unit of work that carries a token may use a replica only if the replica has
replayed up to the token's position (or, for a time token, once the token is older than
the lag bound); otherwise it reads from the primary.

The token reaches the routing through a `ConsistencyScope` held in a context variable: the
FastAPI middleware (`building_blocks.fastapi.consistency`) opens one per request from the
``X-Consistency-Token`` header or cookie, and writes back what the request committed.
Outside HTTP, open one yourself::

    with consistency_scope() as scope:
        await service.rename(...)          # scope.committed is set by the commit
        await service.get(...)             # reads its own write

    with force_primary():                  # every unit of work in the block: primary
        ...

The API is deliberately small so that other layers (the cache) can use it: the required
position of the current request is `required_token()`, a unit of work's own commit is
``SQLAlchemyUnitOfWork.consistency_token``.
"""

from __future__ import annotations

import contextvars
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "ConsistencyScope",
    "ConsistencyToken",
    "consistency_scope",
    "current_scope",
    "force_primary",
    "format_lsn",
    "note_commit",
    "parse_lsn",
    "primary_forced",
    "required_token",
]

TokenKind = Literal["lsn", "time"]

_LSN = re.compile(r"^([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})$")
_TOKEN = re.compile(r"^(lsn|time):([0-9A-Za-z/]{1,20})$")


def parse_lsn(text: str) -> int:
    """PostgreSQL ``pg_lsn`` text (``16/B374D848``) → a comparable integer."""
    match = _LSN.match(text)
    if match is None:
        raise ValueError(f"not a WAL position: {text!r}")
    return (int(match.group(1), 16) << 32) | int(match.group(2), 16)


def format_lsn(value: int) -> str:
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


@dataclass(frozen=True, slots=True)
class ConsistencyToken:
    """A point in the primary's history that a reader must see: a WAL position or a time."""

    kind: TokenKind
    value: int  # LSN as an integer, or Unix time in milliseconds

    @classmethod
    def lsn(cls, text: str) -> ConsistencyToken:
        return cls("lsn", parse_lsn(text))

    @classmethod
    def now(cls) -> ConsistencyToken:
        return cls("time", time.time_ns() // 1_000_000)

    @classmethod
    def parse(cls, text: str | None) -> ConsistencyToken | None:
        """The token in ``text``, or ``None`` for anything else (clients may send junk)."""
        if not text:
            return None
        match = _TOKEN.match(text.strip())
        if match is None:
            return None
        kind, raw = match.group(1), match.group(2)
        try:
            if kind == "lsn":
                return cls("lsn", parse_lsn(raw))
            return cls("time", int(raw)) if raw.isdigit() else None
        except ValueError:
            return None

    def __str__(self) -> str:
        return f"lsn:{format_lsn(self.value)}" if self.kind == "lsn" else f"time:{self.value}"

    def newest(self, other: ConsistencyToken | None) -> ConsistencyToken:
        """The stricter of two tokens; of different kinds, ``other`` (the later one)."""
        if other is None:
            return self
        if other.kind != self.kind:
            return other
        return other if other.value > self.value else self


@dataclass(slots=True)
class ConsistencyScope:
    """What one request (or block of code) requires and what it committed.

    Mutable on purpose: the session updates it from inside the request's tasks, and a
    context variable *set* there would not be seen by the middleware that reads it back.
    """

    required: ConsistencyToken | None = None
    committed: ConsistencyToken | None = None
    force_primary: bool = False

    def note_commit(self, token: ConsistencyToken) -> None:
        self.committed = token.newest(self.committed)
        # Later reads of the same request must see the write too.
        self.required = token.newest(self.required)


_scope: contextvars.ContextVar[ConsistencyScope | None] = contextvars.ContextVar(
    "building_blocks_consistency_scope", default=None
)
_forced: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "building_blocks_force_primary", default=False
)


@contextmanager
def consistency_scope(
    required: ConsistencyToken | None = None, *, force_primary: bool = False
) -> Iterator[ConsistencyScope]:
    """Open a scope (one per request); nested scopes start from the enclosing one's token."""
    outer = _scope.get()
    if outer is not None:
        required = outer.required.newest(required) if outer.required else required
        force_primary = force_primary or outer.force_primary
    scope = ConsistencyScope(required=required, force_primary=force_primary)
    token = _scope.set(scope)
    try:
        yield scope
    finally:
        _scope.reset(token)
        if outer is not None and scope.committed is not None:
            outer.note_commit(scope.committed)


@contextmanager
def force_primary() -> Iterator[None]:
    """Every unit of work begun inside the block uses the primary (reads included)."""
    token = _forced.set(True)
    try:
        yield
    finally:
        _forced.reset(token)


def current_scope() -> ConsistencyScope | None:
    return _scope.get()


def required_token() -> ConsistencyToken | None:
    """The position the current request's reads must see, if any."""
    scope = _scope.get()
    return scope.required if scope is not None else None


def primary_forced() -> bool:
    scope = _scope.get()
    return _forced.get() or (scope is not None and scope.force_primary)


def note_commit(token: ConsistencyToken) -> None:
    """Record a commit in the current scope (no scope: nothing to remember it for)."""
    scope = _scope.get()
    if scope is not None:
        scope.note_commit(token)
