"""No user string can inject a line or a directive into a rendered file or a DNS record.

For every string field a user controls (MailDomain, Mailbox, the Secrets they reference), a
hypothesis property substitutes hostile and near-valid strings into otherwise complete documents
and runs parse → assemble → material → render in memory. Either the input is refused (a
``ValidationError`` or a ``Problem``; a ``RenderError`` is accepted too but counted, since
validation should have caught it first), or every rendered file parses with the strict parsers of
``tests.parsers`` to exactly the directives intended for that model: the same main.cf parameters,
master.cf services, dovecot.conf tree, rspamd keys and zone records as the baseline, the map and
passwd entries the model calls for, hashed Sieve file names, and no control characters.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import functools
import hashlib
import ipaddress
import posixpath
import re
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mailstack.api import validate as v
from mailstack.api.assemble import MailService, assemble
from mailstack.api.errors import FieldError, ValidationError
from mailstack.api.models import API_VERSION, Secret
from mailstack.api.parse import parse_mailbox, parse_maildomain, parse_secret
from mailstack.api.pod_models import MailPods
from mailstack.dns.records import desired_records, render_zone
from mailstack.material import Material
from mailstack.material.dkim import DkimKey, generate_dkim_key
from mailstack.material.passwords import hash_password
from mailstack.material.pki import (
    CertificateAuthority,
    ClientCertificate,
    ServerCertificate,
    generate_ca,
    generate_client_certificate,
    issue_server_certificate,
)
from mailstack.material.resolve import material_secrets, resolve_material
from mailstack.render import layout
from mailstack.render.dovecot import STORED_HEADER_ROOM
from mailstack.render.forwarding import held_alias_entries
from mailstack.render.objects import CHECKSUM_ANNOTATION, DOMAIN_ANNOTATION
from mailstack.render.postfix import RELAY_CA_FILE, RELAY_SASL_APP
from mailstack.render.stack import render_stack
from mailstack.render.templating import RenderError
from tests.parsers import (
    DovecotSection,
    MasterEntry,
    PasswdEntry,
    ZoneRecord,
    control_characters,
    parse_dovecot_conf,
    parse_main_cf,
    parse_master_cf,
    parse_passwd_file,
    parse_postfix_map,
    parse_txt_rdata,
    parse_ucl,
    parse_zone,
    ucl_string,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
NS = "mail"
NAME = "example-com"
DOMAIN = "example.com"
SELECTOR = "s2026"
RELAY_USER = "relay-user@example.com"
RELAY_PASSWORD = "s3cret-relay-pass"
LETSENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
ALICE_PASSWORD = "correct horse battery staple"
MAX_EXAMPLES = 150

OBJECT_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
SIEVE_NAME = re.compile(r"^user-[0-9a-f]{24}\.sieve$")
ANNOTATION_KEY = re.compile(
    r"([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
)
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?")
REQUIRED = "requiredDuringSchedulingIgnoredDuringExecution"
PEM_CERTIFICATES = re.compile(
    r"(-----BEGIN CERTIFICATE-----\n([A-Za-z0-9+/]{64}\n)*[A-Za-z0-9+/]{1,63}={0,2}\n"
    r"-----END CERTIFICATE-----\n)+"
)


# --- Material: generated once, hashes pre-computed ----------------------------------------------


@dataclasses.dataclass(frozen=True)
class SessionMaterial:
    dkim: DkimKey
    ca: CertificateAuthority
    tls: ServerCertificate
    mda_client: ClientCertificate
    mta_client: ClientCertificate
    alice_hash: str
    bob_hash: str


@functools.cache
def session_material() -> SessionMaterial:
    ca = generate_ca("mailstack CA for example.com", NOW)
    return SessionMaterial(
        # Ed25519: loading an RSA key costs ~30 ms, and DkimKey loads it on every dns_value().
        dkim=generate_dkim_key(SELECTOR, "ed25519"),
        ca=ca,
        tls=issue_server_certificate(ca, [f"mail.{DOMAIN}", DOMAIN], NOW),
        mda_client=generate_client_certificate("example-com-mda", NOW),
        mta_client=generate_client_certificate("example-com-mta", NOW),
        alice_hash=hash_password(ALICE_PASSWORD, rounds=4),
        bob_hash=hash_password("bob-example-password", rounds=4),
    )


def relay_ca_pem() -> str:
    """The CA a relay's caSecretRef names: the session's internal CA stands for it."""
    return session_material().ca.cert_pem


# --- The baseline documents ----------------------------------------------------------------------


def _mailbox(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "Mailbox",
        "metadata": {"name": name, "namespace": NS},
        "spec": spec,
    }


def _secret_doc(name: str, **data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": NS,
            "labels": {"mailstack.dev/usable-by": "maildomains_mailboxes"},
        },
        "stringData": dict(data),
    }


def build_docs(domain: str = DOMAIN) -> dict[str, Any]:
    """A MailDomain with every string field set, two Mailboxes and the Secrets they reference."""
    maildomain = {
        "apiVersion": API_VERSION,
        "kind": "MailDomain",
        "metadata": {"name": NAME, "namespace": NS},
        "spec": {
            "domain": domain,
            "hostname": f"mail.{domain}",
            "aliases": {"sales": [f"alice@{domain}", "partner@example.net"], "info": ["alice"]},
            "catchAll": f"alice@{domain}",
            "postmaster": f"alice@{domain}",
            "limits": {"messageSize": "25Mi", "recipientsPerMessage": 100},
            "protocols": {
                "imap": True,
                "pop3": True,
                "submission": True,
                "submissions": True,
                "managesieve": True,
            },
            "relay": {
                "host": "smtp.relay.example.net",
                "port": 587,
                "credentialsSecretRef": {
                    "name": "relay-credentials",
                    "usernameKey": "username",
                    "passwordKey": "password",
                },
                "caSecretRef": {"name": "relay-ca", "key": "ca.crt"},
            },
            "tls": {"issuer": "internal"},
            "dkim": {"selector": SELECTOR, "algorithm": "ed25519"},
            "dns": {
                "provider": {
                    "rfc2136": {
                        "server": "ns1.example.net",
                        "zone": domain,
                        "tsigKeyName": "mailstack-key",
                        "tsigSecretRef": {"name": "tsig", "key": "secret"},
                    }
                },
                "ttl": 3600,
                "addresses": {"ipv4": ["192.0.2.10"], "ipv6": ["2001:db8::10"]},
                "spf": {"policy": "-all", "includes": ["spf.relay.example.net"]},
                "dmarc": {"policy": "quarantine", "rua": [f"mailto:postmaster@{domain}"]},
                "mtaSts": {"enabled": True, "mode": "testing"},
                "tlsRpt": {"enabled": True, "rua": ["mailto:tls-reports@example.net"]},
            },
            "service": {
                "type": "LoadBalancer",
                "annotations": {"metallb.universe.tf/address-pool": "public"},
                "externalTrafficPolicy": "Local",
                "loadBalancerIP": "192.0.2.10",
            },
            "storage": {
                "mailboxes": {"size": "20Gi", "storageClassName": "fast-ssd"},
                "queue": {"size": "2Gi", "storageClassName": "standard"},
                "retention": "Retain",
            },
            "spam": {"enabled": True, "thresholds": {"addHeader": 6, "reject": 15}},
            "resolvers": ["192.0.2.53", "2001:db8::53"],
            "pods": {
                "resources": {
                    "postfix": {
                        "requests": {"cpu": "100m", "memory": "128Mi"},
                        "limits": {"memory": "512Mi"},
                    }
                },
                "nodeSelector": {"node.example.com/pool": "mail"},
                "tolerations": [
                    {
                        "key": "dedicated",
                        "operator": "Equal",
                        "value": "mail",
                        "effect": "NoSchedule",
                    }
                ],
                "affinity": {
                    "nodeAffinity": {
                        REQUIRED: {
                            "nodeSelectorTerms": [
                                {
                                    "matchExpressions": [
                                        {"key": "zone", "operator": "In", "values": ["zone-a"]}
                                    ]
                                }
                            ]
                        }
                    },
                },
                "topologySpreadConstraints": [
                    {
                        "maxSkew": 1,
                        "topologyKey": "topology.kubernetes.io/zone",
                        "whenUnsatisfiable": "ScheduleAnyway",
                    }
                ],
                "priorityClassName": "mail-critical",
                "imagePullSecrets": [{"name": "registry-credentials"}],
                "annotations": {"backup.velero.io/backup-volumes": "mail"},
                "labels": {"team": "mail"},
            },
        },
    }
    alice = _mailbox(
        "alice",
        {
            "address": f"alice@{domain}",
            "displayName": "Alice Example",
            "passwordSecretRef": {"name": "alice-password", "key": "password"},
            "quota": "5Gi",
            "aliases": ["a.example", "postmaster"],
            "forwardTo": ["alice.backup@example.org"],
            "keepCopy": True,
            "sieve": 'require ["fileinto"];\nif header :contains "List-Id" "x" {\n'
            '  fileinto "Lists";\n}\n',
        },
    )
    bob = _mailbox(
        "bob",
        {
            "address": f"bob@{domain}",
            "displayName": "Bob Example",
            "passwordSecretRef": {"name": "bob-password", "key": "pass"},
            "quota": "2Gi",
            "aliases": ["robert", "bobby"],
            "forwardTo": ["bob.private@example.net"],
            "keepCopy": True,
            "suspended": True,
            "sieve": "keep;\n",
        },
    )
    return {
        "domain": maildomain,
        "boxes": [alice, bob],
        "secrets": [
            _secret_doc("alice-password", password=ALICE_PASSWORD),
            _secret_doc("bob-password", **{"pass": session_material().bob_hash}),
            _secret_doc("relay-credentials", username=RELAY_USER, password=RELAY_PASSWORD),
            _secret_doc("tsig", secret=base64.b64encode(b"tsig-secret").decode()),
            _secret_doc("relay-ca", **{"ca.crt": relay_ca_pem()}),
        ],
    }


# --- Rendering in memory -------------------------------------------------------------------------


@dataclasses.dataclass
class Rendered:
    service: MailService
    material: Material
    # None when render_stack refused with a RenderError. The zone does not depend on it:
    # ``mailstack dns plan`` prints the records without rendering the objects.
    objects: list[dict[str, Any]] | None
    render_error: str | None
    zone: str


class Refused(Exception):
    """The input was refused: ``stage`` is validation (a ValidationError or an assembly
    Problem) or material (a Problem from resolve_material)."""

    def __init__(self, stage: str, message: str) -> None:
        super().__init__(f"{stage}: {message}")
        self.stage = stage


def _as_secret(name: str, data: dict[str, bytes]) -> Secret:
    usable_by = frozenset({"maildomains", "mailboxes"})  # labelled for both
    return Secret(name=name, namespace=NS, data=tuple(sorted(data.items())), usable_by=usable_by)


def render_docs(docs: dict[str, Any], *, resolve: bool = False) -> Rendered:
    """parse → assemble → material → the zone and render_stack; raises ``Refused`` when
    validation or material resolution refuses the documents."""
    try:
        domain = parse_maildomain(docs["domain"])
        boxes = [parse_mailbox(doc) for doc in docs["boxes"]]
        secrets = {s.name: s for s in (parse_secret(doc) for doc in docs["secrets"])}
    except ValidationError as err:
        raise Refused("validation", str(err)) from None
    services, problems = assemble([domain], boxes)
    if problems:
        raise Refused("validation", "; ".join(str(p) for p in problems))
    (service,) = services
    assert len(service.mailboxes) == len(boxes)
    parts = session_material()
    dkim = dataclasses.replace(parts.dkim, selector=domain.dkim.selector)
    if resolve:
        # The real resolution (password validation and hashing, relay credentials), with the
        # session's DKIM key and certificates handed in as already rendered Secrets.
        base = Material(
            dkim=dkim,
            tls=parts.tls,
            ca=parts.ca,
            mda_client=parts.mda_client,
            mta_client=parts.mta_client,
        )
        for name, data in material_secrets(domain.name, base).items():
            secrets[name] = _as_secret(name, data)
        material, problems = resolve_material(service, secrets, NOW, password_rounds=4)
        if problems:
            raise Refused("material", "; ".join(str(p) for p in problems))
    else:
        hashes = {
            f"alice@{domain.domain}": parts.alice_hash,
            f"bob@{domain.domain}": parts.bob_hash,
        }
        material = Material(
            dkim=dkim,
            tls=parts.tls,
            ca=parts.ca,
            password_hashes=tuple(
                sorted((box.address, hashes.get(box.address, parts.alice_hash)) for box in boxes)
            ),
            relay_credentials=(RELAY_USER, RELAY_PASSWORD)
            if domain.relay and domain.relay.credentials_secret
            else None,
            relay_ca=relay_ca_pem() if domain.relay and domain.relay.ca else None,
            mda_client=parts.mda_client,
            mta_client=parts.mta_client,
        )
    zone = render_zone(desired_records(service.domain, material.dkim))
    try:
        return Rendered(service, material, render_stack(service, material), None, zone)
    except RenderError as err:
        return Rendered(service, material, None, str(err), zone)


def files_of(obj: dict[str, Any]) -> dict[str, str]:
    if obj["kind"] == "ConfigMap":
        return dict(obj.get("data", {}))
    if obj["kind"] == "Secret":
        return {k: base64.b64decode(v).decode() for k, v in obj.get("data", {}).items()}
    return {}


def find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (obj,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return obj


# --- What the rendered files parse to -------------------------------------------------------------


@dataclasses.dataclass
class Parsed:
    main_cf: dict[str, str]
    master_cf: list[MasterEntry]
    dovecot: DovecotSection
    passwd: list[PasswdEntry]
    maps: dict[str, list[tuple[str, str]]]
    rspamd: dict[str, list[tuple[tuple[str, ...], str]]]
    zone: list[ZoneRecord]
    sieve: dict[str, str]


MAPS = ("virtual_mailboxes", "virtual_aliases", "sender_logins", "relay_passwords")


NOT_UCL = ("rspamd.lua", "clamd.conf", "freshclam.conf")


def parse_rendered(r: Rendered) -> Parsed:
    assert r.objects is not None, r.render_error
    names = layout.object_names(r.service.domain.name)
    postfix = files_of(find(r.objects, "ConfigMap", names["postfix_config"]))
    dovecot = files_of(find(r.objects, "ConfigMap", names["dovecot_config"]))
    rspamd = files_of(find(r.objects, "ConfigMap", names["rspamd_config"]))
    users = files_of(find(r.objects, "Secret", names["users"]))
    return Parsed(
        main_cf=parse_main_cf(postfix["main.cf"]),
        master_cf=parse_master_cf(postfix["master.cf"]),
        dovecot=parse_dovecot_conf(dovecot["dovecot.conf"]),
        passwd=parse_passwd_file(users["passwd"]),
        maps={
            k: parse_postfix_map(users[k], k, value_blanks=k == "relay_passwords")
            for k in MAPS
            if k in users
        },
        # Not UCL: rspamd.lua (no user value reaches it), clamd's and freshclam's files.
        rspamd={k: parse_ucl(text) for k, text in rspamd.items() if k not in NOT_UCL},
        zone=parse_zone(r.zone),
        sieve=files_of(find(r.objects, "ConfigMap", names["sieve"])),
    )


@functools.cache
def baseline() -> tuple[Rendered, Parsed]:
    rendered = render_docs(build_docs())
    return rendered, parse_rendered(rendered)


# --- The intended directives, computed from the model ---------------------------------------------


def _quota_rule(quota: int) -> str:
    for suffix, factor in (("G", 1024**3), ("M", 1024**2)):
        if quota % factor == 0:
            return f"*:storage={quota // factor}{suffix}"
    return f"*:storage={-(-quota // 1024)}k"


def _sieve_file(address: str) -> str:
    return f"user-{hashlib.sha256(address.encode()).hexdigest()[:24]}.sieve"


def expected_aliases(service: MailService) -> dict[str, tuple[str, ...]]:
    dom = service.domain
    entries: dict[str, tuple[str, ...]] = {}
    for box in service.mailboxes:
        own = (box.address,)
        entries[box.address] = (own if box.keep_copy else ()) + box.forward_to or own
    for local, targets in dom.aliases:
        entries[f"{local}@{dom.domain}"] = targets
    for box in service.mailboxes:
        for alias in box.aliases:
            entries[alias] = (box.address,)
    postmaster = service.postmaster_target()
    for role in ("postmaster", "abuse"):
        address = f"{role}@{dom.domain}"
        if postmaster and address not in entries and address != postmaster:
            entries[address] = (postmaster,)
    if dom.catch_all:
        entries[f"@{dom.domain}"] = (dom.catch_all,)
    # The held addresses of mailboxes that forward (render/forwarding.py, tested on its own).
    entries.update(held_alias_entries(list(entries.items()), dom.domain))
    return entries


def user_main_cf(service: MailService) -> dict[str, str]:
    """The main.cf parameters whose values come from the user's documents."""
    dom = service.domain
    mda = layout.object_names(dom.name)["mda_service"]
    result = {
        "myhostname": dom.hostname,
        "mydomain": dom.domain,
        "virtual_mailbox_domains": dom.domain,
        "virtual_transport": f"lmtp:inet:{mda}:{layout.LMTP_PORT.number}",
        "message_size_limit": str(dom.limits.message_size),
        "smtpd_recipient_limit": str(dom.limits.recipients_per_message),
    }
    assert service.postmaster_target() is not None
    # The configs name the role address; the alias map says where it leads.
    for kind in ("bounce", "2bounce", "delay", "error"):
        result[f"{kind}_notice_recipient"] = f"postmaster@{dom.domain}"
    if dom.relay:
        result["relayhost"] = f"[{dom.relay.host}]:{dom.relay.port}"
    return result


