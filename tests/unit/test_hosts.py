"""Public hosts only: what a tenant's MailDomain may point the relay and DNS provider at."""

from __future__ import annotations

import socket

import pytest

from mailstack.api import hosts
from mailstack.api.errors import FieldError
from mailstack.api.parse.common import host_or_ip
from mailstack.api.validate import http_url


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "127.8.9.10",
        "10.0.0.5",
        "172.16.3.4",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "100.64.0.10",  # CGNAT: pod ranges of some clusters
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "::1",
        "::",
        "fe80::1",
        "fd00:ec2::254",  # AWS metadata over IPv6
        "fc00::1",
        "::ffff:127.0.0.1",  # IPv4-mapped
        "::ffff:169.254.169.254",
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "smtp.tenant-b.svc.cluster.local",
        "metadata.google.internal",
        "printer.local",
        "db.localhost",
        "router.home.arpa",
        "mail.corp",
        # IANA special-purpose blocks, whatever the Python version's ipaddress says of them.
        "192.0.0.192",  # IETF protocol assignments; Oracle Cloud's metadata address
        "192.0.0.9",  # (a globally reachable anycast part of that block, refused with it)
        "192.0.0.170",
        "192.88.99.1",
        "198.18.0.1",
        "255.255.255.255",
        "::ffff:192.0.0.192",
        "::7f00:1",  # IPv4-compatible (deprecated) 127.0.0.1
        "100::1",
        "2001::1",  # Teredo
        "2001:2::1",  # benchmarking
        "2001:db8::1",
        "3fff::1",
        "5f00::1",
        "64:ff9b:1::1",
        "fec0::1",
        "ff02::1",
        # A cluster's names under a cluster domain other than cluster.local.
        "relay.tenant-b.svc.cluster.test",
        "10-1-2-3.tenant-b.pod.cluster.test",
        "web-0.smtp.tenant-b.svc.k8s.example.com",
    ],
)
def test_internal_hosts_are_named_as_such(host: str) -> None:
    assert hosts.host_problem(host) is not None


@pytest.mark.parametrize(
    "host",
    [
        "smtp.example.com",
        "8.8.8.8",
        "2001:4860:4860::8888",
        "192.0.3.1",  # next to 192.0.0.0/24 and 192.0.2.0/24
        "2001:200::1",  # beyond 2001::/23
        "svc.example.com",  # a svc or pod label not after two others
        "smtp.svc.example.com",
        "pod.example.net",
    ],
)
def test_public_hosts_pass(host: str) -> None:
    assert hosts.host_problem(host) is None


def test_the_registry_blocks_are_named_by_the_table_not_by_pythons_ipaddress() -> None:
    # 192.0.0.0/24 counted as global in older Pythons: the table answers before ipaddress does.
    problem = hosts.host_problem("192.0.0.192")
    assert problem == "a special-purpose address, not globally reachable"
    assert hosts.host_problem("relay.tenant-b.svc.cluster.test") == (
        "a name with a svc label after two others, like a cluster's "
        "<name>.<namespace>.svc.<cluster domain>"
    )


@pytest.mark.parametrize(
    "spelling", ["2130706433", "0177.0.0.1", "0x7f.0.0.1", "127.1", "017700000001"]
)
def test_other_spellings_of_an_address_never_get_that_far(spelling: str) -> None:
    # The field validators refuse them as names (numeric top-level label, not an address).
    with pytest.raises(FieldError):
        host_or_ip(spelling)


# Valid domain names (their top label holds a letter), which the field validators accept;
# glibc's getaddrinfo (Postfix, libcurl in freshclam, the operator) reads them with inet_aton
# as the address beside them, without asking DNS.
HEX_SPELLINGS = {
    "169.254.169.0xfe": "169.254.169.254",
    "0xa9.0xfe.0xa9.0xfe": "169.254.169.254",
    "169.0xfea9fe": "169.254.169.254",
    "10.0.0.0x1": "10.0.0.1",
    "127.0.0.0x1": "127.0.0.1",
    "169.254.169.0xfe.": "169.254.169.254",  # a DNS lookup instead: refused all the same
}


