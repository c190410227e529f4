"""Fifth #13 check on the emulator: G2's window around the only policy, through an operator
restart and a rename. tenant-a names tenant-b's mail host ``mail.b.example`` as its own host
name on a domain nobody claims, waiting for a moment in which the operator serves "as for a
single team" (host names uncontested, no grant needed) and so gets its stack (and, with
cert-manager, the Certificate of the victim's mail host).
"""

from __future__ import annotations

import time

import pytest

from tests.component.conftest import maildomain
from tests.component.emulator import ApiServer, wait_for
from tests.component.harness import OperatorThread
from tests.component.test_external_dns import two_tenants
from tests.component.test_limits import policy, valid_reason
from tests.component.test_operator import in_namespace


def squat(api: ApiServer) -> None:
    two_tenants(api)
    api.create(
        in_namespace(maildomain("a", "squat.example", hostname="mail.b.example"), "tenant-a")
    )


def served(api: ApiServer) -> bool:
    return bool(api.list("statefulsets", "tenant-a") or api.list("services", "tenant-a"))


@pytest.mark.parametrize("require_grant", [True, False], ids=["requireGrant", "default"])
def test_a_restart_while_no_policy_exists(api: ApiServer, require_grant: bool) -> None:
    """requireGrant closes the window; without it the operator restarted while no policy exists
    serves as for a single team, as docs/operator.md says (this case documents that)."""
    squat(api)
    with OperatorThread(api, require_domain_grant=require_grant):
        wait_for(lambda: valid_reason(api, "a", "tenant-a") == "DomainNotGranted", 60)
    for name in ("a", "b"):
        api.delete("maildomainpolicies", name, None)
    with OperatorThread(api, require_domain_grant=require_grant):
        if require_grant:
            time.sleep(5)
            assert valid_reason(api, "a", "tenant-a") == "DomainNotGranted"
            assert not served(api)
        else:
            wait_for(lambda: served(api), 60)  # the documented window


def test_policies_renamed_under_a_running_operator_serve_nothing_in_between(
    api: ApiServer, operator: OperatorThread
) -> None:
    squat(api)
    wait_for(lambda: valid_reason(api, "a", "tenant-a") == "DomainNotGranted", 60)
    for name in ("a", "b"):
        api.delete("maildomainpolicies", name, None)
    time.sleep(3)
    assert valid_reason(api, "a", "tenant-a") == "DomainNotGranted"
    assert not served(api)
    api.create(policy("a2", namespaces=["tenant-a"], domains=["a.example", "*.a.example"]), None)
    api.create(policy("b2", namespaces=["tenant-b"], domains=["b.example", "*.b.example"]), None)
    time.sleep(3)
    assert valid_reason(api, "a", "tenant-a") == "DomainNotGranted"
    assert not served(api)
