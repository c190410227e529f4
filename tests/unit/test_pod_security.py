"""The Pod Security Standards level each rendered mail pod meets (tests/pss.py), stated exactly.

docs/operator.md ("Pod Security") tells administrators which namespace label each pod needs; a
change to the pod templates that moves a pod to another level, or changes what keeps it from
the next one, must change this test (and that section) on purpose.
"""

from __future__ import annotations

from typing import Any

import pytest

from mailstack.api.assemble import assemble
from mailstack.api.models import API_VERSION
from mailstack.api.parse import parse_maildomain
from mailstack.render.objects import RenderOptions
from mailstack.render.workloads import render_mda_statefulset, render_mta_statefulset
from tests.pss import level_of, violations

Doc = dict[str, Any]

# StatefulSet suffix → (the level its pod meets, the Restricted controls it breaks).
EXPECTED = {
    "mta": ("baseline", {"Capabilities", "Running as Non-root"}),
    "mda": ("restricted", set()),
}


def pod_templates(spec: Doc) -> dict[str, Doc]:
    doc = {
        "apiVersion": API_VERSION,
        "kind": "MailDomain",
        "metadata": {"name": "example-com", "namespace": "mail"},
        "spec": {"domain": "example.com", **spec},
    }
    (service,), problems = assemble([parse_maildomain(doc)], [])
    assert not problems
    options = RenderOptions()
    return {
        "mta": render_mta_statefulset(service, options, "checksum", relay_auth=True)["spec"][
            "template"
        ],
        "mda": render_mda_statefulset(service, options, "checksum")["spec"]["template"],
    }


EVERY_PROTOCOL = {
    "protocols": dict.fromkeys(("imap", "pop3", "submission", "submissions", "managesieve"), True)
}


ANTIVIRUS = {"spam": {"antivirus": {"enabled": True}}}


@pytest.mark.parametrize(
    "spec", [{}, EVERY_PROTOCOL, ANTIVIRUS], ids=["defaults", "every-protocol", "antivirus"]
)
@pytest.mark.parametrize("component", sorted(EXPECTED))
def test_each_pod_meets_its_stated_level(component: str, spec: Doc) -> None:
    template = pod_templates(spec)[component]
    level, breaks = EXPECTED[component]
    assert level_of(template) == level, violations(template, "restricted")
    found = violations(template, "restricted")
    assert {line.split(":")[0] for line in found} == breaks, found
