"""``spec.service.exposure`` against the API emulator: the ProxyProtocol exposure's Services
(the public one a ClusterIP with the exposure annotation, ``<name>-internal`` beside it), and the
internal Service deleted when the MailDomain leaves ProxyProtocol."""

from __future__ import annotations

from tests.component.conftest import condition, wait_ready
from tests.component.emulator import ApiServer, wait_for
from tests.component.harness import OperatorThread
from tests.component.test_operator import populate

PROXIED = {"exposure": "ProxyProtocol", "proxyProtocol": {"trustedCIDRs": ["10.42.0.0/16"]}}


def test_the_internal_service_comes_and_goes_with_the_proxy_protocol(
    api: ApiServer, operator: OperatorThread
) -> None:
    populate(api, service=PROXIED)
    wait_ready(api, "example-org")
    public = api.get("services", "example-org")
    assert public["spec"]["type"] == "ClusterIP"
    assert public["metadata"]["annotations"]["mailstack.dev/exposure"] == "ProxyProtocol"
    internal = api.get("services", "example-org-internal")
    assert internal is not None
    assert {p["targetPort"] for p in internal["spec"]["ports"]} >= {"int-submission", "int-imaps"}
    mta = api.get("networkpolicies", "example-org-mta")["spec"]["ingress"]
    assert mta[0]["from"] == [{"ipBlock": {"cidr": "10.42.0.0/16"}}]

    api.patch(
        "maildomains",
        "example-org",
        {"spec": {"service": {"exposure": "LoadBalancer", "proxyProtocol": None}}},
    )
    wait_for(lambda: api.get("services", "example-org-internal") is None, timeout=20)
    public = api.get("services", "example-org")
    assert public["spec"]["type"] == "LoadBalancer"
    assert condition(api.get("maildomains", "example-org"), "Valid") == "True"
