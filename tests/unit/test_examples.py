"""The examples work on a machine without internet: mail to them stays on the stack.

``./scripts/run.sh`` runs examples/example.com and the README sends a test mail to bob; if an
example forwarded or aliased to a domain it does not serve, that mail would leave through DNS and,
with no internet, bounce back to the sender. The one forwarding example lives apart
(examples/forwarding/) and says what it needs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mailstack.api.assemble import assemble
from mailstack.api.documents import load_documents

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
LOCAL_EXAMPLES = [EXAMPLES / "example.com", EXAMPLES / "minimal.yaml"]


@pytest.mark.parametrize("path", LOCAL_EXAMPLES, ids=lambda p: p.name)
def test_every_address_of_a_local_example_is_delivered_on_the_stack(path: Path) -> None:
    inputs = load_documents([path])
    services, problems = assemble(inputs.domains, inputs.mailboxes)
    assert not inputs.problems and not problems
    assert services
    for service in services:
        served = service.domain.domain
        assert all(not box.forward_to for box in service.mailboxes)
        for alias, targets in service.alias_map().items():
            leaving = [t for t in targets if "@" in t and t.rsplit("@", 1)[1] != served]
            assert not leaving, f"{alias} leaves {served}: {leaving}"


def test_the_forwarding_example_says_what_it_needs() -> None:
    text = (EXAMPLES / "forwarding" / "mailbox.yaml").read_text()
    assert "forwardTo:" in text
    assert "What it needs" in text and "port 25" in text
    inputs = load_documents([EXAMPLES / "example.com", EXAMPLES / "forwarding"])
    services, problems = assemble(inputs.domains, inputs.mailboxes)
    assert not inputs.problems and not problems
    [service] = services
    assert [box.forward_to for box in service.mailboxes if box.forward_to] == [
        ("dave@example.net",)
    ]
