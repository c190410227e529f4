"""Kubernetes resource quantities (the cpu and memory of a container): the syntax accepted, the
value, the bound, and the canonical form.

Owns ``quantity`` (the validator) and ``quantity_value``. The API server stores a quantity in its
canonical form and hands that back (``1024Mi`` comes back as ``1Gi``, ``0.5`` as ``500m``). The
operator decides whether a StatefulSet needs a write by comparing what it renders with what the
server holds, so it must render the canonical form itself, or every pass would rewrite an
unchanged object: ``canonical`` follows apimachinery's ``Quantity.CanonicalizeBytes``.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

from mailstack.api.errors import FieldError

# A subset of Kubernetes' grammar: no sign, no exponent (1e3), no E/Ei (beyond the bound anyway).
QUANTITY = re.compile(r"^([0-9]+(\.[0-9]+)?|\.[0-9]+)([numkMGTP]|[KMGTP]i)?$")
MAX_LENGTH = 32
MAX_VALUE = 10**15  # 1P: far beyond any node, and it keeps every canonical form in the SI table
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15}
_BINARY = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50}
_DECIMAL_SUFFIX = {exponent: suffix for suffix, exponent in _DECIMAL.items()}
_BINARY_SUFFIX = ["", "Ki", "Mi", "Gi", "Ti", "Pi"]
_NANO = 10**9


def _split(text: str) -> tuple[str, str]:
    match = QUANTITY.fullmatch(text)
    if not match or len(text) > MAX_LENGTH:
        raise FieldError(
            f"{text[:40]!r} is not a Kubernetes quantity: a number with an optional unit, "
            "n, u, m, k, M, G, T, P (powers of 1000) or Ki, Mi, Gi, Ti, Pi (powers of 1024), "
            "e.g. 250m, 0.5, 512Mi, 2Gi"
        )
    suffix = match.group(3) or ""
    return text[: len(text) - len(suffix)], suffix


def _factor(suffix: str) -> Fraction:
    if suffix in _BINARY:
        return Fraction(2 ** _BINARY[suffix])
    return Fraction(10) ** _DECIMAL[suffix]


def _within_bound(number: str, suffix: str) -> bool:
    """The bound as the CRD's CEL rule computes it (doubles), so that both draw it alike."""
    factor = float(2 ** _BINARY[suffix]) if suffix in _BINARY else float(f"1e{_DECIMAL[suffix]}")
    return float(number) * factor <= float(MAX_VALUE)


def quantity_value(text: str) -> Fraction:
    """The exact value of a quantity accepted by ``quantity``."""
    number, suffix = _split(text)
    return Fraction(number) * _factor(suffix)


def canonical(text: str) -> str:
    """The form the API server stores, as apimachinery writes it: values are rounded up to
    nano units; a binary unit is kept for integers of at least 1024 (with the largest unit that
    divides them), anything else gets the largest SI unit that leaves an integer."""
    number, suffix = _split(text)
    nanos = math.ceil(Fraction(number) * _factor(suffix) * _NANO)
    if nanos == 0:
        return "0"
    if suffix in _BINARY and nanos % _NANO == 0 and nanos >= 1024 * _NANO:
        mantissa, power = nanos // _NANO, 0
        while mantissa % 1024 == 0 and power < len(_BINARY_SUFFIX) - 1:
            mantissa, power = mantissa // 1024, power + 1
        return f"{mantissa}{_BINARY_SUFFIX[power]}"
    mantissa, exponent = nanos, -9
    while mantissa % 10 == 0:
        mantissa, exponent = mantissa // 10, exponent + 1
    while exponent % 3:
        mantissa, exponent = mantissa * 10, exponent - 1
    return f"{mantissa}{_DECIMAL_SUFFIX[exponent]}"


def quantity(value: object) -> str:
    """A non-negative quantity of at most 1P, as a string or an integer; returns its canonical
    form."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        hint = f" (write it as a string, e.g. {str(value)!r})" if isinstance(value, float) else ""
        raise FieldError(f"expected a quantity such as 500m or 1Gi, got {value!r}{hint}")
    if isinstance(value, int):
        if not 0 <= value <= MAX_VALUE:
            raise FieldError(f"{value} is out of range: expected 0 to {MAX_VALUE}")
        return canonical(str(value))
    number, suffix = _split(value)
    if not _within_bound(number, suffix):
        raise FieldError(f"{value!r} is out of range: at most 1P")
    return canonical(value)