def user_dovecot(service: MailService) -> dict[str, str]:
    dom = service.domain
    return {
        "instance_name": dom.name,
        "hostname": dom.hostname,
        "postmaster_address": f"postmaster@{dom.domain}",
        "login_greeting": f"{dom.hostname} ready",
        # The MTA's internal Service is named after the MailDomain.
        "submission_host": f"{dom.name}-mta:{layout.MDA_SUBMIT_PORT.number}",
        # Where submission relays logged-in users' mail (587 and 465 are Dovecot's).
        "submission_relay_host": f"{dom.name}-mta",
        "submission_max_mail_size": str(dom.limits.message_size),
        "submission_max_recipients": str(dom.limits.recipients_per_message),
    }


def user_dovecot_plugin(service: MailService) -> dict[str, str]:
    """The settings of dovecot.conf's ``plugin`` section whose values come from the documents."""
    size = service.domain.limits.message_size + STORED_HEADER_ROOM
    return {"quota_max_mail_size": f"{size}B"}


def _with_plugin_settings(
    sections: list[DovecotSection], values: dict[str, str]
) -> list[DovecotSection]:
    """``sections`` with the top-level ``plugin`` section's settings ``values`` replaced."""
    return [
        dataclasses.replace(s, settings=[(k, values.get(k, v)) for k, v in s.settings])
        if s.name == "plugin"
        else s
        for s in sections
    ]


