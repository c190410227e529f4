"""A MailDomain's ``spec.hostname`` is claimed like a domain under the platform's policies: it
needs a proof where its grant requires one, it belongs to the namespace whose domain it is
under, and one namespace uses it (``assemble._contest``, ``Grants.hostname_refusal``)."""

from __future__ import annotations

from typing import Any

from mailstack.api.assemble import assemble
from mailstack.api.models import MailDomain
from mailstack.api.parse import parse_maildomain
from mailstack.api.policy import Grants, parse_policy
from mailstack.api.proof import Proof

API = "mailstack.dev/v1alpha1"


def shared(require_proof: bool = True) -> Grants:
    """One wide grant for every tenant, as a platform hands out names under its own zone."""
    doc = {
        "apiVersion": API,
        "kind": "MailDomainPolicy",
        "metadata": {"name": "shared"},
        "spec": {
            "namespaces": ["tenant-a", "tenant-b", "squatter"],
            "domains": ["*.proof.example"],
            "requireProof": require_proof,
        },
    }
    return Grants((parse_policy(doc),))


def claim(namespace: str, name: str, domain: str, created: str, **spec: Any) -> MailDomain:
    meta = {"name": name, "namespace": namespace, "creationTimestamp": created, "uid": name}
    doc = {"apiVersion": API, "kind": "MailDomain", "metadata": meta}
    return parse_maildomain({**doc, "spec": {"domain": domain, **spec}})


def proven(*doms: MailDomain) -> dict[str, Proof]:
    return {d.ref: Proof(d.domain, "t" * 32, proven=True) for d in doms}


def served(doms: list[MailDomain], grants: Grants, proofs: Any = None) -> set[str]:
    return {s.domain.ref for s in assemble(doms, [], grants, proofs)[0]}


def hostname_problems(doms: list[MailDomain], grants: Grants, proofs: Any = None) -> list[str]:
    _, problems = assemble(doms, [], grants, proofs)
    return [f"{p.document}: {p.message}" for p in problems if p.path == "spec.hostname"]


OWNER = claim("tenant-a", "shop", "shop.proof.example", "2026-12-01T00:00:00Z")


def test_a_proof_of_ones_own_name_does_not_cover_a_host_name_elsewhere_under_the_suffix() -> None:
    # The reported attack: the squatter proves squat.proof.example and names the owner's mail
    # host; no other MailDomain needs to exist for it to be refused.
    squat = claim(
        "squatter",
        "squat",
        "squat.proof.example",
        "2026-12-02T00:00:00Z",
        hostname="mail.shop.proof.example",
    )
    assert served([squat], shared(), proven(squat)) == set()
    assert hostname_problems([squat], shared(), proven(squat)) == [
        "MailDomain/squatter/squat: mail.shop.proof.example needs a proof of control; "
        "use a host name under squat.proof.example, whose proof covers it"
    ]
    own = claim("squatter", "squat", "squat.proof.example", "2026-12-02T00:00:00Z")
    assert served([own], shared(), proven(own)) == {own.ref}


def test_without_required_proof_a_host_name_outside_the_domain_is_fine_when_granted() -> None:
    elsewhere = claim(
        "tenant-b", "b", "b.proof.example", "2026-12-02T00:00:00Z", hostname="mx.proof.example"
    )
    assert served([elsewhere], shared(require_proof=False)) == {elsewhere.ref}


def test_a_host_name_under_another_namespaces_domain_belongs_to_its_owner_whatever_the_age() -> (
    None
):
    # Without proofs required, the squatter is even older than the owner: still refused.
    squat = claim(
        "squatter",
        "squat",
        "squat.proof.example",
        "2026-11-01T00:00:00Z",
        hostname="mail.shop.proof.example",
    )
    grants = shared(require_proof=False)
    assert served([squat, OWNER], grants) == {OWNER.ref}
    assert hostname_problems([squat, OWNER], grants) == [
        "MailDomain/squatter/squat: mail.shop.proof.example belongs to shop.proof.example, "
        "claimed by MailDomain/tenant-a/shop"
    ]
    # The domain itself as a host name is the owner's too.
    exact = claim(
        "squatter", "x", "x.proof.example", "2026-11-01T00:00:00Z", hostname="shop.proof.example"
    )
    assert served([exact, OWNER], grants) == {OWNER.ref}


def test_a_host_name_under_a_domain_of_the_same_namespace_is_fine() -> None:
    second = claim(
        "tenant-a",
        "shop2",
        "shop2.proof.example",
        "2026-12-02T00:00:00Z",
        hostname="mail.shop.proof.example",
    )
    grants = shared(require_proof=False)
    assert served([OWNER, second], grants) == {OWNER.ref, second.ref}


