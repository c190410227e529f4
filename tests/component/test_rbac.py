"""The chart's RBAC grants exactly what the running operator uses.

A full lifecycle runs against the emulator, which records the RBAC verb of every request
(who, verb, group, resource). Every request of the operator — kopf's and the controller's own —
must be allowed by the ClusterRole the Helm chart renders; and every rule of that ClusterRole
must have been used (least privilege: a grant nobody needs is a finding too).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from mailstack.api.models import ClusterNetworks
from mailstack.render.objects import RenderOptions
from tests.component.conftest import (
    USABLE_BY,
    condition,
    conditions,
    mailbox,
    maildomain,
    password,
    wait_ready,
)
from tests.component.emulator import (
    ApiServer,
    builtin_resources,
    cert_manager_resources,
    crd_resources,
    external_dns_resources,
    wait_for,
)
from tests.component.harness import OperatorThread

ROOT = Path(__file__).resolve().parents[2]
HASH = "{BLF-CRYPT}$2b$10$oNX0qrTw9O53hLe7QUwJleCv/SNk366H0AaviuhdUL0m9Ve3uMtW."


def chart_rules() -> dict[tuple[str, str], set[str]]:
    helm = ROOT / ".venv" / "bin" / "helm"
    if not helm.exists():
        pytest.fail("helm is missing: run scripts/setup.sh")
    out = subprocess.run(
        [
            str(helm),
            "template",
            "x",
            str(ROOT / "charts" / "mailstack"),
            "--set",
            "peering.enabled=false",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    (role,) = [d for d in yaml.safe_load_all(out) if d and d["kind"] == "ClusterRole"]
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    return granted


@pytest.mark.parametrize(
    "api",
    [
        {
            "resources": [
                *builtin_resources(),
                *crd_resources(),
                *cert_manager_resources(),
                *external_dns_resources(),
            ]
        }
    ],
    indirect=True,
)
def test_the_operator_needs_exactly_the_chart_rbac(api: ApiServer) -> None:
    api.create(password("alice", HASH))
    api.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "relay", "labels": {USABLE_BY: "maildomains"}},
            "stringData": {"username": "u", "password": "p"},
        }
    )
    api.create(
        maildomain(
            "example-org",
            "example.org",
            postmaster="alice@example.org",
            storage={"retention": "Delete"},
            relay={"host": "smtp.example.net", "credentialsSecretRef": {"name": "relay"}},
        )
    )
    api.create(mailbox("alice", "alice@example.org"))
    # With clusterNetworks the tripwire lists the MTA pods (controller/tripwire.py).
    tripwire = RenderOptions(cluster_networks=ClusterNetworks(pods=("10.244.0.0/16",)))
    with OperatorThread(api, render=tripwire) as op:
        wait_ready(api, "example-org")
        api.create(mailbox("bob", "bob@example.org"))  # no password Secret yet
        wait_for(lambda: condition(api.get("mailboxes", "bob"), "Valid") == "False")
        api.delete("configmaps", "example-org-postfix")
        wait_for(lambda: api.get("configmaps", "example-org-postfix"))
        # A pod refused at admission: its message is read from the StatefulSet's Events.
        api.reject_pods("example-org-mda", 'violates PodSecurity "restricted:latest"')
        wait_for(
            lambda: (
                conditions(api.get("maildomains", "example-org"))["WorkloadsReady"]["reason"]
                == "PodRejected"
            )
        )
        api.set_ready("example-org-mda", 1)
        wait_ready(api, "example-org")
        # A storage change: the StatefulSet is recreated (delete with orphan propagation).
        uid = api.get("statefulsets", "example-org-mda")["metadata"]["uid"]
        api.patch(
            "maildomains", "example-org", {"spec": {"storage": {"mailboxes": {"size": "5Gi"}}}}
        )
        wait_for(
            lambda: (
                (api.get("statefulsets", "example-org-mda") or {}).get("metadata", {}).get("uid")
                not in (None, uid)
            )
        )
        # A policy that does not grant the domain: the serving children go (Services too);
        # granted again, they come back.
        policy = {
            "apiVersion": "mailstack.dev/v1alpha1",
            "kind": "MailDomainPolicy",
            "metadata": {"name": "other"},
            "spec": {"namespaces": ["default"], "domains": ["other.example"]},
        }
        api.create(policy, None)
        wait_for(lambda: api.get("services", "example-org") is None)
        # (Deleting it would not do: once a policy was seen, grants stay required.)
        domains = ["other.example", "example.org", "*.example.org"]
        granted = {"spec": {"domains": domains, "issuers": {"clusterIssuers": ["letsencrypt"]}}}
        api.patch("maildomainpolicies", "other", granted, None)
        wait_ready(api, "example-org")
        # TLS issuer switch: the Certificate appears, the CA Secret goes; and back.
        issuer = {"issuer": "certManager", "certManager": {"issuerRef": {"name": "letsencrypt"}}}
        api.patch("maildomains", "example-org", {"spec": {"tls": issuer}})
        wait_for(lambda: api.get("secrets", "example-org-ca") is None)
        assert api.get("certificates", "example-org-tls") is not None
        api.patch(
            "maildomains",
            "example-org",
            {"spec": {"tls": {"issuer": "internal", "certManager": None}}},
        )
        wait_for(lambda: api.get("certificates", "example-org-tls") is None)
        wait_for(lambda: api.get("secrets", "example-org-ca"))
        # DNS provider switch: the DNSEndpoint appears, and goes with the next switch.
        api.patch(
            "maildomains",
            "example-org",
            {"spec": {"dns": {"provider": {"manual": None, "externalDNS": {}}}}},
        )
        wait_for(lambda: api.get("dnsendpoints", "example-org-dns"))
        api.patch(
            "maildomains",
            "example-org",
            {"spec": {"dns": {"provider": {"externalDNS": None, "manual": {}}}}},
        )
        wait_for(lambda: api.get("dnsendpoints", "example-org-dns") is None)
        api.delete("maildomains", "example-org")
        wait_for(lambda: api.get("maildomains", "example-org") is None)
        wait_for(lambda: not api.list("persistentvolumeclaims"))
        # A shared MailServer: its objects, its status; deleted, it goes (kopf's finalizer).
        server = {
            "apiVersion": "mailstack.dev/v1alpha1",
            "kind": "MailServer",
            "metadata": {"name": "shared"},
            "spec": {"hostname": "mx.example.org", "tls": {"issuer": "internal"}},
        }
        api.create(server)
        wait_for(lambda: (api.get("mailservers", "shared") or {}).get("status", {}).get("mtaReady"))
        api.delete("mailservers", "shared")
        wait_for(lambda: api.get("mailservers", "shared") is None)
        assert not op.errors

    assert api.emulator is not None
    used: dict[tuple[str, str], set[str]] = {}
    for agent, verb, group, resource in api.emulator.verbs:
        if agent in ("mailstack", "kopf"):
            used.setdefault((group, resource), set()).add(verb)
    granted = chart_rules()
    missing = {
        key: verbs - granted.get(key, set())
        for key, verbs in used.items()
        if verbs - granted.get(key, set())
    }
    assert not missing, f"used but not granted by the chart: {missing}"
    # The finalizers subresources are checked by the API server's admission, not requested.
    unused = {
        key: verbs - used.get(key, set())
        for key, verbs in granted.items()
        if verbs - used.get(key, set())
        and key[1] not in ("maildomains/finalizers", "mailservers/finalizers")
    }
    assert not unused, f"granted but never used: {unused}"
