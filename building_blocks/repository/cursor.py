"""Opaque keyset-pagination cursors, shared by the SQL and in-memory repositories.

A cursor carries the sort keys of the last row of a page and the order it was made for,
so a cursor replayed against another order is refused instead of silently skipping rows.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson

from building_blocks.errors import InvalidQueryError

__all__ = ["decode_cursor", "encode_cursor"]

_TAGGED: dict[str, Any] = {"dt": datetime.fromisoformat, "uuid": uuid.UUID, "dec": Decimal}


def _tag(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"dt": value.isoformat()}
    if isinstance(value, uuid.UUID):
        return {"uuid": str(value)}
    if isinstance(value, Decimal):
        return {"dec": str(value)}
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise TypeError(f"cannot put a {type(value).__name__} in a cursor")


def _untag(value: Any) -> Any:
    if isinstance(value, dict) and len(value) == 1:
        ((tag, raw),) = value.items()
        return _TAGGED[tag](raw)
    return value


def encode_cursor(order: Sequence[tuple[str, bool]], values: Sequence[Any]) -> str:
    payload = {
        "o": [("-" if desc else "") + name for name, desc in order],
        "v": [_tag(v) for v in values],
    }
    return base64.urlsafe_b64encode(orjson.dumps(payload)).decode().rstrip("=")


def decode_cursor(cursor: str, order: Sequence[tuple[str, bool]]) -> list[Any]:
    """The sort-key values in ``cursor``; `InvalidQueryError` for anything malformed."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        payload = orjson.loads(raw)
        expected = [("-" if desc else "") + name for name, desc in order]
        if not isinstance(payload, dict) or payload.get("o") != expected:
            raise InvalidQueryError("cursor does not belong to this listing order")
        values = [_untag(v) for v in payload["v"]]
    except InvalidQueryError:
        raise
    except (binascii.Error, orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise InvalidQueryError("malformed cursor") from exc
    if len(values) != len(order):
        raise InvalidQueryError("malformed cursor")
    return values
