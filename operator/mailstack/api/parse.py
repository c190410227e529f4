"""Parse raw MailDomain, Mailbox and Secret documents into the typed models.

A document is a mapping as found in a YAML file or returned by the Kubernetes API; both paths go
through the same functions, so validation is identical. Every field is checked, unknown fields are
refused, defaults are filled in, and all problems of a document are reported together.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any, cast

from mailstack.api import models as m
from mailstack.api import validate as v
from mailstack.api.errors import FieldError, ValidationError
from mailstack.api.reader import Reader, boolean, integer, join, number, one_of, string

MAX_NAME_LENGTH = 48  # <name>-mta-0 plus the StatefulSet revision label must fit 63 characters

_META = frozenset(
    {
        "name",
        "namespace",
        "generation",
        "uid",
        "labels",
        "annotations",
        "resourceVersion",
        "creationTimestamp",
        "finalizers",
        "managedFields",
        "ownerReferences",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generateName",
        "selfLink",
    }
)


def document_ref(doc: Mapping[str, Any], default_namespace: str = "default") -> str:
    """``Kind/namespace/name`` for messages, as well as it can be told from a raw document."""
    kind = doc.get("kind", "?") if isinstance(doc, Mapping) else "?"
    meta = doc.get("metadata") if isinstance(doc, Mapping) else None
    meta = meta if isinstance(meta, Mapping) else {}
    return f"{kind}/{meta.get('namespace') or default_namespace}/{meta.get('name', '?')}"


def _metadata(
    r: Reader, doc: Mapping[str, Any], default_namespace: str
) -> tuple[str, str, int, str]:
    meta = r.mapping(doc.get("metadata"), "metadata", _META)
    name = r.field(meta, "name", "metadata", lambda x: v.kubernetes_name(x, MAX_NAME_LENGTH))
    namespace = r.field(meta, "namespace", "metadata", v.kubernetes_name, default_namespace)
    generation = r.field(meta, "generation", "metadata", integer(0, 2**63 - 1), 0)
    uid = r.field(meta, "uid", "metadata", string, "")
    return name, namespace, generation, uid


def _header(r: Reader, doc: Mapping[str, Any], kind: str) -> None:
    if doc.get("apiVersion") != m.API_VERSION:
        r.fail("apiVersion", f"expected {m.API_VERSION}, got {doc.get('apiVersion')!r}")
    if doc.get("kind") != kind:
        r.fail("kind", f"expected {kind}, got {doc.get('kind')!r}")
    r.mapping(doc, "", {"apiVersion", "kind", "metadata", "spec", "status"})


def _secret_ref(
    r: Reader, value: object, path: str, default_key: str | None
) -> m.SecretKeyRef | None:
    if value is None:
        r.fail(path, "is required")
        return None
    if not isinstance(value, Mapping):
        r.mapping(value, path, {"name", "key"})  # reports "expected a mapping"
        return None
    ref = r.mapping(value, path, {"name", "key"})
    name = r.field(ref, "name", path, v.kubernetes_subdomain)
    key = (
        r.field(ref, "key", path, v.secret_key, default_key)
        if default_key
        else r.field(ref, "key", path, v.secret_key)
    )
    if not (r.present(name) and r.present(key)):
        return None
    return m.SecretKeyRef(name, key)


def parse_maildomain(
    doc: Mapping[str, Any], source: str = "", default_namespace: str = "default"
) -> m.MailDomain:
    """A MailDomain document to a ``MailDomain``; raises ``ValidationError`` with every problem."""
    r = Reader(document_ref(doc, default_namespace), source)
    if not isinstance(doc, Mapping):
        r.fail("", "expected a mapping (a Kubernetes object)")
        raise ValidationError(r.problems)
    _header(r, doc, "MailDomain")
    name, namespace, generation, uid = _metadata(r, doc, default_namespace)
    spec = r.mapping(
        doc.get("spec"),
        "spec",
        {
            "domain",
            "hostname",
            "aliases",
            "catchAll",
            "postmaster",
            "limits",
            "protocols",
            "relay",
            "tls",
            "dkim",
            "dns",
            "service",
            "storage",
            "spam",
            "resolvers",
        },
    )
    if doc.get("spec") is None:
        r.fail("spec", "is required")
    domain = r.field(spec, "domain", "spec", v.domain_name)
    ok_domain = r.present(domain)
    if not ok_domain:
        domain = ""  # spec.domain has its own problem; local parts are completed with nothing
    hostname = r.field(
        spec, "hostname", "spec", v.domain_name, f"mail.{domain}" if ok_domain else ""
    )

    def address_on_domain(value: object) -> str:
        if not isinstance(value, str):
            raise FieldError(f"expected an address or a local part (string), got {value!r}")
        text = value if isinstance(value, str) and "@" in value else f"{value}@{domain}"
        local, dom = v.own_address(text)
        if ok_domain and dom != domain:
            raise FieldError(f"{text!r} is not on the domain {domain}")
        return f"{local}@{dom}"

    def alias_target(value: object) -> str:
        if isinstance(value, str) and "@" not in value:
            return address_on_domain(value)
        if isinstance(value, str) and ok_domain and value.endswith("@" + domain):
            return address_on_domain(value)
        return v.external_address(value)

    aliases: list[tuple[str, tuple[str, ...]]] = []
    raw_aliases = spec.get("aliases")
    if raw_aliases is not None:
        if not isinstance(raw_aliases, Mapping):
            r.fail("spec.aliases", "expected a mapping of local part to a list of addresses")
        else:
            for local, targets in sorted(raw_aliases.items(), key=lambda kv: str(kv[0])):
                path = join("spec.aliases", str(local))
                try:
                    v.local_part(local)
                except FieldError as err:
                    r.fail(path, err.message)
                    continue
                if targets is None or (isinstance(targets, list) and not targets):
                    r.fail(path, "an alias needs at least one target address")
                    continue
                checked = r.items({local: targets}, local, "spec.aliases", alias_target)
                aliases.append((local, checked))

    catch_all = r.field(spec, "catchAll", "spec", address_on_domain, None)
    postmaster = r.field(
        spec, "postmaster", "spec", alias_target, f"postmaster@{domain}" if ok_domain else ""
    )

    lim = r.mapping(spec.get("limits"), "spec.limits", {"messageSize", "recipientsPerMessage"})

    def message_size(value: object) -> int:
        size = v.size_bytes(value)
        if not 1024 <= size <= 2 * 1024**3:
            raise FieldError(f"{value!r} is out of range: expected 1Ki to 2Gi")
        return size

    limits = m.Limits(
        message_size=r.field(
            lim, "messageSize", "spec.limits", message_size, m.Limits.message_size
        ),
        recipients_per_message=r.field(
            lim,
            "recipientsPerMessage",
            "spec.limits",
            integer(1, 10000),
            m.Limits.recipients_per_message,
        ),
    )

    proto = r.mapping(
        spec.get("protocols"),
        "spec.protocols",
        {"imap", "pop3", "submission", "submissions", "managesieve"},
    )
    d = m.Protocols()
    protocols = m.Protocols(
        imap=r.field(proto, "imap", "spec.protocols", boolean, d.imap),
        pop3=r.field(proto, "pop3", "spec.protocols", boolean, d.pop3),
        submission=r.field(proto, "submission", "spec.protocols", boolean, d.submission),
        submissions=r.field(proto, "submissions", "spec.protocols", boolean, d.submissions),
        managesieve=r.field(proto, "managesieve", "spec.protocols", boolean, d.managesieve),
    )

    relay = _relay(r, spec.get("relay"))
    tls = _tls(r, spec.get("tls"))
    dk = r.mapping(spec.get("dkim"), "spec.dkim", {"selector", "algorithm"})
    dkim = m.Dkim(
        selector=r.field(dk, "selector", "spec.dkim", v.dkim_selector, m.Dkim.selector),
        algorithm=r.field(
            dk, "algorithm", "spec.dkim", one_of("rsa2048", "ed25519"), m.Dkim.algorithm
        ),
    )
    dns = _dns(r, spec.get("dns"), domain)
    service = _service(r, spec.get("service"))
    storage = _storage(r, spec.get("storage"))
    spam = _spam(r, spec.get("spam"))
    resolvers = r.items(spec, "resolvers", "spec", v.any_ip_address)

    if r.problems:
        raise ValidationError(r.problems)
    return m.MailDomain(
        name=name,
        namespace=namespace,
        domain=domain,
        hostname=hostname,
        aliases=tuple(aliases),
        catch_all=catch_all,
        postmaster=postmaster,
        limits=limits,
        protocols=protocols,
        relay=relay,
        tls=tls,
        dkim=dkim,
        dns=dns,
        service=service,
        storage=storage,
        spam=spam,
        resolvers=resolvers,
        generation=generation,
        uid=uid,
    )


def _host_or_ip(value: object) -> str:
    try:
        return v.any_ip_address(value)
    except FieldError:
        pass
    try:
        return v.domain_name(value)
    except FieldError as err:
        raise FieldError(f"expected a host name or an IP address: {err.message}") from None


def _relay(r: Reader, value: object) -> m.Relay | None:
    if value is None:
        return None
    path = "spec.relay"
    rel = r.mapping(value, path, {"host", "port", "credentialsSecretRef"})
    host = r.field(rel, "host", path, _host_or_ip)
    port = r.field(rel, "port", path, integer(1, 65535), 587)
    cred_path = join(path, "credentialsSecretRef")
    cred = r.mapping(
        rel.get("credentialsSecretRef"), cred_path, {"name", "usernameKey", "passwordKey"}
    )
    has_cred = isinstance(rel.get("credentialsSecretRef"), Mapping)
    secret = r.field(cred, "name", cred_path, v.kubernetes_subdomain) if has_cred else None
    user_key = r.field(cred, "usernameKey", cred_path, v.secret_key, "username")
    pass_key = r.field(cred, "passwordKey", cred_path, v.secret_key, "password")
    if not r.present(host):
        return None
    return m.Relay(
        host=host,
        port=port,
        credentials_secret=secret if r.present(secret) else None,
        username_key=user_key,
        password_key=pass_key,
    )


def _tls(r: Reader, value: object) -> m.Tls:
    path = "spec.tls"
    tls = r.mapping(value, path, {"issuer", "certManager", "acme"})
    issuer = r.field(tls, "issuer", path, one_of("internal", "certManager", "acme"), "internal")
    issuer_ref = None
    if tls.get("certManager") is not None:
        cm_path = join(path, "certManager")
        cm = r.mapping(tls["certManager"], cm_path, {"issuerRef"})
        ref_path = join(cm_path, "issuerRef")
        ref = r.mapping(cm.get("issuerRef"), ref_path, {"name", "kind", "group"})
        if not ref:
            r.fail(ref_path, "is required")
        else:
            issuer_ref = m.IssuerRef(
                name=r.field(ref, "name", ref_path, v.kubernetes_subdomain),
                kind=r.field(
                    ref, "kind", ref_path, one_of("Issuer", "ClusterIssuer"), "ClusterIssuer"
                ),
                group=r.field(ref, "group", ref_path, v.kubernetes_subdomain, "cert-manager.io"),
            )
    acme_server, acme_email = m.Tls.acme_server, ""
    if tls.get("acme") is not None:
        ac_path = join(path, "acme")
        ac = r.mapping(tls["acme"], ac_path, {"server", "email"})
        acme_server = r.field(ac, "server", ac_path, v.http_url, m.Tls.acme_server)
        acme_email = r.field(ac, "email", ac_path, v.external_address)
    if issuer == "certManager" and issuer_ref is None and tls.get("certManager") is None:
        r.fail(path, "issuer certManager needs certManager.issuerRef")
    if issuer == "acme" and tls.get("acme") is None:
        r.fail(path, "issuer acme needs acme.email (and optionally acme.server)")
    if issuer != "certManager" and tls.get("certManager") is not None:
        r.fail(
            join(path, "certManager"), f"only allowed with issuer certManager (issuer is {issuer})"
        )
    if issuer != "acme" and tls.get("acme") is not None:
        r.fail(join(path, "acme"), f"only allowed with issuer acme (issuer is {issuer})")
    return m.Tls(
        issuer=cast(m.TlsIssuer, issuer),
        cert_manager_issuer=issuer_ref,
        acme_server=acme_server,
        acme_email=acme_email if r.present(acme_email) else "",
    )


# Fields of each DNS provider: name -> (validator, default or required marker).
_REQUIRED = object()
_PROVIDERS: dict[str, dict[str, tuple[Any, Any]]] = {
    "manual": {},
    "externalDNS": {},
    "rfc2136": {
        "server": (_host_or_ip, _REQUIRED),
        "port": (integer(1, 65535), 53),
        "zone": (v.domain_name, None),
        "tsigKeyName": (v.domain_name_or_label, _REQUIRED),
        "tsigAlgorithm": (one_of("hmac-sha256", "hmac-sha512"), "hmac-sha256"),
    },
    "powerdns": {
        "apiUrl": (v.http_url, _REQUIRED),
        "serverId": (v.kubernetes_subdomain, "localhost"),
        "zone": (v.domain_name, None),
    },
    "cloudflare": {
        "zone": (v.domain_name, None),
        "zoneId": (v.hex_id, None),
    },
    "route53": {
        "hostedZoneId": (v.route53_zone_id, _REQUIRED),
        "region": (v.kubernetes_subdomain, "us-east-1"),
    },
}
_PROVIDER_SECRET = {
    "rfc2136": ("tsigSecretRef", "secret"),
    "powerdns": ("apiKeySecretRef", "apiKey"),
    "cloudflare": ("apiTokenSecretRef", "apiToken"),
    "route53": ("credentialsSecretRef", None),
}


def _dns(r: Reader, value: object, domain: str) -> m.Dns:
    path = "spec.dns"
    dns = r.mapping(
        value, path, {"provider", "ttl", "addresses", "spf", "dmarc", "mtaSts", "tlsRpt"}
    )
    provider = m.DnsProvider()
    p_path = join(path, "provider")
    raw = r.mapping(dns.get("provider"), p_path, set(_PROVIDERS))
    if dns.get("provider") is not None and len(raw) != 1:
        r.fail(p_path, "set exactly one provider: " + ", ".join(_PROVIDERS))
    elif len(raw) == 1:
        kind, body = next(iter(raw.items()))
        k_path = join(p_path, kind)
        fields = _PROVIDERS[kind]
        secret_field, secret_default_key = _PROVIDER_SECRET.get(kind, (None, None))
        allowed = set(fields) | ({secret_field} if secret_field else set())
        conf = r.mapping(body, k_path, allowed)
        settings: list[tuple[str, object]] = []
        for fname, (check, default) in sorted(fields.items()):
            got = (
                r.field(conf, fname, k_path, check)
                if default is _REQUIRED
                else r.field(conf, fname, k_path, check, default)
            )
            if r.present(got) and got is not None:
                settings.append((fname, got))
        if kind in ("rfc2136", "powerdns", "cloudflare") and not dict(settings).get("zone"):
            settings.append(("zone", domain))
            settings.sort()
        secret = None
        if secret_field:
            s_path = join(k_path, secret_field)
            if secret_default_key is None:
                ref = r.mapping(conf.get(secret_field), s_path, {"name"})
                name = r.field(ref, "name", s_path, v.kubernetes_subdomain) if ref else None
                if not ref:
                    r.fail(s_path, "is required")
                elif r.present(name) and name is not None:
                    secret = m.SecretKeyRef(name, "")
            else:
                secret = _secret_ref(r, conf.get(secret_field), s_path, secret_default_key)
        provider = m.DnsProvider(
            kind=cast(m.DnsProviderKind, kind), settings=tuple(settings), secret=secret
        )

    ttl = r.field(dns, "ttl", path, integer(60, 86400), 3600)
    a_path = join(path, "addresses")
    addr = r.mapping(dns.get("addresses"), a_path, {"ipv4", "ipv6"})
    ipv4 = r.items(addr, "ipv4", a_path, lambda x: v.ip_address(x, 4))
    ipv6 = r.items(addr, "ipv6", a_path, lambda x: v.ip_address(x, 6))

    s_path = join(path, "spf")
    spf_raw = r.mapping(dns.get("spf"), s_path, {"policy", "includes"})
    spf = m.Spf(
        policy=r.field(spf_raw, "policy", s_path, one_of("-all", "~all", "?all"), "-all"),
        includes=r.items(spf_raw, "includes", s_path, v.dns_name),
    )
    d_path = join(path, "dmarc")
    dm = r.mapping(
        dns.get("dmarc"), d_path, {"policy", "subdomainPolicy", "rua", "pct", "alignment"}
    )
    al_path = join(d_path, "alignment")
    al = r.mapping(dm.get("alignment"), al_path, {"dkim", "spf"})
    policies = ("none", "quarantine", "reject")
    dmarc = m.Dmarc(
        policy=r.field(dm, "policy", d_path, one_of(*policies), "quarantine"),
        subdomain_policy=r.field(dm, "subdomainPolicy", d_path, one_of(*policies), None),
        rua=r.items(dm, "rua", d_path, v.report_address),
        pct=r.field(dm, "pct", d_path, integer(0, 100), 100),
        adkim="s"
        if r.field(al, "dkim", al_path, one_of("relaxed", "strict"), "relaxed") == "strict"
        else "r",
        aspf="s"
        if r.field(al, "spf", al_path, one_of("relaxed", "strict"), "relaxed") == "strict"
        else "r",
    )
    ms_path = join(path, "mtaSts")
    ms = r.mapping(dns.get("mtaSts"), ms_path, {"enabled", "mode", "maxAge"})
    mta_sts = m.MtaSts(
        enabled=r.field(ms, "enabled", ms_path, boolean, False),
        mode=r.field(ms, "mode", ms_path, one_of("none", "testing", "enforce"), "testing"),
        max_age=r.field(ms, "maxAge", ms_path, integer(86400, 31557600), 604800),
    )
    tr_path = join(path, "tlsRpt")
    tr = r.mapping(dns.get("tlsRpt"), tr_path, {"enabled", "rua"})
    tls_rpt = m.TlsRpt(
        enabled=r.field(tr, "enabled", tr_path, boolean, False),
        rua=r.items(tr, "rua", tr_path, v.report_address),
    )
    return m.Dns(
        provider=provider,
        ttl=ttl,
        ipv4=ipv4,
        ipv6=ipv6,
        spf=spf,
        dmarc=dmarc,
        mta_sts=mta_sts,
        tls_rpt=tls_rpt,
    )


def _service(r: Reader, value: object) -> m.ServiceSpec:
    path = "spec.service"
    svc = r.mapping(value, path, {"type", "annotations", "externalTrafficPolicy", "loadBalancerIP"})
    annotations: list[tuple[str, str]] = []
    raw = svc.get("annotations")
    if raw is not None:
        if not isinstance(raw, Mapping):
            r.fail(join(path, "annotations"), "expected a mapping of annotation key to value")
        else:
            for key, val in sorted(raw.items(), key=lambda kv: str(kv[0])):
                try:
                    annotations.append((v.annotation_key(key), string(val)))
                except FieldError as err:
                    r.fail(join(join(path, "annotations"), str(key)), err.message)
    return m.ServiceSpec(
        type=r.field(
            svc, "type", path, one_of("LoadBalancer", "NodePort", "ClusterIP"), "LoadBalancer"
        ),
        annotations=tuple(annotations),
        external_traffic_policy=r.field(
            svc, "externalTrafficPolicy", path, one_of("Local", "Cluster"), "Local"
        ),
        load_balancer_ip=r.field(svc, "loadBalancerIP", path, v.any_ip_address, None),
    )


def _volume(r: Reader, value: object, path: str, default_size: str) -> m.Volume:
    vol = r.mapping(value, path, {"size", "storageClassName"})

    def size(x: object) -> str:
        if v.size_bytes(x) < 1024**2:
            raise FieldError(f"{x!r} is too small for a volume (at least 1Mi)")
        return str(x)

    return m.Volume(
        size=r.field(vol, "size", path, size, default_size),
        storage_class_name=r.field(vol, "storageClassName", path, v.kubernetes_subdomain, None),
    )


def _storage(r: Reader, value: object) -> m.Storage:
    path = "spec.storage"
    st = r.mapping(value, path, {"mailboxes", "queue", "retention"})
    return m.Storage(
        mailboxes=_volume(r, st.get("mailboxes"), join(path, "mailboxes"), "10Gi"),
        queue=_volume(r, st.get("queue"), join(path, "queue"), "2Gi"),
        retention=r.field(st, "retention", path, one_of("Retain", "Delete"), "Retain"),
    )


def _spam(r: Reader, value: object) -> m.Spam:
    path = "spec.spam"
    sp = r.mapping(value, path, {"enabled", "thresholds", "moveToJunk"})
    t_path = join(path, "thresholds")
    th = r.mapping(sp.get("thresholds"), t_path, {"addHeader", "reject"})
    add = r.field(th, "addHeader", t_path, number(0, 1000), m.Spam.add_header_score)
    reject = r.field(th, "reject", t_path, number(0, 1000), m.Spam.reject_score)
    if reject <= add:
        r.fail(t_path, f"reject ({reject:g}) must be greater than addHeader ({add:g})")
    return m.Spam(
        enabled=r.field(sp, "enabled", path, boolean, True),
        add_header_score=add,
        reject_score=reject,
        junk_folder=r.field(sp, "moveToJunk", path, boolean, True),
    )


def parse_mailbox(
    doc: Mapping[str, Any], source: str = "", default_namespace: str = "default"
) -> m.Mailbox:
    """A Mailbox document to a ``Mailbox``; raises ``ValidationError`` with every problem."""
    r = Reader(document_ref(doc, default_namespace), source)
    if not isinstance(doc, Mapping):
        r.fail("", "expected a mapping (a Kubernetes object)")
        raise ValidationError(r.problems)
    _header(r, doc, "Mailbox")
    name, namespace, generation, uid = _metadata(r, doc, default_namespace)
    if doc.get("spec") is None:
        r.fail("spec", "is required")
    spec = r.mapping(
        doc.get("spec"),
        "spec",
        {
            "address",
            "passwordSecretRef",
            "displayName",
            "quota",
            "aliases",
            "forwardTo",
            "keepCopy",
            "suspended",
            "sieve",
        },
    )
    parsed = r.field(spec, "address", "spec", v.own_address)
    local, domain = parsed if r.present(parsed) else ("", "")
    password = _secret_ref(r, spec.get("passwordSecretRef"), "spec.passwordSecretRef", "password")

    def alias(value: object) -> str:
        if not isinstance(value, str):
            raise FieldError(f"expected an address or a local part (string), got {value!r}")
        text = value if isinstance(value, str) and "@" in value else f"{value}@{domain}"
        a_local, a_domain = v.own_address(text)
        if domain and a_domain != domain:
            raise FieldError(f"alias {text!r} must be on the mailbox's domain {domain}")
        if a_local == local:
            raise FieldError(f"alias {text!r} is the mailbox's own address")
        return f"{a_local}@{a_domain}"

    def quota(value: object) -> int:
        size = v.size_bytes(value)
        if size < 1024**2:
            raise FieldError(f"quota {value!r} is below 1Mi")
        return size

    forward_to = r.items(spec, "forwardTo", "spec", v.external_address)
    keep_copy = r.field(spec, "keepCopy", "spec", boolean, False)
    if keep_copy and not forward_to:
        r.fail("spec.keepCopy", "only meaningful with forwardTo")
    result = m.Mailbox(
        name=name,
        namespace=namespace,
        address=f"{local}@{domain}",
        local_part=local,
        domain=domain,
        password=password if password else m.SecretKeyRef("", "password"),
        display_name=r.field(spec, "displayName", "spec", v.display_name, ""),
        quota=r.field(spec, "quota", "spec", quota, None),
        aliases=r.items(spec, "aliases", "spec", alias),
        forward_to=forward_to,
        keep_copy=keep_copy,
        suspended=r.field(spec, "suspended", "spec", boolean, False),
        sieve=r.field(spec, "sieve", "spec", v.sieve_script, None),
        generation=generation,
        uid=uid,
    )
    if r.problems:
        raise ValidationError(r.problems)
    return result


def parse_secret(
    doc: Mapping[str, Any], source: str = "", default_namespace: str = "default"
) -> m.Secret:
    """A v1 Secret document (``data`` base64, ``stringData`` plain) to a ``Secret``."""
    r = Reader(document_ref(doc, default_namespace), source)
    if not isinstance(doc, Mapping):
        r.fail("", "expected a mapping (a Kubernetes object)")
        raise ValidationError(r.problems)
    if doc.get("apiVersion") != "v1" or doc.get("kind") != "Secret":
        r.fail("kind", "expected apiVersion v1, kind Secret")
    meta = r.mapping(doc.get("metadata"), "metadata", _META)
    name = r.field(meta, "name", "metadata", v.kubernetes_subdomain)
    namespace = r.field(meta, "namespace", "metadata", v.kubernetes_name, default_namespace)
    data: dict[str, bytes] = {}
    raw = doc.get("data") or {}
    if not isinstance(raw, Mapping):
        r.fail("data", "expected a mapping of key to base64 value")
        raw = {}
    for key, value in raw.items():
        try:
            v.secret_key(key)
            if not isinstance(value, str):
                raise FieldError("expected a base64 string")
            data[key] = base64.b64decode(value, validate=True)
        except FieldError as err:
            r.fail(join("data", str(key)), err.message)
        except (binascii.Error, ValueError):
            r.fail(join("data", str(key)), "is not valid base64")
    plain = doc.get("stringData") or {}
    if not isinstance(plain, Mapping):
        r.fail("stringData", "expected a mapping of key to string")
        plain = {}
    for key, value in plain.items():
        try:
            v.secret_key(key)
            data[key] = string(value).encode()
        except FieldError as err:
            r.fail(join("stringData", str(key)), err.message)
    if r.problems:
        raise ValidationError(r.problems)
    return m.Secret(name=name, namespace=namespace, data=tuple(sorted(data.items())))
