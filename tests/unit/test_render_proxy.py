"""``spec.service.exposure``: how ``type`` and ``exposure`` relate, the trusted ranges of the
ProxyProtocol exposure, what it renders (PROXY on the public Postfix and Dovecot listeners, the
listeners without it and their ``<name>-internal`` Service, NetworkPolicies admitting the proxies
only), HostPort's node ports, and the grants' ``exposures``. The daemons' own checkers accept
the configs."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from mailstack.api.assemble import assemble
from mailstack.api.errors import ValidationError
from mailstack.api.parse import parse_maildomain
from mailstack.api.policy import Grants, parse_policy
from mailstack.pipeline import prepare, render_all
from mailstack.render import layout
from mailstack.statedir import StateDir
from tests import pss
from tests.unit.test_policy import policy_doc

API = "mailstack.dev/v1alpha1"
TRUSTED = ["10.192.0.0/10", "fd00:10::/56"]


def maildomain(service: dict[str, Any], name: str = "px", namespace: str = "mail") -> Any:
    return {
        "apiVersion": API,
        "kind": "MailDomain",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"domain": "px.example", "protocols": {"managesieve": True}, "service": service},
    }


PROXIED = {
    "exposure": "ProxyProtocol",
    "proxyProtocol": {"trustedCIDRs": TRUSTED, "internalNamespaces": ["webmail"]},
}


def render(tmp_path: Path, service: dict[str, Any]) -> list[dict[str, Any]]:
    source = tmp_path / "input.yaml"
    source.write_text(yaml.safe_dump(maildomain(service)))
    prepared = prepare([source], StateDir(tmp_path / "state"))
    assert not prepared.problems, [str(p) for p in prepared.problems]
    return render_all(prepared)


def proxied_render(tmp_path: Path) -> list[dict[str, Any]]:
    """The objects of MailDomain mail/px with the ProxyProtocol exposure (10.192.0.0/10 and an
    IPv6 range trusted, the namespace webmail admitted to the internal listeners)."""
    return render(tmp_path, PROXIED)


def find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)


# --- type and exposure ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("service", "exposure", "service_type"),
    [
        ({}, "LoadBalancer", "LoadBalancer"),
        # Written before exposure existed: the type is the exposure, as it always was.
        ({"type": "NodePort"}, "NodePort", "NodePort"),
        ({"type": "ClusterIP"}, "ClusterIP", "ClusterIP"),
        ({"exposure": "NodePort"}, "NodePort", "NodePort"),
        ({"exposure": "HostPort"}, "HostPort", "ClusterIP"),
        (PROXIED, "ProxyProtocol", "ClusterIP"),
        # A cloud load balancer that sends PROXY itself (AWS NLB) is a LoadBalancer Service.
        ({**PROXIED, "type": "LoadBalancer"}, "ProxyProtocol", "LoadBalancer"),
    ],
)
def test_the_exposure_and_the_service_type(
    service: dict[str, Any], exposure: str, service_type: str
) -> None:
    parsed = parse_maildomain(maildomain(service)).service
    assert (parsed.exposure, parsed.type) == (exposure, service_type)
    assert (parsed.proxy_protocol is not None) == (exposure == "ProxyProtocol")


@pytest.mark.parametrize(
    ("service", "path", "message"),
    [
        (
            {"exposure": "NodePort", "type": "LoadBalancer"},
            "spec.service.type",
            "LoadBalancer does not go with exposure NodePort, whose Service is a NodePort",
        ),
        (
            {"exposure": "HostPort", "type": "LoadBalancer"},
            "spec.service.type",
            "does not go with exposure HostPort, whose Service is a ClusterIP",
        ),
        (
            {"exposure": "ProxyProtocol"},
            "spec.service.proxyProtocol",
            "is required with exposure ProxyProtocol",
        ),
        (
            {"proxyProtocol": {"trustedCIDRs": ["10.0.0.0/8"]}},
            "spec.service.proxyProtocol",
            "only with exposure ProxyProtocol",
        ),
        (
            {"exposure": "ProxyProtocol", "proxyProtocol": {"trustedCIDRs": ["0.0.0.0/0"]}},
            "spec.service.proxyProtocol.trustedCIDRs[0]",
            "0.0.0.0/0 would trust 4294967296 addresses to announce any client address",
        ),
        (
            {"exposure": "ProxyProtocol", "proxyProtocol": {"trustedCIDRs": ["::/0"]}},
            "spec.service.proxyProtocol.trustedCIDRs[0]",
            "/32 or narrower",
        ),
        (
            {"exposure": "ProxyProtocol", "proxyProtocol": {"trustedCIDRs": ["10.0.0.0/7"]}},
            "spec.service.proxyProtocol.trustedCIDRs[0]",
            "/8 or narrower",
        ),
        (
            {"exposure": "ProxyProtocol", "proxyProtocol": {"trustedCIDRs": ["proxy.local"]}},
            "spec.service.proxyProtocol.trustedCIDRs[0]",
            "is not an IP address or a CIDR range",
        ),
    ],
)
def test_what_the_parser_refuses(service: dict[str, Any], path: str, message: str) -> None:
    with pytest.raises(ValidationError) as refused:
        parse_maildomain(maildomain(service))
    assert any(p.path == path and message in p.message for p in refused.value.problems), [
        str(p) for p in refused.value.problems
    ]


def test_trusted_ranges_are_canonical() -> None:
    proxy = parse_maildomain(
        maildomain(
            {
                "exposure": "ProxyProtocol",
                "proxyProtocol": {"trustedCIDRs": ["10.1.2.3/16", "192.0.2.7", "FD00::1/64"]},
            }
        )
    ).service.proxy_protocol
    assert proxy is not None
    assert proxy.trusted_cidrs == ("10.1.0.0/16", "192.0.2.7/32", "fd00::/64")


# --- what the ProxyProtocol exposure renders ------------------------------------------------


def test_postfix_takes_proxy_on_the_public_ports_only(tmp_path: Path) -> None:
    objects = proxied_render(tmp_path)
    config = tmp_path / "postfix"
    config.mkdir()
    for key, text in find(objects, "ConfigMap", "px-postfix")["data"].items():
        (config / key).write_text(text)
    old = time.time() - 10  # Postfix ignores a main.cf younger than ~2 s
    for path in config.iterdir():
        os.utime(path, (old, old))
    postconf = shutil.which("postconf") or "/usr/sbin/postconf"
    masters = subprocess.run(
        [postconf, "-c", str(config), "-M"], capture_output=True, text=True, check=False
    )
    assert masters.returncode == 0 and masters.stderr == "", masters.stderr
    # On the PROXY ports, no announced address is trusted as the pod's own (mynetworks). Port 25
    # is postscreen's: it reads the header and hands smtpd (its "pass" service) the address.
    lines = [line.split() for line in masters.stdout.splitlines()]
    proxied = {
        words[0]: {
            "postscreen_upstream_proxy_protocol=haproxy"
            if words[7] == "postscreen"
            else "smtpd_upstream_proxy_protocol=haproxy",
            "mynetworks=",
        }
        <= set(words)
        for words in lines
        if words[1] == "inet"
    }
    # 25, its smtpd, and mda-relay (where Dovecot names the clients of 587 and 465).
    assert sum("mynetworks=" in words for words in lines) == 3
    assert not any("smtpd_upstream_proxy_protocol=haproxy" in w for w in lines if w[1] == "pass")
    assert any("mynetworks=" in words for words in lines if words[1] == "pass")
    assert proxied == {
        "25": True,
        "10587": False,  # mda-submit
        "10588": False,  # mda-relay (587 and 465 are Dovecot's)
        "127.0.0.1:10025": False,  # the probe listener
    }
    for timeout in ("smtpd_upstream_proxy_timeout", "postscreen_upstream_proxy_timeout"):
        main = subprocess.run(
            [postconf, "-c", str(config), "-h", timeout],
            capture_output=True,
            text=True,
            check=False,
        )
        assert main.stdout.strip() == "5s" and main.stderr == "", main.stderr


def test_dovecot_takes_proxy_from_the_trusted_ranges_on_the_public_listeners(
    tmp_path: Path,
) -> None:
    objects = proxied_render(tmp_path)
    conf = tmp_path / "dovecot.conf"
    conf.write_text(find(objects, "ConfigMap", "px-dovecot")["data"]["dovecot.conf"])
    doveconf = shutil.which("doveconf") or "/usr/bin/doveconf"
    result = subprocess.run(
        [doveconf, "-c", str(conf), "-n"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert "haproxy_trusted_networks = 10.192.0.0/10 fd00:10::/56" in result.stdout
    listeners: dict[str, tuple[str, bool]] = {}
    name = ""
    for line in result.stdout.splitlines():
        text = line.strip()
        if text.startswith("inet_listener "):
            name = text.split()[1]
            listeners[name] = ("", False)
        elif name and text.startswith("port = "):
            listeners[name] = (text.split(" = ")[1], listeners[name][1])
        elif name and text == "haproxy = yes":
            listeners[name] = (listeners[name][0], True)
        elif text == "}":
            name = ""
    assert listeners == {
        "imap": ("143", True),
        "imaps": ("993", True),
        "int-imap": ("11143", False),
        "int-imaps": ("11993", False),
        "pop3": ("110", True),
        "pop3s": ("995", True),
        "int-pop3": ("11110", False),
        "int-pop3s": ("11995", False),
        "sieve": ("4190", True),
        "int-sieve": ("15190", False),
        "submission": ("587", True),
        "submissions": ("465", True),
        "int-submission": ("11587", False),
        "int-submissions": ("11465", False),
    }


def test_the_services_and_ports(tmp_path: Path) -> None:
    objects = proxied_render(tmp_path)
    public = find(objects, "Service", "px")
    assert public["spec"]["type"] == "ClusterIP"
    assert "externalTrafficPolicy" not in public["spec"]
    assert public["metadata"]["annotations"]["mailstack.dev/exposure"] == "ProxyProtocol"
    internal = find(objects, "Service", "px-internal")
    assert internal["spec"]["type"] == "ClusterIP"
    assert internal["spec"]["selector"] == public["spec"]["selector"]
    assert [(p["name"], p["port"], p["targetPort"]) for p in internal["spec"]["ports"]] == [
        ("submissions", 465, "int-submissions"),
        ("submission", 587, "int-submission"),
        ("imap", 143, "int-imap"),
        ("imaps", 993, "int-imaps"),
        ("pop3", 110, "int-pop3"),
        ("pop3s", 995, "int-pop3s"),
        ("sieve", 4190, "int-sieve"),
    ]
    declared = {
        p["name"]: p["containerPort"]
        for sts in ("px-mta", "px-mda")
        for c in find(objects, "StatefulSet", sts)["spec"]["template"]["spec"]["containers"]
        for p in c.get("ports", [])
    }
    # Every Service port reaches a container port of that name.
    for service in (public, internal):
        assert all(p["targetPort"] in declared for p in service["spec"]["ports"])


def test_the_network_policies_admit_the_proxies_and_the_namespaces(tmp_path: Path) -> None:
    objects = proxied_render(tmp_path)
    mta = find(objects, "NetworkPolicy", "px-mta")["spec"]["ingress"]
    proxies = [{"ipBlock": {"cidr": cidr}} for cidr in TRUSTED]
    # Port 25 alone: 587 and 465 are Dovecot's; no internal listener on the MTA.
    assert mta[0] == {"from": proxies, "ports": [{"protocol": "TCP", "port": "smtp"}]}
    webmail = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "webmail"}}}
    assert all(webmail not in rule.get("from", []) for rule in mta)
    mda = find(objects, "NetworkPolicy", "px-mda")["spec"]["ingress"]
    assert mda[0]["from"] == proxies
    assert [p["port"] for p in mda[0]["ports"]] == [
        "submissions",
        "submission",
        "imap",
        "imaps",
        "pop3",
        "pop3s",
        "sieve",
    ]
    assert mda[1]["from"] == [{"podSelector": {}}, webmail]
    assert [p["port"] for p in mda[1]["ports"]] == [
        "int-submissions",
        "int-submission",
        "int-imap",
        "int-imaps",
        "int-pop3",
        "int-pop3s",
        "int-sieve",
    ]
    # No rule admits everyone to any port.
    assert all("from" in rule for rule in mta + mda)


def test_without_proxy_nothing_changes_but_what_the_exposure_says(tmp_path: Path) -> None:
    objects = render(tmp_path, {"type": "LoadBalancer"})
    assert not any(o["metadata"]["name"] == "px-internal" for o in objects)
    public = find(objects, "Service", "px")
    assert "mailstack.dev/exposure" not in public["metadata"]["annotations"]
    assert public["spec"]["externalTrafficPolicy"] == "Local"
    postfix = find(objects, "ConfigMap", "px-postfix")["data"]
    assert "upstream_proxy" not in postfix["master.cf"] + postfix["main.cf"]
    assert "haproxy" not in find(objects, "ConfigMap", "px-dovecot")["data"]["dovecot.conf"]


def test_host_ports_bind_the_public_ports_on_the_node_and_need_privileged(
    tmp_path: Path,
) -> None:
    objects = render(tmp_path, {"exposure": "HostPort"})
    public = find(objects, "Service", "px")
    assert public["spec"]["type"] == "ClusterIP"
    assert public["metadata"]["annotations"]["mailstack.dev/exposure"] == "HostPort"
    for sts in ("px-mta", "px-mda"):
        pod = find(objects, "StatefulSet", sts)["spec"]["template"]
        ports = [p for c in pod["spec"]["containers"] for p in c.get("ports", [])]
        bound = {p["name"]: (p["containerPort"], p["hostPort"]) for p in ports if "hostPort" in p}
        public = {p.name: (p.number, p.number) for p in layout.PUBLIC_PORTS}
        assert bound == {k: v for k, v in public.items() if k in {p["name"] for p in ports}}
        # Pod Security baseline allows no host port (the list it may allow is not the built-in
        # admission's): the namespace must be privileged.
        assert pss.level_of(pod) == "privileged"
        assert any(v.startswith("Host Ports") for v in pss.baseline_violations(pod))


# --- the grants -----------------------------------------------------------------------------


def test_a_grant_allows_host_ports_only_by_name() -> None:
    def policy(**service: Any) -> Any:
        doc = policy_doc("p", ["mail"], ["px.example", "*.px.example"])
        if service:
            doc["spec"]["service"] = service
        return parse_policy(doc)

    host = parse_maildomain(maildomain({"exposure": "HostPort"}))
    proxied = parse_maildomain(maildomain(PROXIED))
    _, problems = assemble([host], [], Grants((policy(),)))
    assert [(p.path, p.message) for p in problems] == [
        (
            "spec.service.exposure",
            "HostPort is not allowed unless the policy lists it in service.exposures (it binds "
            "node ports) by MailDomainPolicy/p",
        )
    ]
    assert assemble([proxied], [], Grants((policy(),)))[1] == []
    assert assemble([host], [], Grants((policy(exposures=["HostPort"]),)))[1] == []
    _, problems = assemble([proxied], [], Grants((policy(exposures=["LoadBalancer"]),)))
    assert [p.message for p in problems] == ["ProxyProtocol is not allowed by MailDomainPolicy/p"]
    # Without any policy (a single team), every exposure is allowed.
    assert assemble([host], [], Grants())[1] == []
