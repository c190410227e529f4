"""The fourth #13 check: a proof of control given for one domain must not count for another
(``api.proof``). Fails while the attack works."""

from __future__ import annotations

from mailstack.api.proof import Proof, decide, from_status


def test_a_proof_given_for_one_domain_does_not_count_for_another() -> None:
    """Attack: a tenant proves its own ``squat.customers.example`` (status ``proven: true``,
    the record name in it) and its MailDomain then names ``shop.customers.example``.
    ``decide`` says "a proof for another domain does not count", but ``from_status`` builds
    the Proof with the domain it is asked about and ignores ``record.name``: the old proof is
    taken as given for the new domain. Only the CRD's ``self == oldSelf`` rule on spec.domain
    stands in between (an emulator without CEL, a CRD installed without it, a status restored
    from a backup onto a MailDomain of another domain: no proof asked)."""
    status = {
        "proof": Proof("squat.customers.example", "a" * 32, proven=True).as_status(),
    }
    carried = from_status("shop.customers.example", status)
    decided = decide("shop.customers.example", carried, None, lambda n: b"\0" * n)
    assert not decided.proven, (
        "a proof of squat.customers.example counts as proof of shop.customers.example"
    )
