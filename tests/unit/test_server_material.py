"""Where a shared server's domains keep their material between renders: each in its own
namespace (``<name>-dkim``, ``-ca``, ``-tls``, ``-users``), read back as a stack's; the
server's Secrets are made of them and never read back for a domain."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from mailstack.api.documents import load_documents
from mailstack.api.models import Secret
from mailstack.material.resolve import (
    domain_material_secret_names,
    resolve_domain_material,
    server_dkim_key_name,
)
from mailstack.pipeline import Prepared, prepare, render_all, save_state
from mailstack.render.server import render_joined_domain
from mailstack.render.server_paths import SELECTOR_MAP_KEY
from mailstack.statedir import StateDir

API = "mailstack.dev/v1alpha1"
NOW = datetime(2026, 12, 1, tzinfo=UTC)
TENANTS = ("tenant-a", "tenant-b")


def _documents(tenants: tuple[str, ...]) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = [
        {
            "apiVersion": API,
            "kind": "MailServer",
            "metadata": {"name": "shared", "namespace": "mail-platform"},
            "spec": {"hostname": "mx.platform.example"},
        }
    ]
    for tenant in tenants:
        docs.append(
            {
                "apiVersion": API,
                "kind": "MailDomain",
                "metadata": {"name": "mail", "namespace": tenant},
                "spec": {
                    "domain": f"{tenant}.example",
                    "serverRef": {"namespace": "mail-platform", "name": "shared"},
                },
            }
        )
        docs.append(
            {
                "apiVersion": API,
                "kind": "Mailbox",
                "metadata": {"name": "alice", "namespace": tenant},
                "spec": {
                    "address": f"alice@{tenant}.example",
                    "passwordSecretRef": {"name": "alice-pw"},
                },
            }
        )
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": "alice-pw",
                    "namespace": tenant,
                    "labels": {"mailstack.dev/usable-by": "mailboxes"},
                },
                "stringData": {"password": f"secret of {tenant}"},
            }
        )
    return docs


def _render(folder: Path, state: StateDir, tenants: tuple[str, ...]) -> list[dict[str, Any]]:
    path = folder / "docs.yaml"
    path.write_text(yaml.safe_dump_all(_documents(tenants)))
    prepared = prepare([path], state, now=NOW)
    assert prepared.problems == []
    objects = render_all(prepared)
    save_state(state, prepared, objects)
    return objects


def _data(objects: list[dict[str, Any]], namespace: str, name: str) -> dict[str, bytes]:
    (found,) = [
        o
        for o in objects
        if o["kind"] == "Secret"
        and o["metadata"]["namespace"] == namespace
        and o["metadata"]["name"] == name
    ]
    return {k: base64.b64decode(v) for k, v in found["data"].items()}


@pytest.fixture(scope="module")
def renders(tmp_path_factory: pytest.TempPathFactory) -> list[list[dict[str, Any]]]:
    """Three renders on one state folder: both tenants, again, then tenant-b alone."""
    folder = tmp_path_factory.mktemp("shared")
    state = StateDir(folder / "state")
    return [
        _render(folder, state, TENANTS),
        _render(folder, state, TENANTS),
        _render(folder, state, TENANTS[1:]),
    ]


def test_a_second_render_changes_nothing(renders: list[list[dict[str, Any]]]) -> None:
    first, again, _ = renders
    assert yaml.safe_dump_all(again) == yaml.safe_dump_all(first)


def test_each_domain_keeps_its_material_in_its_own_namespace(
    renders: list[list[dict[str, Any]]],
) -> None:
    first = renders[0]
    for tenant in TENANTS:
        own = {o["metadata"]["name"] for o in first if o["metadata"]["namespace"] == tenant}
        assert own == set(domain_material_secret_names("mail"))
        key = _data(first, tenant, "mail-dkim")["mailstack.key"]
        # the server signs with the very key the tenant's Secret keeps
        served = _data(first, "mail-platform", "shared-dkim")
        assert served[server_dkim_key_name(f"{tenant}.example", "mailstack")] == key
        # and no other tenant's namespace holds it
        for other in TENANTS:
            if other != tenant:
                assert key not in _data(first, other, "mail-dkim").values()


def test_the_servers_secrets_hold_its_own_key_beside_the_domains(
    renders: list[list[dict[str, Any]]],
) -> None:
    first, again, _ = renders
    served = _data(first, "mail-platform", "shared-dkim")
    own = server_dkim_key_name("mx.platform.example", "mailstack")
    assert own in served
    assert _data(again, "mail-platform", "shared-dkim")[own] == served[own]  # read back
    assert "mx.platform.example mailstack" in served[SELECTOR_MAP_KEY].decode().splitlines()


def test_a_domain_leaving_drops_its_entries_and_the_others_keep_theirs(
    renders: list[list[dict[str, Any]]],
) -> None:
    first, _, after = renders
    assert not [o for o in after if o["metadata"]["namespace"] == "tenant-a"]
    dkim = _data(after, "mail-platform", "shared-dkim")
    assert server_dkim_key_name("tenant-a.example", "mailstack") not in dkim
    assert "tenant-a.example" not in dkim[SELECTOR_MAP_KEY].decode()
    tls = _data(after, "mail-platform", "shared-domain-tls")
    assert not [key for key in tls if key.startswith("mail.tenant-a.example.")]
    assert b"tenant-a.example" not in b"".join(
        _data(after, "mail-platform", "shared-users").values()
    )
    for name in ("shared-dkim", "shared-domain-tls"):
        before = _data(first, "mail-platform", name)
        kept = {k: v for k, v in before.items() if "tenant-b" in k}
        assert kept and kept.items() <= _data(after, "mail-platform", name).items()
    assert _data(after, "tenant-b", "mail-dkim") == _data(first, "tenant-b", "mail-dkim")


def test_a_joined_domain_resolves_no_material_of_the_servers(tmp_path: Path) -> None:
    """No relay credentials, no client certificates: a joined domain's material is its key,
    certificate and hashes, and what it renders reads them back unchanged."""
    path = tmp_path / "docs.yaml"
    path.write_text(yaml.safe_dump_all(_documents(TENANTS[:1])))
    prepared: Prepared = prepare([path], None, now=NOW)
    ((service, material),) = prepared.servers[0].domains
    assert material.mda_client is None and material.mta_client is None
    assert material.relay_credentials is None
    assert material.tls is not None
    secrets = _as_secrets(render_joined_domain(service, material))
    secrets.update({s.name: s for s in _user_secrets(tmp_path)})
    again, problems = resolve_domain_material(service, secrets, NOW)
    assert problems == []
    assert again == material


def _as_secrets(objects: list[dict[str, Any]]) -> dict[str, Secret]:
    return {
        o["metadata"]["name"]: Secret(
            name=o["metadata"]["name"],
            namespace=o["metadata"]["namespace"],
            data=tuple(sorted((k, base64.b64decode(v)) for k, v in o["data"].items())),
        )
        for o in objects
    }


def _user_secrets(tmp_path: Path) -> list[Secret]:
    return load_documents([tmp_path / "docs.yaml"]).secrets
