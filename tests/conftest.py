"""pytest fixtures shared by all test folders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mailstack.api.assemble import MailService
from mailstack.pipeline import Prepared
from tests.support import render_examples


@pytest.fixture(scope="session")
def example_rendering(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Prepared, list[dict[str, Any]]]:
    """examples/ prepared and rendered with the fixture material (session-wide)."""
    return render_examples(tmp_path_factory.mktemp("render"))


@pytest.fixture(scope="session")
def example_render(
    example_rendering: tuple[Prepared, list[dict[str, Any]]],
) -> list[dict[str, Any]]:
    """The objects rendered from examples/ with the fixture material (session-wide)."""
    return example_rendering[1]


@pytest.fixture(scope="session")
def example_services(example_rendering: tuple[Prepared, list[dict[str, Any]]]) -> list[MailService]:
    """The example's MailServices, as rendered (session-wide)."""
    return [service for service, _ in example_rendering[0].services]


@pytest.fixture(scope="session")
def example_files(
    example_render: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """The example's ConfigMaps and Secrets written out as files: "ns/name" → folder."""
    from tests.support import materialise

    return materialise(example_render, tmp_path_factory.mktemp("files"))
