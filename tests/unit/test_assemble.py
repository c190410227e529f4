"""Cross-document checks: which Mailboxes belong to which MailDomain, and whether aliases resolve.

Documents are built with the real parser, so the models are exactly what the pipeline hands to
``assemble``. Every problem must be attached to the document that has to change, with the field.
"""

from __future__ import annotations

from typing import Any

import pytest

from mailstack.api.assemble import MailService, assemble
from mailstack.api.errors import Problem, ValidationError
from mailstack.api.models import Mailbox, MailDomain
from mailstack.api.parse import parse_mailbox, parse_maildomain

API = "mailstack.dev/v1alpha1"
NS = "mail"
DOMAIN = "example.com"
MD_REF = f"MailDomain/{NS}/example"


def domain(name: str = "example", namespace: str = NS, **spec: Any) -> MailDomain:
    return parse_maildomain(
        {
            "apiVersion": API,
            "kind": "MailDomain",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"domain": DOMAIN, **spec},
        }
    )


def box(address: str, name: str | None = None, namespace: str = NS, **spec: Any) -> Mailbox:
    return parse_mailbox(
        {
            "apiVersion": API,
            "kind": "Mailbox",
            "metadata": {
                "name": name or address.split("@")[0].replace(".", "-"),
                "namespace": namespace,
            },
            "spec": {"address": address, "passwordSecretRef": {"name": "pw"}, **spec},
        }
    )


def triples(problems: list[Problem]) -> list[tuple[str, str, str]]:
    return [(p.document, p.path, p.message) for p in problems]


def one_service(
    dom: MailDomain, boxes: list[Mailbox]
) -> tuple[MailService, list[tuple[str, str, str]]]:
    services, problems = assemble([dom], boxes)
    assert len(services) == 1
    return services[0], triples(problems)


def addresses(service: MailService) -> list[str]:
    return [b.address for b in service.mailboxes]


# --- which MailDomain serves a Mailbox ---------------------------------------------------------


def test_valid_set_has_no_problems_and_sorted_mailboxes() -> None:
    service, problems = one_service(
        domain(aliases={"sales": ["bob", "alice"]}),
        [box("bob@example.com"), box("alice@example.com", aliases=["a.example"])],
    )
    assert problems == []
    assert addresses(service) == ["alice@example.com", "bob@example.com"]
    assert service.addresses == frozenset({"alice@example.com", "bob@example.com"})


def test_mailbox_for_a_domain_nobody_serves() -> None:
    service, problems = one_service(domain(), [box("carol@example.org")])
    assert problems == [
        (
            "Mailbox/mail/carol",
            "spec.address",
            "no MailDomain in namespace mail serves the domain example.org",
        )
    ]
    assert service.mailboxes == ()


def test_mailbox_in_another_namespace_than_its_domain() -> None:
    service, problems = one_service(domain(), [box("alice@example.com", namespace="other")])
    assert problems == [
        (
            "Mailbox/other/alice",
            "spec.address",
            "no MailDomain in namespace other serves the domain example.com",
        )
    ]
    assert service.mailboxes == ()


def claimed(name: str, namespace: str, created: str = "", uid: str = "") -> MailDomain:
    """A MailDomain for example.com as the cluster serves it: with its age and uid."""
    meta = {"name": name, "namespace": namespace, "creationTimestamp": created, "uid": uid}
    return parse_maildomain(
        {
            "apiVersion": API,
            "kind": "MailDomain",
            "metadata": {k: v for k, v in meta.items() if v},
            "spec": {"domain": DOMAIN},
        }
    )


def test_a_domain_is_served_once_in_the_whole_cluster_by_its_oldest_claim() -> None:
    # Tenant b claimed example.com first; tenant a's later claim serves nothing, and its
    # Mailboxes are not taken over by b's MailDomain either.
    services, problems = assemble(
        [
            claimed("shop", "a", "2026-12-07T10:00:00Z", "uid-1"),
            claimed("mail", "b", "2026-12-01T08:00:00Z", "uid-2"),
        ],
        [box("alice@example.com", namespace="a"), box("alice@example.com", namespace="b")],
    )
    assert triples(problems) == [
        ("MailDomain/a/shop", "spec.domain", "example.com is already served by MailDomain/b/mail"),
        (
            "Mailbox/a/alice",
            "spec.address",
            "no MailDomain in namespace a serves the domain example.com",
        ),
    ]
    assert [(s.domain.ref, addresses(s)) for s in services] == [
        ("MailDomain/b/mail", ["alice@example.com"])
    ]


