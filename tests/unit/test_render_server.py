"""The object set of a shared MailServer: the single-domain stack of its host, with the domains'
files in Secrets, so that domains and Mailboxes never change a pod template."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import pytest
import yaml

from mailstack.api.assemble import MailService
from mailstack.api.parse.server import parse_mailserver
from mailstack.api.server_models import MailServer
from mailstack.material import Material
from mailstack.material.resolve import resolve_material
from mailstack.render.server import render_server, server_host
from mailstack.render.server_domains import ServedDomain
from mailstack.render.server_paths import DOMAIN_TLS_DIR
from tests.support import FIXED_NOW, config_files, render_examples


@pytest.fixture(scope="module")
def domains(tmp_path_factory: pytest.TempPathFactory) -> list[ServedDomain]:
    """The examples' two domains with Mailboxes, and a third without any."""
    prepared, _ = render_examples(tmp_path_factory.mktemp("server"))
    found = list(prepared.services)
    service, material = found[0]
    third = dataclasses.replace(
        service.domain,
        name="example-net",
        namespace="tenant-c",
        domain="example.net",
        hostname="mail.example.net",
        postmaster="postmaster@example.net",
        aliases=(),
        catch_all=None,
    )
    return sorted([*found, (MailService(third, ()), material)], key=lambda d: d[0].domain.domain)


def shared_server(**spec: Any) -> MailServer:
    return parse_mailserver(
        {
            "apiVersion": "mailstack.dev/v1alpha1",
            "kind": "MailServer",
            "metadata": {"name": "shared", "namespace": "mail-platform"},
            "spec": {"hostname": "mx.platform.example", **spec},
        }
    )


@pytest.fixture(scope="module")
def server_material() -> Material:
    host = MailService(server_host(shared_server()), ())
    material, problems = resolve_material(host, {}, FIXED_NOW, os.urandom, password_rounds=4)
    assert problems == []
    return material


def by_name(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {f"{o['kind']}/{o['metadata']['name']}": o for o in objects}


def test_domains_and_mailboxes_change_secrets_only_never_a_pod_template(
    domains: list[ServedDomain], server_material: Material
) -> None:
    server = shared_server()
    one = by_name(render_server(server, domains[:1], server_material))
    three = by_name(render_server(server, domains, server_material))
    assert set(one) == set(three)
    for kind in ("StatefulSet/shared-mta", "StatefulSet/shared-mda"):
        dumped = [yaml.safe_dump(objects[kind]["spec"]["template"]) for objects in (one, three)]
        assert dumped[0] == dumped[1], kind
    changed = sorted(key for key in one if one[key] != three[key])
    assert changed == ["Secret/shared-dkim", "Secret/shared-domain-tls", "Secret/shared-users"]


def test_the_configs_name_the_servers_tables_instead_of_one_domain(
    domains: list[ServedDomain], server_material: Material
) -> None:
    objects = by_name(render_server(shared_server(), domains, server_material))
    main_cf = objects["ConfigMap/shared-postfix"]["data"]["main.cf"]
    assert "virtual_mailbox_domains = texthash:/etc/mailstack/users/virtual_domains" in main_cf
    assert f"tls_server_sni_maps = texthash:{DOMAIN_TLS_DIR}/sni" in main_cf
    assert "myhostname = mx.platform.example" in main_cf
    dovecot = objects["ConfigMap/shared-dovecot"]["data"]["dovecot.conf"]
    assert f"!include_try {DOMAIN_TLS_DIR}/local-names.conf" in dovecot
    rspamd = objects["ConfigMap/shared-rspamd"]["data"]
    assert 'selector_map = "/etc/mailstack/dkim/selectors.map";' in rspamd["dkim_signing.conf"]
    assert 'path = "/etc/mailstack/dkim/$domain.$selector.key";' in rspamd["dkim_signing.conf"]
    assert "domain {" not in rspamd["dkim_signing.conf"]
    assert 'map = "/etc/mailstack/forwarding/virtual_domains";' in rspamd["multimap.conf"]
    assert 'own_domains_path = "/etc/mailstack/forwarding/virtual_domains"' in rspamd["rspamd.lua"]
    users = config_files(objects["Secret/shared-users"])
    assert users["virtual_domains"] == b"example.com OK\nexample.net OK\nexample.org OK\n"


def test_the_pods_mount_the_servers_secrets_whole_and_run_its_replicas(
    domains: list[ServedDomain], server_material: Material
) -> None:
    server = shared_server(replicas={"mta": 2, "mda": 3})
    objects = by_name(render_server(server, domains, server_material))
    mta, mda = objects["StatefulSet/shared-mta"], objects["StatefulSet/shared-mda"]
    assert (mta["spec"]["replicas"], mda["spec"]["replicas"]) == (2, 3)
    for workload in (mta, mda):
        pod = workload["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["domain-tls"]["secret"] == {
            "secretName": "shared-domain-tls",
            "defaultMode": volumes["tls"]["secret"]["defaultMode"],
        }
        mounts = {m["name"]: m["mountPath"] for c in pod["containers"] for m in c["volumeMounts"]}
        assert mounts["domain-tls"] == DOMAIN_TLS_DIR
    mta_volumes = {
        v["name"]: v["secret"] for v in mta["spec"]["template"]["spec"]["volumes"] if "secret" in v
    }
    assert "items" not in mta_volumes["dkim"]
    assert {i["key"] for i in mta_volumes["users"]["items"]} >= {"virtual_domains"}
    assert {i["key"] for i in mta_volumes["forwarding"]["items"]} == {
        "forwarding",
        "virtual_domains",
    }


def test_every_object_is_the_servers_in_its_namespace(
    domains: list[ServedDomain], server_material: Material
) -> None:
    for obj in render_server(shared_server(), domains, server_material):
        meta = obj["metadata"]
        assert meta["namespace"] == "mail-platform"
        assert meta["name"] == "shared" or meta["name"].startswith("shared-")
