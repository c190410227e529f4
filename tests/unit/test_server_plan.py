"""The controller's pass of a shared MailServer, decided purely (``controller.server_plan``):
the objects ``mailstack render`` makes for the server and its domains, each set owned by its own
resource in its own namespace; keys kept from one pass to the next; a domain the grants do not
let join left out with its problem."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from mailstack.api.models import Secret
from mailstack.api.parse import parse_secret
from mailstack.api.policy import Grants, parse_policy
from mailstack.controller.children import APPLIED_ANNOTATION
from mailstack.controller.plan import DomainInputs, render_domain
from mailstack.controller.server_plan import ServerInputs, ServerRendered, render_server_pass
from mailstack.controller.status import domain_status
from mailstack.kubedoc import Obj
from tests.unit.test_api_server import server_doc
from tests.unit.test_pipeline_servers import domain_doc, policy_doc

NOW = datetime(2026, 12, 7, tzinfo=UTC)


def with_uid(doc: dict[str, Any], uid: str) -> dict[str, Any]:
    doc["metadata"].update(uid=uid, generation=1, creationTimestamp="2026-12-01T00:00:00Z")
    return doc


def material_of(rendered: ServerRendered) -> dict[str, dict[str, Secret]]:
    """Every Secret of a pass, by namespace, as the next pass reads them back."""
    found: dict[str, dict[str, Secret]] = defaultdict(dict)
    objects = [*rendered.server_objects, *(o for s in rendered.domain_objects.values() for o in s)]
    for obj in objects:
        if obj["kind"] == "Secret":
            found[obj["metadata"]["namespace"]][obj["metadata"]["name"]] = parse_secret(obj, "")
    return found


def owners(objects: list[Obj]) -> set[tuple[str, str, str]]:
    return {
        (o["metadata"]["namespace"], ref["kind"], ref["name"])
        for o in objects
        for ref in o["metadata"]["ownerReferences"]
    }


def inputs(secrets: dict[str, dict[str, Secret]], grants: Grants | None = None) -> ServerInputs:
    domains = [with_uid(domain_doc(ns), f"uid-{ns}") for ns in ("tenant-a", "tenant-b")]
    return ServerInputs(
        server=with_uid(server_doc(tls={"issuer": "internal"}), "uid-server"),
        domains=domains,
        contenders=[],
        mailboxes=[],
        secrets=secrets,
        now=NOW,
        grants=grants or Grants(),
    )


def test_each_set_is_owned_by_its_own_resource_in_its_namespace() -> None:
    rendered = render_server_pass(inputs({}))
    assert rendered.ok
    assert [s.domain.ref for s in rendered.served] == [
        "MailDomain/tenant-a/mail",
        "MailDomain/tenant-b/mail",
    ]
    assert owners(rendered.server_objects) == {("mail-platform", "MailServer", "shared")}
    for (namespace, name), objects in rendered.domain_objects.items():
        assert owners(objects) == {(namespace, "MailDomain", name)}
        assert {o["kind"] for o in objects} == {"Secret"}
    dkim = next(o for o in rendered.server_objects if o["metadata"]["name"] == "shared-dkim")
    assert {"tenant-a.example.mailstack.key", "tenant-b.example.mailstack.key"} <= set(dkim["data"])


def test_a_second_pass_on_what_the_first_wrote_writes_the_same_objects() -> None:
    """The keys are kept (read back from each domain's own namespace): no rotation, no write."""
    first = render_server_pass(inputs({}))
    second = render_server_pass(inputs(material_of(first)))

    def digests(r: ServerRendered) -> list[str]:
        objects = [*r.server_objects, *(o for s in r.domain_objects.values() for o in s)]
        return [o["metadata"]["annotations"][APPLIED_ANNOTATION] for o in objects]

    assert digests(second) == digests(first)


def test_a_namespace_the_grants_do_not_let_join_is_left_out_with_its_problem() -> None:
    policies = [
        parse_policy(policy_doc("tenant-a", ["mail-platform/shared"]), ""),
        parse_policy(policy_doc("tenant-b", []), ""),
    ]
    rendered = render_server_pass(inputs({}, Grants(tuple(policies))))
    assert rendered.ok
    assert [s.domain.ref for s in rendered.served] == ["MailDomain/tenant-a/mail"]
    assert [p.kind for p in rendered.domain_problems[("tenant-b", "mail")]] == ["ServerNotAllowed"]
    assert ("tenant-b", "mail") not in rendered.domain_objects
    text = str([o.get("data") for o in rendered.server_objects])
    assert "tenant-b" not in text


def test_an_invalid_server_renders_nothing() -> None:
    bad = inputs({})
    bad = ServerInputs(**{**bad.__dict__, "server": server_doc(hostname="not a host")})
    rendered = render_server_pass(bad)
    assert not rendered.ok
    assert rendered.problems
    assert rendered.server_objects == [] and rendered.domain_objects == {}


def test_a_maildomain_its_server_served_says_so_and_keeps_no_stack_of_its_own() -> None:
    doc = with_uid(domain_doc("tenant-a"), "uid-a")
    pending = DomainInputs(domain=doc, siblings=[], mailboxes=[], secrets={}, now=NOW)
    assert render_domain(pending).invalid_reason == "ServerPending"
    served = render_domain(
        dataclasses.replace(pending, served_by="MailServer/mail-platform/shared", server_ready=True)
    )
    assert served.invalid_reason == "ServedByServer"
    assert served.withdrawn and not served.objects  # its own stack's serving objects go
    status = domain_status(served, generation=1, previous=None, now=NOW, server_ready=True)
    found = {c["type"]: c for c in status["conditions"]}
    assert found["Valid"]["status"] == "True"
    assert "MailServer/mail-platform/shared" in found["Valid"]["message"]
    assert found["WorkloadsReady"]["status"] == "True"
    assert found["Ready"]["status"] == "Unknown"  # its certificate and records: not reported yet


def test_a_mailbox_without_its_password_is_filed_and_its_domain_still_served() -> None:
    box = {
        "apiVersion": "mailstack.dev/v1alpha1",
        "kind": "Mailbox",
        "metadata": {"name": "ada", "namespace": "tenant-a"},
        "spec": {"address": "ada@tenant-a.example", "passwordSecretRef": {"name": "missing"}},
    }
    rendered = render_server_pass(dataclasses.replace(inputs({}), mailboxes=[box]))
    assert len(rendered.served) == 2
    assert [p.path for p in rendered.mailbox_problems[("tenant-a", "ada")]] == [
        "spec.passwordSecretRef"
    ]