def test_claims_of_the_same_second_go_by_uid_and_files_by_namespace_and_name() -> None:
    same = "2026-12-01T08:00:00Z"
    services, _ = assemble([claimed("x", "a", same, "uid-9"), claimed("y", "b", same, "uid-1")], [])
    assert [s.domain.ref for s in services] == ["MailDomain/b/y"]
    services, problems = assemble([claimed("x", "b"), claimed("y", "a")], [])
    assert [s.domain.ref for s in services] == ["MailDomain/a/y"]
    assert triples(problems)[0][0] == "MailDomain/b/x"


def test_a_creation_timestamp_must_be_the_api_servers_form() -> None:
    with pytest.raises(ValidationError) as raised:
        claimed("x", "a", "yesterday")
    assert [(p.path, p.message) for p in raised.value.problems] == [
        (
            "metadata.creationTimestamp",
            "expected an RFC 3339 UTC time like 2026-01-31T12:00:00Z, got 'yesterday'",
        )
    ]


def test_two_maildomains_for_the_same_domain_in_one_namespace() -> None:
    services, problems = assemble(
        [domain(name="second"), domain(name="first")], [box("alice@example.com")]
    )
    assert triples(problems) == [
        (
            "MailDomain/mail/second",
            "spec.domain",
            "example.com is already served by MailDomain/mail/first",
        )
    ]
    assert [s.domain.name for s in services] == ["first"]
    assert addresses(services[0]) == ["alice@example.com"]


# --- addresses claimed twice --------------------------------------------------------------------


def test_duplicate_address_across_mailboxes() -> None:
    service, problems = one_service(
        domain(), [box("alice@example.com", name="alice2"), box("alice@example.com", name="alice1")]
    )
    assert problems == [
        (
            "Mailbox/mail/alice2",
            "spec.address",
            "alice@example.com is already used by Mailbox/mail/alice1",
        )
    ]
    assert [b.name for b in service.mailboxes] == ["alice1"]


def test_mailbox_alias_colliding_with_an_earlier_mailbox() -> None:
    service, problems = one_service(
        domain(), [box("alice@example.com"), box("bob@example.com", aliases=["info", "alice"])]
    )
    assert problems == [
        (
            "Mailbox/mail/bob",
            "spec.aliases[1]",
            "alice@example.com is already used by Mailbox/mail/alice",
        )
    ]
    assert addresses(service) == ["alice@example.com"]


def test_mailbox_alias_colliding_with_a_later_mailbox_blames_the_alias() -> None:
    service, problems = one_service(
        domain(),
        [box("zed@example.com", name="zed"), box("bob@example.com", name="a-bob", aliases=["zed"])],
    )
    assert problems == [
        (
            "Mailbox/mail/a-bob",
            "spec.aliases[0]",
            "zed@example.com is already used by Mailbox/mail/zed",
        )
    ]
    assert addresses(service) == ["zed@example.com"]


def test_mailbox_alias_colliding_with_a_domain_alias() -> None:
    service, problems = one_service(
        domain(aliases={"sales": ["alice"]}),
        [box("alice@example.com"), box("bob@example.com", aliases=["sales"])],
    )
    assert problems == [
        (
            "Mailbox/mail/bob",
            "spec.aliases[0]",
            "sales@example.com is already used by MailDomain/mail/example spec.aliases.sales",
        )
    ]
    assert addresses(service) == ["alice@example.com"]


def test_mailbox_address_colliding_with_a_domain_alias() -> None:
    _, problems = one_service(
        domain(aliases={"sales": ["x@example.net"]}), [box("sales@example.com")]
    )
    assert problems == [
        (
            "Mailbox/mail/sales",
            "spec.address",
            "sales@example.com is already used by MailDomain/mail/example spec.aliases.sales",
        )
    ]


def test_same_alias_on_two_mailboxes() -> None:
    _, problems = one_service(
        domain(),
        [box("alice@example.com", aliases=["team"]), box("bob@example.com", aliases=["team"])],
    )
    assert problems == [
        (
            "Mailbox/mail/bob",
            "spec.aliases[0]",
            "team@example.com is already used by Mailbox/mail/alice spec.aliases",
        )
    ]


# --- routing: aliases, catch-all, postmaster ----------------------------------------------------


def test_domain_alias_pointing_at_nothing() -> None:
    _, problems = one_service(
        domain(aliases={"info": ["alice", "ghost"]}), [box("alice@example.com")]
    )
    assert problems == [
        (
            MD_REF,
            "spec.aliases.info[1]",
            "ghost@example.com is neither a Mailbox nor an alias that leads to one",
        )
    ]


def test_alias_loop_is_reported_on_both_aliases() -> None:
    _, problems = one_service(domain(aliases={"a": ["b"], "b": ["a"]}), [box("c@example.com")])
    assert [(doc, path) for doc, path, _ in problems] == [
        (MD_REF, "spec.aliases.a[0]"),
        (MD_REF, "spec.aliases.b[0]"),
    ]