ENVELOPE_OURS_MAP = ("MAILSTACK_ENVELOPE_OURS", "map")


def _normalise_rspamd(keys: list[tuple[tuple[str, ...], str]], domain: str) -> list[Any]:
    """The domain as ``<domain>`` where it may stand: a section name (dkim_signing.conf) and
    the one-entry map of multimap.conf's MAILSTACK_ENVELOPE_OURS."""
    return [
        (
            tuple("<domain>" if part == domain else part for part in path),
            '["<domain>"]' if path == ENVELOPE_OURS_MAP and value == f'["{domain}"]' else value,
        )
        for path, value in keys
    ]


# --- The property ---------------------------------------------------------------------------------


def _zone_names(r: Rendered) -> Counter[tuple[str, str]]:
    """The baseline's (name, type) pairs with its domain, hostname and selector replaced by the
    model's: the only way a field may change the set of records."""
    base, _ = baseline()
    was, now = base.service.domain, r.service.domain
    dkim = f"{was.dkim.selector}._domainkey.{was.domain}"

    def rename(name: str) -> str:
        if name == was.hostname:
            return now.hostname
        if name == dkim:
            return f"{now.dkim.selector}._domainkey.{now.domain}"
        if name == was.domain:
            return now.domain
        assert name.endswith("." + was.domain), name
        return name[: -len(was.domain)] + now.domain

    return Counter((rename(rec.name), rec.type) for rec in parse_zone(base.zone))


def check_zone(r: Rendered) -> None:
    """The zone holds exactly the records intended for the model, one per line."""
    dom, dns = r.service.domain, r.service.domain.dns
    found = control_characters(r.zone)
    assert not found, f"zone: control characters {found[:3]}"
    records = parse_zone(r.zone)  # raises ParseError for a line of an unexpected shape

    # One line per desired value, nothing more: no value spilled into another line or record.
    desired = desired_records(dom, r.material.dkim)
    assert Counter(
        (rec.name, rec.type, "".join(rec.rdata) if rec.type == "TXT" else " ".join(rec.rdata))
        for rec in records
    ) == Counter((rec.name, rec.type, value) for rec in desired for value in rec.values)

    # The same records as the baseline, at the names the model implies.
    got, want = Counter((rec.name, rec.type) for rec in records), _zone_names(r)
    allowed = {(dom.hostname, "CAA")} if dom.tls.issuer == "acme" else set()
    assert not want - got and set(got - want) <= allowed, (got - want, want - got)

    # The values a user controls, exactly as intended and printable.
    for rec in records:
        for text in rec.rdata:
            assert all(" " <= c <= "~" for c in text), f"{rec.name} {rec.type}: {text!r}"
    values: dict[tuple[str, str], list[str]] = {}
    for rec in records:
        joined = "".join(rec.rdata) if rec.type == "TXT" else " ".join(rec.rdata)
        values.setdefault((rec.name, rec.type), []).append(joined)
    assert values[(dom.domain, "MX")] == [f"10 {dom.hostname}."]
    assert values.get((dom.hostname, "A"), []) == list(dns.ipv4)
    assert values.get((dom.hostname, "AAAA"), []) == list(dns.ipv6)
    spf = ["v=spf1", "mx", *(f"include:{i}" for i in dns.spf.includes), dns.spf.policy]
    assert values[(dom.domain, "TXT")] == [" ".join(spf)]
    dkim_name = f"{dom.dkim.selector}._domainkey.{dom.domain}"
    assert values[(dkim_name, "TXT")] == [r.material.dkim.dns_value()]
    (dmarc,) = values[(f"_dmarc.{dom.domain}", "TXT")]
    tags = dict(tag.split("=", 1) for tag in dmarc.split("; "))
    assert tags["v"] == "DMARC1" and tags["p"] == dns.dmarc.policy
    assert tags.get("rua") == (",".join(f"mailto:{a}" for a in dns.dmarc.rua) or None)
    if dns.tls_rpt.enabled:
        (tls_rpt,) = values[(f"_smtp._tls.{dom.domain}", "TXT")]
        rua = dns.tls_rpt.rua or (f"postmaster@{dom.domain}",)
        assert tls_rpt == "v=TLSRPTv1; rua=" + ",".join(f"mailto:{a}" for a in rua)
    for (_name, rtype), found_values in values.items():
        if rtype == "SRV":
            (srv,) = found_values
            assert srv.split(" ")[3] in (f"{dom.hostname}.", "."), srv


