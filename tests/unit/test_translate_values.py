"""Values a database cannot represent become `InvalidValueError` (a 422), whichever path
the driver error takes: raw asyncpg (direct reads) or wrapped by SQLAlchemy (MySQL)."""

from __future__ import annotations

import asyncpg
import pymysql
import pytest
from sqlalchemy import exc as sa_exc

from building_blocks.db.translate import translate_error
from building_blocks.errors import InvalidQueryError, InvalidValueError, UnavailableError


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.exceptions.CharacterNotInRepertoireError('invalid byte sequence for "UTF8": 0x00'),
        asyncpg.exceptions.UntranslatableCharacterError("cannot be converted to LATIN1"),
    ],
)
def test_a_postgresql_encoding_error_is_an_invalid_value(error: Exception) -> None:
    translated = translate_error(error, dialect="postgresql", pool="primary")
    assert isinstance(translated, InvalidValueError)
    assert isinstance(translated, InvalidQueryError)  # so the API answers 422


@pytest.mark.parametrize("code", [1366, 1300])
def test_a_mysql_incorrect_string_value_is_an_invalid_value(code: int) -> None:
    driver = pymysql.err.DataError(code, "Incorrect string value: '\\xF0\\x9F...'")
    wrapped = sa_exc.DBAPIError("INSERT INTO users ...", {}, driver)
    assert isinstance(translate_error(wrapped, dialect="mysql", pool="primary"), InvalidValueError)


def test_a_disconnect_is_still_unavailable_not_an_invalid_value() -> None:
    gone = asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed")
    translated = translate_error(gone, dialect="postgresql", pool="primary")
    assert isinstance(translated, UnavailableError)
    assert not isinstance(translated, InvalidValueError)