def test_alias_loop_message_says_loop() -> None:
    _, problems = one_service(domain(aliases={"a": ["b"], "b": ["a"]}), [box("c@example.com")])
    assert problems
    assert all("loop" in message for _, _, message in problems), problems


def test_alias_loop_with_an_exit_is_deliverable() -> None:
    service, problems = one_service(
        domain(aliases={"a": ["b", "c"], "b": ["a"]}), [box("c@example.com")]
    )
    assert problems == []
    assert service.resolve("b@example.com") == frozenset({"c@example.com"})


def test_alias_to_an_external_address_is_fine() -> None:
    service, problems = one_service(domain(aliases={"ext": ["someone@example.net"]}), [])
    assert problems == []
    assert service.resolve("ext@example.com") == frozenset({"someone@example.net"})


def test_catch_all_that_is_not_a_mailbox() -> None:
    _, problems = one_service(domain(catchAll="nobody"), [box("alice@example.com")])
    assert problems == [
        (
            MD_REF,
            "spec.catchAll",
            "nobody@example.com is not the address of a Mailbox of this domain",
        )
    ]


def test_catch_all_on_a_mailbox_is_fine() -> None:
    service, problems = one_service(domain(catchAll="alice"), [box("alice@example.com")])
    assert problems == []
    assert service.postmaster_target() == "alice@example.com"


def test_explicit_postmaster_that_resolves_nowhere() -> None:
    _, problems = one_service(domain(postmaster="hostmaster"), [box("alice@example.com")])
    assert problems == [
        (
            MD_REF,
            "spec.postmaster",
            "hostmaster@example.com is neither a Mailbox nor an alias that leads to one",
        )
    ]


def test_explicit_postmaster_external_or_via_alias_is_fine() -> None:
    _, problems = one_service(domain(postmaster="admin@example.net"), [])
    assert problems == []
    service, problems = one_service(
        domain(postmaster="admins", aliases={"admins": ["alice"]}), [box("alice@example.com")]
    )
    assert problems == []
    assert service.postmaster_target() == "admins@example.com"


def test_default_postmaster_falls_back_to_the_catch_all() -> None:
    service, problems = one_service(
        domain(catchAll="bob"), [box("alice@example.com"), box("bob@example.com")]
    )
    assert problems == []  # the default postmaster is not an error: it has a fallback
    assert service.domain.postmaster == "postmaster@example.com"
    assert service.postmaster_target() == "bob@example.com"


def test_default_postmaster_falls_back_to_the_first_mailbox() -> None:
    service, problems = one_service(domain(), [box("zed@example.com"), box("bob@example.com")])
    assert problems == []
    assert service.postmaster_target() == "bob@example.com"


def test_default_postmaster_served_by_a_mailbox_alias() -> None:
    service, _ = one_service(
        domain(catchAll="bob"),
        [box("alice@example.com", aliases=["postmaster"]), box("bob@example.com")],
    )
    assert service.postmaster_target() == "postmaster@example.com"
    assert service.resolve("postmaster@example.com") == frozenset({"alice@example.com"})


def test_postmaster_target_without_any_mailbox() -> None:
    service, problems = one_service(domain(), [])
    assert problems == []
    assert service.postmaster_target() is None


# --- MailService.resolve and alias_map ----------------------------------------------------------


@pytest.fixture
def small_service() -> MailService:
    service, problems = one_service(
        domain(
            aliases={
                "sales": ["alice", "bob", "partner@example.net"],
                "team": ["sales", "carol@example.org"],
                "info": ["alice"],
            }
        ),
        [box("alice@example.com", aliases=["a.example"]), box("bob@example.com")],
    )
    assert problems == []
    return service


def test_alias_map(small_service: MailService) -> None:
    assert small_service.alias_map() == {
        "info@example.com": ("alice@example.com",),
        "sales@example.com": ("alice@example.com", "bob@example.com", "partner@example.net"),
        "team@example.com": ("sales@example.com", "carol@example.org"),
        "a.example@example.com": ("alice@example.com",),
    }


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("alice@example.com", {"alice@example.com"}),
        ("a.example@example.com", {"alice@example.com"}),
        ("info@example.com", {"alice@example.com"}),
        ("sales@example.com", {"alice@example.com", "bob@example.com", "partner@example.net"}),
        (
            "team@example.com",
            {"alice@example.com", "bob@example.com", "partner@example.net", "carol@example.org"},
        ),
        ("someone@example.net", {"someone@example.net"}),
        ("nobody@example.com", set()),
    ],
)
def test_resolve(small_service: MailService, address: str, expected: set[str]) -> None:
    assert small_service.resolve(address) == frozenset(expected)


def test_resolve_of_a_loop_is_empty() -> None:
    service = MailService(domain(aliases={"a": ["b"], "b": ["a"]}), ())
    assert service.resolve("a@example.com") == frozenset()
    assert service.resolve("b@example.com") == frozenset()
