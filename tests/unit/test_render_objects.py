"""Properties of the rendered objects that the golden files alone do not explain."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mailstack.pipeline import render_all
from mailstack.render import objects
from mailstack.render.objects import CHECKSUM_ANNOTATION, RenderOptions
from tests.support import render_examples


def _get(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)


def test_public_service_exposes_every_enabled_port(example_render: list[dict[str, Any]]) -> None:
    ports = {
        p["port"]: p["targetPort"]
        for p in _get(example_render, "Service", "example-com")["spec"]["ports"]
    }
    assert ports == {
        25: "smtp",
        465: "submissions",
        587: "submission",
        143: "imap",
        993: "imaps",
        110: "pop3",
        995: "pop3s",
        4190: "sieve",
    }
    minimal = {p["port"] for p in _get(example_render, "Service", "example-org")["spec"]["ports"]}
    assert 4190 not in minimal  # managesieve is off by default


def test_named_target_ports_exist_in_exactly_one_pod(example_render: list[dict[str, Any]]) -> None:
    service = _get(example_render, "Service", "example-com")
    declared: dict[str, list[str]] = {}
    for sts in ("example-com-mta", "example-com-mda"):
        for container in _get(example_render, "StatefulSet", sts)["spec"]["template"]["spec"][
            "containers"
        ]:
            for port in container["ports"]:
                declared.setdefault(port["name"], []).append(sts)
    for port in service["spec"]["ports"]:
        owners = declared.get(port["targetPort"], [])
        assert len(owners) == 1, (port, owners)


def test_every_label_and_selector_is_consistent(example_render: list[dict[str, Any]]) -> None:
    for obj in example_render:
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "mailstack"
        assert labels["app.kubernetes.io/managed-by"] == "mailstack"
        assert (
            labels["app.kubernetes.io/instance"]
            == obj["metadata"]["name"].split("-mta")[0].split("-mda")[0]
            or labels["app.kubernetes.io/instance"] in obj["metadata"]["name"]
        )
    for sts in (o for o in example_render if o["kind"] == "StatefulSet"):
        selector = sts["spec"]["selector"]["matchLabels"]
        template_labels = sts["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= template_labels.items()


def test_checksum_follows_config_but_not_accounts(example_render: list[dict[str, Any]]) -> None:
    from mailstack.render.objects import checksum

    mta = _get(example_render, "StatefulSet", "example-com-mta")
    postfix = _get(example_render, "ConfigMap", "example-com-postfix")["data"]
    rspamd = _get(example_render, "ConfigMap", "example-com-rspamd")["data"]
    annotation = mta["spec"]["template"]["metadata"]["annotations"][CHECKSUM_ANNOTATION]
    assert annotation == checksum(postfix, rspamd)
    mda = _get(example_render, "StatefulSet", "example-com-mda")
    dovecot = _get(example_render, "ConfigMap", "example-com-dovecot")["data"]
    assert mda["spec"]["template"]["metadata"]["annotations"][CHECKSUM_ANNOTATION] == checksum(
        dovecot
    )


def test_pods_are_hardened(example_render: list[dict[str, Any]]) -> None:
    for sts in (o for o in example_render if o["kind"] == "StatefulSet"):
        pod = sts["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"]:
            ctx = container["securityContext"]
            assert ctx["allowPrivilegeEscalation"] is False
            assert ctx["readOnlyRootFilesystem"] is True
            assert ctx["capabilities"]["drop"] == ["ALL"]
            assert "SYS_ADMIN" not in ctx["capabilities"].get("add", [])
            assert container["readinessProbe"]["httpGet"]["port"] == "health"
            assert container["resources"]["limits"]["memory"]


def test_lmtp_and_sasl_reachable_from_the_mta_only(example_render: list[dict[str, Any]]) -> None:
    policy = _get(example_render, "NetworkPolicy", "example-com-mda")
    internal = [
        r
        for r in policy["spec"]["ingress"]
        if any(p["port"] in ("lmtp", "sasl") for p in r["ports"])
    ]
    assert len(internal) == 1
    assert internal[0]["from"] == [
        {
            "podSelector": {
                "matchLabels": {
                    "app.kubernetes.io/name": "mailstack",
                    "app.kubernetes.io/instance": "example-com",
                    "app.kubernetes.io/component": "mta",
                }
            }
        }
    ]
    public = _get(example_render, "Service", "example-com")
    assert not {p["name"] for p in public["spec"]["ports"]} & {"lmtp", "sasl"}


def test_mail_is_retained_by_default(example_render: list[dict[str, Any]]) -> None:
    for sts in (o for o in example_render if o["kind"] == "StatefulSet"):
        assert sts["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Retain"


def test_an_operator_upgrade_alone_rolls_no_pod(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pod templates change only when what runs in the pods does: the same MailDomains and the
    same mail image under another operator version give the same templates (checksums too)."""
    prepared, _ = render_examples(tmp_path)
    options = RenderOptions(image="registry.example/mailstack/mail:1.2.3")
    templates = {}
    for version in ("0.1.0", "9.9.9"):
        monkeypatch.setattr(objects, "__version__", version)
        rendered = render_all(prepared, options)
        templates[version] = {
            o["metadata"]["name"]: o["spec"]["template"]
            for o in rendered
            if o["kind"] == "StatefulSet"
        }
        # The version still labels the objects themselves.
        assert all(
            o["metadata"]["labels"]["app.kubernetes.io/version"] == version for o in rendered
        )
    assert templates["0.1.0"], "the examples render StatefulSets"
    assert templates["0.1.0"] == templates["9.9.9"]
