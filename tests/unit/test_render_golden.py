"""Golden files: the example's rendered objects and config files, and the documents its HTTPS
endpoint serves (render/web, under web/<namespace>/<name>/<host><path>), byte for byte.

Review changes to tests/golden/ by reading them: they are the configs that run in production.
Refresh with ``UPDATE_GOLDEN=1 pytest tests/unit/test_render_golden.py``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from mailstack.api.assemble import MailService
from mailstack.render.web import site
from mailstack.render.web.autodiscover import JSON_PATH, POX_PATHS
from mailstack.render.yamlio import dump_objects, object_file_name
from tests.support import GOLDEN, UPDATE_GOLDEN, config_files, pox_request, render_examples


def _expected_tree(objects: list[dict[str, Any]]) -> dict[str, bytes]:
    tree: dict[str, bytes] = {}
    for obj in objects:
        tree[f"objects/{object_file_name(obj)}"] = dump_objects([obj]).encode()
        meta = obj["metadata"]
        for key, data in config_files(obj).items():
            tree[f"files/{meta['namespace']}/{meta['name']}/{key}"] = data
    return tree


def _web_tree(services: list[MailService]) -> dict[str, bytes]:
    """Each service's static documents, and the Autodiscover answers (POX to a POST for the
    first mailbox, or for postmaster without one; JSON v2 for AutodiscoverV1)."""
    tree: dict[str, bytes] = {}
    for service in services:
        folder = f"web/{service.domain.namespace}/{service.domain.name}"
        for (host, path), (_, body) in site.static_documents(service).items():
            tree[f"{folder}/{host}{path}"] = body
        host = f"autodiscover.{service.domain.domain}"
        if host not in site.web_hosts(service):
            continue
        boxes = service.mailboxes
        address = boxes[0].address if boxes else f"postmaster@{service.domain.domain}"
        answers = {
            POX_PATHS[0]: site.WebRequest("POST", host, POX_PATHS[0], body=pox_request(address)),
            JSON_PATH: site.WebRequest(
                "GET", host, JSON_PATH, query=f"Email={address}&Protocol=AutodiscoverV1"
            ),
        }
        for path, request in answers.items():
            response = site.respond(service, request)
            assert response.status == 200, response.body
            tree[f"{folder}/{host}{path}"] = response.body
    return tree


def _actual_tree(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def test_golden_files_match(
    example_render: list[dict[str, Any]], example_services: list[MailService]
) -> None:
    expected = _expected_tree(example_render) | _web_tree(example_services)
    if UPDATE_GOLDEN:
        shutil.rmtree(GOLDEN, ignore_errors=True)
        for name, data in expected.items():
            (GOLDEN / name).parent.mkdir(parents=True, exist_ok=True)
            (GOLDEN / name).write_bytes(data)
    actual = _actual_tree(GOLDEN)
    assert sorted(actual) == sorted(expected), "golden file set differs"
    for name, data in expected.items():
        assert actual[name] == data, f"{name} differs from the golden file"


def test_render_is_deterministic(tmp_path: Path, example_render: list[dict[str, Any]]) -> None:
    if UPDATE_GOLDEN:
        pytest.skip("updating")
    _, again = render_examples(tmp_path)
    assert dump_objects(again) == dump_objects(example_render)