def check_rendered(r: Rendered) -> None:
    """Everything rendered parses to exactly the directives intended for ``r.service``."""
    check_zone(r)
    assert r.objects is not None, r.render_error
    base, base_parsed = baseline()
    service, dom = r.service, r.service.domain
    names = layout.object_names(dom.name)

    # Object names, ConfigMap/Secret keys and control characters.
    for obj in r.objects:
        name = obj["metadata"]["name"]
        assert DNS_SUBDOMAIN.fullmatch(name), f"object name {name!r}"
        for key in obj["metadata"].get("annotations", {}):
            assert ANNOTATION_KEY.fullmatch(key), f"annotation key {key!r}"
        files = files_of(obj)
        for key, text in files.items():
            assert OBJECT_KEY.fullmatch(key), f"{obj['kind']} {name} key {key!r}"
            if name == names["sieve"]:
                continue  # the user's own script: its contents are the user's by design
            found = control_characters(text)
            assert not found, f"{name}/{key}: control characters {found[:3]}"

    parsed = parse_rendered(r)  # raises ParseError for a line of an unexpected shape

    # main.cf: the same parameters; the user's values exactly where intended, unexpanded.
    user = user_main_cf(service)
    assert parsed.main_cf == {**base_parsed.main_cf, **user}
    for key, value in user.items():
        assert "$" not in value, f"main.cf {key} = {value!r}: Postfix expands '$'"

    # master.cf holds no user string at all.
    assert parsed.master_cf == base_parsed.master_cf

    # dovecot.conf: the same tree; the user's values exactly where intended, unexpanded.
    assert parsed.dovecot.shape() == base_parsed.dovecot.shape()
    want = {**dict(base_parsed.dovecot.settings), **user_dovecot(service)}
    assert dict(parsed.dovecot.settings) == want
    assert (
        _with_plugin_settings(base_parsed.dovecot.sections, user_dovecot_plugin(service))
        == parsed.dovecot.sections
    )
    for key, value in user_dovecot(service).items():
        assert not set(value) & set("%$"), f"dovecot.conf {key} = {value!r}: Dovecot expands it"

    # passwd-file: exactly one well-formed entry per Mailbox: the baseline's entry for the same
    # kind of box (plain or suspended), with its address, home and Sieve file name translated.
    base_entries = {
        box.suspended: (box, entry)
        for box, entry in zip(base.service.mailboxes, base_parsed.passwd, strict=True)
    }
    want_passwd = []
    for box in service.mailboxes:
        password_hash = r.material.password_hash(box.address)
        assert password_hash is not None
        was, entry = base_entries[box.suspended]
        old_dir, new_dir = f"/{was.domain}/{was.local_part}", f"/{box.domain}/{box.local_part}"
        assert old_dir in entry.home
        extra = tuple(
            (key, _quota_rule(box.quota))
            if key == "userdb_quota_rule" and box.quota is not None
            else (key, value.replace(_sieve_file(was.address), _sieve_file(box.address)))
            for key, value in entry.extra
        )
        home = entry.home.replace(old_dir, new_dir)
        want_passwd.append(
            dataclasses.replace(
                entry, user=box.address, password=password_hash, home=home, extra=extra
            )
        )
    assert parsed.passwd == want_passwd
    for entry in parsed.passwd:  # the home is built from user strings: it stays in its place
        assert posixpath.normpath(entry.home) == entry.home
        assert entry.home.startswith(layout.MAIL_DIR + "/") and entry.home.count("/") == 4
    for box in service.mailboxes:  # the Sieve script is where the entry says, under its hash
        (entry,) = [e for e in parsed.passwd if e.user == box.address]
        sieve = dict(entry.extra).get("userdb_sieve_before2", "")
        assert sieve.startswith(f"{layout.SIEVE_DIR}/{_sieve_file(box.address)}")

    # Postfix maps: exactly the entries the model calls for.
    addresses = {box.address for box in service.mailboxes}
    assert parsed.maps["virtual_mailboxes"] == sorted((a, "OK") for a in addresses)
    aliases = {k: tuple(v.split(",")) for k, v in parsed.maps["virtual_aliases"]}
    assert aliases == expected_aliases(service)
    assert len(parsed.maps["virtual_aliases"]) == len(expected_aliases(service))
    logins = dict(parsed.maps["sender_logins"])
    assert set(logins) <= set(expected_aliases(service)) - {f"@{dom.domain}"}
    assert addresses <= set(logins)
    for owners in logins.values():
        assert set(owners.split(",")) <= addresses
    assert dom.relay is not None and r.material.relay_credentials is not None
    user_name, password = r.material.relay_credentials
    assert parsed.maps["relay_passwords"] == [
        (f"[{dom.relay.host}]:{dom.relay.port}", f"{user_name}:{password}")
    ]
    # The relay's CA beside main.cf: nothing but certificates, whatever the Secret held.
    postfix = files_of(find(r.objects, "ConfigMap", names["postfix_config"]))
    assert set(postfix) == {"main.cf", "master.cf", RELAY_CA_FILE, f"{RELAY_SASL_APP}.conf"}
    assert postfix[RELAY_CA_FILE] == r.material.relay_ca
    assert PEM_CERTIFICATES.fullmatch(postfix[RELAY_CA_FILE]), postfix[RELAY_CA_FILE]

    # rspamd: the same keys and, but for the selector, key path and resolvers, the same values.
    assert parsed.rspamd.keys() == base_parsed.rspamd.keys()
    for file, keys in parsed.rspamd.items():
        mine = _normalise_rspamd(keys, dom.domain)
        theirs = _normalise_rspamd(base_parsed.rspamd[file], base.service.domain.domain)
        if file in ("dkim_signing.conf", "options.inc"):
            assert [k for k, _ in mine] == [k for k, _ in theirs], file
        else:
            assert mine == theirs, file
    assert dict(parsed.rspamd["multimap.conf"])[ENVELOPE_OURS_MAP] == f'["{dom.domain}"]'
    dkim = dict(parsed.rspamd["dkim_signing.conf"])
    section = ("domain", dom.domain)
    assert ucl_string(dkim[(*section, "selector")]) == dom.dkim.selector
    assert ucl_string(dkim[(*section, "path")]) == f"{layout.DKIM_DIR}/{dom.dkim.selector}.key"
    nameservers = dict(parsed.rspamd["options.inc"])[("dns", "nameserver")]
    want_ns = ", ".join(f'"[{ip}]:53"' if ":" in ip else f'"{ip}:53"' for ip in dom.resolvers)
    assert nameservers == f"[{want_ns}]"

    # Sieve: one hashed file name per script, holding the script as given.
    assert all(SIEVE_NAME.fullmatch(key) for key in parsed.sieve)
    assert parsed.sieve == {
        _sieve_file(box.address): box.sieve for box in service.mailboxes if box.sieve
    }

    # Kubernetes objects that carry user strings.
    public = find(r.objects, "Service", names["service"])
    assert public["metadata"]["annotations"] == {
        **dict(dom.service.annotations),
        DOMAIN_ANNOTATION: dom.domain,
    }
    lb_ip = public["spec"].get("loadBalancerIP")
    assert lb_ip == dom.service.load_balancer_ip
    assert lb_ip is None or ("%" not in lb_ip and str(ipaddress.ip_address(lb_ip)) == lb_ip)
    for workload, volume in (("mta", dom.storage.queue), ("mda", dom.storage.mailboxes)):
        (claim,) = find(r.objects, "StatefulSet", names[workload])["spec"]["volumeClaimTemplates"]
        storage_class = claim["spec"].get("storageClassName")
        assert storage_class == volume.storage_class_name
        assert storage_class is None or DNS_SUBDOMAIN.fullmatch(storage_class), storage_class
    for workload in ("mta", "mda"):
        check_pod_template(find(r.objects, "StatefulSet", names[workload]), dom.pods)


def check_pod_template(statefulset: dict[str, Any], pods: MailPods) -> None:
    """The user's spec.pods exactly where intended; the operator's labels and annotation intact."""
    meta, spec = (
        statefulset["spec"]["template"]["metadata"],
        statefulset["spec"]["template"]["spec"],
    )
    assert statefulset["spec"]["selector"]["matchLabels"].items() <= meta["labels"].items()
    own = {k: v for k, v in meta["labels"].items() if not k.startswith("app.kubernetes.io/")}
    assert own == dict(pods.labels or ())
    checksum = meta["annotations"][CHECKSUM_ANNOTATION]
    assert meta["annotations"] == {**dict(pods.annotations or ()), CHECKSUM_ANNOTATION: checksum}
    for key, value in meta["labels"].items():
        assert ANNOTATION_KEY.fullmatch(key) and LABEL_VALUE.fullmatch(value), (key, value)
    for key in meta["annotations"]:
        assert ANNOTATION_KEY.fullmatch(key), key
    assert spec.get("nodeSelector", {}) == dict(pods.node_selector or ())
    for key, value in spec.get("nodeSelector", {}).items():
        assert ANNOTATION_KEY.fullmatch(key) and LABEL_VALUE.fullmatch(value), (key, value)
    assert spec.get("priorityClassName") == pods.priority_class_name
    assert [s["name"] for s in spec.get("imagePullSecrets", [])] == list(
        pods.image_pull_secrets or ()
    )
    tolerations = [(t.get("key", ""), t.get("value", "")) for t in spec.get("tolerations", [])]
    assert tolerations == [(t.key, t.value) for t in pods.tolerations or ()]
    spread = [c["topologyKey"] for c in spec.get("topologySpreadConstraints", [])]
    assert spread == [c.topology_key for c in pods.topology_spread_constraints or ()]
    assert pods.affinity is not None and pods.affinity.node_affinity is not None
    (want,) = pods.affinity.node_affinity.required[0]
    (got,) = spec["affinity"]["nodeAffinity"][REQUIRED]["nodeSelectorTerms"][0]["matchExpressions"]
    assert (got["key"], got.get("values", [])) == (want.key, list(want.values))
    if statefulset["metadata"]["name"].endswith("-mta"):
        (postfix,) = [c for c in spec["containers"] if c["name"] == "postfix"]
        requests = pods.resources.postfix.requests
        assert postfix["resources"]["requests"] == {"cpu": requests.cpu, "memory": requests.memory}
        assert postfix["resources"]["limits"]["memory"] == pods.resources.postfix.limits.memory


