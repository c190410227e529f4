"""Single-document validation: parse_maildomain, parse_mailbox, parse_secret and the password rule.

Every bad input must come back as a ``ValidationError`` whose problems name the document
(``Kind/namespace/name``), the field path and what is expected instead; good inputs come back with
every default filled in.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from mailstack.api import dns_models
from mailstack.api import models as m
from mailstack.api.errors import FieldError, Problem, ValidationError
from mailstack.api.parse import parse_mailbox, parse_maildomain, parse_secret
from mailstack.api.validate import password

API = "mailstack.dev/v1alpha1"
NS = "mail"
MD_REF = f"MailDomain/{NS}/example"
MB_REF = f"Mailbox/{NS}/alice"
SECRET_REF = f"Secret/{NS}/alice-password"
LOCAL_PART_RULE = "may only contain a-z, 0-9, '.', '_' and '-'"

Doc = dict[str, Any]


def maildomain(spec: Any = None, name: str = "example", **extra: Any) -> Doc:
    doc: Doc = {
        "apiVersion": API,
        "kind": "MailDomain",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"domain": "example.com"} if spec is None else spec,
    }
    doc.update(extra)
    return doc


def domain_spec(**fields: Any) -> Doc:
    return {"domain": "example.com", **fields}


def mailbox(spec: Any = None, name: str = "alice", **extra: Any) -> Doc:
    doc: Doc = {
        "apiVersion": API,
        "kind": "Mailbox",
        "metadata": {"name": name, "namespace": NS},
        "spec": mailbox_spec() if spec is None else spec,
    }
    doc.update(extra)
    return doc


def mailbox_spec(**fields: Any) -> Doc:
    return {"address": "alice@example.com", "passwordSecretRef": {"name": "alice-pw"}, **fields}


def secret(**fields: Any) -> Doc:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "alice-password", "namespace": NS},
        **fields,
    }


def problems_of(parse: Callable[[Mapping[str, Any]], object], doc: Any) -> list[Problem]:
    with pytest.raises(ValidationError) as info:
        parse(doc)
    assert info.value.problems, "a ValidationError must carry at least one problem"
    return info.value.problems


def only_problem(parse: Callable[[Mapping[str, Any]], object], doc: Any) -> Problem:
    problems = problems_of(parse, doc)
    assert len(problems) == 1, [str(p) for p in problems]
    return problems[0]


def by_path(problems: list[Problem]) -> dict[str, list[str]]:
    result: dict[str, list[str]] = {}
    for problem in problems:
        result.setdefault(problem.path, []).append(problem.message)
    return result


# --- domain names -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("example", "is not fully qualified (expected e.g. example.com)"),
        ("-example.com", "label '-example' must be 1-63 characters of a-z, 0-9 and '-'"),
        ("example-.com", "not starting or ending with '-'"),
        ("a" * 64 + ".com", f"label '{'a' * 64}' must be 1-63 characters"),
        ("ex_ample.com", "label 'ex_ample' must be 1-63 characters of a-z, 0-9 and '-'"),
        ("example.com.", "write the name without the trailing dot"),
        ("", "expected a domain name, got an empty string"),
        ("ex..com", "label '' must be 1-63 characters"),
        ("example.123", "the top-level label cannot be numeric"),
        ("x" * 250 + ".com", "is longer than 253 characters"),
        (42, "expected a domain name (string), got int"),
    ],
)
def test_invalid_domain_is_refused_at_spec_domain(value: object, expected: str) -> None:
    problem = only_problem(parse_maildomain, maildomain(domain_spec(domain=value)))
    assert problem.document == MD_REF
    assert problem.path == "spec.domain"
    assert expected in problem.message


def test_label_of_63_characters_is_accepted() -> None:
    domain = "a" * 63 + ".com"
    assert parse_maildomain(maildomain(domain_spec(domain=domain))).domain == domain


def test_uppercase_domain_message_suggests_the_lowercase_form() -> None:
    problem = only_problem(parse_maildomain, maildomain(domain_spec(domain="Example.COM")))
    assert problem.path == "spec.domain"
    assert "must be lowercase" in problem.message
    assert "'example.com'" in problem.message


def test_idn_domain_message_gives_the_punycode_form() -> None:
    problem = only_problem(parse_maildomain, maildomain(domain_spec(domain="bücher.de")))
    assert problem.path == "spec.domain"
    assert "internationalised" in problem.message
    assert "xn--bcher-kva.de" in problem.message


def test_idn_domain_in_a_mailbox_address_gives_the_punycode_form() -> None:
    doc = mailbox(mailbox_spec(address="alice@bücher.de"))
    problem = only_problem(parse_mailbox, doc)
    assert (problem.document, problem.path) == (MB_REF, "spec.address")
    assert "xn--bcher-kva.de" in problem.message


def test_bad_hostname_names_spec_hostname() -> None:
    problem = only_problem(parse_maildomain, maildomain(domain_spec(hostname="mail")))
    assert problem.path == "spec.hostname"
    assert "not fully qualified" in problem.message


# --- local parts --------------------------------------------------------------------------------

BAD_LOCAL_PARTS = [
    pytest.param("john doe", "no spaces", id="space"),
    pytest.param('jo"hn', "quotes", id="quote"),
    pytest.param("jo\nhn", "control characters", id="newline"),
    pytest.param("john..doe", "contains '..'", id="double-dot"),
    pytest.param(".john", "not starting or ending with '.'", id="leading-dot"),
    pytest.param("john.", "not starting or ending with '.'", id="trailing-dot"),
    pytest.param("John", "must be lowercase ('john')", id="uppercase"),
    pytest.param("john+tag", "'+'", id="plus"),
    pytest.param("jöhn", LOCAL_PART_RULE, id="non-ascii"),
]


@pytest.mark.parametrize(("local", "expected"), BAD_LOCAL_PARTS)
def test_bad_local_part_in_mailbox_address(local: str, expected: str) -> None:
    doc = mailbox(mailbox_spec(address=f"{local}@example.com"))
    problem = only_problem(parse_mailbox, doc)
    assert (problem.document, problem.path) == (MB_REF, "spec.address")
    assert expected in problem.message
    assert repr(f"{local}@example.com") in problem.message  # says which address


@pytest.mark.parametrize(("local", "expected"), BAD_LOCAL_PARTS)
def test_bad_local_part_as_domain_alias_key(local: str, expected: str) -> None:
    doc = maildomain(domain_spec(aliases={local: ["alice"], "ok": ["alice"]}))
    problem = only_problem(parse_maildomain, doc)
    assert problem.document == MD_REF
    # A control character in a key may be quoted in the path (see the newline test below).
    assert problem.path in (f"spec.aliases.{local}", f"spec.aliases[{local!r}]")
    assert expected in problem.message


@pytest.mark.parametrize(("local", "expected"), BAD_LOCAL_PARTS)
def test_bad_local_part_in_mailbox_aliases(local: str, expected: str) -> None:
    doc = mailbox(mailbox_spec(aliases=["good", local]))
    problem = only_problem(parse_mailbox, doc)
    assert (problem.document, problem.path) == (MB_REF, "spec.aliases[1]")
    assert expected in problem.message


def test_local_part_longer_than_64_is_refused() -> None:
    problem = only_problem(parse_mailbox, mailbox(mailbox_spec(address="a" * 65 + "@example.com")))
    assert problem.path == "spec.address"
    assert "longer than 64 characters" in problem.message


def test_address_without_at_sign() -> None:
    problem = only_problem(parse_mailbox, mailbox(mailbox_spec(address="alice.example.com")))
    assert problem.path == "spec.address"
    assert "is not an address of the form local@domain" in problem.message


def test_problem_path_of_a_key_with_a_newline_stays_on_one_line() -> None:
    problem = only_problem(parse_maildomain, maildomain(domain_spec(aliases={"a\nb": ["x"]})))
    assert "\n" not in str(problem)


# --- domain aliases -----------------------------------------------------------------------------


def test_domain_alias_targets_are_completed_and_sorted() -> None:
    doc = maildomain(
        domain_spec(
            aliases={"sales": ["alice", "bob@example.com", "x@example.net"], "info": ["bob"]}
        )
    )
    parsed = parse_maildomain(doc)
    assert parsed.aliases == (
        ("info", ("bob@example.com",)),
        ("sales", ("alice@example.com", "bob@example.com", "x@example.net")),
    )


def test_domain_alias_target_must_be_a_list() -> None:
    # The CRD cannot express "string or list"; the parser refuses what the API server would.
    doc = maildomain(domain_spec(aliases={"info": "bob"}))
    problem = only_problem(parse_maildomain, doc)
    assert problem.path == "spec.aliases.info"
    assert "expected a list" in problem.message


def test_domain_alias_with_a_bad_external_target() -> None:
    doc = maildomain(domain_spec(aliases={"sales": ["alice", "john doe@example.net"]}))
    problem = only_problem(parse_maildomain, doc)
    assert "RFC 5321 dot-atom" in problem.message
    assert problem.path.startswith("spec.aliases.sales")


def test_domain_alias_target_path_is_the_list_index() -> None:
    doc = maildomain(domain_spec(aliases={"sales": ["alice", "john doe@example.net"]}))
    problem = only_problem(parse_maildomain, doc)
    assert problem.path == "spec.aliases.sales[1]"


def test_domain_alias_as_mapping_instead_of_list_is_refused() -> None:
    doc = maildomain(domain_spec(aliases=["sales"]))
    problem = only_problem(parse_maildomain, doc)
    assert problem.path == "spec.aliases"
    assert "expected a mapping of local part to a list of addresses" in problem.message


def test_domain_alias_without_targets_is_reported_once() -> None:
    problem = only_problem(parse_maildomain, maildomain(domain_spec(aliases={"sales": []})))
    assert problem.path == "spec.aliases.sales"
    assert "at least one target" in problem.message


def test_domain_alias_with_null_targets_is_refused() -> None:
    problem = only_problem(parse_maildomain, maildomain(domain_spec(aliases={"sales": None})))
    assert problem.path == "spec.aliases.sales"
    assert "at least one target" in problem.message


def test_catch_all_on_another_domain() -> None:
    doc = maildomain(domain_spec(catchAll="alice@example.net"))
    problem = only_problem(parse_maildomain, doc)
    assert problem.path == "spec.catchAll"
    assert "is not on the domain example.com" in problem.message


# --- sizes --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("10 GB", "'10 GB' is not a size"),
        ("25MB", "'25MB' is not a size"),
        ("1.5Gi", "'1.5Gi' is not a size"),
        ("-1", "'-1' is not a size"),
        (-1, "size must not be negative, got -1"),
        (True, "expected a size such as 25Mi"),
        ("0", "out of range: expected 1Ki to 2Gi"),
        ("3Gi", "out of range: expected 1Ki to 2Gi"),
    ],
)
def test_bad_message_size(value: object, expected: str) -> None:
    problem = only_problem(parse_maildomain, maildomain(domain_spec(limits={"messageSize": value})))
    assert (problem.document, problem.path) == (MD_REF, "spec.limits.messageSize")
    assert expected in problem.message
    if isinstance(value, str) and "not a size" in expected:
        assert "e.g. 25Mi" in problem.message  # says what is expected


@pytest.mark.parametrize(
    ("value", "size"),
    [("10M", 10_000_000), ("10Mi", 10 * 1024**2), (2048, 2048), ("2Gi", 2 * 1024**3)],
)
def test_good_message_sizes(value: object, size: int) -> None:
    parsed = parse_maildomain(maildomain(domain_spec(limits={"messageSize": value})))
    assert parsed.limits.message_size == size


@pytest.mark.parametrize("value", ["10 GB", "-1", "1.5Gi"])
def test_bad_mailbox_quota(value: str) -> None:
    problem = only_problem(parse_mailbox, mailbox(mailbox_spec(quota=value)))
    assert (problem.document, problem.path) == (MB_REF, "spec.quota")
    assert f"{value!r} is not a size" in problem.message


def test_bad_volume_size() -> None:
    doc = maildomain(domain_spec(storage={"mailboxes": {"size": "10 GB"}}))
    problem = only_problem(parse_maildomain, doc)
    assert problem.path == "spec.storage.mailboxes.size"
    assert "is not a size" in problem.message


# --- unknown fields and wrong types -------------------------------------------------------------


def test_unknown_top_level_field_lists_the_known_ones() -> None:
    problem = only_problem(parse_maildomain, maildomain(specs={}))
    assert (problem.document, problem.path) == (MD_REF, "specs")
    assert problem.message == (
        "unknown field (known fields here: apiVersion, kind, metadata, spec, status)"
    )


def test_unknown_spec_field_lists_the_known_ones() -> None:
    problem = only_problem(parse_maildomain, maildomain(domain_spec(hostnme="mail.example.com")))
    assert problem.path == "spec.hostnme"
    assert problem.message.startswith("unknown field (known fields here: ")
    for known in ("aliases", "catchAll", "domain", "hostname", "limits", "tls", "dns", "spam"):
        assert known in problem.message


@pytest.mark.parametrize(
    ("spec", "path", "known"),
    [
        (
            {"limits": {"messagesize": "1Mi"}},
            "spec.limits.messagesize",
            "messageSize, perClient, recipientsPerMessage",
        ),
        (
            {"dns": {"dmarc": {"alignment": {"dkm": "strict"}}}},
            "spec.dns.dmarc.alignment.dkm",
            "dkim, spf",
        ),
        ({"tls": {"issuer": "acme", "acme": {"mail": "x"}}}, "spec.tls.acme.mail", "email, server"),
        (
            {"protocols": {"imaps": True}},
            "spec.protocols.imaps",
            "imap, managesieve, pop3, submission, submissions",
        ),
    ],
)
def test_unknown_nested_field_lists_the_known_ones(spec: Doc, path: str, known: str) -> None:
    problems = by_path(problems_of(parse_maildomain, maildomain(domain_spec(**spec))))
    assert path in problems, problems
    assert problems[path] == [f"unknown field (known fields here: {known})"]


def test_unknown_mailbox_field() -> None:
    problem = only_problem(parse_mailbox, mailbox(mailbox_spec(quotas="1Gi")))
    assert problem.path == "spec.quotas"
    assert "known fields here: address, aliases, displayName" in problem.message


def test_unknown_metadata_field() -> None:
    doc = maildomain()
    doc["metadata"]["lables"] = {}
    problem = only_problem(parse_maildomain, doc)
    assert problem.path == "metadata.lables"
    assert "labels" in problem.message


@pytest.mark.parametrize("value", ["yes", "true", 1])
def test_string_or_number_for_a_boolean(value: object) -> None:
    problem = only_problem(parse_maildomain, maildomain(domain_spec(protocols={"imap": value})))
    assert problem.path == "spec.protocols.imap"
    assert problem.message.startswith("expected true or false, got ")
    assert repr(value) in problem.message


def test_string_for_mailbox_boolean() -> None:
    problem = only_problem(parse_mailbox, mailbox(mailbox_spec(suspended="no")))
    assert problem.path == "spec.suspended"
    assert problem.message == "expected true or false, got the string 'no'"


@pytest.mark.parametrize("field", ["limits", "protocols", "tls", "dkim", "dns", "spam", "storage"])
def test_list_for_a_mapping(field: str) -> None:
    problem = only_problem(parse_maildomain, maildomain(domain_spec(**{field: ["x"]})))
    assert problem.path == f"spec.{field}"
    assert problem.message == "expected a mapping, got a list"


def test_list_for_the_spec() -> None:
    problems = by_path(problems_of(parse_maildomain, maildomain(["example.com"])))
    assert problems["spec"] == ["expected a mapping, got a list"]
    assert problems["spec.domain"] == ["is required"]


def test_string_for_a_list() -> None:
    problem = only_problem(parse_mailbox, mailbox(mailbox_spec(forwardTo="x@example.net")))
    assert problem.path == "spec.forwardTo"
    assert problem.message == "expected a list, got the string 'x@example.net'"


def test_integer_out_of_range() -> None:
    doc = maildomain(domain_spec(limits={"recipientsPerMessage": 0}))
    problem = only_problem(parse_maildomain, doc)
    assert problem.path == "spec.limits.recipientsPerMessage"
    assert problem.message == "expected an integer from 1 to 10000, got 0"


def test_wrong_api_version_and_kind() -> None:
    doc = maildomain(apiVersion="mailstack.dev/v1", kind="MailDomain")
    problem = only_problem(parse_maildomain, doc)
    assert problem.path == "apiVersion"
    assert "expected mailstack.dev/v1alpha1" in problem.message
    mb = mailbox(kind="MailBox")
    problem = only_problem(parse_mailbox, mb)
    assert problem.path == "kind"
    assert "expected Mailbox, got 'MailBox'" in problem.message


@pytest.mark.parametrize(
    "parse", [parse_maildomain, parse_mailbox, parse_secret], ids=["md", "mb", "secret"]
)
def test_non_mapping_document_is_a_problem(parse: Callable[[Any], object]) -> None:
    problem = only_problem(parse, ["not", "a", "mapping"])
    assert "expected a mapping" in problem.message


# --- required fields ----------------------------------------------------------------------------


def test_missing_domain() -> None:
    problem = only_problem(parse_maildomain, maildomain({"hostname": "mail.example.com"}))
    assert (problem.document, problem.path, problem.message) == (
        MD_REF,
        "spec.domain",
        "is required",
    )


def test_missing_domain_leaves_local_parts_without_a_domain() -> None:
    # Local parts are completed with nothing, as in a Mailbox with a bad address (the message
    # showed the parser's internal "missing" marker before).
    doc = maildomain({"catchAll": "bob", "postmaster": "pm"})
    assert by_path(problems_of(parse_maildomain, doc)) == {
        "spec.domain": ["is required"],
        "spec.catchAll": ["address 'bob@': expected a domain name, got an empty string"],
        "spec.postmaster": ["address 'pm@': expected a domain name, got an empty string"],
    }


def test_missing_maildomain_spec() -> None:
    doc = maildomain()
    del doc["spec"]
    assert by_path(problems_of(parse_maildomain, doc)) == {
        "spec": ["is required"],
        "spec.domain": ["is required"],
    }


def test_missing_mailbox_address() -> None:
    spec = mailbox_spec()
    del spec["address"]
    problem = only_problem(parse_mailbox, mailbox(spec))
    assert (problem.document, problem.path, problem.message) == (
        MB_REF,
        "spec.address",
        "is required",
    )


def test_missing_password_secret_ref() -> None:
    problem = only_problem(parse_mailbox, mailbox({"address": "alice@example.com"}))
    assert (problem.path, problem.message) == ("spec.passwordSecretRef", "is required")


def test_password_secret_ref_without_name() -> None:
    doc = mailbox(mailbox_spec(passwordSecretRef={"key": "pw"}))
    problem = only_problem(parse_mailbox, doc)
    assert (problem.path, problem.message) == ("spec.passwordSecretRef.name", "is required")


def test_empty_password_secret_ref_is_refused() -> None:
    problem = only_problem(parse_mailbox, mailbox(mailbox_spec(passwordSecretRef={})))
    assert problem.path in ("spec.passwordSecretRef", "spec.passwordSecretRef.name")
    assert "required" in problem.message


def test_password_secret_ref_as_string() -> None:
    problem = only_problem(parse_mailbox, mailbox(mailbox_spec(passwordSecretRef="alice-pw")))
    assert problem.path == "spec.passwordSecretRef"
    assert problem.message == "expected a mapping, got the string 'alice-pw'"


def test_missing_mailbox_spec_reports_every_required_field() -> None:
    doc = mailbox()
    del doc["spec"]
    assert set(by_path(problems_of(parse_mailbox, doc))) == {
        "spec",
        "spec.address",
        "spec.passwordSecretRef",
    }


# --- DNS provider, TLS, spam --------------------------------------------------------------------


@pytest.mark.parametrize(
    "provider",
    [{"manual": {}, "cloudflare": {}}, {}],
    ids=["two", "empty"],
)
def test_dns_provider_must_be_exactly_one(provider: Doc) -> None:
    problem = only_problem(parse_maildomain, maildomain(domain_spec(dns={"provider": provider})))
    assert problem.path == "spec.dns.provider"
    assert problem.message.startswith("set exactly one provider: ")
    for name in ("manual", "rfc2136", "powerdns", "cloudflare", "route53", "externalDNS"):
        assert name in problem.message


def test_unknown_dns_provider() -> None:
    doc = maildomain(domain_spec(dns={"provider": {"bind": {}}}))
    problems = by_path(problems_of(parse_maildomain, doc))
    assert (
        "known fields here: cloudflare, externalDNS, manual"
        in problems["spec.dns.provider.bind"][0]
    )


def test_dns_provider_missing_required_settings() -> None:
    doc = maildomain(domain_spec(dns={"provider": {"rfc2136": {}}}))
    assert by_path(problems_of(parse_maildomain, doc)) == {
        "spec.dns.provider.rfc2136.server": ["is required"],
        "spec.dns.provider.rfc2136.tsigKeyName": ["is required"],
        "spec.dns.provider.rfc2136.tsigSecretRef": ["is required"],
    }


@pytest.mark.parametrize(
    ("tls", "path", "expected"),
    [
        ({"issuer": "certManager"}, "spec.tls", "issuer certManager needs certManager.issuerRef"),
        ({"issuer": "acme"}, "spec.tls", "issuer acme needs acme.email"),
        (
            {"issuer": "internal", "certManager": {"issuerRef": {"name": "le"}}},
            "spec.tls.certManager",
            "only allowed with issuer certManager (issuer is internal)",
        ),
        (
            {"acme": {"email": "admin@example.com"}},
            "spec.tls.acme",
            "only allowed with issuer acme (issuer is internal)",
        ),
        (
            {"issuer": "certManager", "certManager": {}},
            "spec.tls.certManager.issuerRef",
            "is required",
        ),
        ({"issuer": "acme", "acme": {}}, "spec.tls.acme.email", "is required"),
        (
            {"issuer": "letsencrypt"},
            "spec.tls.issuer",
            "expected one of internal, certManager, acme",
        ),
    ],
)
def test_tls_issuer_mismatch(tls: Doc, path: str, expected: str) -> None:
    problem = only_problem(parse_maildomain, maildomain(domain_spec(tls=tls)))
    assert problem.path == path
    assert expected in problem.message


def test_tls_cert_manager_issuer_is_parsed_with_defaults() -> None:
    doc = maildomain(
        domain_spec(tls={"issuer": "certManager", "certManager": {"issuerRef": {"name": "le"}}})
    )
    tls = parse_maildomain(doc).tls
    assert tls.issuer == "certManager"
    assert tls.cert_manager_issuer == m.IssuerRef("le", "ClusterIssuer", "cert-manager.io")


@pytest.mark.parametrize(
    ("thresholds", "expected"),
    [
        ({"addHeader": 10, "reject": 10}, "reject (10) must be greater than addHeader (10)"),
        ({"addHeader": 10, "reject": 5}, "reject (5) must be greater than addHeader (10)"),
        ({"reject": 5}, "reject (5) must be greater than addHeader (6)"),
    ],
)
def test_spam_reject_must_exceed_add_header(thresholds: Doc, expected: str) -> None:
    doc = maildomain(domain_spec(spam={"thresholds": thresholds}))
    problem = only_problem(parse_maildomain, doc)
    assert (problem.path, problem.message) == ("spec.spam.thresholds", expected)


def test_spam_on_scan_failure_defaults_to_tempfail_and_takes_accept_only_as_spelled() -> None:
    assert parse_maildomain(maildomain(domain_spec())).spam.on_scan_failure == "tempfail"
    accept = maildomain(domain_spec(spam={"onScanFailure": "accept"}))
    assert parse_maildomain(accept).spam.on_scan_failure == "accept"
    problem = only_problem(
        parse_maildomain, maildomain(domain_spec(spam={"onScanFailure": "Accept"}))
    )
    assert problem.path == "spec.spam.onScanFailure"
    assert "tempfail, accept" in problem.message


# --- relay --------------------------------------------------------------------------------------


def test_relay_ca_defaults_its_key_and_makes_the_relay_verified() -> None:
    relay = {"host": "smtp.example.net", "caSecretRef": {"name": "relay-ca"}}
    parsed = parse_maildomain(maildomain(domain_spec(relay=relay))).relay
    assert parsed == m.Relay(host="smtp.example.net", ca=m.SecretKeyRef("relay-ca", "ca.crt"))
    assert parsed.verified and parsed.credentials_secret is None
    plain = parse_maildomain(maildomain(domain_spec(relay={"host": "192.0.2.25"}))).relay
    assert plain is not None and not plain.verified  # opportunistic TLS, an IP address is fine
    with_credentials = {"host": "smtp.example.net", "credentialsSecretRef": {"name": "relay"}}
    relay_model = parse_maildomain(maildomain(domain_spec(relay=with_credentials))).relay
    assert relay_model is not None and relay_model.verified and relay_model.ca is None


@pytest.mark.parametrize("host", ["192.0.2.25", "2001:db8::25", "::ffff:192.0.2.25"])
@pytest.mark.parametrize("reference", ["credentialsSecretRef", "caSecretRef"])
def test_a_verified_relay_must_be_named_by_host_name(host: str, reference: str) -> None:
    relay = {"host": host, reference: {"name": "relay"}}
    problem = only_problem(parse_maildomain, maildomain(domain_spec(relay=relay)))
    assert (problem.document, problem.path) == (MD_REF, "spec.relay.host")
    assert problem.message.startswith(
        "a relay with credentialsSecretRef or caSecretRef must be given by its host name, not an "
        "IP address: Postfix checks the relay's certificate against that name"
    )


def test_relay_ca_reference_is_checked() -> None:
    relay = {"host": "smtp.example.net", "caSecretRef": {"name": "Relay CA", "key": "a/b"}}
    problems = by_path(problems_of(parse_maildomain, maildomain(domain_spec(relay=relay))))
    assert set(problems) == {"spec.relay.caSecretRef.name", "spec.relay.caSecretRef.key"}
    relay = {"host": "smtp.example.net", "caSecretRef": {"key": "ca.pem", "namespace": "x"}}
    problems = by_path(problems_of(parse_maildomain, maildomain(domain_spec(relay=relay))))
    assert problems.keys() == {"spec.relay.caSecretRef.name", "spec.relay.caSecretRef.namespace"}
    assert problems["spec.relay.caSecretRef.name"] == ["is required"]


# --- mailbox rules ------------------------------------------------------------------------------


def test_keep_copy_without_forward_to() -> None:
    problem = only_problem(parse_mailbox, mailbox(mailbox_spec(keepCopy=True)))
    assert (problem.path, problem.message) == ("spec.keepCopy", "only meaningful with forwardTo")


def test_keep_copy_with_forward_to_is_fine() -> None:
    box = parse_mailbox(mailbox(mailbox_spec(keepCopy=True, forwardTo=["a@example.net"])))
    assert box.keep_copy is True
    assert box.forward_to == ("a@example.net",)


@pytest.mark.parametrize("alias", ["alice", "alice@example.com"])
def test_alias_equal_to_own_address(alias: str) -> None:
    problem = only_problem(parse_mailbox, mailbox(mailbox_spec(aliases=["a.example", alias])))
    assert problem.path == "spec.aliases[1]"
    assert problem.message == "alias 'alice@example.com' is the mailbox's own address"


def test_alias_on_another_domain() -> None:
    problem = only_problem(parse_mailbox, mailbox(mailbox_spec(aliases=["alice@example.org"])))
    assert problem.path == "spec.aliases[0]"
    assert (
        problem.message == "alias 'alice@example.org' must be on the mailbox's domain example.com"
    )


def test_alias_listed_twice() -> None:
    problem = only_problem(parse_mailbox, mailbox(mailbox_spec(aliases=["al", "al@example.com"])))
    assert problem.path == "spec.aliases[1]"
    assert "listed twice" in problem.message


def test_mailbox_aliases_are_completed_with_the_domain() -> None:
    box = parse_mailbox(mailbox(mailbox_spec(aliases=["a.example", "postmaster@example.com"])))
    assert box.aliases == ("a.example@example.com", "postmaster@example.com")
    assert (box.local_part, box.domain, box.address) == (
        "alice",
        "example.com",
        "alice@example.com",
    )


# --- metadata -----------------------------------------------------------------------------------


def test_name_of_48_characters_is_accepted() -> None:
    assert parse_maildomain(maildomain(name="a" * 48)).name == "a" * 48


@pytest.mark.parametrize("parse_and_doc", ["maildomain", "mailbox"])
def test_name_longer_than_48_characters(parse_and_doc: str) -> None:
    name = "a" * 49
    if parse_and_doc == "maildomain":
        problem = only_problem(parse_maildomain, maildomain(name=name))
    else:
        problem = only_problem(parse_mailbox, mailbox(name=name))
    assert problem.path == "metadata.name"
    assert problem.message == f"name {name!r} is longer than 48 characters"
    assert problem.document.endswith(f"/{NS}/{name}")


@pytest.mark.parametrize("name", ["Example", "ex_ample", "1example", "example-", "ex.ample"])
def test_invalid_name(name: str) -> None:
    problem = only_problem(parse_maildomain, maildomain(name=name))
    assert (problem.document, problem.path) == (f"MailDomain/{NS}/{name}", "metadata.name")
    assert "must start with a-z, contain only a-z, 0-9 and '-'" in problem.message


def test_missing_name_and_default_namespace() -> None:
    doc = maildomain()
    doc["metadata"] = {}
    problem = only_problem(parse_maildomain, doc)
    assert (problem.document, problem.path, problem.message) == (
        "MailDomain/default/?",
        "metadata.name",
        "is required",
    )


def test_invalid_namespace() -> None:
    doc = maildomain()
    doc["metadata"]["namespace"] = "Mail"
    problem = only_problem(parse_maildomain, doc)
    assert problem.path == "metadata.namespace"


# --- all problems at once -----------------------------------------------------------------------


def test_several_problems_in_one_document_are_all_reported() -> None:
    doc = maildomain(
        domain_spec(
            domain="Example.com",
            hostnme="mail.example.com",
            limits={"messageSize": "10 GB"},
            protocols={"imap": "yes"},
            spam={"thresholds": {"addHeader": 9, "reject": 3}},
        ),
        name="x" * 49,
    )
    problems = problems_of(parse_maildomain, doc)
    assert {p.document for p in problems} == {f"MailDomain/{NS}/{'x' * 49}"}
    assert set(by_path(problems)) == {
        "metadata.name",
        "spec.hostnme",
        "spec.domain",
        "spec.limits.messageSize",
        "spec.protocols.imap",
        "spec.spam.thresholds",
    }
    text = str(ValidationError(problems))
    assert len(text.splitlines()) == len(problems)


def test_several_mailbox_problems_are_all_reported() -> None:
    doc = mailbox(
        {
            "address": "Alice@example.com",
            "passwordSecretRef": {"name": "Bad_Name"},
            "quota": "1.5Gi",
            "keepCopy": True,
            "aliases": ["a b"],
        }
    )
    assert set(by_path(problems_of(parse_mailbox, doc))) == {
        "spec.address",
        "spec.passwordSecretRef.name",
        "spec.quota",
        "spec.keepCopy",
        "spec.aliases[0]",
    }


def test_source_is_carried_into_problems() -> None:
    with pytest.raises(ValidationError) as info:
        parse_maildomain(maildomain(domain_spec(domain="example")), source="dir/md.yaml")
    problem = info.value.problems[0]
    assert problem.source == "dir/md.yaml"
    assert str(problem).startswith(f"dir/md.yaml: {MD_REF} spec.domain: ")


# --- defaults -----------------------------------------------------------------------------------


def test_defaults_of_a_minimal_maildomain() -> None:
    parsed = parse_maildomain(maildomain())
    assert (parsed.name, parsed.namespace, parsed.domain) == ("example", NS, "example.com")
    assert parsed.hostname == "mail.example.com"
    assert parsed.postmaster == "postmaster@example.com"
    assert parsed.catch_all is None
    assert parsed.aliases == ()
    assert parsed.limits.message_size == 25 * 1024 * 1024
    assert parsed.limits.recipients_per_message == 100
    assert parsed.protocols == m.Protocols(
        imap=True, pop3=True, submission=True, submissions=True, managesieve=False
    )
    assert parsed.dkim == m.Dkim(selector="mailstack", algorithm="rsa2048")
    assert parsed.tls.issuer == "internal"
    assert parsed.tls.cert_manager_issuer is None
    assert parsed.dns.provider.kind == "manual"
    assert parsed.dns.provider.secret is None
    assert parsed.dns.ttl == 3600
    assert parsed.dns.spf.policy == "-all"
    assert parsed.dns.dmarc.policy == "quarantine"
    assert parsed.storage.retention == "Retain"
    assert parsed.storage.mailboxes.size == "10Gi"
    assert parsed.storage.queue.size == "2Gi"
    assert parsed.spam == m.Spam(
        enabled=True, add_header_score=6.0, reject_score=15.0, junk_folder=True
    )
    assert parsed.service.type == "LoadBalancer"
    assert parsed.relay is None
    assert parsed.resolvers == ()


def test_default_namespace_is_applied() -> None:
    doc = maildomain()
    del doc["metadata"]["namespace"]
    assert parse_maildomain(doc).namespace == "default"
    assert parse_maildomain(doc, default_namespace="other").namespace == "other"


def test_explicit_postmaster_and_catch_all_get_the_domain() -> None:
    parsed = parse_maildomain(maildomain(domain_spec(postmaster="alice", catchAll="bob")))
    assert parsed.postmaster == "alice@example.com"
    assert parsed.catch_all == "bob@example.com"


def test_dns_provider_settings_default_the_zone() -> None:
    doc = maildomain(
        domain_spec(
            dns={
                "provider": {
                    "cloudflare": {"apiTokenSecretRef": {"name": "cf"}},
                }
            }
        )
    )
    provider = parse_maildomain(doc).dns.provider
    assert provider.kind == "cloudflare"
    assert provider.settings == dns_models.CloudflareSettings(zone="example.com")
    assert provider.secret == m.SecretKeyRef("cf", "apiToken")


def test_defaults_of_a_minimal_mailbox() -> None:
    box = parse_mailbox(mailbox())
    assert box == m.Mailbox(
        name="alice",
        namespace=NS,
        address="alice@example.com",
        local_part="alice",
        domain="example.com",
        password=m.SecretKeyRef("alice-pw", "password"),
    )


# --- Secrets ------------------------------------------------------------------------------------


def test_secret_data_is_base64_decoded() -> None:
    encoded = base64.b64encode(b"correct horse").decode()
    parsed = parse_secret(secret(data={"password": encoded}))
    assert parsed.get("password") == b"correct horse"
    assert parsed.ref == SECRET_REF


def test_secret_string_data_is_taken_as_is_and_wins_over_data() -> None:
    parsed = parse_secret(
        secret(data={"password": base64.b64encode(b"old").decode()}, stringData={"password": "new"})
    )
    assert parsed.get("password") == b"new"


@pytest.mark.parametrize("value", ["not base64!", "aGVsbG8", "ä"])
def test_secret_invalid_base64(value: str) -> None:
    problem = only_problem(parse_secret, secret(data={"password": value}))
    assert (problem.document, problem.path, problem.message) == (
        SECRET_REF,
        "data.password",
        "is not valid base64",
    )


@pytest.mark.parametrize(
    ("fields", "path", "expected"),
    [
        ({"data": {"password": 5}}, "data.password", "expected a base64 string"),
        ({"data": ["x"]}, "data", "expected a mapping of key to base64 value"),
        ({"stringData": {"password": 5}}, "stringData.password", "expected a string"),
        ({"stringData": {"bad key": "x"}}, "stringData.bad key", "is not a valid Secret key"),
    ],
)
def test_secret_bad_values(fields: Doc, path: str, expected: str) -> None:
    problem = only_problem(parse_secret, secret(**fields))
    assert problem.path == path
    assert expected in problem.message


def test_secret_wrong_kind() -> None:
    problem = only_problem(parse_secret, secret(kind="ConfigMap"))
    assert problem.path == "kind"
    assert "expected apiVersion v1, kind Secret" in problem.message


# --- passwords ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("correct\nhorse", "newline or another control character"),
        ("correct horse\r", "newline or another control character"),
        ("correct\x00horse", "newline or another control character"),
        ("correct\thorse", "newline or another control character"),
        ("{PLAIN}correct horse", "{PLAIN} stores the password in clear"),
        ("{CLEARTEXT}correcthorse", "{CLEARTEXT} stores the password in clear"),
        ("{MD5}abcdefabcdef", "unknown password scheme {MD5}; accepted: ARGON2I"),
        (
            "{BLF-CRYPT}$2b$10$abc:def",
            "the {BLF-CRYPT} hash must be printable ASCII without ':' or blanks",
        ),
        (
            "{SHA512-CRYPT}$6$ab cd",
            "the {SHA512-CRYPT} hash must be printable ASCII without ':' or blanks",
        ),
        ("short", "shorter than 8 characters"),
        ("x" * 1025, "longer than 1024 characters"),
    ],
)
def test_password_refused(value: str, expected: str) -> None:
    with pytest.raises(FieldError) as info:
        password(value)
    assert expected in info.value.message


@pytest.mark.parametrize(
    "value",
    [
        "pass:word:with:colons",  # deliberate: only the bcrypt hash reaches the passwd-file
        "correct horse battery staple",
        "12345678",
        "{BLF-CRYPT}$2b$10$oNX0qrTw9O53hLe7QUwJleCv/SNk366H0AaviuhdUL0m9Ve3uMtW.",
        "{SHA512-CRYPT}$6$salt$hash",
    ],
)
def test_password_accepted(value: str) -> None:
    assert password(value) == value


def test_per_client_limits_default_and_parse() -> None:
    default = parse_maildomain(maildomain()).limits.per_client
    assert default == m.ClientLimits()
    assert (default.smtp_connections, default.smtp_logins_per_minute) == (20, 0)
    spec = domain_spec(
        limits={
            "perClient": {
                "smtpLoginsPerMinute": 30,
                "sessionsPerUser": 5,
                "exemptNetworks": ["10.1.2.3/16", "192.0.2.7", "2001:db8::1/48"],
            }
        }
    )
    limits = parse_maildomain(maildomain(spec)).limits.per_client
    assert limits.smtp_logins_per_minute == 30
    assert limits.sessions_per_user == 5
    assert limits.smtp_connections == m.ClientLimits.smtp_connections
    # Canonical ranges: host bits cleared, an address a one-address range.
    assert limits.exempt_networks == ("10.1.0.0/16", "192.0.2.7/32", "2001:db8::/48")


@pytest.mark.parametrize(
    ("per_client", "path", "message"),
    [
        ({"smtpConnections": -1}, "spec.limits.perClient.smtpConnections", "from 0 to 100000"),
        ({"sessionsPerUser": "5"}, "spec.limits.perClient.sessionsPerUser", "from 0 to 100000"),
        (
            {"exemptNetworks": ["10.0.0.0/33"]},
            "spec.limits.perClient.exemptNetworks[0]",
            "is not an IP address or a CIDR range",
        ),
        (
            {"exemptNetworks": ["10.0.0.0/8 permit"]},
            "spec.limits.perClient.exemptNetworks[0]",
            "is not an IP address or a CIDR range",
        ),
    ],
)
def test_per_client_limits_refused(per_client: Doc, path: str, message: str) -> None:
    problem = only_problem(
        parse_maildomain, maildomain(domain_spec(limits={"perClient": per_client}))
    )
    assert problem.path == path
    assert message in problem.message
