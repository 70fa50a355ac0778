"""Cache keys: built from named arguments only, stable across processes, never repr."""

from __future__ import annotations

import enum
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import pytest

from building_blocks.cache import KeyTemplate, key_part

USER_ID = UUID("12345678-1234-5678-1234-567812345678")


async def load_user(user_id: UUID, *, include_deleted: bool = False) -> None:
    return None


async def load_page(is_active: bool | None, limit: int = 50, cursor: str | None = None) -> None:
    return None


class Color(enum.Enum):
    RED = "red"


def test_key_takes_arguments_by_position_keyword_or_default() -> None:
    template = KeyTemplate("user:{user_id}:{include_deleted}", load_user)
    expected = f"user:{USER_ID}:false"
    assert template.format((USER_ID,), {}) == expected
    assert template.format((), {"user_id": USER_ID}) == expected
    assert template.format((USER_ID,), {"include_deleted": True}) == f"user:{USER_ID}:true"


def test_none_bool_and_strings_never_collide() -> None:
    template = KeyTemplate("users:{is_active}:{limit}:{cursor}", load_page)
    keys = {
        template.format((None,), {}),
        template.format((True,), {}),
        template.format((None, 50, "~"), {}),
        template.format((None, 50, "true"), {}),
        template.format((None, 50, ""), {}),
    }
    assert len(keys) == 5


def test_separators_inside_values_are_escaped() -> None:
    async def load(a: str, b: str) -> None:
        return None

    template = KeyTemplate("{a}:{b}", load)
    assert template.format(("1:2", "3"), {}) != template.format(("1", "2:3"), {})
    assert ":" not in key_part("a:b")


def test_objects_without_a_stable_text_form_are_refused_without_repr() -> None:
    class Repository:
        def __repr__(self) -> str:
            return "<Repository SECRET>"

    async def load(repo: object) -> None:
        return None

    with pytest.raises(TypeError) as error:
        KeyTemplate("x:{repo}", load).format((Repository(),), {})
    assert "SECRET" not in str(error.value)


def test_template_fields_must_be_parameters_of_the_loader() -> None:
    with pytest.raises(ValueError, match="not a parameter"):
        KeyTemplate("user:{id}", load_user)
    with pytest.raises(ValueError, match="format specs"):
        KeyTemplate("user:{user_id!r}", load_user)


def test_supported_types_have_fixed_spellings() -> None:
    when = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert key_part(when) == "2024-01-02T03:04:05+00:00"
    assert key_part(Color.RED) == "red"
    assert key_part(USER_ID) == "12345678-1234-5678-1234-567812345678"
    assert key_part("Alice@X.com") == "Alice%40X.com"


def test_keys_are_the_same_in_another_process() -> None:
    """A key computed in a fresh interpreter (other hash seed) equals this process's."""
    template = KeyTemplate("users:{is_active}:{limit}:{cursor}", load_page)
    here = template.format((True, 20, "abc:déf/~"), {})
    code = (
        "from tests.unit.cache.test_keys import KeyTemplate, load_page\n"
        "print(KeyTemplate('users:{is_active}:{limit}:{cursor}', load_page)"
        ".format((True, 20, 'abc:déf/~'), {}))"
    )
    root = Path(__file__).resolve().parents[3]
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(root)}
    there = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env, cwd=root
    ).stdout.strip()
    assert there == here
