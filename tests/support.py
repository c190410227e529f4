"""Shared helpers for the tests: render the examples with fixed material and a fixed clock."""

from __future__ import annotations

import base64
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mailstack.api.assemble import MailService
from mailstack.api.models import MailDomain
from mailstack.pipeline import Prepared, prepare, render_all, save_state
from mailstack.statedir import StateDir

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
FIXTURE_STATE = ROOT / "tests" / "fixtures" / "state"
GOLDEN = ROOT / "tests" / "golden"
# The fixture certificates were issued at this instant; rendering "now" keeps them current.
FIXED_NOW = datetime(2026, 11, 1, tzinfo=UTC)
UPDATE_GOLDEN = os.environ.get("UPDATE_GOLDEN") == "1"


def _no_randomness(count: int) -> bytes:
    raise AssertionError(
        "the fixture state is incomplete: material would be generated "
        "(run the golden test with UPDATE_GOLDEN=1 to refresh it)"
    )


def render_examples(tmp_path: Path) -> tuple[Prepared, list[dict[str, Any]]]:
    """Render examples/ from a copy of the fixture state; in update mode, refresh the fixture."""
    state_dir = tmp_path / "state"
    if FIXTURE_STATE.exists():
        shutil.copytree(FIXTURE_STATE, state_dir)
    state = StateDir(state_dir)
    prepared = prepare(
        [EXAMPLES],
        state,
        now=FIXED_NOW,
        random_bytes=os.urandom if UPDATE_GOLDEN else _no_randomness,
    )
    assert not prepared.problems, [str(p) for p in prepared.problems]
    objects = render_all(prepared)
    if UPDATE_GOLDEN:
        save_state(StateDir(FIXTURE_STATE), prepared, objects)
    return prepared, objects


def config_files(obj: dict[str, Any]) -> dict[str, bytes]:
    """The files a ConfigMap or Secret mounts: key → bytes."""
    if obj["kind"] == "ConfigMap":
        return {k: v.encode() for k, v in obj.get("data", {}).items()}
    if obj["kind"] == "Secret":
        return {k: base64.b64decode(v) for k, v in obj.get("data", {}).items()}
    return {}


def materialise(objects: list[dict[str, Any]], root: Path) -> dict[str, Path]:
    """Write every ConfigMap and Secret of the render into root/<name>/<key>; name → folder."""
    folders = {}
    for obj in objects:
        if obj["kind"] not in ("ConfigMap", "Secret"):
            continue
        folder = root / obj["metadata"]["namespace"] / obj["metadata"]["name"]
        folder.mkdir(parents=True, exist_ok=True)
        for key, data in config_files(obj).items():
            (folder / key).write_bytes(data)
        folders[f"{obj['metadata']['namespace']}/{obj['metadata']['name']}"] = folder
    return folders


def example_service(**fields: Any) -> MailService:
    """A MailService for example.com without Mailboxes; ``fields`` are MailDomain fields."""
    domain = MailDomain(
        name="example",
        namespace="mail",
        domain="example.com",
        hostname="mail.example.com",
        postmaster="postmaster@example.com",
        **fields,
    )
    return MailService(domain, ())


def pox_request(address: str) -> bytes:
    """An Autodiscover POX request as Outlook POSTs it."""
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/'
        'requestschema/2006"><Request>'
        f"<EMailAddress>{address}</EMailAddress>"
        "<AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/"
        "responseschema/2006a</AcceptableResponseSchema></Request></Autodiscover>"
    ).encode()