# --- Fields and the strings tried in them ---------------------------------------------------------

Docs = dict[str, Any]
Setter = Callable[[Docs, str], Docs]


def at(*path: str | int) -> Setter:
    """Set the value at ``path`` (keys and list indexes into the documents)."""

    def set_value(docs: Docs, value: str) -> Docs:
        node: Any = docs
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        return docs

    return set_value


def both(*setters: Setter) -> Setter:
    """Set the same value in several places (a name and the reference to it)."""

    def set_value(docs: Docs, value: str) -> Docs:
        for setter in setters:
            docs = setter(docs, value)
        return docs

    return set_value


def rename(*path: str | int, old: str) -> Setter:
    """Rename the key ``old`` of the mapping at ``path``, keeping its value."""

    def set_value(docs: Docs, value: str) -> Docs:
        node: Any = docs
        for key in path:
            node = node[key]
        node[value] = node.pop(old)
        return docs

    return set_value


def secret_key(secret: int, old: str) -> Setter:
    return rename("secrets", secret, "stringData", old=old)


def new_domain(docs: Docs, value: str) -> Docs:
    return build_docs(value)


def provider(kind: str, body: dict[str, Any], key: str) -> Setter:
    def set_value(docs: Docs, value: str) -> Docs:
        docs["domain"]["spec"]["dns"]["provider"] = {kind: {**body, key: value}}
        return docs

    return set_value


def tls(body: dict[str, Any], *path: str) -> Setter:
    def set_value(docs: Docs, value: str) -> Docs:
        tls_spec = copy.deepcopy(body)
        node = tls_spec
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        docs["domain"]["spec"]["tls"] = tls_spec
        return docs

    return set_value


# Known bugs: the properties of the fields they affect are expected to fail until they are fixed.
# (Fixed in c8e83a4, found by these properties too, and kept below as regression cases: validators
# that matched with re.match and '$', which accepted a trailing newline, and IPv6 zone indexes,
# 'fe80::1%<any text>', which ipaddress accepts and which carried quotes, blanks and '$' into
# rspamd options.inc, main.cf relayhost, relay_passwords and AAAA records.)
POSTMASTER = (
    "BUG: an external spec.postmaster may contain '#', '$', '%' (RFC 5321 atext): Dovecot ends "
    "postmaster_address at '#', Postfix expands '$name' in *_notice_recipient, Dovecot expands "
    "'%u'/'%{...}' (fix: refuse '#$%{}' in postmaster, or escape: '$$' in main.cf, '%%' and a "
    "quoted value in dovecot.conf)"
)
C1 = (
    "BUG: relay credentials and {SCHEME} hashes may contain C1 control characters "
    "(U+0080-U+009F), written verbatim into relay_passwords and passwd; hashes may also be "
    "non-ASCII (fix: refuse unicodedata category 'Cc' in validate.password and "
    "user_secrets._relay_value_problem, and allow only printable ASCII after {SCHEME})"
)
D = ("domain", "spec")
# Local parts that lead to a mailbox: targets that keep the documents routable.
ROUTABLE = ["alice", "bob", "robert", "bobby", "a.example", "info", "sales"]
A, B = ("boxes", 0, "spec"), ("boxes", 1, "spec")

_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
_domain = st.lists(_label, min_size=2, max_size=4).map(".".join)
_k8s_name = st.from_regex(r"[a-z]([-a-z0-9]{0,12}[a-z0-9])?", fullmatch=True)
_subdomain = st.lists(_k8s_name, min_size=1, max_size=3).map(".".join)
_local = st.from_regex(r"[a-z0-9_-]{1,10}(\.[a-z0-9_-]{1,6}){0,2}", fullmatch=True)
_ext_local = st.from_regex(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]{1,10}(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]{1,6}){0,2}",
    fullmatch=True,
)
_own = _local.map(lambda local: f"{local}@{DOMAIN}")
_external = st.builds("{}@{}".format, _ext_local, _domain)
_scoped_v6 = st.builds("fe80::{:x}%{}".format, st.integers(1, 0xFFFF), st.text(max_size=12))
_ip = st.ip_addresses().map(str) | _scoped_v6
_ipv4 = st.ip_addresses(v=4).map(str)
_ipv6 = st.ip_addresses(v=6).map(str) | _scoped_v6
_secret_key = st.from_regex(r"[-._a-zA-Z0-9]{1,20}", fullmatch=True)
_size = st.from_regex(r"[0-9]{1,4}(Ki|Mi|Gi|k|M|G)?", fullmatch=True)
_quantity = st.from_regex(
    r"([0-9]{1,4}(\.[0-9]{1,3})?|\.[0-9]{1,3})(m|k|M|G|Ki|Mi|Gi)?", fullmatch=True
)
_label_key = st.builds("{}/{}".format, _subdomain, _k8s_name) | _k8s_name
_label_value = st.from_regex(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,20}[A-Za-z0-9])?", fullmatch=True)
_hash = st.builds(
    "{{{}}}{}".format,
    st.sampled_from([*sorted(v.ACCEPTED_HASH_SCHEMES), "PLAIN", "X"]),
    st.text(min_size=1, max_size=40),
)

# Characters that mean something in one of the rendered formats, and some that only look blank.
SPECIALS = (
    "\n\r\t\x00\x0b\x0c\x1b\x7f\x85\u2028\u2029\ufeff\u00a0 \"';{}#:,=\\$%<>@.[]()/|*!?&^`~+_-"
)
_nasty = st.text(alphabet=st.sampled_from(SPECIALS) | st.characters(codec="utf-8"), max_size=30)
PAYLOADS = [
    "x\nmynetworks = 0.0.0.0/0",
    "a@b.c, evil@x.y",
    "}\nauth_mechanisms = anonymous\n",
    "../../etc/passwd",
    "x\n",
    "",
    " ",
    "x y",
    'x"; evil = "y',
    "x\r\ny",
    "x;y",
    "x#y",
    "$mynetworks",
    "%{env:HOME}",
]
INSERTS = [
    "\n",
    "\r\n",
    "\nmynetworks = 0.0.0.0/0",
    "\n}\nauth_mechanisms = anonymous\n",
    " ",
    "\t",
    ",evil@x.y",
    ":",
    "#",
    "$mynetworks",
    "%u",
    '"',
    "'",
    "{",
    "}",
    ";",
    "\x00",
    "\x85",
    "\u2028",
    "/../",
    "%eth0",
]


def _splice(base: str, insert: str, position: int) -> str:
    position %= len(base) + 1
    return base[:position] + insert + base[position:]


