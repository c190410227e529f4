"""A small reader that walks a raw document, validating as it goes and collecting problems.

It knows the field path at every step, rejects unknown fields (a typo must not silently become a
default) and turns ``FieldError`` from the validators into ``Problem`` objects that name the
document and the path. Missing optional fields yield the default given by the caller.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from mailstack.api.errors import FieldError, Problem

T = TypeVar("T")

_MISSING: Any = object()


def join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    if any(ord(c) < 32 or ord(c) == 127 for c in key):
        return f"{path}[{key!r}]"
    return f"{path}.{key}" if path else key


class Reader:
    """Collects problems for one document."""

    def __init__(self, document: str, source: str = "") -> None:
        self.document = document
        self.source = source
        self.problems: list[Problem] = []

    def fail(self, path: str, message: str) -> None:
        self.problems.append(Problem(self.document, path, message, self.source))

    def mapping(
        self, value: object, path: str, allowed: frozenset[str] | set[str]
    ) -> dict[str, Any]:
        """A mapping whose keys are all known; returns {} (after noting a problem) otherwise."""
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.fail(path, f"expected a mapping, got {_kind(value)}")
            return {}
        result: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                self.fail(path, f"field names must be strings, got {key!r}")
                continue
            if key not in allowed:
                known = ", ".join(sorted(allowed)) or "none"
                self.fail(join(path, key), f"unknown field (known fields here: {known})")
                continue
            result[key] = item
        return result

    def field(
        self,
        mapping: Mapping[str, Any],
        key: str,
        path: str,
        validate: Callable[[Any], T],
        default: T = _MISSING,
    ) -> T:
        """One field, validated; a missing required field or a bad value is noted as a problem."""
        where = join(path, key)
        if key not in mapping or mapping[key] is None:
            if default is _MISSING:
                self.fail(where, "is required")
                return _MISSING  # type: ignore[no-any-return,unused-ignore]
            return default
        try:
            return validate(mapping[key])
        except FieldError as err:
            self.fail(where, err.message)
            return default if default is not _MISSING else _MISSING  # type: ignore[no-any-return,unused-ignore]

    def items(
        self,
        mapping: Mapping[str, Any],
        key: str,
        path: str,
        validate: Callable[[Any], T],
        max_items: int | None = None,
    ) -> tuple[T, ...]:
        """A list field; each item validated on its own, duplicates refused."""
        where = join(path, key)
        result: list[T] = []
        for index, item in enumerate(self.listed(mapping.get(key), where, max_items)):
            try:
                checked = validate(item)
            except FieldError as err:
                self.fail(join(where, index), err.message)
                continue
            if checked in result:
                self.fail(join(where, index), f"{item!r} is listed twice")
                continue
            result.append(checked)
        return tuple(result)

    def listed(self, value: object, path: str, max_items: int | None = None) -> list[Any]:
        """The items of a list (none when it is missing); a longer list is noted as a problem."""
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(path, f"expected a list, got {_kind(value)}")
            return []
        if max_items is not None and len(value) > max_items:
            self.fail(path, f"at most {max_items} items, got {len(value)}")
        return value

    @staticmethod
    def present(value: object) -> bool:
        return value is not _MISSING


def _kind(value: object) -> str:
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    if value is None:
        return "nothing"
    return f"{type(value).__name__} {value!r}"


def boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise FieldError(f"expected true or false, got {_kind(value)}")
    return value


def string(value: object) -> str:
    if not isinstance(value, str):
        raise FieldError(f"expected a string, got {_kind(value)}")
    return value


def integer(low: int, high: int) -> Callable[[object], int]:
    def check(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise FieldError(f"expected an integer from {low} to {high}, got {_kind(value)}")
        if not low <= value <= high:
            raise FieldError(f"expected an integer from {low} to {high}, got {value}")
        return value

    return check


def number(low: float, high: float) -> Callable[[object], float]:
    def check(value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise FieldError(f"expected a number from {low} to {high}, got {_kind(value)}")
        if not low <= value <= high:
            raise FieldError(f"expected a number from {low} to {high}, got {value}")
        return float(value)

    return check


def one_of(*choices: str) -> Callable[[object], Any]:
    def check(value: object) -> str:
        if value not in choices:
            raise FieldError(f"expected one of {', '.join(choices)}; got {_kind(value)}")
        return str(value)

    return check
