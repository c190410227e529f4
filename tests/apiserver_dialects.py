"""What the Kubernetes API server evaluates differently from Python, for the CRD checks.

Schema ``pattern``s are RE2 (Python's ``$`` also matches before a final newline; RE2's does not),
and CEL rules may use the strings extension (``indexOf``, ``substring``; indices in code points).
Shared by the CRD unit tests and the component tests' API server emulator.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

import celpy
import jsonschema
import re2
from celpy import celtypes


def _re2_pattern(
    validator: Any, pattern: str, instance: Any, schema: dict[str, Any]
) -> Iterator[jsonschema.ValidationError]:
    if validator.is_type(instance, "string") and not re2.search(pattern, instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


# A JSON Schema validator whose ``pattern`` keyword is RE2, as the API server's.
RE2Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator, {"pattern": _re2_pattern}
)


def _index_of(text: Any, sub: Any) -> celtypes.IntType:
    return celtypes.IntType(str(text).find(str(sub)))


def _substring(text: Any, start: Any, end: Any = None) -> celtypes.StringType:
    s, b = str(text), int(start)
    e = len(s) if end is None else int(end)
    if not 0 <= b <= e <= len(s):
        raise ValueError(f"substring({b}, {e}) out of range for a string of {len(s)}")
    return celtypes.StringType(s[b:e])


_CEL_ENV = celpy.Environment()
_CEL_FUNCTIONS: dict[str, Callable[..., Any]] = {"indexOf": _index_of, "substring": _substring}


@functools.cache
def cel_program(expression: str) -> Any:
    """A compiled CEL rule with the strings-extension functions the CRD rules use."""
    return _CEL_ENV.program(_CEL_ENV.compile(expression), functions=_CEL_FUNCTIONS)
