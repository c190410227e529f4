"""The chart's metrics: the operator's flag and port, the Service, the optional ServiceMonitor
and PrometheusRule (whose spec is the rule file promtool tests), the NetworkPolicy's rule."""

from __future__ import annotations

import kubernetes_validate
import yaml

from tests.unit.test_chart import CHART, KUBE_VERSION, container, kinds, render

RULES = CHART / "files" / "prometheus" / "operator-alerts.yaml"
MONITORING = (
    "metrics.serviceMonitor.enabled=true",
    "metrics.prometheusRule.enabled=true",
    "metrics.serviceMonitor.labels.release=kube-prometheus-stack",
)


def test_metrics_are_served_by_default_on_a_named_port_behind_a_service() -> None:
    operator = container()
    assert "--metrics-address=0.0.0.0:9090" in operator["args"]
    assert "--log-format=text" in operator["args"]
    assert {"name": "metrics", "containerPort": 9090, "protocol": "TCP"} in operator["ports"]
    docs = render()
    (service,) = [s for s in kinds(docs, "Service") if s["metadata"]["name"].endswith("-metrics")]
    kubernetes_validate.validate(service, KUBE_VERSION, strict=True)
    pod_labels = kinds(docs, "Deployment")[0]["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}
    ]
    assert not kinds(docs, "ServiceMonitor") and not kinds(docs, "PrometheusRule")


def test_metrics_can_be_turned_off_and_json_logs_on() -> None:
    operator = container("metrics.enabled=false", "operator.logFormat=json")
    assert not [a for a in operator["args"] if a.startswith("--metrics-address")]
    assert "--log-format=json" in operator["args"]
    assert [p["name"] for p in operator["ports"]] == ["health"]
    docs = render("metrics.enabled=false", *MONITORING)
    assert not [d for d in docs if d["kind"] in ("ServiceMonitor", "PrometheusRule")]
    assert not [s for s in kinds(docs, "Service") if s["metadata"]["name"].endswith("-metrics")]


def test_service_monitor_scrapes_the_metrics_service_keeping_the_series_labels() -> None:
    docs = render(*MONITORING)
    (monitor,) = kinds(docs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    (service,) = [s for s in kinds(docs, "Service") if s["metadata"]["name"].endswith("-metrics")]
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["mailstack"]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint == {
        "port": "metrics",
        "path": "/metrics",
        "interval": "30s",
        "honorLabels": True,
    }


def test_prometheus_rule_is_the_rule_file_itself() -> None:
    (rule,) = kinds(render(*MONITORING), "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["spec"] == yaml.safe_load(RULES.read_text())
    # Prometheus's templates reach the rule unrendered by Helm.
    alerts = [r for g in rule["spec"]["groups"] for r in g["rules"]]
    assert all("{{ $labels." in r["annotations"]["summary"] for r in alerts)


def test_network_policy_lets_only_the_named_peers_scrape() -> None:
    peer = "networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.team=monitoring"
    (policy,) = kinds(render("networkPolicy.enabled=true", peer), "NetworkPolicy")
    kubernetes_validate.validate(policy, KUBE_VERSION, strict=True)
    scrape = [r for r in policy["spec"]["ingress"] if r["ports"][0]["port"] == 9090]
    assert scrape == [
        {
            "ports": [{"port": 9090, "protocol": "TCP"}],
            "from": [{"namespaceSelector": {"matchLabels": {"team": "monitoring"}}}],
        }
    ]
    (closed,) = kinds(render("networkPolicy.enabled=true"), "NetworkPolicy")
    assert [r["ports"][0]["port"] for r in closed["spec"]["ingress"]] == [8080]
