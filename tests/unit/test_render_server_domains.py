"""The per-domain files of a shared server: each domain's single-domain files, joined."""

from __future__ import annotations

import dataclasses

import pytest

from mailstack.render.server_domains import (
    ServedDomain,
    server_dkim_data,
    server_tls_data,
    server_users_data,
)
from mailstack.render.server_paths import (
    DOMAIN_TLS_DIR,
    DOVECOT_LOCAL_NAMES_KEY,
    SELECTOR_MAP_KEY,
    SNI_MAP_KEY,
    VIRTUAL_DOMAINS_KEY,
)
from mailstack.render.templating import RenderError
from mailstack.render.users import render_users_secret_data
from tests.support import render_examples


@pytest.fixture(scope="module")
def domains(tmp_path_factory: pytest.TempPathFactory) -> list[ServedDomain]:
    prepared, _ = render_examples(tmp_path_factory.mktemp("server"))
    found = [(s, m) for s, m in prepared.services if m.tls is not None]
    assert len(found) >= 2, "the examples hold at least two domains with certificates"
    return found


def test_the_users_files_join_each_domains_own_in_domain_order(
    domains: list[ServedDomain],
) -> None:
    data = server_users_data(domains)
    assert server_users_data(list(reversed(domains))) == data  # not the order they came in
    ordered = sorted(domains, key=lambda d: d[0].domain.domain)
    single = [render_users_secret_data(s, m) for s, m in ordered]
    for key in ("passwd", "virtual_mailboxes", "virtual_aliases", "sender_logins"):
        assert data[key] == "".join(files[key] for files in single), key
    names = [s.domain.domain for s, _ in ordered]
    assert data[VIRTUAL_DOMAINS_KEY] == "".join(f"{n} OK\n" for n in names)
    guard = data["forwarding"]
    assert guard.count("# Envelope recipients") == 1
    for files in single:
        for line in files["forwarding"].splitlines():
            assert line in guard.splitlines()


def test_one_domain_fewer_changes_only_its_lines(domains: list[ServedDomain]) -> None:
    everything = server_users_data(domains)
    left, *rest = sorted(domains, key=lambda d: d[0].domain.domain)
    fewer = server_users_data(rest)
    mine = render_users_secret_data(*left)
    assert fewer["passwd"] == everything["passwd"].replace(mine["passwd"], "", 1)
    assert f"{left[0].domain.domain} OK\n" not in fewer[VIRTUAL_DOMAINS_KEY]


def test_each_domain_signs_with_its_own_key_and_selector(domains: list[ServedDomain]) -> None:
    host, *joined = domains  # the server's own key is kept with the domains'
    data = server_dkim_data(joined, host)
    assert server_dkim_data(list(reversed(joined)), host) == data
    lines = data[SELECTOR_MAP_KEY].splitlines()
    assert len(lines) == len(domains)
    for service, material in domains:
        selector = service.domain.dkim.selector
        assert f"{service.domain.domain} {selector}" in lines
        key = data[f"{service.domain.domain}.{selector}.key"]
        assert key == material.dkim.rspamd_private_key()
    assert set(data) == {SELECTOR_MAP_KEY, *(f"{ln.replace(' ', '.')}.key" for ln in lines)}


def test_a_key_for_another_selector_is_refused(domains: list[ServedDomain]) -> None:
    service, material = domains[0]
    other = dataclasses.replace(
        service.domain, dkim=dataclasses.replace(service.domain.dkim, selector="other")
    )
    with pytest.raises(RenderError, match="DKIM key is for selector"):
        server_dkim_data([(dataclasses.replace(service, domain=other), material)], domains[1])


def test_sni_gives_each_host_name_its_own_certificate(domains: list[ServedDomain]) -> None:
    data = server_tls_data(domains)
    table = dict(line.split(" ", 1) for line in data[SNI_MAP_KEY].splitlines())
    local_names = data[DOVECOT_LOCAL_NAMES_KEY]
    for service, material in domains:
        host = service.domain.hostname
        assert material.tls is not None
        chain = material.tls.cert_pem + material.tls.ca_pem
        assert data[f"{host}.crt"] == chain
        assert data[f"{host}.key"] == material.tls.key_pem
        # The key, then the chain, by file: Postfix reads them when it opens the table.
        assert table[host] == f"{DOMAIN_TLS_DIR}/{host}.key {DOMAIN_TLS_DIR}/{host}.crt"
        block = (
            f"local_name {host} {{\n  ssl_cert = <{DOMAIN_TLS_DIR}/{host}.crt\n"
            f"  ssl_key = <{DOMAIN_TLS_DIR}/{host}.key\n}}\n"
        )
        assert block in local_names
    assert len(table) == len(domains)


def test_a_domain_without_certificate_material_or_served_twice_is_refused(
    domains: list[ServedDomain],
) -> None:
    service, material = domains[0]
    with pytest.raises(RenderError, match="no certificate"):
        server_tls_data([(service, dataclasses.replace(material, tls=None))])
    with pytest.raises(RenderError, match="served twice"):
        server_users_data([domains[0], domains[0]])


def test_two_domains_of_one_host_name_are_refused(domains: list[ServedDomain]) -> None:
    (first, first_material), (second, second_material) = domains[:2]
    same_host = dataclasses.replace(second.domain, hostname=first.domain.hostname)
    clash = [
        (first, first_material),
        (dataclasses.replace(second, domain=same_host), second_material),
    ]
    with pytest.raises(RenderError, match=f"{first.domain.hostname} is the host name of two"):
        server_tls_data(clash)
