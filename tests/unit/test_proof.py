"""The DNS proof of control: the token, the decision, its place in assemble and in a render."""

from __future__ import annotations

import asyncio
import itertools
import socket
from datetime import UTC, datetime
from typing import Any

import pytest

from mailstack.api.assemble import assemble
from mailstack.api.parse import parse_maildomain
from mailstack.api.policy import Grants, parse_policy
from mailstack.api.proof import PROOF_PENDING, Proof, decide, from_status, new_token
from mailstack.controller import plan, reasons
from mailstack.controller.proof_lookup import ProofLookup

API = "mailstack.dev/v1alpha1"


def counting_bytes() -> Any:
    counter = itertools.count()
    return lambda n: bytes([next(counter) % 256]) * n


def policy(name: str, namespaces: list[str], require: bool) -> Any:
    spec = {"namespaces": namespaces, "domains": ["*.t.example"], "requireProof": require}
    return parse_policy({"apiVersion": API, "kind": "MailDomainPolicy",
                         "metadata": {"name": name}, "spec": spec})  # fmt: skip


def domain_doc(ns: str, created: str, status: Any = None) -> dict[str, Any]:
    meta = {"name": "mail", "namespace": ns, "uid": f"uid-{ns}", "creationTimestamp": created}
    doc = {"apiVersion": API, "kind": "MailDomain", "metadata": meta}
    return {**doc, "spec": {"domain": "shop.t.example"}, "status": status}


def test_a_token_is_random_and_the_record_names_it() -> None:
    token = new_token(counting_bytes())
    assert len(token) == 32 and token.isalnum() and token == token.lower()
    assert new_token(counting_bytes()) == token  # a function of the random source alone
    proof = Proof("shop.t.example", token)
    assert proof.record_name == "_mailstack-challenge.shop.t.example"
    assert proof.record_value == f"mailstack-verification={token}"
    assert from_status("shop.t.example", {"proof": proof.as_status()}) == proof


def test_a_status_without_a_usable_token_holds_no_proof() -> None:
    for status in (None, {}, {"proof": "x"}, {"proof": {"token": "a b"}}, {"proof": {}}):
        assert from_status("shop.t.example", status) is None
    record = {"name": "_mailstack-challenge.d.example"}
    held = {"proof": {"token": "abc", "proven": "yes", "record": record}}
    assert from_status("d.example", held) == Proof("d.example", "abc", False)


def test_a_proof_given_for_one_domain_does_not_count_for_another() -> None:
    """A tenant proves ``squat.customers.example`` and its MailDomain then names
    ``shop.customers.example`` (a CRD without its immutability rule on spec.domain, a status
    restored onto another MailDomain): the status names the old challenge record, so no proof
    is carried over and a new token is asked for."""
    status = {"proof": Proof("squat.customers.example", "a" * 32, proven=True).as_status()}
    assert from_status("shop.customers.example", status) is None
    carried = from_status("shop.customers.example", status)
    assert not decide("shop.customers.example", carried, None, counting_bytes()).proven
    unnamed = {"proof": {"token": "a" * 32, "proven": True}}
    assert from_status("shop.customers.example", unnamed) is None


def test_the_decision_issues_a_token_then_waits_for_the_record_and_keeps_a_proof() -> None:
    issued = decide("d.example", None, ["anything"], counting_bytes())
    assert not issued.proven and issued.token
    assert decide("d.example", issued, None, counting_bytes()) == issued  # not looked up
    assert not decide("d.example", issued, [], counting_bytes()).proven
    other = f"mailstack-verification={issued.token}x"
    assert not decide("d.example", issued, [other, "v=spf1 -all"], counting_bytes()).proven
    proven = decide("d.example", issued, [f" {issued.record_value} "], counting_bytes())
    assert proven == Proof("d.example", issued.token, True)
    # Proven once is enough: the record may go.
    assert decide("d.example", proven, [], counting_bytes()).proven


def test_proof_is_required_only_when_every_grant_of_the_domain_requires_it() -> None:
    strict = policy("strict", ["a", "b"], True)
    assert Grants((strict,)).proof_required("a", "shop.t.example")
    assert not Grants((strict,)).proof_required("a", "other.example")  # not granted at all
    both = Grants((strict, policy("lenient", ["b"], False)))
    assert both.proof_required("a", "shop.t.example")
    assert not both.proof_required("b", "shop.t.example")


