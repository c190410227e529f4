"""An attack of the re-check of issue #13 (hostile tenants) on the pure rules that still works:
fixed elsewhere, and marked ``xfail(strict=True)`` until then (an unexpected pass fails). The
docstring says the attack.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

# The first check's render through the CLI, with its policy for tenant-a.
from tests.component.test_hostile_check_pure import render

# --- R9: any ClusterIssuer of the cluster, through the operator's account ---------------------


@pytest.mark.xfail(strict=True, reason="the re-check's R9: not fixed yet")
def test_a_policy_decides_which_cluster_issuers_a_tenant_may_use(tmp_path: Path) -> None:
    """Attack: tenants have no RBAC on cert-manager's Certificates; the operator creates one for
    them with the ``issuerRef`` the tenant writes, and a MailDomainPolicy cannot say which
    issuers a namespace may use. Under a policy, the tenant names the platform's internal
    ClusterIssuer (``platform-internal-ca``, trusted inside the cluster), or burns the shared
    ACME account's per-domain rate limit for every tenant under the same registered domain,
    and the certificate and its key land in a Secret of its own namespace."""
    tls = (
        "  tls:\n    issuer: certManager\n    certManager:\n"
        "      issuerRef: {name: platform-internal-ca, kind: ClusterIssuer}\n"
    )
    done = render(tmp_path, tls)
    issuers = [
        doc["spec"]["issuerRef"]
        for path in (tmp_path / "out").rglob("*.yaml")
        for doc in yaml.safe_load_all(path.read_text())
        if isinstance(doc, dict) and doc.get("kind") == "Certificate"
    ]
    print(done.returncode, issuers)
    assert not any(ref.get("name") == "platform-internal-ca" for ref in issuers), (
        "rendered a Certificate from ClusterIssuer platform-internal-ca under a policy that "
        "cannot say which issuers tenant-a may use"
    )
