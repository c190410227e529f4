"""A MailDomain's ``spec.hostname`` is claimed like a domain under the platform's policies: it
needs a proof where its grant requires one, it belongs to the namespace whose older domain it is
under, and one namespace uses it; a domain under an older claim's domain or host name is that
claim's namespace's (``api.claims``, ``Grants.hostname_refusal``)."""

from __future__ import annotations

from typing import Any

import pytest

from mailstack.api.assemble import assemble
from mailstack.api.errors import ValidationError
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


def test_a_host_name_under_an_older_claim_of_another_namespace_belongs_to_its_owner() -> None:
    squat = claim(
        "squatter",
        "squat",
        "squat.proof.example",
        "2026-12-02T00:00:00Z",
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
        "squatter", "x", "x.proof.example", "2026-12-02T00:00:00Z", hostname="shop.proof.example"
    )
    assert served([exact, OWNER], grants) == {OWNER.ref}


def test_names_nest_by_age_an_older_host_name_keeps_a_newer_domain_claim_out() -> None:
    # Without proof the oldest claim wins, squatter or not: an older host name outside its own
    # domain keeps the domain of that name from a newer claim, as an older claim of that very
    # domain would have.
    older = claim(
        "squatter", "x", "x.proof.example", "2026-11-01T00:00:00Z", hostname="shop.proof.example"
    )
    grants = shared(require_proof=False)
    assert served([older, OWNER], grants) == {older.ref}
    _, problems = assemble([older, OWNER], [], grants)
    assert [(p.document, p.path, p.message) for p in problems] == [
        (
            OWNER.ref,
            "spec.domain",
            "shop.proof.example is the host name of MailDomain/squatter/x",
        )
    ]
    # Where the grant requires proof, that host name (outside the squatter's proven domain) is
    # never admitted: the owner serves whatever the ages.
    assert served([older, OWNER], shared(), proven(older, OWNER)) == {OWNER.ref}


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
        "squatter", "s", "s.proof.example", "2026-12-02T00:00:00Z", hostname="shop.proof.example"
    )
    next_claim = claim("tenant-b", "s2", "s.proof.example", "2026-12-03T00:00:00Z")
    assert served([taken, next_claim, OWNER], grants) == {OWNER.ref, next_claim.ref}


# The re-check's R3: under a wide grant without proof, a newer tenant claimed the DOMAIN that
# is an older tenant's mail host name; the host-name owner rule then withdrew the older tenant
# and handed its names to the squatter.
SHOP_HOST = "mail.shop.proof.example"


def test_a_host_name_under_an_older_claims_host_name_of_another_namespace_is_refused() -> None:
    # #13 re-check F6: tenant A (older) serves its domain with the shared-hosting host name
    # mx.hosting.proof.example; tenant B (newer) names smtp.mx.hosting.proof.example, under no older
    # DOMAIN and not A's host name itself, and would get its records and a certificate for a
    # name under A's mail host.
    older = claim(
        "tenant-a",
        "a",
        "a.proof.example",
        "2026-12-01T00:00:00Z",
        hostname="mx.hosting.proof.example",
    )
    newer = claim(
        "tenant-b",
        "b",
        "b.proof.example",
        "2026-12-02T00:00:00Z",
        hostname="smtp.mx.hosting.proof.example",
    )
    grants = shared(require_proof=False)
    assert served([newer, older], grants) == {older.ref}
    assert hostname_problems([newer, older], grants) == [
        "MailDomain/tenant-b/b: smtp.mx.hosting.proof.example is under mx.hosting.proof.example, "
        "the host name of MailDomain/tenant-a/a"
    ]
    # The same namespace may nest its own host names; an older one under a newer is kept.
    own = claim(
        "tenant-a",
        "a2",
        "a2.proof.example",
        "2026-12-02T00:00:00Z",
        hostname="smtp.mx.hosting.proof.example",
    )
    assert served([own, older], grants) == {older.ref, own.ref}
    above = claim(
        "tenant-b", "c", "c.proof.example", "2026-12-02T00:00:00Z", hostname="hosting.proof.example"
    )
    assert served([above, older], grants) == {older.ref, above.ref}


