"""What a granted tenant's Secrets cost the operator's memory (#13 checks H1, H6).

The operator keeps the data of a Secret only while something it serves refers to it, and its
parse caches keep no more of a Secret's text than a key needs: a tenant's MailDomains and
Mailboxes that serve nothing, and edits of the operator's own Secrets in the tenant's namespace,
leave (almost) nothing behind.
"""

from __future__ import annotations

import base64
import time
from typing import Any

from mailstack.material import dkim
from tests.component.conftest import conditions, mailbox, maildomain
from tests.component.emulator import ApiServer, wait_for
from tests.component.harness import OperatorThread
from tests.component.test_limits import namespace, policy, valid_reason
from tests.component.test_operator import in_namespace
from tests.component.test_tenancy_fairness import MIB, blob, held_bytes

COUNT = 12
BLOB = 700 * 1024  # its base64 stays under the API server's 1 MiB limit
LIMITED = "LimitExceeded"


def assert_not_held(operator: OperatorThread, names: list[str], what: str) -> None:
    """The operator keeps (almost) nothing of the hostile namespace's Secrets ``names``, once
    it has seen the last one and the passes the last writes caused have settled (one that
    served for a moment, before an older claim came, forgets its Secret at its next pass)."""
    cache = operator.operator.secrets
    last = names[-1]
    wait_for(lambda: cache.get("hostile", last) is not None or cache.unloaded("hostile", last), 30)
    deadline = time.monotonic() + 20
    while (held := held_bytes(operator, "hostile", names)) >= 2 * MIB:
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    print(f"{held / MIB:.1f} MiB held for {what}")
    assert held < 2 * MIB, f"{held / MIB:.1f} MiB held for {what}"


def grant_hostile(api: ApiServer, **limits: Any) -> None:
    namespace(api, "hostile")
    spec: dict[str, Any] = {"namespaces": ["hostile"], "domains": ["h.example", "*.h.example"]}
    api.create(policy("hostile", **spec, limits=limits), None)


def box_reason(api: ApiServer, name: str) -> str | None:
    reason = conditions(api.get("mailboxes", name, "hostile")).get("Valid", {}).get("reason")
    return None if reason is None else str(reason)


def test_maildomains_on_a_shared_server_do_not_make_the_operator_hold_their_secrets(
    api: ApiServer, operator: OperatorThread
) -> None:
    """Check H1: a granted tenant creates MailDomains on its granted names that join a
    MailServer: each is ``ServerPending`` (serves nothing, counts against no limit) and names a
    700 KiB labelled Secret as its DNS provider's key, which it can never use (it never
    publishes). The operator read and kept every one, unbounded by ``maxMailDomains``."""
    grant_hostile(api, maxMailDomains=1)
    names = [f"blob{i}" for i in range(COUNT)]
    for i, name in enumerate(names):
        api.create(blob(name, "hostile", BLOB))
        tsig = {"tsigKeyName": "k", "tsigSecretRef": {"name": name}}
        provider = {"rfc2136": {"server": "ns1.h.example", **tsig}}
        doc = maildomain(
            f"s{i}", f"s{i}.h.example", serverRef={"name": "shared"}, dns={"provider": provider}
        )
        api.create(in_namespace(doc, "hostile"))
    last = f"s{COUNT - 1}"
    wait_for(lambda: valid_reason(api, last, "hostile") is not None, 60)
    assert_not_held(operator, names, f"{COUNT} ServerPending MailDomains, which serve nothing")


