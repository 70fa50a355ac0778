"""Cache keys from templates such as ``"user:{id}"`` and the arguments of a call.

A key is built only from the values of the parameters its template names, each turned
into text by a fixed, type-aware rule (never ``repr``, never ``hash``), so the same call
gives the same key in every process, on every machine, after every restart. Objects that
have no such rule (a repository, a unit of work, a request) are refused with `TypeError`:
a key that silently embedded ``<Repo object at 0x7f...>`` would never hit and would leak
memory in Redis.
"""

from __future__ import annotations

import enum
import inspect
import string
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote
from uuid import UUID

__all__ = ["KeyTemplate", "key_part"]

_NONE = "~"  # not produced by quote(): "~" is escaped below, so None never collides


def key_part(value: object) -> str:
    """``value`` as a key fragment; `TypeError` for types without a stable text form.

    Strings are percent-encoded (so ``:`` inside a value cannot forge another key's
    shape); bools and None have their own spellings; UUIDs use the canonical lower-case
    form; enums their value.
    """
    kind = type(value)
    if kind is UUID or kind is int:  # the common ids, exactly: no subclass surprises
        return str(value)
    if value is None:
        return _NONE
    if isinstance(value, bool):  # before int: bool is an int subclass
        return "true" if value else "false"
    if isinstance(value, str):
        return quote(value, safe="").replace("~", "%7E")
    if isinstance(value, int | Decimal):
        return str(value)
    if isinstance(value, float):
        return repr(value)  # float repr is the shortest round-trip form, stable across runs
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return key_part(value.value)
    raise TypeError(
        f"cannot build a cache key from a {type(value).__name__}: pass str, int, bool, "
        "UUID, date/datetime, Decimal, an Enum or None"
    )


class KeyTemplate:
    """A compiled ``"user:{id}"`` template bound to the signature of the function it keys.

    ``KeyTemplate("user:{user_id}", load_user).format(args, kwargs)`` → ``"user:3f2..."``.
    The fields must be parameter names of the function (checked when the template is
    made, not at the first call); attribute access or format specs are refused.
    """

    __slots__ = ("_getters", "_literals", "template")

    def __init__(self, template: str, function: Callable[..., Any]) -> None:
        self.template = template
        signature = inspect.signature(function)
        parameters = signature.parameters
        literals: list[str] = []
        getters: list[Callable[[Sequence[Any], Mapping[str, Any]], Any]] = []
        for literal, field, spec, conversion in string.Formatter().parse(template):
            literals.append(literal)
            if field is None:
                continue
            if spec or conversion:
                raise ValueError(f"cache key {template!r}: format specs are not supported")
            if field not in parameters:
                raise ValueError(
                    f"cache key {template!r}: {field!r} is not a parameter of "
                    f"{getattr(function, '__qualname__', function)!r}"
                )
            getters.append(_getter(list(parameters.values()), field))
        if not getters and not template:
            raise ValueError("a cache key template must not be empty")
        self._literals = tuple(literals)
        self._getters = tuple(getters)

    def format(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
        """The key for a call with ``args``/``kwargs`` (the function's own arguments)."""
        if len(self._getters) == 1:  # "user:{user_id}": the usual shape, on every lookup
            literals = self._literals
            tail = literals[1] if len(literals) > 1 else ""
            return literals[0] + key_part(self._getters[0](args, kwargs)) + tail
        parts: list[str] = []
        literals = self._literals
        for index, getter in enumerate(self._getters):
            parts.append(literals[index])
            parts.append(key_part(getter(args, kwargs)))
        if len(literals) > len(self._getters):
            parts.append(literals[-1])
        return "".join(parts)

    def __repr__(self) -> str:
        return f"KeyTemplate({self.template!r})"


def _getter(
    parameters: list[inspect.Parameter], name: str
) -> Callable[[Sequence[Any], Mapping[str, Any]], Any]:
    """A fast accessor for one argument: position, keyword, or default.

    Cheaper than ``Signature.bind`` on every call, which matters on the cache-hit path.
    """
    position = next(i for i, p in enumerate(parameters) if p.name == name)
    parameter = parameters[position]
    if parameter.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
        raise ValueError(f"cache key field {name!r} cannot be *args or **kwargs")
    positional = parameter.kind is not inspect.Parameter.KEYWORD_ONLY
    default = parameter.default

    def get(args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        if positional and position < len(args):
            return args[position]
        if name in kwargs:
            return kwargs[name]
        if default is inspect.Parameter.empty:
            raise TypeError(f"missing argument {name!r} for the cache key")
        return default

    return get
