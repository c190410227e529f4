"""The forwarding guard's map against a hostile tenant's alias graph (#13, third outside check).

``render.forwarding._final_recipients`` once followed every simple path of the virtual alias
graph. A tenant writes that graph: ``forwardTo`` may name other mailboxes of the same domain.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

from mailstack.api.parse import parse_mailbox

API = "mailstack.dev/v1alpha1"
BOXES = 12


def test_mailboxes_forwarding_to_each_other_render_in_bounded_time() -> None:
    """Attack: a tenant makes 12 Mailboxes, each with ``forwardTo`` the 11 others (accepted by
    the parser, below). Rendering the users Secret's forwarding map walks every path of that
    complete graph: 12! ≈ 5e8 paths, measured 1 s for 9 boxes and x10 per box beyond, so
    minutes for 11, hours for 13. The render holds one of the operator's few render threads
    (and the GIL) meanwhile: a few such MailDomains stop every tenant's reconciles. The map of
    12 mailboxes must render in well under a second."""
    domain = "t.example"
    addresses = [f"b{i}@{domain}" for i in range(BOXES)]
    for address in addresses:  # the tenant can write this: each Mailbox parses
        spec = {
            "address": address,
            "passwordSecretRef": {"name": "pw"},
            "forwardTo": [a for a in addresses if a != address],
        }
        meta = {"name": address.split("@")[0], "namespace": "t"}
        parse_mailbox({"apiVersion": API, "kind": "Mailbox", "metadata": meta, "spec": spec})
    program = textwrap.dedent(
        f"""
        from mailstack.render.forwarding import forwarding_entries
        boxes = [f"b{{i}}@{domain}" for i in range({BOXES})]
        entries = [(b, tuple(x for x in boxes if x != b)) for b in boxes]
        forwarding_entries(entries, "{domain}")
        """
    )
    try:
        subprocess.run([sys.executable, "-c", program], check=True, timeout=10)
    except subprocess.TimeoutExpired:
        raise AssertionError("the forwarding map of 12 mailboxes took over 10 s") from None