@dataclasses.dataclass(frozen=True)
class Field:
    name: str
    set: Setter
    valid: st.SearchStrategy[str]
    baseline: str  # the value in the baseline documents: explicit examples are built from it
    resolve: bool = False  # run the real material resolution (passwords, relay credentials)
    more: tuple[str, ...] = ()  # further explicit examples
    bug: str | None = None  # a known bug makes this field's property fail

    def strategy(self) -> st.SearchStrategy[str]:
        return st.one_of(
            self.valid,
            st.builds(_splice, self.valid, st.sampled_from(INSERTS), st.integers(0, 64)),
            st.builds(_splice, st.just(self.baseline), st.sampled_from(INSERTS), st.integers()),
            _nasty,
            st.sampled_from(PAYLOADS),
        )

    def examples(self) -> list[str]:
        base = self.baseline
        return [
            base + "\n",
            base + "\nmynetworks = 0.0.0.0/0",
            base + " x",
            *PAYLOADS[:4],
            *self.more,
        ]


FIELDS = [
    # MailDomain metadata and identity.
    Field("MailDomain.metadata.name", at("domain", "metadata", "name"), _k8s_name, NAME),
    Field(
        "metadata.namespace (all documents)",
        both(
            at("domain", "metadata", "namespace"),
            at("boxes", 0, "metadata", "namespace"),
            at("boxes", 1, "metadata", "namespace"),
            *(at("secrets", i, "metadata", "namespace") for i in range(5)),
        ),
        _k8s_name,
        NS,
    ),
    Field("spec.domain", new_domain, _domain, DOMAIN),
    Field("spec.hostname", at(*D, "hostname"), _domain, f"mail.{DOMAIN}"),
    # Aliases, catch-all, postmaster.
    Field("spec.aliases key", rename(*D, "aliases", old="sales"), _local, "sales"),
    Field(
        "spec.aliases target (own)",
        at(*D, "aliases", "sales", 0),
        st.sampled_from(ROUTABLE).map(f"{{}}@{DOMAIN}".format) | _own,
        f"alice@{DOMAIN}",
        more=(f"bob@{DOMAIN}", f"robert@{DOMAIN}"),
    ),
    Field(
        "spec.aliases target (external)",
        at(*D, "aliases", "sales", 1),
        _external,
        "partner@example.net",
    ),
    Field(
        "spec.aliases target (local part)",
        at(*D, "aliases", "info", 0),
        st.sampled_from(ROUTABLE) | _local,
        "alice",
        more=("bob", "bobby"),
    ),
    Field(
        "spec.catchAll",
        at(*D, "catchAll"),
        st.sampled_from(["alice", "bob"]).map(f"{{}}@{DOMAIN}".format),
        f"alice@{DOMAIN}",
        more=("bob", f"bob@{DOMAIN}"),
    ),
    Field(
        "spec.postmaster",
        at(*D, "postmaster"),
        st.sampled_from(ROUTABLE).map(f"{{}}@{DOMAIN}".format) | _external,
        f"alice@{DOMAIN}",
        more=(
            "o'brien@example.net",
            "o#brien@example.net",
            "a$mydomain@example.net",
            "${mynetworks}@example.net",
            "%u@example.net",
        ),
    ),
    Field(
        "spec.limits.messageSize",
        at(*D, "limits", "messageSize"),
        _size,
        "25Mi",
        more=("10Mi", "1048576"),
    ),
    # Relay.
    Field(
        "spec.relay.host",
        at(*D, "relay", "host"),
        _domain | _ip,
        "smtp.relay.example.net",
        more=("fe80::1%x y", "fe80::1%$mynetworks"),
    ),
    Field(
        "spec.relay.credentialsSecretRef.name",
        both(
            at(*D, "relay", "credentialsSecretRef", "name"),
            at("secrets", 2, "metadata", "name"),
        ),
        _subdomain,
        "relay-credentials",
    ),
    Field(
        "spec.relay.credentialsSecretRef.usernameKey",
        both(at(*D, "relay", "credentialsSecretRef", "usernameKey"), secret_key(2, "username")),
        _secret_key,
        "username",
        resolve=True,
    ),
    Field(
        "spec.relay.credentialsSecretRef.passwordKey",
        both(at(*D, "relay", "credentialsSecretRef", "passwordKey"), secret_key(2, "password")),
        _secret_key,
        "password",
        resolve=True,
    ),
    Field(
        "relay Secret username",
        at("secrets", 2, "stringData", "username"),
        _external | _local,
        RELAY_USER,
        resolve=True,
        more=("user\x80name",),
    ),
    Field(
        "relay Secret password",
        at("secrets", 2, "stringData", "password"),
        st.text(st.characters(codec="utf-8", min_codepoint=33), min_size=1, max_size=30),
        RELAY_PASSWORD,
        resolve=True,
        more=("pass\x80word", "pass word"),
    ),
    Field(
        "spec.relay.caSecretRef.name",
        both(at(*D, "relay", "caSecretRef", "name"), at("secrets", 4, "metadata", "name")),
        _subdomain,
        "relay-ca",
        resolve=True,
    ),
    Field(
        "spec.relay.caSecretRef.key",
        both(at(*D, "relay", "caSecretRef", "key"), secret_key(4, "ca.crt")),
        _secret_key,
        "ca.crt",
        resolve=True,
    ),
    Field(
        "relay CA Secret (PEM)",
        at("secrets", 4, "stringData", "ca.crt"),
        st.sampled_from(
            [relay_ca_pem(), relay_ca_pem() * 2, "# the relay's CA\n" + relay_ca_pem()]
        ),
        relay_ca_pem(),
        resolve=True,
        more=(
            relay_ca_pem().replace("\n-----END", "\nmynetworks = 0.0.0.0/0\n-----END"),
            relay_ca_pem() + session_material().ca.key_pem,
            relay_ca_pem().replace(
                "-----BEGIN CERTIFICATE-----\n", "-----BEGIN CERTIFICATE-----\n\n"
            ),
        ),
    ),
    # TLS.
    Field(
        "spec.tls.acme.email",
        tls({"issuer": "acme", "acme": {"email": "x"}}, "acme", "email"),
        _external,
        "hostmaster@example.com",
    ),
    Field(
        "spec.tls.acme.server",
        tls({"issuer": "acme", "acme": {"email": "a@example.com"}}, "acme", "server"),
        st.builds("https://{}/directory".format, _domain)
        | st.sampled_from([LETSENCRYPT, "https://acme.zerossl.com/v2/DV90"]),
        LETSENCRYPT,
    ),
    # DKIM and DNS.
    Field("spec.dkim.selector", at(*D, "dkim", "selector"), _label, SELECTOR),
    Field(
        "spec.dns.spf.includes[]",
        at(*D, "dns", "spf", "includes", 0),
        _domain,
        "spf.example.net",
    ),
    Field(
        "spec.dns.dmarc.rua[]",
        at(*D, "dns", "dmarc", "rua", 0),
        _own.map("mailto:{}".format) | _own,
        f"mailto:postmaster@{DOMAIN}",
    ),
    Field(
        "spec.dns.tlsRpt.rua[]",
        at(*D, "dns", "tlsRpt", "rua", 0),
        _own.map("mailto:{}".format),
        "mailto:tls-reports@example.net",
    ),
    Field("spec.dns.addresses.ipv4[]", at(*D, "dns", "addresses", "ipv4", 0), _ipv4, "192.0.2.10"),
    Field(
        "spec.dns.addresses.ipv6[]",
        at(*D, "dns", "addresses", "ipv6", 0),
        _ipv6,
        "2001:db8::10",
        more=("fe80::1%x y",),
    ),
    Field(
        "spec.dns.provider.rfc2136.server",
        at(*D, "dns", "provider", "rfc2136", "server"),
        _domain | _ip,
        "ns1.example.net",
    ),
    Field(
        "spec.dns.provider.rfc2136.tsigKeyName",
        at(*D, "dns", "provider", "rfc2136", "tsigKeyName"),
        _label | _domain,
        "mailstack-key",
    ),
    Field(
        "spec.dns.provider.rfc2136.tsigSecretRef.name",
        at(*D, "dns", "provider", "rfc2136", "tsigSecretRef", "name"),
        _subdomain,
        "tsig",
    ),
    Field(
        "spec.dns.provider.powerdns.apiUrl",
        provider("powerdns", {"apiKeySecretRef": {"name": "pdns"}}, "apiUrl"),
        st.builds("https://{}/api".format, _domain),
        "https://pdns.example.net/api",
    ),
    Field(
        "spec.dns.provider.route53.region",
        provider(
            "route53",
            {"hostedZoneId": "Z123", "credentialsSecretRef": {"name": "aws"}},
            "region",
        ),
        _subdomain,
        "eu-west-1",
    ),
    # Service, storage, resolvers.
    Field(
        "spec.service.annotations key",
        rename(*D, "service", "annotations", old="metallb.universe.tf/address-pool"),
        st.builds("{}/{}".format, _subdomain, _k8s_name) | _k8s_name,
        "metallb.universe.tf/address-pool",
    ),
    Field(
        "spec.service.annotations value",
        at(*D, "service", "annotations", "metallb.universe.tf/address-pool"),
        st.text(),
        "public",
    ),
    Field(
        "spec.service.loadBalancerIP",
        at(*D, "service", "loadBalancerIP"),
        _ip,
        "192.0.2.10",
        more=("fe80::1%eth0",),
    ),
    Field(
        "spec.storage.mailboxes.storageClassName",
        at(*D, "storage", "mailboxes", "storageClassName"),
        _subdomain,
        "fast-ssd",
    ),
    Field(
        "spec.storage.queue.storageClassName",
        at(*D, "storage", "queue", "storageClassName"),
        _subdomain,
        "standard",
    ),
    Field(
        "spec.storage.queue.size",
        at(*D, "storage", "queue", "size"),
        _size,
        "2Gi",
        more=("5Gi", "500M"),
    ),
    Field(
        "spec.resolvers[]",
        at(*D, "resolvers", 1),
        _ip,
        "2001:db8::53",
        more=('fe80::1%x"]; evil = ["x',),
    ),
    # The mail pods (spec.pods): strings that reach the StatefulSets.
    Field(
        "spec.pods.resources.postfix.requests.cpu",
        at(*D, "pods", "resources", "postfix", "requests", "cpu"),
        _quantity,
        "100m",
        more=("0.5", "1.5", "1000m"),
    ),
    Field(
        "spec.pods.resources.postfix.limits.memory",
        at(*D, "pods", "resources", "postfix", "limits", "memory"),
        _quantity,
        "512Mi",
        more=("1Gi", "1024Mi", "0.5Gi"),
    ),
    Field(
        "spec.pods.nodeSelector key",
        rename(*D, "pods", "nodeSelector", old="node.example.com/pool"),
        _label_key,
        "node.example.com/pool",
    ),
    Field(
        "spec.pods.nodeSelector value",
        at(*D, "pods", "nodeSelector", "node.example.com/pool"),
        _label_value,
        "mail",
    ),
    Field(
        "spec.pods.tolerations[].key",
        at(*D, "pods", "tolerations", 0, "key"),
        _label_key,
        "dedicated",
    ),
    Field(
        "spec.pods.tolerations[].value",
        at(*D, "pods", "tolerations", 0, "value"),
        _label_value,
        "mail",
    ),
    Field(
        "spec.pods.affinity node expression value",
        at(
            *D,
            "pods",
            "affinity",
            "nodeAffinity",
            REQUIRED,
            "nodeSelectorTerms",
            0,
            "matchExpressions",
            0,
            "values",
            0,
        ),
        _label_value,
        "zone-a",
    ),
    Field(
        "spec.pods.topologySpreadConstraints[].topologyKey",
        at(*D, "pods", "topologySpreadConstraints", 0, "topologyKey"),
        _label_key,
        "topology.kubernetes.io/zone",
    ),
    Field(
        "spec.pods.priorityClassName",
        at(*D, "pods", "priorityClassName"),
        _subdomain,
        "mail-critical",
    ),
    Field(
        "spec.pods.imagePullSecrets[].name",
        at(*D, "pods", "imagePullSecrets", 0, "name"),
        _subdomain,
        "registry-credentials",
    ),
    Field(
        "spec.pods.annotations key",
        rename(*D, "pods", "annotations", old="backup.velero.io/backup-volumes"),
        _label_key,
        "backup.velero.io/backup-volumes",
        more=("mailstack.dev/config-checksum", "app.kubernetes.io/name"),
    ),
    Field(
        "spec.pods.annotations value",
        at(*D, "pods", "annotations", "backup.velero.io/backup-volumes"),
        st.text(),
        "mail",
    ),
    Field(
        "spec.pods.labels key",
        rename(*D, "pods", "labels", old="team"),
        _label_key,
        "team",
        more=("app.kubernetes.io/instance", "controller-revision-hash"),
    ),
    Field("spec.pods.labels value", at(*D, "pods", "labels", "team"), _label_value, "mail"),
    # Mailboxes.
    Field("Mailbox.metadata.name", at("boxes", 1, "metadata", "name"), _k8s_name, "bob"),
    Field("Mailbox spec.address", at(*B, "address"), _own, f"bob@{DOMAIN}"),
    Field("Mailbox spec.aliases[]", at(*B, "aliases", 0), _local | _own, "robert"),
    Field("Mailbox spec.forwardTo[]", at(*B, "forwardTo", 0), _external, "bob.private@example.net"),
    Field("Mailbox spec.displayName", at(*B, "displayName"), st.text(max_size=130), "Bob Example"),
    Field("Mailbox spec.sieve", at(*B, "sieve"), st.text(max_size=200), "keep;\n"),
    Field("Mailbox spec.quota", at(*B, "quota"), _size, "2Gi", more=("3Gi", "1536Mi", "5000k")),
    Field(
        "Mailbox spec.passwordSecretRef.name",
        both(at(*B, "passwordSecretRef", "name"), at("secrets", 1, "metadata", "name")),
        _subdomain,
        "bob-password",
        resolve=True,
    ),
    Field(
        "Mailbox spec.passwordSecretRef.key",
        both(at(*B, "passwordSecretRef", "key"), secret_key(1, "pass")),
        _secret_key,
        "pass",
        resolve=True,
    ),
    Field(
        "Mailbox password (plain)",
        at("secrets", 0, "stringData", "password"),
        st.text(st.characters(codec="utf-8", min_codepoint=32), min_size=8, max_size=30),
        ALICE_PASSWORD,
        resolve=True,
    ),
    Field(
        "Mailbox password ({SCHEME}hash)",
        at("secrets", 1, "stringData", "pass"),
        _hash,
        "{SHA512-CRYPT}$6$salt$hash",
        resolve=True,
        more=("{BLF-CRYPT}$2b$04$\x80abc",),
    ),
]