def test_an_unproven_claim_takes_no_part_in_the_contest() -> None:
    grants = Grants((policy("shared", ["squatter", "owner"], True),))
    squatter = parse_maildomain(domain_doc("squatter", "2026-12-01T00:00:00Z"))
    owner = parse_maildomain(domain_doc("owner", "2026-12-07T00:00:00Z"))
    proofs = {owner.ref: Proof(owner.domain, "tok", True), squatter.ref: Proof(owner.domain, "t")}
    services, problems = assemble([squatter, owner], [], grants, proofs)
    assert [s.domain.ref for s in services] == [owner.ref]
    assert [(p.document, p.kind) for p in problems] == [(squatter.ref, PROOF_PENDING)]
    assert (
        'publish the TXT record _mailstack-challenge.shop.t.example "mailstack-verification=t"'
        in (problems[0].message)
    )
    # Without proofs (files: mailstack render) no proof is asked for: the oldest claim wins.
    services, _ = assemble([squatter, owner], [], grants)
    assert [s.domain.ref for s in services] == [squatter.ref]


def inputs(doc: dict[str, Any], **kw: Any) -> plan.DomainInputs:
    grants = Grants((policy("shared", ["owner", "squatter"], True),))
    kw.setdefault("siblings", [])
    return plan.DomainInputs(
        domain=doc, mailboxes=[], secrets={}, now=datetime(2026, 12, 7, tzinfo=UTC),
        random_bytes=counting_bytes(), grants=grants, **kw,
    )  # fmt: skip


def test_a_render_issues_the_token_and_withdraws_until_the_record_is_seen() -> None:
    doc = domain_doc("owner", "2026-12-07T00:00:00Z")
    first = plan.render_domain(inputs(doc))
    assert first.invalid_reason == reasons.PROOF_PENDING and first.withdrawn
    assert first.proof is not None and not first.proof.proven and not first.objects
    assert first.proof.record_value in first.domain_problems[0].message
    seen = plan.render_domain(inputs(doc, proof=first.proof, proof_txt=[first.proof.record_value]))
    assert seen.ok and seen.proof == Proof(first.proof.domain, first.proof.token, True)


def test_a_proven_sibling_in_its_status_outserves_a_pending_claim() -> None:
    squatter = domain_doc("squatter", "2026-12-01T00:00:00Z")
    owner = domain_doc(
        "owner", "2026-12-07T00:00:00Z", {"proof": Proof("shop.t.example", "t", True).as_status()}
    )
    rendered = plan.render_domain(inputs(squatter, siblings=[owner]))
    assert rendered.invalid_reason == reasons.PROOF_PENDING
    mine = plan.render_domain(inputs(owner, siblings=[squatter], proof=Proof("shop.t.example",
                                     "t", True)))  # fmt: skip
    assert mine.ok


def test_lookups_back_off_until_a_new_token() -> None:
    now = [0.0]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:  # nobody answers there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        lookup = ProofLookup("127.0.0.1", port, timeout=0.2, first_delay=30, max_delay=100,
                             clock=lambda: now[0])  # fmt: skip

        def look(token: str = "t") -> Any:
            if not lookup.due("uid", token):
                return "not due"
            return asyncio.run(lookup.txt("_mailstack-challenge.d.example"))

        assert lookup.retry_after("uid") == 30  # a token just issued: the first delay
        assert look() is None  # timed out: not seen
        assert look() == "not due"
        assert lookup.retry_after("uid") == 30
        now[0] = 10
        assert lookup.retry_after("uid") == 20
        now[0] = 31
        look()
        assert lookup.retry_after("uid") == 60  # doubled
        now[0] = 100
        look()
        assert lookup.retry_after("uid") == 100  # at most max_delay
        look("new")
        assert lookup.retry_after("uid") == 30  # a new token starts again
        lookup.forget("uid")
        assert lookup.retry_after("uid") == 30


