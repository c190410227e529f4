"""Which live objects are a MailDomain's own, and which of its children's names are taken."""

from __future__ import annotations

from typing import Any

from mailstack.api.errors import Problem
from mailstack.api.models import MailDomain
from mailstack.controller import reasons
from mailstack.controller.children import Owner, child_key
from mailstack.controller.conditions import rendered_condition, valid_condition
from mailstack.controller.kinds import SECRET, ChildKey
from mailstack.controller.ownership import (
    is_ours,
    names_to_check,
    own_secrets,
    refuse_taken,
    taken_names,
)
from mailstack.controller.plan import Rendered
from mailstack.kubedoc import Obj

OWNER = Owner("shop", "mail", "uid-1")
LABELS = {"app.kubernetes.io/managed-by": "mailstack", "app.kubernetes.io/instance": "shop"}


def ref(uid: str, controller: bool = True) -> dict[str, Any]:
    return {"apiVersion": "mailstack.dev/v1alpha1", "kind": "MailDomain", "name": "shop",
            "uid": uid, "controller": controller}  # fmt: skip


def obj(kind: str, name: str, **meta: Any) -> Obj:
    return {"apiVersion": "v1", "kind": kind, "metadata": {"name": name, **meta}}


def statefulset(*secrets: str) -> Obj:
    volumes = [{"name": s, "secret": {"secretName": s}} for s in secrets]
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "shop-mta"},
            "spec": {"template": {"spec": {"volumes": volumes}}}}  # fmt: skip


def test_an_object_of_the_previous_release_is_ours() -> None:
    # Every release wrote the controller ownerReference and the labels.
    for kind in ("Service", "Secret", "ConfigMap"):
        assert is_ours(obj(kind, "shop", ownerReferences=[ref("uid-1")], labels=LABELS), OWNER)


def test_a_helm_service_without_owner_or_labels_is_not_ours() -> None:
    assert not is_ours(obj("Service", "shop", labels={"app": "shop"}), OWNER)


def test_another_controller_makes_it_someone_elses_even_with_our_labels() -> None:
    live = obj("Service", "shop", ownerReferences=[ref("uid-other")], labels=LABELS)
    assert not is_ours(live, OWNER)
    # A non-controlling reference with our uid does not make it ours either.
    assert not is_ours(obj("Service", "shop", ownerReferences=[ref("uid-1", False)]), OWNER)


def test_labels_alone_adopt_a_rendered_object_but_never_a_secret() -> None:
    # `mailstack render | kubectl apply` made it: the labels, no owner.
    assert is_ours(obj("ConfigMap", "shop-postfix", labels=LABELS), OWNER)
    other = {**LABELS, "app.kubernetes.io/instance": "other"}
    assert not is_ours(obj("ConfigMap", "shop-postfix", labels=other), OWNER)
    # A planted Secret labelled like the operator's would hand its DKIM or CA key to the domain.
    assert not is_ours(obj("Secret", "shop-dkim", labels=LABELS), OWNER)
    # The ownerReference without the labels is not enough for a Secret either.
    assert not is_ours(obj("Secret", "shop-dkim", ownerReferences=[ref("uid-1")]), OWNER)


def test_only_own_secrets_are_read_back() -> None:
    mine = obj("Secret", "shop-ca", ownerReferences=[ref("uid-1")], labels=LABELS)
    planted = obj("Secret", "shop-dkim", labels=LABELS)
    live = {SECRET.key("shop-ca"): mine, SECRET.key("shop-dkim"): planted, SECRET.key("x"): None}
    assert own_secrets(live, OWNER) == {
        SECRET.key("shop-ca"): mine,
        SECRET.key("shop-dkim"): None,
        SECRET.key("x"): None,
    }


def test_taken_names_cover_written_and_mounted_objects() -> None:
    objects = [obj("Service", "shop"), obj("ConfigMap", "shop-postfix"), statefulset("shop-tls")]
    assert names_to_check(objects)[-1] == SECRET.key("shop-tls")
    live = {
        child_key(objects[0]): obj("Service", "shop", labels={"app": "shop"}),
        child_key(objects[1]): None,
        SECRET.key("shop-tls"): obj("Secret", "shop-tls"),
    }
    assert taken_names(objects, live, OWNER) == ["Service/shop", "Secret/shop-tls"]
    assert taken_names(objects, {}, OWNER) == []


def test_a_secret_cert_manager_issued_for_our_certificate_may_be_mounted() -> None:
    certificate = {"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
                   "metadata": {"name": "shop-tls", "ownerReferences": [ref("uid-1")]}}  # fmt: skip
    objects = [certificate, statefulset("shop-tls")]
    annotations = {"cert-manager.io/certificate-name": "shop-tls"}
    issued = obj("Secret", "shop-tls", annotations=annotations)
    live: dict[ChildKey, Obj | None] = {child_key(certificate): certificate}
    live[SECRET.key("shop-tls")] = issued
    assert taken_names(objects, live, OWNER) == []
    # Before our Certificate exists, an annotated Secret may be the orphan of another app's
    # Certificate of that name (cert-manager keeps it): taken, unless it has the labels our
    # Certificate's secretTemplate gives (re-check R8).
    live[child_key(certificate)] = None
    assert taken_names(objects, live, OWNER) == ["Secret/shop-tls"]
    labels = {"app.kubernetes.io/managed-by": "mailstack", "app.kubernetes.io/instance": "shop"}
    live[SECRET.key("shop-tls")] = obj("Secret", "shop-tls", annotations=annotations, labels=labels)
    assert taken_names(objects, live, OWNER) == []
    # Without our Certificate of that name, the same Secret is someone else's.
    assert taken_names(objects[1:], live, OWNER) == ["Secret/shop-tls"]


def test_a_secret_cert_manager_made_for_our_old_certificate_may_be_written() -> None:
    # The issuer switched from certManager to internal: the Certificate is pruned in this pass.
    objects = [obj("Secret", "shop-tls")]
    issued = obj("Secret", "shop-tls", annotations={"cert-manager.io/certificate-name": "shop-tls"})
    certificate = {"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
                   "metadata": {"name": "shop-tls", "ownerReferences": [ref("uid-1")]}}  # fmt: skip
    live: dict[ChildKey, Obj | None] = {child_key(objects[0]): issued}
    assert taken_names(objects, live, OWNER) == ["Secret/shop-tls"]
    live[child_key(certificate)] = certificate
    assert taken_names(objects, live, OWNER) == []
    # Someone else's Certificate of that name does not vouch for the Secret.
    live[child_key(certificate)] = {**certificate, "metadata": {"name": "shop-tls"}}
    assert taken_names(objects, live, OWNER) == ["Secret/shop-tls"]


def test_a_taken_name_makes_the_render_invalid_with_name_taken() -> None:
    model = MailDomain(name="shop", namespace="mail", domain="shop.example", hostname="mail")
    rendered = Rendered(model=model, objects=[obj("Service", "shop")])
    refused = refuse_taken(rendered, ["Service/shop"])
    assert rendered.valid and not refused.valid
    assert not refused.withdrawn  # what this MailDomain applied earlier stays
    valid = valid_condition(refused)
    assert (valid.status, valid.reason) == ("False", reasons.NAME_TAKEN)
    assert valid.message == (
        "metadata.name: Service/shop exists and is not this MailDomain's: nothing is applied; "
        "rename the MailDomain or remove the object"
    )
    assert rendered_condition(refused, None).reason == reasons.NAME_TAKEN
    assert refused.domain_problems[-1] == Problem(model.ref, "metadata.name", valid.message[15:])