# --- Tests ----------------------------------------------------------------------------------------


def test_baseline_parses_to_the_intended_directives() -> None:
    rendered, parsed = baseline()
    check_rendered(rendered)
    main = parsed.main_cf
    assert main["virtual_mailbox_domains"] == DOMAIN
    assert main["myhostname"] == f"mail.{DOMAIN}"
    assert main["smtpd_sasl_auth_enable"] == "no"
    assert main["mynetworks"] == "127.0.0.0/8 [::1]/128"
    assert main["relayhost"] == "[smtp.relay.example.net]:587"
    assert main["smtp_sasl_auth_enable"] == "yes"
    assert main["smtp_tls_security_level"] == "secure"
    assert main["smtp_tls_secure_cert_match"] == "nexthop"
    assert main["smtp_tls_CAfile"] == f"{layout.POSTFIX_CONFIG_DIR}/{RELAY_CA_FILE}"
    assert main["bounce_notice_recipient"] == f"postmaster@{DOMAIN}"
    assert main["smtpd_relay_restrictions"].endswith("reject_unauth_destination")
    services = {(e.service, e.type) for e in parsed.master_cf}
    # 587 and 465 are Dovecot's; it relays logged-in users' mail to mda-relay.
    relay_port = str(layout.MDA_RELAY_PORT.number)
    assert {("25", "inet"), (relay_port, "inet")} <= services
    assert not {("587", "inet"), ("465", "inet")} & services
    relay = next(e for e in parsed.master_cf if e.service == relay_port)
    assert relay.options()["smtpd_tls_security_level"] == "encrypt"
    root = parsed.dovecot
    assert "submission" in root.get("protocols").split()
    assert root.get("hostname") == f"mail.{DOMAIN}"
    assert root.get("auth_mechanisms") == "plain login"
    assert root.get("disable_plaintext_auth") == "yes"
    assert root.get("postmaster_address") == f"postmaster@{DOMAIN}"
    passdb = next(s for s in root.sections if s.name == "passdb")
    assert passdb.get("driver") == "passwd-file"
    assert [e.user for e in parsed.passwd] == [f"alice@{DOMAIN}", f"bob@{DOMAIN}"]
    assert dict(parsed.passwd[1].extra)["nologin"] == "y"
    aliases = dict(parsed.maps["virtual_aliases"])
    assert aliases[f"sales@{DOMAIN}"] == f"alice@{DOMAIN},partner@example.net"
    assert aliases[f"@{DOMAIN}"] == f"alice@{DOMAIN}"
    assert parsed.maps["relay_passwords"] == [
        ("[smtp.relay.example.net]:587", f"{RELAY_USER}:{RELAY_PASSWORD}")
    ]
    assert len(parsed.sieve) == 2
    zone = {(rec.name, rec.type) for rec in parsed.zone}
    assert (f"{SELECTOR}._domainkey.{DOMAIN}", "TXT") in zone
    assert (f"_dmarc.{DOMAIN}", "TXT") in zone
    spf = next(rec for rec in parsed.zone if rec.name == DOMAIN and rec.type == "TXT")
    assert spf.rdata == ("v=spf1 mx include:spf.relay.example.net -all",)