class HeldLookup(ProofLookup):
    """Answers each TXT query when the test says so (a resolver that may never answer)."""

    def __init__(self, **kw: Any) -> None:
        super().__init__("127.0.0.1", first_delay=0.0, **kw)
        self.answer: asyncio.Future[list[str]] | None = None
        self.queries: list[str] = []

    async def txt(self, name: str) -> list[str] | None:
        self.queries.append(name)
        if self.answer is None:
            self.answer = asyncio.get_running_loop().create_future()
        return await self.answer


def test_a_lookup_runs_off_the_pass_and_wakes_its_maildomain_when_the_answer_changes() -> None:
    grants = Grants((policy("shared", ["owner", "hostile"], True),))
    token = Proof("shop.t.example", "tok")
    woken: list[tuple[str, str]] = []
    lookup = HeldLookup(per_namespace=2)
    lookup.wake = lambda ns, name: woken.append((ns, name))

    def doc(ns: str, name: str) -> dict[str, Any]:
        found = domain_doc(ns, "2026-12-07T00:00:00Z", {"proof": token.as_status()})
        found["metadata"] = {**found["metadata"], "name": name, "uid": f"uid-{ns}-{name}"}
        return found

    async def scenario() -> None:
        owner = doc("owner", "mail")
        assert await lookup.look(owner, grants, owner["status"]) == (token, None)  # no wait
        # A tenant's many pending proofs: two lookups in flight at a time; the rest wait.
        for i in range(5):
            hostile = doc("hostile", f"p{i}")
            assert await lookup.look(hostile, grants, hostile["status"]) == (token, None)
        await asyncio.sleep(0.05)
        assert len(lookup.queries) == 3  # the owner's and two of the hostile namespace
        assert lookup.answer is not None
        lookup.answer.set_result([token.record_value])
        await asyncio.sleep(0.05)
        assert ("owner", "mail") in woken and len(lookup.queries) == 6
        assert await lookup.look(owner, grants, owner["status"]) == (token, [token.record_value])
        lookup.close()

    asyncio.run(scenario())


def test_a_proven_maildomain_of_the_namespace_view_counts_against_the_limits() -> None:
    limited = parse_policy(
        {
            "apiVersion": API,
            "kind": "MailDomainPolicy",
            "metadata": {"name": "p"},
            "spec": {
                "namespaces": ["owner"],
                "domains": ["*.t.example"],
                "requireProof": True,
                "limits": {"maxMailDomains": 1},
            },
        }
    )
    older = domain_doc(
        "owner", "2026-12-01T00:00:00Z", {"proof": Proof("older.t.example", "a", True).as_status()}
    )
    older["metadata"]["name"] = "older"
    older["spec"]["domain"] = "older.t.example"
    mine = domain_doc("owner", "2026-12-07T00:00:00Z")
    rendered = plan.render_domain(
        plan.DomainInputs(
            domain=mine, siblings=[], mailboxes=[], secrets={},
            now=datetime(2026, 12, 7, tzinfo=UTC), grants=Grants((limited,)),
            namespace_domains=[older, mine], proof=Proof("shop.t.example", "b", True),
        )
    )  # fmt: skip
    assert rendered.invalid_reason == reasons.LIMIT_EXCEEDED


def test_the_operator_takes_the_resolver_of_the_proofs_as_an_address() -> None:
    from mailstack.commands.main import build_parser
    from mailstack.commands.operator import config_from_args

    parser = build_parser()
    args = parser.parse_args(["operator", "--proof-resolver", "10.0.0.10"])
    assert config_from_args(args).proof_resolver == "10.0.0.10"
    assert config_from_args(parser.parse_args(["operator"])).proof_resolver == ""
    with pytest.raises(SystemExit):
        parser.parse_args(["operator", "--proof-resolver", "dns.example"])


@pytest.mark.parametrize(
    "name",
    [
        "_MAILSTACK-CHALLENGE.A.EXAMPLE",
        "_mailstack-challenge.a.example.",
        "_mailstack-challenge.A.example",
        " _mailstack-challenge.a.example",
        "_mailstack-challenge.b.example",
        "_mailstack-challenge.x.a.example",
    ],
)
def test_a_status_proof_naming_its_record_otherwise_does_not_count(name: str) -> None:
    status = {"proof": {"token": "abc", "record": {"name": name}, "proven": True}}
    assert from_status("a.example", status) is None
