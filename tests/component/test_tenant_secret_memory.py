"""What a granted tenant's Secrets cost the operator's memory (#13 checks H1, H6).

The operator keeps the data of a Secret only while something it serves refers to it, and its
parse caches keep no more of a Secret's text than a key needs: a tenant's MailDomains and
Mailboxes that serve nothing, and edits of the operator's own Secrets in the tenant's namespace,
leave (almost) nothing behind.
"""

from __future__ import annotations

import base64

from mailstack.material import dkim
from tests.component.conftest import maildomain
from tests.component.emulator import ApiServer, wait_for
from tests.component.harness import OperatorThread
from tests.component.test_limits import namespace
from tests.component.test_operator import in_namespace


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
