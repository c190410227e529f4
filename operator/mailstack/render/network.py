"""Services and NetworkPolicies: what is reachable, from where.

The public Service selects both pods and uses named target ports, so each port's endpoints are
exactly the pods that declare it (SMTP → MTA; IMAP, POP3, ManageSieve and submission → MDA).
LMTP lives on the internal ``<name>-mda`` Service, and the NetworkPolicy admits only the MTA pods
to it; the ports where Dovecot hands Postfix the mail Sieve scripts send (mda-submit) and the
mail of logged-in users (mda-relay) live on the internal ``<name>-mta`` Service, for the MDA pods
only (and Postfix relays there only for Dovecot's client certificate).

With the ProxyProtocol exposure the public ports take connections from the trusted proxies
only (``ipBlock`` peers: Postfix has no list of trusted proxies of its own, so this is what keeps
others from announcing any client address), and the ``<name>-internal`` Service offers the
listeners without PROXY, on the standard port numbers, to the pods of the MailDomain's namespace
and of ``proxyProtocol.internalNamespaces``.
"""

from __future__ import annotations

from mailstack.api.assemble import MailService
from mailstack.kubedoc import Obj
from mailstack.render import layout
from mailstack.render.layout import Port
from mailstack.render.objects import metadata, selector_labels
from mailstack.render.workloads import enabled_public_ports, internal_ports

EXPOSURE_ANNOTATION = "mailstack.dev/exposure"
# The label Kubernetes sets on every namespace, with its name.
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


def render_public_service(service: MailService) -> Obj:
    domain = service.domain
    names = layout.object_names(domain.name)
    meta = metadata(domain, names["service"], "service")
    # The user's annotations never replace the operator's own.
    meta["annotations"] = {**dict(domain.service.annotations), **meta["annotations"]}
    if domain.service.exposure in ("HostPort", "ProxyProtocol"):
        # What the Service type does not say: how connections reach the pods (``mailstack up``
        # publishes such a ClusterIP Service, behind its own HAProxy for ProxyProtocol).
        meta["annotations"][EXPOSURE_ANNOTATION] = domain.service.exposure
    spec: Obj = {
        "type": domain.service.type,
        "selector": selector_labels(domain, None),
        "ports": [
            {"name": p.name, "port": p.number, "targetPort": p.name, "protocol": "TCP"}
            for p in enabled_public_ports(service)
        ],
    }
    if domain.service.type in ("LoadBalancer", "NodePort"):
        # Local keeps the client's address visible to Postfix (relay checks, SPF) and Dovecot.
        spec["externalTrafficPolicy"] = domain.service.external_traffic_policy
    if domain.service.type == "LoadBalancer" and domain.service.load_balancer_ip:
        spec["loadBalancerIP"] = domain.service.load_balancer_ip
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec}


def _internal_service(service: MailService, name: str, component: str, ports: list[Port]) -> Obj:
    domain = service.domain
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(domain, name, component),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(domain, component),
            "ports": [
                {"name": p.name, "port": p.number, "targetPort": p.name, "protocol": "TCP"}
                for p in ports
            ],
        },
    }


def render_internal_service(service: MailService) -> Obj | None:
    """``<name>-internal``: the listeners without PROXY on the standard port numbers, for
    in-cluster clients (ProxyProtocol exposure only; None otherwise)."""
    domain = service.domain
    if domain.service.exposure != "ProxyProtocol":
        return None
    name = layout.object_names(domain.name)["internal_service"]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(domain, name, "internal"),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(domain, None),
            "ports": [
                {"name": p.name, "port": p.number, "targetPort": f"int-{p.name}", "protocol": "TCP"}
                for p in enabled_public_ports(service)
                if p is not layout.SMTP_PORT
            ],
        },
    }


def render_mda_service(service: MailService) -> Obj:
    name = layout.object_names(service.domain.name)["mda_service"]
    return _internal_service(service, name, "mda", [layout.LMTP_PORT])


def render_mta_service(service: MailService) -> Obj:
    name = layout.object_names(service.domain.name)["mta_service"]
    return _internal_service(service, name, "mta", [layout.MDA_SUBMIT_PORT, layout.MDA_RELAY_PORT])


def _tcp(ports: list[str | int]) -> list[Obj]:
    return [{"protocol": "TCP", "port": port} for port in ports]


def _public_rules(service: MailService, component: str) -> list[Obj]:
    """The ingress rules of a pod's public ports: from anywhere, or with the ProxyProtocol
    exposure from the trusted proxies, and the internal listeners from the namespace (and
    ``internalNamespaces``)."""
    public: list[str | int] = [p.name for p in enabled_public_ports(service, component)]
    if not public:
        return []
    proxy = service.domain.service.proxy_protocol
    if proxy is None:
        return [{"ports": _tcp(public)}]
    proxies: list[Obj] = [{"ipBlock": {"cidr": cidr}} for cidr in proxy.trusted_cidrs]
    rules: list[Obj] = [{"from": proxies, "ports": _tcp(public)}]
    internal: list[str | int] = [p.name for p in internal_ports(service, component)]
    if internal:
        namespaces: list[Obj] = [
            {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: namespace}}}
            for namespace in proxy.internal_namespaces
        ]
        rules.append({"from": [{"podSelector": {}}, *namespaces], "ports": _tcp(internal)})
    return rules


def render_network_policies(service: MailService, operator_namespace: str = "") -> list[Obj]:
    """``operator_namespace``: where the operator runs; its pods may read what the postfix agent's
    tripwire saw (its health port, ``layout.MASKED_CLIENTS_PATH``). The mail pods never call the
    Kubernetes API: the operator comes to them."""
    domain = service.domain
    names = layout.object_names(domain.name)
    policies = []
    mta_policy: Obj = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(domain, names["mta"], "mta"),
        "spec": {
            "podSelector": {"matchLabels": selector_labels(domain, "mta")},
            "policyTypes": ["Ingress"],
            "ingress": [
                *_public_rules(service, "mta"),
                {
                    "from": [{"podSelector": {"matchLabels": selector_labels(domain, "mda")}}],
                    "ports": _tcp([layout.MDA_SUBMIT_PORT.name, layout.MDA_RELAY_PORT.name]),
                },
            ],
        },
    }
    if operator_namespace:
        operator = {"kubernetes.io/metadata.name": operator_namespace}
        mta_policy["spec"]["ingress"].append(
            {
                "from": [{"namespaceSelector": {"matchLabels": operator}}],
                "ports": _tcp([layout.HEALTH_PORTS["postfix"]]),
            }
        )
    policies.append(mta_policy)
    mda_ingress: list[Obj] = [
        {
            "from": [{"podSelector": {"matchLabels": selector_labels(domain, "mta")}}],
            "ports": _tcp([layout.LMTP_PORT.name]),
        }
    ]
    mda_ingress[:0] = _public_rules(service, "mda")
    policies.append(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": metadata(domain, names["mda"], "mda"),
            "spec": {
                "podSelector": {"matchLabels": selector_labels(domain, "mda")},
                "policyTypes": ["Ingress"],
                "ingress": mda_ingress,
            },
        }
    )
    return policies