def test_a_newer_domain_claim_on_an_older_tenants_host_name_takes_nothing_over() -> None:
    grants = shared(require_proof=False)
    squat = claim("squatter", "squat", SHOP_HOST, "2026-12-02T00:00:00Z", hostname=SHOP_HOST)
    services, problems = assemble([OWNER, squat], [], grants)
    assert {s.domain.ref: s.domain.hostname for s in services} == {OWNER.ref: SHOP_HOST}
    assert [(p.document, p.path, p.message) for p in problems] == [
        (
            squat.ref,
            "spec.domain",
            f"{SHOP_HOST} is the host name of MailDomain/tenant-a/shop",
        )
    ]
    # A second squatter MailDomain for the owner's domain itself, sharing that host name (as
    # one namespace's MailDomains may): the owner, the oldest claim, still serves it.
    steal = claim("squatter", "steal", "shop.proof.example", "2026-12-03T00:00:00Z")
    steal_shared = claim(
        "squatter", "steal2", "shop.proof.example", "2026-12-03T00:00:00Z", hostname=SHOP_HOST
    )
    assert served([OWNER, squat, steal, steal_shared], grants) == {OWNER.ref}


def test_a_newer_domain_under_an_older_claim_of_another_namespace_is_refused() -> None:
    grants = shared(require_proof=False)
    sub = claim("squatter", "sub", "eu.shop.proof.example", "2026-12-02T00:00:00Z")
    _, problems = assemble([OWNER, sub], [], grants)
    assert [(p.document, p.path, p.message) for p in problems] == [
        (
            sub.ref,
            "spec.domain",
            "eu.shop.proof.example is under shop.proof.example, claimed by "
            "MailDomain/tenant-a/shop",
        )
    ]
    # Under an older host name too, and the owner's own namespace may nest its domains.
    under_host = claim("squatter", "h", f"x.{SHOP_HOST}", "2026-12-02T00:00:00Z")
    own = claim("tenant-a", "eu", "eu.shop.proof.example", "2026-12-02T00:00:00Z")
    assert served([OWNER, under_host, own], grants) == {OWNER.ref, own.ref}


def test_an_older_domain_under_a_newer_claim_keeps_its_names() -> None:
    # By age: the newer claim above it serves its own domain, the older one keeps its own.
    grants = shared(require_proof=False)
    older = claim("squatter", "sub", "eu.shop.proof.example", "2026-11-01T00:00:00Z")
    assert served([older, OWNER], grants) == {older.ref, OWNER.ref}


def test_with_proof_a_nested_domain_claim_changes_nothing() -> None:
    # The squatter's nested domain is never proven (its TXT record would be in the owner's
    # zone), so it takes no part, older or newer.
    for created in ("2026-11-01T00:00:00Z", "2026-12-02T00:00:00Z"):
        squat = claim("squatter", "squat", SHOP_HOST, created, hostname=SHOP_HOST)
        proofs = {**proven(OWNER), squat.ref: Proof(squat.domain, "u" * 32, proven=False)}
        assert served([OWNER, squat], shared(), proofs) == {OWNER.ref}


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
    proving = {**owner, "status": {"proof": {"token": "t", "proven": True}}}
    assert ("tenant-b", "rival") in docs.put_domain(proving)
    assert docs.put_domain(proving) == {("tenant-a", "shop")}  # nothing new: nobody else
    docs.drop_domain("tenant-b", "rival")
    assert docs.drop_domain("tenant-a", "shop") == {("tenant-a", "shop"), ("squatter", "squat")}
    assert names(squat) == {"squat"}


