"""Every rendered object validates against the Kubernetes 1.30 schemas, strictly; the mail pods
with every field of spec.pods set (and operator defaults under them) against 1.28 and 1.30 too."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest

from mailstack.api import pod_models as pm
from mailstack.render.objects import RenderOptions
from tests.unit.test_render_pods import statefulsets, tuned_document

KUBERNETES_VERSION = "1.30"
# Objects of CRDs that are not part of Kubernetes (cert-manager) are checked elsewhere.
CORE_GROUPS = ("v1", "apps/v1", "policy/v1", "networking.k8s.io/v1")


def _core(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj["apiVersion"] in CORE_GROUPS]


def test_every_object_is_core_kubernetes(example_render: list[dict[str, Any]]) -> None:
    assert _core(example_render) == example_render


def test_objects_validate_strictly(example_render: list[dict[str, Any]]) -> None:
    for obj in example_render:
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as err:
            name = f"{obj['kind']}/{obj['metadata']['name']}"
            pytest.fail(f"{name}: {err.message} at {'/'.join(map(str, err.path))}")


@pytest.mark.parametrize("version", ["1.28", KUBERNETES_VERSION])
def test_tuned_mail_pods_validate_strictly(version: str) -> None:
    defaults = pm.MailPods(
        node_selector=(("kubernetes.io/arch", "amd64"),),
        annotations=(("example.com/owner", "platform"),),
    )
    rendered = statefulsets(tuned_document(), RenderOptions(mail_pods=defaults))
    for obj in rendered:
        assert obj["spec"]["template"]["spec"]["affinity"]  # the settings are there
        kubernetes_validate.validate(obj, version, strict=True)


def test_a_broken_object_is_caught(example_render: list[dict[str, Any]]) -> None:
    # The check itself must be able to fail: an unknown field in a container is refused.
    statefulset = next(o for o in example_render if o["kind"] == "StatefulSet")
    broken = {**statefulset, "spec": {**statefulset["spec"], "replica": 1}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_expected_object_set(example_render: list[dict[str, Any]]) -> None:
    names = {(o["kind"], o["metadata"]["namespace"], o["metadata"]["name"]) for o in example_render}
    for kind, name in [
        ("ServiceAccount", "example-com"),
        ("ConfigMap", "example-com-postfix"),
        ("ConfigMap", "example-com-dovecot"),
        ("ConfigMap", "example-com-rspamd"),
        ("ConfigMap", "example-com-sieve"),
        ("Secret", "example-com-users"),
        ("Secret", "example-com-tls"),
        ("Secret", "example-com-ca"),
        ("Secret", "example-com-dkim"),
        ("Service", "example-com"),
        ("Service", "example-com-mda"),
        ("StatefulSet", "example-com-mta"),
        ("StatefulSet", "example-com-mda"),
        ("NetworkPolicy", "example-com-mta"),
        ("NetworkPolicy", "example-com-mda"),
        ("PodDisruptionBudget", "example-com"),
    ]:
        assert (kind, "mail", name) in names


def test_the_shared_server_example_is_among_the_validated_objects(
    example_render: list[dict[str, Any]],
) -> None:
    """examples/shared: the server's stack in its namespace, and each domain's own Secrets in
    its tenant's (so ``test_objects_validate_strictly`` checks those too)."""
    names = {(o["kind"], o["metadata"]["namespace"], o["metadata"]["name"]) for o in example_render}
    for kind, name in [
        ("StatefulSet", "shared-mta"),
        ("StatefulSet", "shared-mda"),
        ("Secret", "shared-users"),
        ("Secret", "shared-dkim"),
        ("Secret", "shared-domain-tls"),
        ("Service", "shared"),
    ]:
        assert (kind, "mail-platform", name) in names
    for namespace, name in (("tenant-a", "acme"), ("tenant-b", "globex"), ("tenant-c", "initech")):
        own = {(k, n) for k, ns, n in names if ns == namespace}
        assert own == {("Secret", f"{name}-{part}") for part in ("users", "dkim", "ca", "tls")}
