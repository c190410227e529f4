"""The MailDomain document: its top level and its small sections.

Owns: ``parse_maildomain``, the addresses completed with the domain (aliases, catch-all,
postmaster), and the sections ``protocols``, ``dkim``, ``storage``, ``spam`` and ``serverRef``
(with it, the server's fields are refused: ``api.server_models.SERVER_FIELDS``); the MailServer's
parser reuses the section parsers. ``limits``,
``relay``, ``outbound``, ``tls``, ``dns``, ``service``, ``postscreen`` and ``pods`` have their
own modules. Defaults come from the model classes; only those derived from the domain
(``mail.<domain>``, ``postmaster@<domain>``) and the host name (the HELO name) are made here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mailstack.api import models, validate
from mailstack.api.errors import FieldError
from mailstack.api.parse.common import (
    check_header,
    creation_timestamp,
    metadata,
    raise_problems,
    reader_for,
)
from mailstack.api.parse.dns import parse_dns
from mailstack.api.parse.limits import parse_limits
from mailstack.api.parse.outbound import parse_outbound
from mailstack.api.parse.pods import parse_pods
from mailstack.api.parse.postscreen import parse_postscreen
from mailstack.api.parse.relay import parse_relay
from mailstack.api.parse.service import parse_service
from mailstack.api.parse.tls import parse_tls
from mailstack.api.pod_models import MailPods
from mailstack.api.postscreen_models import Postscreen
from mailstack.api.reader import Reader, boolean, join, number, one_of
from mailstack.api.server_models import SERVER_FIELDS

SPEC_FIELDS = frozenset(
    {
        "domain",
        "hostname",
        "aliases",
        "catchAll",
        "postmaster",
        "limits",
        "protocols",
        "relay",
        "outbound",
        "tls",
        "dkim",
        "dns",
        "service",
        "storage",
        "spam",
        "postscreen",
        "resolvers",
        "pods",
        "serverRef",
    }
)


def parse_maildomain(
    doc: Mapping[str, Any], source: str = "", default_namespace: str = "default"
) -> models.MailDomain:
    """A MailDomain document to a ``MailDomain``; raises ``ValidationError`` with every problem."""
    r = reader_for(doc, source, default_namespace)
    check_header(r, doc, "MailDomain")
    name, namespace, generation, uid = metadata(r, doc, default_namespace)
    created = creation_timestamp(r, doc)
    spec = r.mapping(doc.get("spec"), "spec", SPEC_FIELDS)
    if doc.get("spec") is None:
        r.fail("spec", "is required")
    domain = r.field(spec, "domain", "spec", validate.domain_name)
    if not r.present(domain):
        domain = ""  # spec.domain has its own problem; local parts are completed with nothing
    hostname = r.field(
        spec, "hostname", "spec", validate.domain_name, f"mail.{domain}" if domain else ""
    )
    addresses = DomainAddresses(domain)
    aliases = _aliases(r, spec.get("aliases"), addresses)
    catch_all = r.field(spec, "catchAll", "spec", addresses.own, models.MailDomain.catch_all)
    postmaster = r.field(
        spec, "postmaster", "spec", addresses.target, f"postmaster@{domain}" if domain else ""
    )
    limits = parse_limits(r, spec.get("limits"))
    protocols = parse_protocols(r, spec.get("protocols"))
    relay = parse_relay(r, spec.get("relay"))
    relayed = spec.get("relay") is not None
    outbound = parse_outbound(r, spec.get("outbound"), hostname, relayed)
    tls = parse_tls(r, spec.get("tls"))
    dkim = _dkim(r, spec.get("dkim"))
    dns = parse_dns(r, spec.get("dns"), domain)
    service = parse_service(r, spec.get("service"))
    storage = parse_storage(r, spec.get("storage"))
    spam = parse_spam(r, spec.get("spam"))
    postscreen = parse_postscreen(r, spec.get("postscreen"))
    resolvers = r.items(spec, "resolvers", "spec", validate.any_ip_address)
    pods = parse_pods(r, spec.get("pods"), "spec.pods")
    server_ref = parse_server_ref(r, spec.get("serverRef"), namespace)
    if server_ref is not None:
        server_fields: dict[str, tuple[object, object]] = {
            "service": (service, models.ServiceSpec()),
            "storage": (storage, models.Storage()),
            "pods": (pods, MailPods()),
            "spam": (spam, models.Spam()),
            "outbound": (outbound, models.Outbound(helo_name=hostname)),
            "limits": (limits, models.Limits()),
            "postscreen": (postscreen, Postscreen()),
            "resolvers": (resolvers, ()),
            "protocols": (protocols, models.Protocols()),
            "relay": (relay, None),
        }
        _refuse_server_fields(r, server_fields, server_ref)
    raise_problems(r)
    return models.MailDomain(
        name=name,
        namespace=namespace,
        domain=domain,
        hostname=hostname,
        aliases=aliases,
        catch_all=catch_all,
        postmaster=postmaster,
        limits=limits,
        protocols=protocols,
        relay=relay,
        outbound=outbound,
        tls=tls,
        dkim=dkim,
        dns=dns,
        service=service,
        storage=storage,
        spam=spam,
        postscreen=postscreen,
        resolvers=resolvers,
        pods=pods,
        server_ref=server_ref,
        generation=generation,
        uid=uid,
        created=created,
    )


def parse_server_ref(r: Reader, value: object, namespace: str) -> models.ServerRef | None:
    """``spec.serverRef``: the MailServer that serves the domain (its namespace defaults to the
    MailDomain's own); None when absent."""
    if value is None:
        return None
    path = "spec.serverRef"
    ref = r.mapping(value, path, {"namespace", "name"})
    name = r.field(ref, "name", path, validate.kubernetes_name)
    server_namespace = r.field(ref, "namespace", path, validate.kubernetes_name, namespace)
    if not (r.present(name) and r.present(server_namespace)):
        return None
    return models.ServerRef(server_namespace, name)


def _refuse_server_fields(
    r: Reader, parsed: Mapping[str, tuple[object, object]], server: models.ServerRef
) -> None:
    """A field error for each field of the server (``SERVER_FIELDS``) whose parsed value is not
    its default (``parsed``: name -> (value, default)). Compared parsed, not raw: the API server
    fills in the CRD's defaults (``service: {}`` and more), which must pass, and for the same
    reason the CRD has no CEL rule for it (a defaulted section is indistinguishable there)."""
    for name in SERVER_FIELDS:
        value, default = parsed[name]
        if value != default:
            r.fail(
                f"spec.{name}",
                f"belongs to the {server.ref} named in spec.serverRef: set it there, "
                "or remove spec.serverRef for a stack of the domain's own",
            )


@dataclass(frozen=True)
class DomainAddresses:
    """Validators of the addresses a MailDomain names, a bare local part being on its domain."""

    domain: str  # "" when spec.domain is missing or invalid

    def own(self, value: object) -> str:
        """An address on the domain (a local part is completed with it)."""
        if not isinstance(value, str):
            raise FieldError(f"expected an address or a local part (string), got {value!r}")
        text = value if "@" in value else f"{value}@{self.domain}"
        local, domain = validate.own_address(text)
        if self.domain and domain != self.domain:
            raise FieldError(f"{text!r} is not on the domain {self.domain}")
        return f"{local}@{domain}"

    def target(self, value: object) -> str:
        """Where mail may go: an address on the domain, checked as such, or any other address."""
        if isinstance(value, str) and "@" not in value:
            return self.own(value)
        if isinstance(value, str) and self.domain and value.endswith("@" + self.domain):
            return self.own(value)
        return validate.external_address(value)


def _aliases(
    r: Reader, value: object, addresses: DomainAddresses
) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """``spec.aliases``: local part -> target addresses, sorted by local part."""
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        r.fail("spec.aliases", "expected a mapping of local part to a list of addresses")
        return ()
    aliases: list[tuple[str, tuple[str, ...]]] = []
    for local, targets in sorted(value.items(), key=lambda item: str(item[0])):
        path = join("spec.aliases", str(local))
        try:
            validate.local_part(local)
        except FieldError as err:
            r.fail(path, err.message)
            continue
        if targets is None or (isinstance(targets, list) and not targets):
            r.fail(path, "an alias needs at least one target address")
            continue
        checked = r.items({local: targets}, local, "spec.aliases", addresses.target)
        aliases.append((local, checked))
    return tuple(aliases)


def parse_protocols(r: Reader, value: object) -> models.Protocols:
    path = "spec.protocols"
    protocols = r.mapping(value, path, {"imap", "pop3", "submission", "submissions", "managesieve"})
    default = models.Protocols
    return models.Protocols(
        imap=r.field(protocols, "imap", path, boolean, default.imap),
        pop3=r.field(protocols, "pop3", path, boolean, default.pop3),
        submission=r.field(protocols, "submission", path, boolean, default.submission),
        submissions=r.field(protocols, "submissions", path, boolean, default.submissions),
        managesieve=r.field(protocols, "managesieve", path, boolean, default.managesieve),
    )


def _dkim(r: Reader, value: object) -> models.Dkim:
    path = "spec.dkim"
    dkim = r.mapping(value, path, {"selector", "algorithm"})
    return models.Dkim(
        selector=r.field(dkim, "selector", path, validate.dkim_selector, models.Dkim.selector),
        algorithm=r.field(
            dkim, "algorithm", path, one_of("rsa2048", "ed25519"), models.Dkim.algorithm
        ),
    )


def _volume_size(value: object) -> str:
    if validate.size_bytes(value) < 1024**2:
        raise FieldError(f"{value!r} is too small for a volume (at least 1Mi)")
    return str(value)


def _volume(r: Reader, value: object, path: str, default: models.Volume) -> models.Volume:
    volume = r.mapping(value, path, {"size", "storageClassName"})
    return models.Volume(
        size=r.field(volume, "size", path, _volume_size, default.size),
        storage_class_name=r.field(
            volume,
            "storageClassName",
            path,
            validate.kubernetes_subdomain,
            default.storage_class_name,
        ),
    )


def parse_storage(r: Reader, value: object) -> models.Storage:
    path = "spec.storage"
    storage = r.mapping(value, path, {"mailboxes", "queue", "retention"})
    default = models.Storage()
    return models.Storage(
        mailboxes=_volume(r, storage.get("mailboxes"), join(path, "mailboxes"), default.mailboxes),
        queue=_volume(r, storage.get("queue"), join(path, "queue"), default.queue),
        retention=r.field(
            storage, "retention", path, one_of("Retain", "Delete"), default.retention
        ),
    )


def parse_spam(r: Reader, value: object) -> models.Spam:
    path = "spec.spam"
    spam = r.mapping(
        value, path, {"enabled", "thresholds", "moveToJunk", "antivirus", "onScanFailure"}
    )
    thresholds_path = join(path, "thresholds")
    thresholds = r.mapping(spam.get("thresholds"), thresholds_path, {"addHeader", "reject"})
    default = models.Spam
    add = r.field(
        thresholds, "addHeader", thresholds_path, number(0, 1000), default.add_header_score
    )
    reject = r.field(thresholds, "reject", thresholds_path, number(0, 1000), default.reject_score)
    if reject <= add:
        r.fail(thresholds_path, f"reject ({reject:g}) must be greater than addHeader ({add:g})")
    return models.Spam(
        enabled=r.field(spam, "enabled", path, boolean, default.enabled),
        add_header_score=add,
        reject_score=reject,
        junk_folder=r.field(spam, "moveToJunk", path, boolean, default.junk_folder),
        on_scan_failure=r.field(
            spam, "onScanFailure", path, one_of("tempfail", "accept"), default.on_scan_failure
        ),
        antivirus=_antivirus(r, spam.get("antivirus"), join(path, "antivirus")),
    )


def _antivirus(r: Reader, value: object, path: str) -> models.Antivirus:
    antivirus = r.mapping(value, path, {"enabled", "action", "signatures"})
    signatures_path = join(path, "signatures")
    signatures = r.mapping(
        antivirus.get("signatures"), signatures_path, {"official", "privateMirror", "urls"}
    )
    default = models.Signatures
    official = r.field(signatures, "official", signatures_path, boolean, default.official)
    urls = r.items(signatures, "urls", signatures_path, validate.http_url, max_items=16)
    if not official and not urls:
        r.fail(signatures_path, "without the official databases, list the urls of others")
    mirror = r.field(signatures, "privateMirror", signatures_path, validate.http_url, None)
    if mirror is not None and not official:
        r.fail(join(signatures_path, "privateMirror"), "mirrors the official databases: unused")
    return models.Antivirus(
        enabled=r.field(antivirus, "enabled", path, boolean, models.Antivirus.enabled),
        action=r.field(
            antivirus, "action", path, one_of("reject", "quarantine"), models.Antivirus.action
        ),
        signatures=models.Signatures(official=official, private_mirror=mirror, urls=urls),
    )