def test_the_index_finds_the_claims_on_names_above_and_under_a_domain() -> None:
    from mailstack.controller.index import Documents

    docs = Documents()
    owner = raw("tenant-a", "shop", "shop.proof.example")  # host mail.shop.proof.example
    on_host = raw("squatter", "squat", "mail.shop.proof.example")
    nested = raw("squatter", "eu", "eu.shop.proof.example", "mx.other.example")
    under_host = raw("tenant-b", "x", "x.mx.other.example")
    unrelated = raw("tenant-d", "d", "d.proof.example")
    for doc in (owner, on_host, nested, under_host, unrelated):
        docs.put_domain(doc)

    def names(doc: dict[str, Any]) -> set[str]:
        return {d["metadata"]["name"] for d in docs.contenders(doc)}

    assert names(owner) == {"shop", "squat", "eu"}
    assert names(on_host) == {"squat", "shop"}
    assert names(nested) == {"eu", "shop", "x"}
    assert names(under_host) == {"x", "eu"}
    assert docs.drop_domain("tenant-a", "shop") == {
        ("tenant-a", "shop"),
        ("squatter", "squat"),
        ("squatter", "eu"),
    }


def test_the_index_finds_the_claims_on_host_names_above_and_under_a_host_name() -> None:
    from mailstack.controller.index import Documents

    docs = Documents()
    older = raw("tenant-a", "a", "a.proof.example", "mx.hosting.proof.example")
    under = raw("tenant-b", "b", "b.proof.example", "smtp.mx.hosting.proof.example")
    unrelated = raw("tenant-d", "d", "d.proof.example", "mx.other.proof.example")
    for doc in (older, under, unrelated):
        docs.put_domain(doc)

    def names(doc: dict[str, Any]) -> set[str]:
        return {d["metadata"]["name"] for d in docs.contenders(doc)}

    assert names(under) == {"b", "a"}
    assert names(older) == {"a", "b"}
    assert docs.drop_domain("tenant-a", "a") == {("tenant-a", "a"), ("tenant-b", "b")}


# Host names and domains under an older tenant's names at several depths (the fifth #13 check's
# variants of F6), under one wide grant shared by both tenants.
OLDER_B = ("tenant-b", "b", "b.customers.example", "2026-01-01T00:00:00Z")


def customers() -> Grants:
    doc = {
        "apiVersion": API,
        "kind": "MailDomainPolicy",
        "metadata": {"name": "customers"},
        "spec": {"namespaces": ["tenant-a", "tenant-b"], "domains": ["*.customers.example"]},
    }
    return Grants((parse_policy(doc),))


def newer_served(namespace: str, domain: str, hostname: str) -> bool:
    """Whether a newer claim is served beside tenant-b's older one, which always is."""
    older = claim(*OLDER_B, hostname="mx.host.customers.example")
    newer = claim(namespace, "n", domain, "2026-01-02T00:00:00Z", hostname=hostname)
    refs = served([older, newer], customers())
    assert older.ref in refs
    return newer.ref in refs


@pytest.mark.parametrize(
    "hostname",
    [
        "mx.host.customers.example",
        "x.mx.host.customers.example",
        "z.y.x.mx.host.customers.example",
        "b.customers.example",
        "a.b.c.b.customers.example",
    ],
)
def test_a_host_name_at_or_under_an_older_tenants_names_at_any_depth_is_refused(
    hostname: str,
) -> None:
    assert not newer_served("tenant-a", "a.customers.example", hostname)


@pytest.mark.parametrize(
    "domain",
    ["mx.host.customers.example", "y.x.mx.host.customers.example", "y.x.b.customers.example"],
)
def test_a_domain_at_or_under_an_older_tenants_names_at_any_depth_is_refused(domain: str) -> None:
    assert not newer_served("tenant-a", domain, f"mail.{domain}")


def test_a_name_above_an_older_host_name_and_the_same_namespaces_nested_names_are_free() -> None:
    assert newer_served("tenant-a", "a.customers.example", "host.customers.example")
    assert newer_served("tenant-b", "c.customers.example", "x.y.mx.host.customers.example")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("domain", "B.EXAMPLE"),
        ("domain", "b.example."),
        ("domain", "bü.example"),
        ("domain", " b.example"),
        ("hostname", "MAIL.B.EXAMPLE"),
        ("hostname", "mail.b.example."),
        ("hostname", "*.b.example"),
    ],
)
def test_other_spellings_of_a_name_never_reach_the_contest(field: str, value: str) -> None:
    spec = {"domain": "a.example", field: value}
    with pytest.raises(ValidationError):
        claim("tenant-a", "a", spec.pop("domain"), "2026-01-02T00:00:00Z", **spec)