@pytest.mark.parametrize("spelling", sorted(HEX_SPELLINGS))
def test_a_name_the_c_library_reads_as_an_address_is_judged_as_that_address(
    spelling: str,
) -> None:
    assert host_or_ip(spelling.rstrip(".")) == spelling.rstrip(".")  # passes as a name
    if not spelling.endswith("."):
        resolved = socket.getaddrinfo(spelling, 80, socket.AF_INET, socket.SOCK_STREAM)
        assert resolved[0][4][0] == HEX_SPELLINGS[spelling]  # what the pod's libc makes of it
    assert str(hosts.as_address(spelling)) == HEX_SPELLINGS[spelling]
    expected = hosts.host_problem(HEX_SPELLINGS[spelling])
    assert expected is not None and hosts.host_problem(spelling) == expected
    assert hosts.as_address(f"x{spelling}") is None  # a name again


def test_a_public_address_in_another_spelling_passes_and_ranges_see_the_address() -> None:
    assert hosts.host_problem("0x8.8.8.0x8") is None  # 8.8.8.8
    assert hosts.allowed("10.20.0.0x5", ("10.20.0.0/16",))
    assert not hosts.allowed("10.21.0.0x5", ("10.20.0.0/16",))


def test_a_url_host_is_made_absolute_and_an_address_stays() -> None:
    assert hosts.absolute_url("http://kubernetes.default/x.ndb") == (
        "http://kubernetes.default./x.ndb"
    )
    assert hosts.absolute_url("https://m.example.net:8443/a?b=c") == (
        "https://m.example.net.:8443/a?b=c"
    )
    assert hosts.absolute_url("http://m.example.net") == "http://m.example.net."
    assert hosts.absolute_url("http://m.example.net./x") == "http://m.example.net./x"
    for url in ("http://192.0.2.1/x", "http://[2001:db8::1]:80/x", "http://0x8.8.8.0x8/x"):
        assert hosts.absolute_url(url) == url


def test_a_url_host_is_read_as_a_url_parser_does() -> None:
    assert hosts.url_host("https://pdns.example.com:8081/api") == "pdns.example.com"
    assert hosts.url_host("http://[::1]:8081/") == "::1"
    assert hosts.url_host("http://user@10.0.0.1/") == "10.0.0.1"


def test_allowed_hosts_take_names_suffixes_addresses_and_ranges() -> None:
    patterns = ("relay.mail-infra.svc.cluster.local", "*.corp.example", "10.20.0.0/16", "fd00::1")
    assert hosts.allowed("relay.mail-infra.svc.cluster.local", patterns)
    assert hosts.allowed("smtp.corp.example", patterns)
    assert not hosts.allowed("corp.example", patterns)
    assert hosts.allowed("10.20.3.4", patterns)
    assert not hosts.allowed("10.21.0.1", patterns)
    assert hosts.allowed("fd00::1", patterns)
    assert not hosts.allowed("other.svc.cluster.local", patterns)


@pytest.mark.parametrize(
    "url",
    [
        "http://%31%32%37.0.0.1:18089/x",  # urllib decodes the escapes: 127.0.0.1
        "http://127.1:8081/",  # the system resolver reads short and hex forms as addresses
        "http://0x7f.0.0.1/",
        "http://169.254.43518/",  # 169.254.169.254
        "http://user@10.0.0.1/",
    ],
)
def test_a_url_host_is_a_plain_name_or_address(url: str) -> None:
    with pytest.raises(FieldError, match="the host must be a domain name or an address"):
        http_url(url)


@pytest.mark.parametrize(
    "url", ["https://pdns.example.com:8081/api", "http://[2001:db8::1]:8081/", "http://9.9.9.9"]
)
def test_plain_urls_pass(url: str) -> None:
    assert http_url(url) == url
