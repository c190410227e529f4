"""The route53 provider against a fake Route 53 that enforces the service's rules.

Two ways in: the provider calling ``FakeRoute53`` directly (boto3's method signatures, errors as
botocore raises them), and the provider's own ``Route53RestClient`` speaking the REST API to
``Route53Server``, which checks every request's SigV4 signature independently and answers in
Route 53's XML, errors included. Both meet the same rules (``tests/fakes/route53.py``).
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mailstack.dns.errors import CredentialsError, DnsConfigError, ProviderError
from mailstack.dns.plan import RRset
from mailstack.dns.providers import build_provider
from mailstack.dns.providers.aws.route53_api import Route53RestClient
from mailstack.dns.providers.aws.sigv4 import sign_request
from mailstack.dns.providers.route53 import Route53Provider, decode_name
from mailstack.dns.reconcile import cleanup_dns, plan_dns, reconcile_dns
from mailstack.dns.records import txt_value_from_text
from mailstack.material.dkim import DkimKey
from tests.dns_inputs import maildomain, secret
from tests.fakes.route53 import ZONE_ID, ClientError, FakeRoute53, txt_strings
from tests.fakes.route53_server import Route53Server
from tests.fakes.route53_sigv4 import MISMATCH


def assert_foreign_kept(fake: FakeRoute53, foreign: dict[tuple[str, str], dict[str, Any]]) -> None:
    """Every foreign set as it was; the TXT set at the mail host may gain our HELO SPF value."""
    for key, rrset in foreign.items():
        if key == ("mail.example.com.", "TXT"):
            values = [r["Value"] for r in fake.sets[key]["ResourceRecords"]]
            assert values == ['"asset tag 42"', '"v=spf1 a -all"']
        elif key != ("example.com.", "TXT"):
            assert fake.sets[key] == rrset


DOMAIN = maildomain(
    {"route53": {"hostedZoneId": ZONE_ID, "credentialsSecretRef": {"name": "aws"}}},
    dkim={"selector": "mail2026"},
    tls={"issuer": "acme", "acme": {"email": "hostmaster@example.net"}},
)


def provider(fake: FakeRoute53, **kwargs: Any) -> Route53Provider:
    built = Route53Provider(ZONE_ID, fake, sleep=lambda _: None, **kwargs)
    assert built.zone == "example.com"
    return built


def test_the_fake_keeps_route53s_txt_rules() -> None:
    fake = FakeRoute53()
    for bad in ("v=spf1 -all", '"' + "x" * 256 + '"'):
        change = {
            "Action": "CREATE",
            "ResourceRecordSet": {
                "Name": "t.example.com.",
                "Type": "TXT",
                "TTL": 60,
                "ResourceRecords": [{"Value": bad}],
            },
        }
        with pytest.raises(ClientError):
            fake.change_resource_record_sets(ZONE_ID, {"Changes": [change]})
    assert ("t.example.com.", "TXT") not in fake.sets


def test_first_apply_then_nothing(keys: tuple[DkimKey, DkimKey]) -> None:
    fake = FakeRoute53()
    foreign = dict(fake.sets)
    statuses = reconcile_dns(DOMAIN, keys[0], {}, provider=provider(fake))
    assert {s.state for s in statuses} == {"Published"}
    assert fake.pages > 1, "the listing was paged"
    dkim = fake.sets[("mail2026._domainkey.example.com.", "TXT")]["ResourceRecords"][0]["Value"]
    strings = txt_strings(dkim)
    assert len(strings) > 1 and all(len(s) <= 255 for s in strings)
    assert "".join(strings) == keys[0].dns_value()
    apex = [r["Value"] for r in fake.sets[("example.com.", "TXT")]["ResourceRecords"]]
    assert apex == ['"google-site-" "verification=abc123"', '"v=spf1 mx -all"'], "theirs as it was"
    assert_foreign_kept(fake, foreign)
    assert decode_name("\\052.example.com.") == "*.example.com"

    again = provider(fake)
    reconcile_dns(DOMAIN, keys[0], {}, provider=again)
    assert again.writes == 0


def test_batches_stay_within_limits_and_keep_order(keys: tuple[DkimKey, DkimKey]) -> None:
    fake = FakeRoute53()
    small = provider(fake, max_changes=5)
    reconcile_dns(DOMAIN, keys[0], {}, provider=small)
    assert small.writes == len(fake.batches) > 3
    assert all(len(batch) <= 5 for batch in fake.batches)
    claims_first = [
        c["ResourceRecordSet"]["Name"].startswith("_mailstack-owner.")
        for b in fake.batches
        for c in b
    ]
    assert claims_first == sorted(claims_first, reverse=True), "every claim precedes every record"
    assert reconcile_dns(DOMAIN, keys[0], {}, provider=provider(fake))


def test_throttling_is_retried(keys: tuple[DkimKey, DkimKey]) -> None:
    fake = FakeRoute53()
    fake.throttle_next = 2
    statuses = reconcile_dns(DOMAIN, keys[0], {}, provider=provider(fake))
    assert {s.state for s in statuses} == {"Published"}
    fake.throttle_next = 9
    with pytest.raises(ProviderError, match="Throttling: Rate exceeded"):
        reconcile_dns(DOMAIN, keys[1], {}, provider=provider(fake, attempts=3))


def test_a_changed_key_is_one_upsert_and_cleanup_deletes_exactly(
    keys: tuple[DkimKey, DkimKey],
) -> None:
    fake = FakeRoute53()
    foreign = dict(fake.sets)
    reconcile_dns(DOMAIN, keys[0], {}, provider=provider(fake))
    changed, _, the_plan = plan_dns(DOMAIN, keys[1], {}, provider=provider(fake))
    changed.apply(the_plan.changes)
    assert [c["Action"] for c in fake.batches[-1]] == ["UPSERT"]
    cleanup_dns(DOMAIN, {}, provider=provider(fake))
    assert fake.sets == foreign


def test_a_conflict_is_left_alone(keys: tuple[DkimKey, DkimKey]) -> None:
    fake = FakeRoute53()
    fake._put("_dmarc.example.com.", "TXT", 300, ['"v=DMARC1; p=none"'])
    statuses = {
        (s.name, s.type): s.state
        for s in reconcile_dns(DOMAIN, keys[0], {}, provider=provider(fake))
    }
    assert statuses[("_dmarc.example.com", "TXT")] == "Conflict"
    assert fake.sets[("_dmarc.example.com.", "TXT")]["ResourceRecords"] == [
        {"Value": '"v=DMARC1; p=none"'}
    ]


def test_refused_credentials_and_missing_keys(keys: tuple[DkimKey, DkimKey]) -> None:
    with pytest.raises(CredentialsError, match="InvalidClientTokenId"):
        provider(FakeRoute53(credentials_ok=False))
    with pytest.raises(DnsConfigError, match="AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"):
        build_provider(DOMAIN, {"aws": secret("aws", AWS_ACCESS_KEY_ID="AKIA")})
    built = build_provider(DOMAIN, {}, route53_client=FakeRoute53())
    assert isinstance(built, Route53Provider)


def test_values_read_back_canonical() -> None:
    fake = FakeRoute53()
    fake._put("example.com.", "MX", 300, ["10 Mail.Example.com"])
    state = provider(fake).read([])
    rrsets = {r.key: r for r in state.rrsets}
    assert rrsets[("example.com", "MX")] == RRset(
        "example.com", "MX", 300, ("10 mail.example.com.",)
    )
    assert rrsets[("example.com", "TXT")].values == ("google-site-verification=abc123",)
    assert txt_value_from_text('"a" "b"') == "ab"


# --- through Route53RestClient and the REST/XML API, every request signed and checked ---

ACCESS = "AKIAFAKEROUTE53TESTS"
SECRET = "route53/fake+secret/0123456789abcdefghijklmn"
TEMP_ACCESS = "ASIAFAKEROUTE53TESTS"
TEMP_SECRET = "temporary/secret/key/0123456789abcdefghijkl"
TOKEN = "IQoJb3JpZ2luX2VjEFAKE//////////wEaCXVzLWVhc3QtMSJH+session/token=="
# A foreign TXT value that only survives a round trip if the XML is escaped both ways.
MARKUP = '"tag=<a&b>" "x>y"'


@pytest.fixture
def server() -> Iterator[Route53Server]:
    fake = FakeRoute53()
    fake._put("example.com.", "TXT", 300, ['"google-site-" "verification=abc123"', MARKUP])
    served = Route53Server(fake, {ACCESS: (SECRET, None), TEMP_ACCESS: (TEMP_SECRET, TOKEN)})
    with served.running():
        yield served


def rest(
    server: Route53Server,
    secret_key: str = SECRET,
    access_key: str = ACCESS,
    clock: Callable[[], datetime] | None = None,
    **kwargs: Any,
) -> Route53Provider:
    client = Route53RestClient(access_key, secret_key, endpoint=server.url, timeout=5.0)
    if clock is not None:
        client.clock = clock
    built = Route53Provider(ZONE_ID, client, sleep=lambda _: None, **kwargs)
    assert built.zone == "example.com"
    return built


def test_rest_first_apply_then_nothing(
    server: Route53Server, keys: tuple[DkimKey, DkimKey]
) -> None:
    fake = server.fake
    foreign = dict(fake.sets)
    statuses = reconcile_dns(DOMAIN, keys[0], {}, provider=rest(server))
    assert {s.state for s in statuses} == {"Published"}
    assert fake.pages > 1, "the listing was paged"
    assert any("/rrset?name=" in target for _, target, _, _ in server.log)
    dkim = fake.sets[("mail2026._domainkey.example.com.", "TXT")]["ResourceRecords"][0]["Value"]
    strings = txt_strings(dkim)
    assert len(strings) > 1 and all(len(s) <= 255 for s in strings)
    assert "".join(strings) == keys[0].dns_value()
    apex = [r["Value"] for r in fake.sets[("example.com.", "TXT")]["ResourceRecords"]]
    assert apex == ['"google-site-" "verification=abc123"', MARKUP, '"v=spf1 mx -all"']
    assert any(b"tag=&lt;a&amp;b&gt;" in body for body in server.bodies), "escaped on the wire"
    assert_foreign_kept(fake, foreign)
    assert all(status == 200 for _, _, status, _ in server.log), server.log

    posts = sum(1 for method, *_ in server.log if method == "POST")
    again = rest(server)
    reconcile_dns(DOMAIN, keys[0], {}, provider=again)
    assert again.writes == 0
    assert sum(1 for method, *_ in server.log if method == "POST") == posts


def test_rest_paging_follows_every_next_record(server: Route53Server) -> None:
    server.fake.page_size = 1
    direct = provider(FakeRoute53()).read([])
    state = rest(server).read([])
    assert server.fake.pages == len(server.fake.sets), "one set a page"
    assert {r.key for r in state.rrsets} == {r.key for r in direct.rrsets}
    assert ("*.example.com", "A") in {r.key for r in state.rrsets}
    # The wildcard comes back as \\052: its backslash travels %5C-encoded, and is signed so.
    assert any("name=%5C052.example.com." in target for _, target, _, _ in server.log)
    apex = {r.key: r for r in state.rrsets}[("example.com", "TXT")]
    assert "tag=<a&b>x>y" in apex.values


def test_rest_changed_key_is_one_upsert_and_cleanup_deletes_exactly(
    server: Route53Server, keys: tuple[DkimKey, DkimKey]
) -> None:
    fake = server.fake
    foreign = dict(fake.sets)
    reconcile_dns(DOMAIN, keys[0], {}, provider=rest(server))
    changed, _, the_plan = plan_dns(DOMAIN, keys[1], {}, provider=rest(server))
    changed.apply(the_plan.changes)
    assert [c["Action"] for c in fake.batches[-1]] == ["UPSERT"]
    dkim = fake.sets[("mail2026._domainkey.example.com.", "TXT")]["ResourceRecords"][0]["Value"]
    assert "".join(txt_strings(dkim)) == keys[1].dns_value()
    cleanup_dns(DOMAIN, {}, provider=rest(server))
    assert fake.sets == foreign, "only ours removed, theirs exactly as they were"


def test_rest_throttling_is_retried(server: Route53Server, keys: tuple[DkimKey, DkimKey]) -> None:
    server.fake.throttle_next = 2
    statuses = reconcile_dns(DOMAIN, keys[0], {}, provider=rest(server))
    assert {s.state for s in statuses} == {"Published"}
    assert server.refused("Throttling") == 2
    assert [s for _, _, s, code in server.log if code == "Throttling"] == [400, 400]
    server.fake.throttle_next = 9
    with pytest.raises(ProviderError, match="Throttling: Rate exceeded") as caught:
        reconcile_dns(DOMAIN, keys[1], {}, provider=rest(server, attempts=3))
    assert not isinstance(caught.value, CredentialsError)


def test_rest_server_errors_are_retried_and_an_unreachable_endpoint_reported(
    server: Route53Server, keys: tuple[DkimKey, DkimKey]
) -> None:
    server.fail_next = [503, 500]
    statuses = reconcile_dns(DOMAIN, keys[0], {}, provider=rest(server))
    assert {s.state for s in statuses} == {"Published"}
    assert [status for _, _, status, _ in server.log[:2]] == [503, 500]
    closed = Route53Server(FakeRoute53(), {})
    closed.httpd.server_close()  # the port is free again: nothing listens there
    client = Route53RestClient(ACCESS, SECRET, endpoint=closed.url, timeout=2.0)
    with pytest.raises(ProviderError, match=r"NetworkingError: cannot reach http://127\.0\.0\.1"):
        Route53Provider(ZONE_ID, client, attempts=2, sleep=lambda _: None)


def test_rest_wrong_credentials_are_credentials_errors(server: Route53Server) -> None:
    with pytest.raises(CredentialsError) as caught:
        rest(server, secret_key="not-the-secret")
    message = str(caught.value)
    assert message == f"Route 53: get_hosted_zone: SignatureDoesNotMatch: {MISMATCH}"
    assert "\n" not in message
    with pytest.raises(CredentialsError, match="InvalidClientTokenId: The security token"):
        rest(server, access_key="AKIAUNKNOWNKEY000000")
    # A temporary key without its session token is refused as well.
    with pytest.raises(CredentialsError, match="InvalidClientTokenId"):
        rest(server, access_key=TEMP_ACCESS, secret_key=TEMP_SECRET)
    assert server.fake.pages == 0, "nothing was served to a refused request"


def test_rest_a_stale_or_early_clock_is_refused(server: Route53Server) -> None:
    def late() -> datetime:
        return datetime.now(UTC) - timedelta(minutes=10)

    def early() -> datetime:
        return datetime.now(UTC) + timedelta(minutes=10)

    with pytest.raises(CredentialsError, match="SignatureDoesNotMatch: Signature expired: "):
        rest(server, clock=late)
    with pytest.raises(CredentialsError, match="Signature not yet current"):
        rest(server, clock=early)
    assert rest(server, clock=lambda: datetime.now(UTC) - timedelta(minutes=4)).zone


@pytest.mark.parametrize("form", ["messages", "error"])
def test_rest_a_refused_change_batch_says_why(
    server: Route53Server, keys: tuple[DkimKey, DkimKey], form: Any
) -> None:
    server.change_batch_errors = form
    changed, _, the_plan = plan_dns(DOMAIN, keys[0], {}, provider=rest(server))
    # Someone else creates one of our names between our read and our write.
    server.fake._put("_dmarc.example.com.", "TXT", 300, ['"v=DMARC1; p=none"'])
    before = dict(server.fake.sets)
    with pytest.raises(ProviderError) as caught:
        changed.apply(the_plan.changes)
    message = str(caught.value)
    assert not isinstance(caught.value, CredentialsError)
    assert message.startswith("Route 53: change_resource_record_sets: InvalidChangeBatch: ")
    assert (
        "Tried to create resource record set [name='_dmarc.example.com.', type='TXT'] but it "
        "already exists" in message
    )
    assert "\n" not in message
    assert server.refused("InvalidChangeBatch") == 1
    assert server.fake.sets == before, "the refused batch changed nothing"


def test_rest_through_build_provider_with_a_secret(
    server: Route53Server, keys: tuple[DkimKey, DkimKey]
) -> None:
    # A region in the MailDomain changes nothing: Route 53 is signed for us-east-1 (the fake
    # refuses any other scope).
    domain = maildomain(
        {
            "route53": {
                "hostedZoneId": ZONE_ID,
                "region": "eu-central-1",
                "credentialsSecretRef": {"name": "aws"},
            }
        },
        dkim={"selector": "mail2026"},
        tls={"issuer": "acme", "acme": {"email": "hostmaster@example.net"}},
    )
    creds = {"aws": secret("aws", AWS_ACCESS_KEY_ID=ACCESS, AWS_SECRET_ACCESS_KEY=SECRET)}
    built = build_provider(domain, creds, route53_endpoint=server.url)
    assert isinstance(built, Route53Provider)
    assert isinstance(built.client, Route53RestClient)
    statuses = reconcile_dns(domain, keys[0], {}, provider=built)
    assert {s.state for s in statuses} == {"Published"}

    temporary = {
        "aws": secret(
            "aws",
            AWS_ACCESS_KEY_ID=TEMP_ACCESS,
            AWS_SECRET_ACCESS_KEY=TEMP_SECRET,
            AWS_SESSION_TOKEN=TOKEN + "\n",
        )
    }
    again = build_provider(domain, temporary, route53_endpoint=server.url)
    reconcile_dns(domain, keys[0], {}, provider=again)
    assert again.writes == 0
    wrong = {"aws": secret("aws", AWS_ACCESS_KEY_ID=ACCESS, AWS_SECRET_ACCESS_KEY="wrong")}
    with pytest.raises(CredentialsError, match="SignatureDoesNotMatch"):
        build_provider(domain, wrong, route53_endpoint=server.url)


def test_the_fake_checks_signatures_on_its_own(server: Route53Server) -> None:
    """The fake is no yes-man: a body changed after signing, or no signature, is refused."""
    client = Route53RestClient(ACCESS, SECRET, endpoint=server.url)
    url = f"{server.url}/2013-04-01/hostedzone/{ZONE_ID}/rrset"
    body = b"<ChangeResourceRecordSetsRequest/>"
    signed = sign_request(
        "POST",
        url,
        {"Content-Type": "application/xml"},
        body,
        access_key=ACCESS,
        secret_key=SECRET,
        session_token=None,
        region="us-east-1",
        service="route53",
        now=client.clock(),
    )
    tampered = urllib.request.Request(
        url, data=body + b" ", method="POST", headers={"Content-Type": "application/xml", **signed}
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(tampered, timeout=5)
    assert caught.value.code == 403
    assert b"<Code>SignatureDoesNotMatch</Code>" in caught.value.read()
    bare = urllib.request.Request(f"{server.url}/2013-04-01/hostedzone/{ZONE_ID}")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(bare, timeout=5)
    assert caught.value.code == 403
    assert server.refused("MissingAuthenticationToken") == 1
    assert server.fake.batches == []