def test_baseline_through_material_resolution_is_the_same() -> None:
    """The real password and relay resolution gives the same files (hashes aside)."""
    rendered = render_docs(build_docs(), resolve=True)
    check_rendered(rendered)


def test_zone_txt_strings_of_an_rsa_key_are_split_and_quoted() -> None:
    """A 2048-bit DKIM key needs several character-strings: they parse back to the value."""
    base, _ = baseline()
    rsa = generate_dkim_key(SELECTOR, "rsa2048")
    records = parse_zone(render_zone(desired_records(base.service.domain, rsa)))
    (dkim,) = [rec for rec in records if rec.name.startswith(f"{SELECTOR}._domainkey.")]
    assert len(dkim.rdata) > 1
    assert "".join(dkim.rdata) == rsa.dns_value()
    assert parse_txt_rdata('"a\\"b" "c\\\\"') == ('a"b', "c\\")


@pytest.mark.parametrize(
    "field",
    [
        pytest.param(
            f, id=f.name, marks=[pytest.mark.xfail(strict=True, reason=f.bug)] if f.bug else []
        )
        for f in FIELDS
    ],
)
def test_no_user_string_injects_a_line_or_directive(field: Field) -> None:
    stats: Counter[str] = Counter()
    # Build the documents once; each example only deep-copies them.
    docs = build_docs()

    def run(value: str) -> None:
        try:
            rendered = render_docs(field.set(copy.deepcopy(docs), value), resolve=field.resolve)
        except Refused as refused:
            stats[refused.stage] += 1
            return
        if rendered.objects is None:
            # Refused by the templates' guard: acceptable, but validation should have said no.
            stats["render"] += 1
            check_zone(rendered)
            return
        stats["rendered"] += 1
        check_rendered(rendered)

    test = given(value=field.strategy())(run)
    for value in field.examples():
        test = example(value=value)(test)
    settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )(test)()
    print(f"\n{field.name}: {dict(stats)}")
    # Not vacuous: near-valid strings got through to the renderer.
    assert stats["rendered"] > 0, dict(stats)


# --- The bugs found, one input each ---------------------------------------------------------------


def assert_refused_or_intended(docs: Docs, *, resolve: bool = False) -> None:
    """The property for one input: refused by validation, or rendered exactly as intended."""
    try:
        rendered = render_docs(docs, resolve=resolve)
    except Refused:
        return
    check_zone(rendered)
    if rendered.objects is not None:
        check_rendered(rendered)


def _case(field: str, value: str, bug: str | None = None) -> Any:
    marks = [pytest.mark.xfail(strict=True, reason=bug)] if bug else []
    return pytest.param(field, value, id=f"{field}={value!r}", marks=marks)


FIELD = {f.name: f for f in FIELDS}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        # Fixed in c8e83a4 (regressions). The zone got "mail.example.com\n.\t3600\tIN\tA\t..." (a
        # record for the root name "."), and the record comments that name the host broke too.
        _case("spec.hostname", "mail.example.com\n"),
        _case("spec.dkim.selector", "s2026\n"),
        _case("spec.dns.spf.includes[]", "spf.example.net\n"),
        _case("spec.storage.queue.storageClassName", "standard\n"),
        # The CAA record's comment names the ACME server: "; CAA: ... directory\n) may issue".
        _case("spec.tls.acme.server", LETSENCRYPT + "\n"),
        # Was options.inc: nameserver = ["192.0.2.53:53", "[fe80::1%x"]; evil = ["x]:53"];
        _case("spec.resolvers[]", 'fe80::1%x"]; evil = ["x'),
        # Was relay_passwords: "[fe80::1%x y]:587 user:pass": the key ends at the blank.
        _case("spec.relay.host", "fe80::1%x y"),
        # Was main.cf: relayhost = [fe80::1%$mynetworks]:587, which Postfix expands.
        _case("spec.relay.host", "fe80::1%$mynetworks"),
        _case("spec.dns.addresses.ipv6[]", "fe80::1%x y"),
        _case("spec.service.loadBalancerIP", "fe80::1%eth0"),
        # Open bugs. dovecot.conf: "postmaster_address = o#brien@example.net" reads as "o".
        _case("spec.postmaster", "o#brien@example.net"),
        # main.cf: "bounce_notice_recipient = a$mydomain@example.net" becomes aexample.com@...
        _case("spec.postmaster", "a$mydomain@example.net"),
        _case("spec.postmaster", "%u@example.net"),
        _case("relay Secret password", "pass\x80word"),
        _case("Mailbox password ({SCHEME}hash)", "{BLF-CRYPT}$2b$04$\x80abc"),
    ],
)
def test_found_injection(field: str, value: str) -> None:
    spec = FIELD[field]
    assert_refused_or_intended(spec.set(build_docs(), value), resolve=spec.resolve)


@pytest.mark.parametrize(
    ("validator", "value"),
    [
        (v.domain_name, "example.com\n"),
        (v.local_part, "alice\n"),
        (v.own_address, "alice@example.com\n"),
        (v.external_address, "x@example.net\n"),
        (v.kubernetes_name, "example-com\n"),
        (v.kubernetes_subdomain, "fast-ssd\n"),
        (v.secret_key, "password\n"),
        (v.dkim_selector, "s2026\n"),
        (v.http_url, "https://acme.example.net/directory\n"),
        (v.annotation_key, "example.net/pool\n"),
        (v.report_address, "mailto:postmaster@example.com\n"),
        (v.hex_id, "0" * 32 + "\n"),
        (v.route53_zone_id, "Z123\n"),
        (v.domain_name_or_label, "tsig-key\n"),
    ],
    ids=lambda x: getattr(x, "__name__", None) or repr(x),
)
def test_validators_refuse_a_trailing_newline(validator: Callable[[str], Any], value: str) -> None:
    with pytest.raises(FieldError):
        validator(value)


@pytest.mark.parametrize("value", ["fe80::1%eth0", 'fe80::1%x"; y', "fe80::1%a\nb"])
def test_ip_validators_refuse_a_scope_id(value: str) -> None:
    with pytest.raises(FieldError):
        v.any_ip_address(value)
    with pytest.raises(FieldError):
        v.ip_address(value, 6)


def test_a_relay_password_that_resolution_accepts_renders() -> None:
    docs = FIELD["relay Secret password"].set(build_docs(), "correct horse battery")
    rendered = render_docs(docs, resolve=True)
    assert rendered.render_error is None
    check_rendered(rendered)


def test_user_annotations_cannot_replace_the_operators() -> None:
    docs = build_docs()
    docs["domain"]["spec"]["service"]["annotations"][DOMAIN_ANNOTATION] = "evil.example"
    try:
        rendered = render_docs(docs)
    except Refused:
        return
    assert rendered.objects is not None
    public = find(rendered.objects, "Service", NAME)
    assert public["metadata"]["annotations"][DOMAIN_ANNOTATION] == DOMAIN


def test_spf_includes_may_start_with_an_underscore() -> None:
    docs = build_docs()
    docs["domain"]["spec"]["dns"]["spf"]["includes"] = ["_spf.google.com"]
    render_docs(docs)
