"""pytest fixtures shared by all test folders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support import render_examples


@pytest.fixture(scope="session")
def example_render(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """The objects rendered from examples/ with the fixture material (session-wide)."""
    _, objects = render_examples(tmp_path_factory.mktemp("render"))
    return objects


@pytest.fixture(scope="session")
def example_files(
    example_render: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """The example's ConfigMaps and Secrets written out as files: "ns/name" → folder."""
    from tests.support import materialise

    return materialise(example_render, tmp_path_factory.mktemp("files"))
