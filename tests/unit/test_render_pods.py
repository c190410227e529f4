"""The mail pods' templates with ``spec.pods`` and the operator's defaults (render.pod_settings).

Both StatefulSets get the same settings; the operator's own labels and annotations stay as they
are; without any settings the templates are what they always were (the golden files hold that
too); and a request above its limit, once the layers are stacked, stops the render with a
message, since the API server would refuse the StatefulSet.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from mailstack.api import pod_models as pm
from mailstack.api.assemble import assemble
from mailstack.api.errors import ValidationError
from mailstack.api.models import API_VERSION
from mailstack.api.parse import parse_maildomain
from mailstack.api.quantities import quantity_value
from mailstack.render import layout, postfix
from mailstack.render.objects import RenderOptions
from mailstack.render.templating import RenderError
from mailstack.render.workloads import render_mda_statefulset, render_mta_statefulset

CASES = Path(__file__).resolve().parents[1] / "crd_cases" / "maildomains.yaml"
Doc = dict[str, Any]


def tuned_document() -> Doc:
    """The test cases' MailDomain with every field of spec.pods set."""
    (doc,) = [
        d
        for d in yaml.safe_load_all(CASES.read_text())
        if d and d["metadata"]["name"] == "tuned-pods"
    ]
    return dict(doc)


def maildomain(pods: Doc | None = None) -> Doc:
    spec: Doc = {"domain": "example.com"}
    if pods is not None:
        spec["pods"] = pods
    return {
        "apiVersion": API_VERSION,
        "kind": "MailDomain",
        "metadata": {"name": "example-com", "namespace": "mail"},
        "spec": spec,
    }


def statefulsets(doc: Doc, options: RenderOptions | None = None) -> list[Doc]:
    (service,), problems = assemble([parse_maildomain(doc)], [])
    assert not problems
    options = options or RenderOptions()
    return [
        render_mta_statefulset(service, options, "checksum", relay_auth=False),
        render_mda_statefulset(service, options, "checksum"),
    ]


def template(statefulset: Doc) -> Doc:
    result: Doc = statefulset["spec"]["template"]
    return result


def resources(statefulset: Doc) -> dict[str, Doc]:
    return {c["name"]: c["resources"] for c in template(statefulset)["spec"]["containers"]}


SCHEDULING = (
    "nodeSelector",
    "tolerations",
    "affinity",
    "topologySpreadConstraints",
    "priorityClassName",
    "imagePullSecrets",
)


def test_without_settings_the_pods_get_the_built_in_resources_and_nothing_else() -> None:
    mta, mda = statefulsets(maildomain())
    for statefulset in (mta, mda):
        assert not set(SCHEDULING) & set(template(statefulset)["spec"])
        assert set(template(statefulset)["metadata"]["annotations"]) == {
            "mailstack.dev/config-checksum"
        }
    assert resources(mta) == {
        "postfix": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "1280Mi"}},
        "rspamd": {"requests": {"cpu": "100m", "memory": "192Mi"}, "limits": {"memory": "512Mi"}},
    }
    assert resources(mda) == {
        "dovecot": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "512Mi"}}
    }


def test_both_statefulsets_carry_every_setting() -> None:
    doc = tuned_document()
    mta, mda = statefulsets(doc)
    pods = doc["spec"]["pods"]
    for statefulset in (mta, mda):
        spec = template(statefulset)["spec"]
        assert spec["nodeSelector"] == pods["nodeSelector"]
        assert spec["priorityClassName"] == "mail-critical"
        assert spec["imagePullSecrets"] == pods["imagePullSecrets"]
        assert spec["affinity"] == pods["affinity"]
        # In Kubernetes' shape, as written (each field was written out in the test case).
        assert spec["tolerations"] == pods["tolerations"]
        assert spec["topologySpreadConstraints"] == pods["topologySpreadConstraints"]
        meta = template(statefulset)["metadata"]
        assert meta["annotations"] == {
            **pods["annotations"],
            "mailstack.dev/config-checksum": "checksum",
        }
        assert {k: meta["labels"][k] for k in pods["labels"]} == pods["labels"]
        assert meta["labels"]["app.kubernetes.io/instance"] == "tuned-pods"
        # The selector still selects the pods: the labels it names are the operator's.
        selector = statefulset["spec"]["selector"]["matchLabels"]
        assert selector.items() <= meta["labels"].items()
    # Quantities as the API server stores them ("0.25" → 250m, 1073741824 stays, 1.5Gi → 1536Mi).
    assert resources(mta)["rspamd"] == {
        "requests": {"cpu": "250m", "memory": "1073741824"},
        "limits": {"cpu": "2", "memory": "1536Mi"},
    }
    assert resources(mda)["dovecot"] == {
        "requests": {"cpu": "200m", "memory": "256Mi"},
        "limits": {"cpu": "1500m", "memory": "2Gi"},
    }


