"""Outside re-check of issue #13 (hostile tenants), the pure parts: attacks on the fixes of the
first check, through ``mailstack render`` and the API functions. Each test FAILS while its attack
works (its docstring says the attack); the ``test_held_*`` ones pass: attacks that are stopped.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
import yaml

from mailstack.api import hosts
from mailstack.api.assemble import assemble
from mailstack.api.parse.maildomain import parse_maildomain
from mailstack.api.policy import Grants, parse_policy

# The first check's render through the CLI, with its policy for tenant-a.
from tests.component.test_hostile_check_pure import POLICY, render


def antivirus(urls: list[str]) -> str:
    listed = ", ".join(urls)
    return (
        "  spam:\n    antivirus:\n      enabled: true\n      signatures:\n"
        f"        official: false\n        urls: [{listed}]\n"
    )


# --- R1: an IPv4 address spelled with a hex (or octal) last label passes as a "name" ---------

# Each is a valid domain name for validate.domain_name (the top label is not all digits), so
# hosts.host_problem judges it as a public name; glibc's getaddrinfo (and libcurl, which
# freshclam uses) reads it with inet_aton: no DNS lookup, the address below.
HEX_SPELLINGS = {
    "169.254.169.0xfe": "169.254.169.254",
    "0xa9.0xfe.0xa9.0xfe": "169.254.169.254",
    "169.0xfea9fe": "169.254.169.254",
    "10.0.0.0x1": "10.0.0.1",
    "127.0.0.0x1": "127.0.0.1",
}


@pytest.mark.parametrize("spelling", sorted(HEX_SPELLINGS))
def test_a_hex_spelled_metadata_address_is_not_a_public_host(spelling: str) -> None:
    """Attack: ``spam.antivirus.signatures.urls: [http://169.254.169.0xfe/latest/meta-data]``
    (or privateMirror) under a policy: the host rule takes it for a public name, and freshclam
    in the MTA pod fetches from the cloud metadata address (or 10.x, loopback)."""
    resolved = socket.getaddrinfo(spelling, 80, socket.AF_INET, socket.SOCK_STREAM)[0][4][0]
    assert resolved == HEX_SPELLINGS[spelling]  # what the pod's libc makes of it
    assert hosts.host_problem(spelling) is not None, f"{spelling} ({resolved}) counts as public"


def test_freshclam_is_not_pointed_at_the_metadata_address_by_a_hex_spelling(
    tmp_path: Path,
) -> None:
    """Attack (as R1, end to end): ``mailstack render`` with a policy accepts the URL and writes
    ``DatabaseCustomURL http://169.254.169.0xfe/...`` into freshclam.conf."""
    done = render(tmp_path, antivirus(["http://169.254.169.0xfe/latest/meta-data/x.ndb"]))
    assert done.returncode != 0, "rendered: freshclam fetches from 169.254.169.254"


# --- R2: a name the MTA pod's resolver completes with the cluster's search domains ----------


def test_freshclam_is_not_pointed_at_a_cluster_service_through_the_search_domains(
    tmp_path: Path,
) -> None:
    """Attack: ``urls: [http://kubernetes.default/x.ndb, http://shop.tenant-b/x.ndb]``. The host
    rule refuses single labels and ``.svc`` names, but a two-label name passes as public; the
    MTA pod has the default ``dnsPolicy: ClusterFirst`` (``ndots:5`` and the search list), and
    freshclam resolves through getaddrinfo, so these become ``kubernetes.default.svc.<cluster
    domain>`` (the API server) and tenant-b's Service ``shop``. (Postfix resolves the relay
    without the search list; freshclam does not.) The docs' threat table says "names resolved
    without the search list"."""
    done = render(tmp_path, antivirus(["http://kubernetes.default/x.ndb"]))
    if done.returncode == 0:
        pods = (tmp_path / "out").rglob("*.yaml")
        dns_policies = [
            doc["spec"]["template"]["spec"].get("dnsPolicy", "ClusterFirst")
            for path in pods
            for doc in yaml.safe_load_all(path.read_text())
            if isinstance(doc, dict) and doc.get("kind") == "StatefulSet"
        ]
        # Rendered: acceptable only if the pods do not complete names with the search list.
        assert dns_policies and all(p == "None" for p in dns_policies), (
            "rendered: freshclam fetches http://kubernetes.default/ through the search domains "
            f"(dnsPolicy {dns_policies})"
        )


# --- R3: a newer claim of a domain under an older tenant's domain takes its mail host --------

SHARED = """\
apiVersion: mailstack.dev/v1alpha1
kind: MailDomainPolicy
metadata: {name: customers}
spec:
  namespaces: [tenant-a, squatter]
  domains: ["*.customers.example"]
"""


def _md(ns: str, name: str, domain: str, created: str, **spec: Any) -> Any:
    return parse_maildomain(
        {
            "apiVersion": "mailstack.dev/v1alpha1",
            "kind": "MailDomain",
            "metadata": {
                "name": name,
                "namespace": ns,
                "uid": f"uid-{name}",
                "creationTimestamp": created,
            },
            "spec": {"domain": domain, **spec},
        }
    )


def test_a_newer_domain_under_an_older_tenants_domain_does_not_take_its_mail_host() -> None:
    """Attack: under a wide grant shared by tenants (``*.customers.example``, no proof), the
    squatter claims the DOMAIN ``mail.shop.customers.example``, which is the host name of
    tenant-a's older, serving ``shop.customers.example``. The owner rule ("a host name equal to
    or under a domain another namespace claims belongs to that domain's owner, whatever the
    ages") then refuses the older victim (DomainConflict: withdrawn, pods, Services,
    certificate and records deleted), and the squatter may use that host name itself: its A
    record and certificate are the victim's MX target."""
    grants = Grants((parse_policy(yaml.safe_load(SHARED)),))
    victim = _md("tenant-a", "shop", "shop.customers.example", "2026-01-01T00:00:00Z")
    squatter = _md(
        "squatter",
        "squat",
        "mail.shop.customers.example",
        "2026-06-01T00:00:00Z",
        hostname="mail.shop.customers.example",
    )
    services, problems = assemble([victim, squatter], [], grants)
    served = {s.domain.ref: s.domain.hostname for s in services}
    print(served, [(p.document, p.path, p.message) for p in problems])
    assert victim.ref in served, [p.message for p in problems if p.document == victim.ref]
    assert "mail.shop.customers.example" not in {
        h for ref, h in served.items() if ref == squatter.ref
    }, "the squatter serves the victim's mail host name"


def test_held_a_hostname_under_an_older_tenants_domain_is_refused() -> None:
    """Held (the first check's #2): the squatter's own domain with the victim's host name."""
    grants = Grants((parse_policy(yaml.safe_load(SHARED)),))
    victim = _md("tenant-a", "shop", "shop.customers.example", "2026-01-01T00:00:00Z")
    squatter = _md(
        "squatter",
        "squat",
        "squat.customers.example",
        "2026-06-01T00:00:00Z",
        hostname="mail.shop.customers.example",
    )
    services, _ = assemble([victim, squatter], [], grants)
    assert {s.domain.ref for s in services} == {victim.ref}


# --- held: other spellings and the address rules --------------------------------------------

HELD_NOT_PUBLIC = [
    "169.254.169.254",
    "[::ffff:169.254.169.254]",
    "::ffff:a9fe:a9fe",
    "64:ff9b::a9fe:a9fe",
    "2002:a9fe:a9fe::1",
    "::169.254.169.254",
    "fd00:ec2::254",
    "192.0.0.192",
    "100.100.100.200",  # Alibaba's metadata address (CGNAT range)
    "relay.tenant-b.svc.cluster.test",
    "x.y.pod.cluster.local",
    "kubernetes",
    "metadata.google.internal",
]


@pytest.mark.parametrize("host", HELD_NOT_PUBLIC)
def test_held_not_public(host: str) -> None:
    assert hosts.host_problem(host) is not None


# --- R6: a bcrypt cost planted in the operator's own users Secret ---------------------------


def test_a_planted_bcrypt_cost_is_not_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Attack: the tenant (who may write its namespace's Secrets) replaces a hash in the
    operator's ``<n>-users`` passwd-file by a ``$2b$31$`` one. ``password_hash`` takes it as the
    previous hash and checks the Mailbox's plain password against it with bcrypt at the planted
    cost (2^31 rounds: days), on the operator's event loop (component test
    ``test_a_planted_bcrypt_cost_in_the_users_secret_does_not_stall_other_tenants``)."""
    from mailstack.material import passwords

    costs: list[int] = []

    def checkpw(secret: bytes, hashed: bytes) -> bool:
        costs.append(int(hashed.split(b"$")[2]))
        return False

    monkeypatch.setattr(passwords.bcrypt, "checkpw", checkpw)
    planted = "{BLF-CRYPT}$2b$31$tOEdbk4gmVygvJJD4mJeBOINOxqptvRAGhyqabQb4lyBaifz1lxRy"
    passwords.password_hash("correct-horse-battery", planted, rounds=4)
    assert all(cost <= passwords.DEFAULT_ROUNDS for cost in costs), f"bcrypt ran at cost {costs}"


# --- R7: address-pinning annotations missing from policy.ADDRESS_ANNOTATIONS -----------------

# Each pins (or adopts) a load balancer address like a key the table lists, by the same
# implementation: AWS's and Azure's IPv6 counterparts of their listed IPv4 keys (both in their
# controllers' sources), and DigitalOcean's adoption of an existing load balancer by id.
UNLISTED_PINNING = [
    "service.beta.kubernetes.io/aws-load-balancer-ipv6-addresses",
    "service.beta.kubernetes.io/azure-pip-name-ipv6",
    "kubernetes.digitalocean.com/load-balancer-id",
]


@pytest.mark.parametrize("key", UNLISTED_PINNING)
def test_loadbalancerip_false_refuses_the_ipv6_and_adoption_annotations(key: str) -> None:
    """Attack: the policy allows the cloud's annotations by prefix (``service.beta.kubernetes.io
    /*``, as for the listed ``aws-load-balancer-private-ipv4-addresses`` and
    ``azure-load-balancer-ipv4``) with ``loadBalancerIP: false``; the tenant pins its Service to
    another tenant's (or the platform's) IPv6 address or public IP resource with the IPv6 key,
    which the table does not know."""
    prefix = key.split("/")[0] + "/*"
    policy = parse_policy(
        yaml.safe_load(
            POLICY
            + "  service:\n    types: [LoadBalancer]\n"
            + f'    annotations: ["{prefix}"]\n    loadBalancerIP: false\n'
        )
    )
    doc = {
        "apiVersion": "mailstack.dev/v1alpha1",
        "kind": "MailDomain",
        "metadata": {"name": "a", "namespace": "tenant-a"},
        "spec": {"domain": "a.example", "service": {"annotations": {key: "2001:db8::7"}}},
    }
    refusals = Grants((policy,)).service_refusals(parse_maildomain(doc))
    assert refusals, f"{key} passes loadBalancerIP: false"


# --- held: the admission policy on updates (the first check's #3) ---------------------------

from tests.unit.test_chart_admission import ALICE, MALLORY, admit  # noqa: E402
from tests.unit.test_chart_admission import mailbox as admission_mailbox  # noqa: E402
from tests.unit.test_chart_admission import maildomain as admission_maildomain  # noqa: E402

RELAY = {"host": "smtp.example.net", "credentialsSecretRef": {"name": "relay"}}


@pytest.mark.parametrize(
    "change",
    [
        {"relay": {**RELAY, "credentialsSecretRef": {"name": "relay", "passwordKey": "token"}}},
        {"relay": {**RELAY, "port": 2525}},
        {"relay": RELAY, "limits": {"recipientsPerMessage": 5}},
        {"relay": RELAY, "pods": {"imagePullSecrets": [{"name": "pull"}]}},
        {"relay": {**RELAY, "caSecretRef": {"name": "relay-ca"}}},
    ],
)
def test_held_any_spec_change_of_a_maildomain_naming_an_unreadable_secret(
    change: dict[str, Any],
) -> None:
    before = admission_maildomain(relay=RELAY)
    assert admit(MALLORY, admission_maildomain(**change), old=before) is not None
    assert admit(ALICE, admission_maildomain(**change), old=before) is None


def test_held_a_mailbox_moved_to_another_address_is_checked() -> None:
    before = admission_mailbox("alice-pw")
    after = admission_mailbox("alice-pw")
    after["spec"]["address"] = "boss@example.com"
    assert admit(MALLORY, after, old=before) is not None


def test_held_metadata_only_updates_pass_by_design() -> None:
    before = admission_maildomain(relay=RELAY)
    after = admission_maildomain(relay=RELAY)
    after["metadata"]["labels"] = {"x": "y"}
    assert admit(MALLORY, after, old=before) is None


def test_a_newer_tenant_does_not_take_an_older_tenants_domain_through_its_mail_host() -> None:
    """Attack (R3 carried on): with its MailDomain for mail.shop.customers.example refusing the
    older victim, the squatter adds a second MailDomain for shop.customers.example ITSELF, with
    the same host name (MailDomains of one namespace may share one). The victim, the oldest
    claim, takes no part in the contest any more, so the squatter's newer claim serves the
    victim's domain: MX, SPF, DKIM and the certificate, against "the oldest claim wins"."""
    grants = Grants((parse_policy(yaml.safe_load(SHARED)),))
    victim = _md("tenant-a", "shop", "shop.customers.example", "2026-01-01T00:00:00Z")
    host = "mail.shop.customers.example"
    squat = _md("squatter", "squat", host, "2026-06-01T00:00:00Z", hostname=host)
    steal = _md("squatter", "steal", "shop.customers.example", "2026-06-02T00:00:00Z")
    services, problems = assemble([victim, squat, steal], [], grants)
    served = {s.domain.domain: s.domain.ref for s in services}
    print(served, [(p.document, p.message) for p in problems])
    assert served.get("shop.customers.example") == victim.ref, (
        f"shop.customers.example is served by {served.get('shop.customers.example')}"
    )


def test_held_with_proof_the_nested_domain_claim_changes_nothing() -> None:
    """Held: where the wide grant requires proof, the squatter's nested domain is never proven
    (its TXT record would be in the victim's zone), so it takes no part."""
    from mailstack.api.proof import Proof

    grants = Grants((parse_policy(yaml.safe_load(SHARED + "  requireProof: true\n")),))
    victim = _md("tenant-a", "shop", "shop.customers.example", "2026-01-01T00:00:00Z")
    host = "mail.shop.customers.example"
    squat = _md("squatter", "squat", host, "2026-06-01T00:00:00Z", hostname=host)
    proofs = {
        victim.ref: Proof(victim.domain, "t0ken", True),
        squat.ref: Proof(squat.domain, "t0ken2", False),
    }
    services, _ = assemble([victim, squat], [], grants, proofs)
    assert {s.domain.ref for s in services} == {victim.ref}


# --- R9: any ClusterIssuer of the cluster, through the operator's account ---------------------


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