def test_maildomains_over_the_limit_do_not_make_the_operator_hold_their_secrets(
    api: ApiServer, operator: OperatorThread
) -> None:
    """Check H1, second form: ``maxMailDomains: 1``; the tenant creates more MailDomains on its
    granted names, each naming a 700 KiB labelled Secret as relay credentials. All but the
    first are ``LimitExceeded`` and serve nothing, yet every Secret was read and kept: the
    limit bounded what is served, not what the operator holds."""
    grant_hostile(api, maxMailDomains=1)
    names = [f"blob{i}" for i in range(COUNT)]
    for i, name in enumerate(names):
        api.create(blob(name, "hostile", BLOB))
        relay = {"host": "smtp.example.net", "credentialsSecretRef": {"name": name}}
        api.create(in_namespace(maildomain(f"d{i}", f"d{i}.h.example", relay=relay), "hostile"))
    last = f"d{COUNT - 1}"
    wait_for(lambda: valid_reason(api, last, "hostile") is not None, 60)

    # Created within a second, they are admitted by uid: one of them, not always d0, is within
    # the limit (and refused for its Secret, which has no relay credentials: it was read).
    def refused() -> list[str]:
        reasons = [valid_reason(api, f"d{i}", "hostile") for i in range(COUNT)]
        return [name for name, reason in zip(names, reasons, strict=True) if reason == LIMITED]

    wait_for(lambda: len(refused()) == COUNT - 1, 60)
    assert_not_held(operator, refused(), f"{COUNT - 1} MailDomains refused by maxMailDomains")
    (served,) = set(names) - set(refused())
    assert operator.operator.secrets.get("hostile", served) is not None  # the served one's


def test_mailboxes_over_the_limit_do_not_make_the_operator_hold_their_secrets(
    api: ApiServer, operator: OperatorThread
) -> None:
    """Check H1, third form: ``maxMailboxes: 1``; one served MailDomain, then many Mailboxes
    on its domain, each naming a 700 KiB labelled Secret as its password. All but one are
    refused by the limit, yet the operator read and kept every password Secret."""
    grant_hostile(api, maxMailboxes=1)
    api.create(in_namespace(maildomain("h", "h.example"), "hostile"))
    wait_for(lambda: valid_reason(api, "h", "hostile") is not None, 60)
    names = [f"blob{i}" for i in range(COUNT)]
    for i, name in enumerate(names):
        api.create(blob(name, "hostile", BLOB))
        api.create(in_namespace(mailbox(f"u{i}", f"u{i}@h.example", secret=name), "hostile"))

    def refused() -> list[str]:
        return [n for i, n in enumerate(names) if box_reason(api, f"u{i}") == LIMITED]

    wait_for(lambda: len(refused()) == COUNT - 1, 60)  # the statuses come one pass at a time
    refused_names = refused()
    assert_not_held(operator, refused_names, f"{COUNT - 1} Mailboxes refused by maxMailboxes")


def test_edits_of_a_maildomains_own_dkim_secret_do_not_grow_the_key_cache(
    api: ApiServer, operator: OperatorThread
) -> None:
    """Check H6: the tenant may write the Secrets of its namespace, the operator's
    ``<name>-dkim`` too. It writes its valid key followed by some 600 KB of blanks, a different
    length each time; the operator reads the key back, restores the Secret, and kept each text
    it parsed as a key of the parse cache (1024 entries): some 600 MiB from one MailDomain.
    Now the cache holds the stripped text, of at most ``MAX_KEY_TEXT``."""
    cache = dkim._parse_stripped_key
    namespace(api, "hostile")
    api.create(in_namespace(maildomain("d", "d.example"), "hostile"))
    secret = wait_for(lambda: api.get("secrets", "d-dkim", "hostile"), 60)
    (key_name, original) = next(iter(secret["data"].items()))
    pem = base64.b64decode(original)
    before = cache.cache_info().currsize
    edits = 12
    for i in range(edits):
        padded = pem + b"\n" * (600_000 + i)
        data = {key_name: base64.b64encode(padded).decode()}
        api.patch("secrets", "d-dkim", {"data": data}, "hostile")
        wait_for(
            lambda: (
                (api.get("secrets", "d-dkim", "hostile") or {}).get("data", {}).get(key_name)
                == original
            ),
            30,
        )
    grown = cache.cache_info().currsize - before
    print(f"{grown} key texts kept after {edits} padded edits of d-dkim")
    assert grown <= 2, f"{grown} padded key texts (about 600 KB each) kept by the key cache"