def test_operator_defaults_apply_under_the_maildomain() -> None:
    defaults = pm.MailPods(
        resources=pm.PodResources(dovecot=pm.ContainerResources(limits=pm.Quantities("2", "4Gi"))),
        node_selector=(("pool", "mail"),),
        priority_class_name="platform-default",
        labels=(("team", "platform"),),
    )
    options = RenderOptions(mail_pods=defaults)
    _, mda = statefulsets(maildomain(), options)
    spec = template(mda)["spec"]
    assert spec["nodeSelector"] == {"pool": "mail"}
    assert spec["priorityClassName"] == "platform-default"
    assert resources(mda)["dovecot"] == {
        "requests": {"cpu": "50m", "memory": "64Mi"},
        "limits": {"cpu": "2", "memory": "4Gi"},
    }
    own = {"nodeSelector": {"disk": "ssd"}, "priorityClassName": "mine", "labels": {"team": "a"}}
    _, mda = statefulsets(maildomain(own), options)
    spec = template(mda)["spec"]
    assert spec["nodeSelector"] == {"disk": "ssd", "pool": "mail"}
    assert spec["priorityClassName"] == "mine"
    assert template(mda)["metadata"]["labels"]["team"] == "a"


def test_a_request_above_its_limit_stops_the_render() -> None:
    doc = maildomain({"resources": {"dovecot": {"requests": {"memory": "1Gi"}}}})
    with pytest.raises(RenderError) as info:
        statefulsets(doc)
    message = str(info.value)
    assert "MailDomain/mail/example-com spec.pods.resources" in message
    assert "dovecot: the memory request 1Gi is more than its limit 512Mi" in message
    doc["spec"]["pods"]["resources"]["dovecot"]["limits"] = {"memory": "1Gi"}
    statefulsets(doc)  # equal is fine


def test_the_keys_the_operator_puts_on_the_pods_are_refused_in_spec_pods() -> None:
    # Whatever labels and annotations the operator renders on a pod template, a MailDomain
    # cannot set them: the rule in the parser covers them all.
    for statefulset in statefulsets(maildomain()):
        meta = template(statefulset)["metadata"]
        for field, keys in (("labels", meta["labels"]), ("annotations", meta["annotations"])):
            for key in keys:
                doc = maildomain({field: {key: "x"}})
                with pytest.raises(ValidationError) as info:
                    parse_maildomain(copy.deepcopy(doc))
                assert "reserved" in str(info.value), key


def test_the_built_in_postfix_limit_holds_every_smtpd_clients_can_hold() -> None:
    """A flood may hold every smtpd of port 25, and logged-in users every smtpd of mda-relay
    (587 and 465 are Dovecot's: sessions before login hold no smtpd); each took about 1.75 MiB
    (Pss, the #21 red team: 190 held on 587 came to 364 MiB with the idle container's 10 MiB).
    A limit below that got the container OOM-killed, port 25 with the rest."""
    processes = postfix.PORT_25_SMTPD_PROCESSES + layout.MDA_RELAY_PROCESSES
    needed_mib = 10 + 1.75 * processes
    limit = pm.BUILT_IN.resources.postfix.limits.memory
    assert limit is not None and quantity_value(limit) >= needed_mib * 2**20, (limit, needed_mib)
