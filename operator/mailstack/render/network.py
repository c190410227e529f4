"""Services and NetworkPolicies: what is reachable, from where.

The public Service selects both pods and uses named target ports, so each port's endpoints are
exactly the pods that declare it (SMTP → MTA, IMAP/POP3/ManageSieve → MDA). LMTP and SASL live on
the internal ``<name>-mda`` Service, and the NetworkPolicy admits only the MTA pods to them; the
port where Dovecot hands Postfix the mail Sieve scripts send lives on the internal ``<name>-mta``
Service, for the MDA pods only (and Postfix relays there only for Dovecot's client certificate).
"""

from __future__ import annotations

from mailstack.api.assemble import MailService
from mailstack.kubedoc import Obj
from mailstack.render import layout
from mailstack.render.layout import Port
from mailstack.render.objects import metadata, selector_labels
from mailstack.render.workloads import enabled_public_ports


def render_public_service(service: MailService) -> Obj:
    domain = service.domain
    names = layout.object_names(domain.name)
    meta = metadata(domain, names["service"], "service")
    # The user's annotations never replace the operator's own.
    meta["annotations"] = {**dict(domain.service.annotations), **meta["annotations"]}
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


def render_mda_service(service: MailService) -> Obj:
    name = layout.object_names(service.domain.name)["mda_service"]
    return _internal_service(service, name, "mda", [layout.LMTP_PORT, layout.SASL_PORT])


def render_mta_service(service: MailService) -> Obj:
    name = layout.object_names(service.domain.name)["mta_service"]
    return _internal_service(service, name, "mta", [layout.MDA_SUBMIT_PORT])


def _tcp(ports: list[str | int]) -> list[Obj]:
    return [{"protocol": "TCP", "port": port} for port in ports]


def render_network_policies(service: MailService, operator_namespace: str = "") -> list[Obj]:
    """``operator_namespace``: where the operator runs; its pods may read what the postfix agent's
    tripwire saw (its health port, ``layout.MASKED_CLIENTS_PATH``). The mail pods never call the
    Kubernetes API: the operator comes to them."""
    domain = service.domain
    names = layout.object_names(domain.name)
    mta_public: list[str | int] = [p.name for p in enabled_public_ports(service, "mta")]
    mda_public: list[str | int] = [p.name for p in enabled_public_ports(service, "mda")]
    policies = []
    mta_policy: Obj = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(domain, names["mta"], "mta"),
        "spec": {
            "podSelector": {"matchLabels": selector_labels(domain, "mta")},
            "policyTypes": ["Ingress"],
            "ingress": [
                {"ports": _tcp(mta_public)},
                {
                    "from": [{"podSelector": {"matchLabels": selector_labels(domain, "mda")}}],
                    "ports": _tcp([layout.MDA_SUBMIT_PORT.name]),
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
            "ports": _tcp([layout.LMTP_PORT.name, layout.SASL_PORT.name]),
        }
    ]
    if mda_public:
        mda_ingress.insert(0, {"ports": _tcp(mda_public)})
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
