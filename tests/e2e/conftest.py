"""Fixtures of the DNS provider tests: the DKIM keys they publish."""

from __future__ import annotations

import pytest

from mailstack.material.dkim import DkimKey, generate_dkim_key


@pytest.fixture(scope="module")
def keys() -> tuple[DkimKey, DkimKey]:
    """Two keys for selector mail2026: the one published first and the one that replaces it."""
    return generate_dkim_key("mail2026", "rsa2048"), generate_dkim_key("mail2026", "rsa2048")