def test_one_host_name_is_one_namespaces_the_oldest_claims_and_a_tenant_may_share_it() -> None:
    grants = shared(require_proof=False)
    hostname = "mx.proof.example"
    first = claim("tenant-a", "a1", "a1.proof.example", "2026-12-01T00:00:00Z", hostname=hostname)
    same_ns = claim("tenant-a", "a2", "a2.proof.example", "2026-12-03T00:00:00Z", hostname=hostname)
    later = claim("tenant-b", "b1", "b1.proof.example", "2026-12-02T00:00:00Z", hostname=hostname)
    assert served([later, same_ns, first], grants) == {first.ref, same_ns.ref}
    assert hostname_problems([later, same_ns, first], grants) == [
        "MailDomain/tenant-b/b1: mx.proof.example is already the host name of "
        "MailDomain/tenant-a/a1"
    ]
    # The older claim gone, the other namespace's takes the host name over.
    assert served([later, same_ns], grants) == {later.ref}


def test_a_host_name_is_held_by_its_oldest_admitted_claim_even_one_losing_its_domain() -> None:
    # Who holds a host name does not depend on who wins a domain: a reconcile then needs only
    # the claims on its host name and on the domains above it.
    grants = shared(require_proof=False)
    hostname = "mx.proof.example"
    loser = claim("tenant-b", "b", "shop.proof.example", "2026-12-02T00:00:00Z", hostname=hostname)
    user = claim("tenant-a", "d", "d.proof.example", "2026-12-04T00:00:00Z", hostname=hostname)
    assert served([OWNER, loser, user], grants) == {OWNER.ref}
    assert hostname_problems([OWNER, loser, user], grants) == [
        "MailDomain/tenant-a/d: mx.proof.example is already the host name of MailDomain/tenant-b/b"
    ]


def test_a_host_name_refused_hands_the_domain_to_the_next_claim() -> None:
    grants = shared(require_proof=False)
    taken = claim(
        "squatter", "s", "s.proof.example", "2026-11-01T00:00:00Z", hostname="shop.proof.example"
    )
    next_claim = claim("tenant-b", "s2", "s.proof.example", "2026-11-02T00:00:00Z")
    assert served([taken, next_claim, OWNER], grants) == {OWNER.ref, next_claim.ref}


def test_without_policies_host_names_are_not_contested() -> None:
    # A single team's cluster: any namespace may claim any domain itself anyway.
    a = claim("tenant-a", "a", "a.example", "2026-12-01T00:00:00Z", hostname="mx.example")
    b = claim("tenant-b", "b", "b.example", "2026-12-02T00:00:00Z", hostname="mx.a.example")
    assert served([a, b], Grants()) == {a.ref, b.ref}


def raw(namespace: str, name: str, domain: str, hostname: str | None = None) -> dict[str, Any]:
    spec = {"domain": domain} | ({"hostname": hostname} if hostname else {})
    return {
        "apiVersion": API,
        "kind": "MailDomain",
        "metadata": meta(namespace, name),
        "spec": spec,
    }


def meta(namespace: str, name: str) -> dict[str, str]:
    return {"name": name, "namespace": namespace, "uid": name}


def test_the_index_finds_every_claim_that_contends_with_a_maildomains() -> None:
    from mailstack.controller.index import Documents

    docs = Documents()
    owner = raw("tenant-a", "shop", "shop.proof.example")  # host mail.shop.proof.example
    squat = raw("squatter", "squat", "squat.proof.example", "mail.shop.proof.example")
    shared_host = raw("tenant-b", "b", "b.proof.example", "mx.proof.example")
    same_host = raw("tenant-c", "c", "c.proof.example", "mx.proof.example")
    unrelated = raw("tenant-d", "d", "d.proof.example")
    for doc in (owner, squat, shared_host, same_host):
        docs.put_domain(doc)
    # A new claim marks those whose verdict it may change: its own host name's users, the
    # owner of the domain its host name is under, those whose host name is under its domain.
    assert docs.put_domain(unrelated) == {("tenant-d", "d")}

    def names(doc: dict[str, Any]) -> set[str]:
        return {d["metadata"]["name"] for d in docs.contenders(doc)}

    assert names(squat) == {"squat", "shop"}
    assert names(owner) == {"shop", "squat"}
    assert names(shared_host) == {"b", "c"}
    # Another claim on the squatter's domain: whether the squatter holds its host name (and so
    # may serve the domain) decides this one's fate too, so the owner is read as well, and a
    # change of the owner marks it.
    rival = raw("tenant-b", "rival", "squat.proof.example")
    assert docs.put_domain(rival) == {("tenant-b", "rival"), ("squatter", "squat")}
    assert names(rival) == {"rival", "squat", "shop"}
    assert ("tenant-b", "rival") in docs.put_domain(owner)
    docs.drop_domain("tenant-b", "rival")
    assert docs.drop_domain("tenant-a", "shop") == {("tenant-a", "shop"), ("squatter", "squat")}
    assert names(squat) == {"squat"}
