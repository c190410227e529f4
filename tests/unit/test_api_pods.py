"""``spec.pods`` and the operator's mail pod defaults: parsing, validation, quantities, layers.

Bad input comes back as problems naming the document, the field path under ``spec.pods`` (or
``mailPods`` for the operator's defaults) and what is expected; good input as a ``MailPods`` layer
in which what was not given is ``None``. Quantities come out in the form the API server stores,
which the operator's "is this object current?" comparison depends on.
"""

from __future__ import annotations

import decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kubernetes.utils.quantity import parse_quantity

from mailstack.api import pod_models as pm
from mailstack.api.errors import FieldError, ValidationError
from mailstack.api.parse import parse_maildomain
from mailstack.api.parse.pods import parse_pod_defaults
from mailstack.api.quantities import canonical, quantity, quantity_value
from tests.unit.test_api_validation import MD_REF, by_path, domain_spec, maildomain, problems_of

Doc = dict[str, Any]


def pods_of(**fields: Any) -> pm.MailPods:
    return parse_maildomain(maildomain(domain_spec(pods=fields))).pods


def pod_problems(**fields: Any) -> dict[str, list[str]]:
    problems = problems_of(parse_maildomain, maildomain(domain_spec(pods=fields)))
    assert {p.document for p in problems} == {MD_REF}
    return by_path(problems)


# --- quantities ----------------------------------------------------------------------------------

# What the API server stores for what was written (apimachinery's CanonicalizeBytes).
CANONICAL = [
    ("0", "0"),
    ("0m", "0"),
    ("0Gi", "0"),
    ("1", "1"),
    ("1000m", "1"),
    ("100m", "100m"),
    ("0.1", "100m"),
    ("1.5", "1500m"),
    (".5", "500m"),
    ("1500", "1500"),
    ("1000", "1k"),
    ("2000000", "2M"),
    ("100000", "100k"),
    ("007", "7"),
    ("0.0001", "100u"),
    ("1n", "1n"),
    ("0.5n", "1n"),  # rounded up to the smallest unit
    ("1.0000000001", "1000000001n"),
    ("1Ki", "1Ki"),
    ("1024", "1024"),  # decimal stays decimal
    ("1024Ki", "1Mi"),
    ("2048Ki", "2Mi"),
    ("1000Ki", "1000Ki"),
    ("1536Mi", "1536Mi"),
    ("1.5Gi", "1536Mi"),
    ("0.5Gi", "512Mi"),
    ("0.5Ki", "512"),  # binary below 1024: decimal
    ("1.5Ki", "1536"),
    ("0.3Ki", "307200m"),
    ("512Ti", "512Ti"),
    ("1048576Mi", "1Ti"),
    ("1P", "1P"),
    ("1000T", "1P"),
]


@pytest.mark.parametrize(("written", "stored"), CANONICAL)
def test_quantities_take_the_api_servers_canonical_form(written: str, stored: str) -> None:
    assert canonical(written) == stored
    assert quantity(written) == stored
    assert canonical(stored) == stored  # the stored form is stable
    assert (
        quantity_value(written)
        <= quantity_value(stored)
        <= quantity_value(written) + Fraction(1, 10**9)
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1073741824, "1073741824"),
        (2, "2"),
        (2048, "2048"),  # integers are decimal: no binary unit
        (0, "0"),
    ],
)
def test_integer_quantities_are_accepted(value: int, expected: str) -> None:
    assert quantity(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1 Gi", "is not a Kubernetes quantity"),
        ("1gi", "is not a Kubernetes quantity"),
        ("-1", "is not a Kubernetes quantity"),
        ("+1", "is not a Kubernetes quantity"),
        ("1e3", "is not a Kubernetes quantity"),
        ("1Ei", "is not a Kubernetes quantity"),
        ("1.", "is not a Kubernetes quantity"),
        ("", "is not a Kubernetes quantity"),
        ("1Gi\n", "is not a Kubernetes quantity"),
        ("1" * 33, "is not a Kubernetes quantity"),
        ("1001T", "out of range: at most 1P"),
        ("2Pi", "out of range: at most 1P"),
        (10**15 + 1, "out of range"),
        (-1, "out of range"),
        (0.5, "write it as a string, e.g. '0.5'"),
        (True, "expected a quantity"),
        (None, "expected a quantity"),
    ],
)
def test_bad_quantities_are_refused(value: object, expected: str) -> None:
    with pytest.raises(FieldError) as info:
        quantity(value)
    assert expected in info.value.message


def client_value(text: str) -> Fraction:
    """The Kubernetes client's value, computed with enough digits to be exact.

    It uses Python's Decimal context (28 digits): '1000000.0000001Pi' needs 29 and was rounded.
    """
    with decimal.localcontext() as context:
        context.prec = 80
        return Fraction(parse_quantity(text))


_quantities = st.from_regex(
    r"([0-9]{1,7}(\.[0-9]{1,7})?|\.[0-9]{1,7})([numkMGTP]|[KMGTP]i)?", fullmatch=True
)


@settings(max_examples=300, deadline=None, database=None)
@given(_quantities)
def test_quantity_values_are_kubernetes_values(text: str) -> None:
    # The value as the Kubernetes client computes it, and the canonical form holds the same
    # value, rounded up to nano units.
    value = quantity_value(text)
    assert value == client_value(text)
    try:
        stored = quantity(text)
    except FieldError:
        assert value > 10**15 * Fraction(999_999, 1_000_000)  # refused for the bound only
        return
    assert client_value(stored) == Fraction(-((-value * 10**9) // 1), 10**9)


# --- parsing spec.pods --------------------------------------------------------------------------


def test_without_spec_pods_nothing_is_set() -> None:
    assert parse_maildomain(maildomain()).pods == pm.MailPods()


def test_resources_per_container_and_key() -> None:
    pods = pods_of(
        resources={
            "postfix": {"requests": {"cpu": "0.5", "memory": "1024Mi"}},
            "dovecot": {"limits": {"memory": 2147483648}},
        }
    )
    assert pods.resources.postfix == pm.ContainerResources(pm.Quantities("500m", "1Gi"))
    # An integer is a decimal quantity: the API server keeps it as written.
    assert pods.resources.dovecot == pm.ContainerResources(
        limits=pm.Quantities(memory="2147483648")
    )
    assert pods.resources.rspamd == pm.ContainerResources()


def test_every_field_is_parsed() -> None:
    pods = pods_of(
        nodeSelector={"kubernetes.io/os": "linux"},
        tolerations=[{"key": "dedicated", "value": "mail", "effect": "NoSchedule"}],
        affinity={
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["3"]}]}
                    ]
                }
            },
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 100,
                        "podAffinityTerm": {
                            "topologyKey": "kubernetes.io/hostname",
                            "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "x"}},
                        },
                    }
                ]
            },
        },
        topologySpreadConstraints=[
            {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}
        ],
        priorityClassName="mail-critical",
        imagePullSecrets=[{"name": "regcred"}],
        annotations={"backup.velero.io/backup-volumes": "mail"},
        labels={"team": "mail"},
    )
    assert pods.node_selector == (("kubernetes.io/os", "linux"),)
    assert pods.tolerations == (pm.Toleration("dedicated", "Equal", "mail", "NoSchedule"),)
    assert pods.affinity is not None and pods.affinity.pod_affinity is None
    assert pods.affinity.node_affinity == pm.NodeAffinity(
        required=((pm.Requirement("cores", "Gt", ("3",)),),)
    )
    assert pods.affinity.pod_anti_affinity == pm.PodAffinity(
        preferred=(
            pm.PreferredPodTerm(
                100,
                pm.PodAffinityTerm(
                    "kubernetes.io/hostname",
                    pm.LabelSelector(match_labels=(("app.kubernetes.io/name", "x"),)),
                ),
            ),
        )
    )
    assert pods.topology_spread_constraints == (
        pm.TopologySpreadConstraint(1, "zone", "DoNotSchedule"),
    )
    assert pods.priority_class_name == "mail-critical"
    assert pods.image_pull_secrets == ("regcred",)
    assert pods.annotations == (("backup.velero.io/backup-volumes", "mail"),)
    assert pods.labels == (("team", "mail"),)


def test_an_empty_list_is_set_and_replaces_the_defaults() -> None:
    pods = pods_of(tolerations=[], imagePullSecrets=[])
    assert (pods.tolerations, pods.image_pull_secrets) == ((), ())
    defaults = pm.MailPods(tolerations=(pm.Toleration(operator="Exists"),))
    assert pods.over(defaults).tolerations == ()


P = "spec.pods"
NODE_TERMS = (
    f"{P}.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms"
)


def node_expression(**requirement: Any) -> Doc:
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [requirement]}]
            }
        }
    }


@pytest.mark.parametrize(
    ("fields", "path", "expected"),
    [
        ({"replicas": 2}, P + ".replicas", "unknown field"),
        ({"resources": {"nginx": {}}}, P + ".resources.nginx", "unknown field"),
        (
            {"resources": {"postfix": {"requests": {"storage": "1Gi"}}}},
            P + ".resources.postfix.requests.storage",
            "unknown field (known fields here: cpu, memory)",
        ),
        (
            {"resources": {"rspamd": {"limits": {"memory": "2GB"}}}},
            P + ".resources.rspamd.limits.memory",
            "is not a Kubernetes quantity",
        ),
        ({"nodeSelector": {"bad key": "x"}}, P + ".nodeSelector.bad key", "not a valid label key"),
        ({"nodeSelector": {"disk": "-ssd"}}, P + ".nodeSelector.disk", "not a valid label value"),
        ({"nodeSelector": ["disk"]}, P + ".nodeSelector", "expected a mapping"),
        ({"tolerations": {"key": "a"}}, P + ".tolerations", "expected a list"),
        ({"tolerations": [{"value": "x"}]}, P + ".tolerations[0]", "without a key must have"),
        (
            {"tolerations": [{"key": "a", "operator": "Exists", "value": "x"}]},
            P + ".tolerations[0].value",
            "operator Exists has no value",
        ),
        (
            {"tolerations": [{"key": "a", "tolerationSeconds": 30}]},
            P + ".tolerations[0].tolerationSeconds",
            "only meaningful with effect NoExecute",
        ),
        (
            {"tolerations": [{"key": "a", "operator": "In"}]},
            P + ".tolerations[0].operator",
            "expected one of Exists, Equal",
        ),
        (
            {"tolerations": [{"key": "a", "effect": "NoEntry"}]},
            P + ".tolerations[0].effect",
            "expected one of",
        ),
        ({"tolerations": [{"key": "a"}] * 33}, P + ".tolerations", "at most 32 items"),
        (
            {"affinity": node_expression(key="zone", operator="In")},
            NODE_TERMS + "[0].matchExpressions[0].values",
            "operators In and NotIn need values",
        ),
        (
            {"affinity": node_expression(key="zone", operator="Exists", values=["a"])},
            NODE_TERMS + "[0].matchExpressions[0].values",
            "take no values",
        ),
        (
            {"affinity": node_expression(key="cores", operator="Lt", values=["x"])},
            NODE_TERMS + "[0].matchExpressions[0].values",
            "exactly one value, an integer",
        ),
        (
            {
                "affinity": {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}
                    }
                }
            },
            NODE_TERMS,
            "at least 1 item needed",
        ),
        (
            {"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{}]}}},
            P
            + ".affinity.podAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey",
            "is required",
        ),
        (
            {
                "affinity": {
                    "podAntiAffinity": {
                        "preferredDuringSchedulingIgnoredDuringExecution": [
                            {"weight": 101, "podAffinityTerm": {"topologyKey": "zone"}}
                        ]
                    }
                }
            },
            P
            + ".affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight",
            "from 1 to 100",
        ),
        (
            {
                "affinity": {
                    "podAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": [
                            {
                                "topologyKey": "zone",
                                "labelSelector": {
                                    "matchExpressions": [{"key": "a", "operator": "Gt"}]
                                },
                            }
                        ]
                    }
                }
            },
            P + ".affinity.podAffinity.requiredDuringSchedulingIgnoredDuringExecution[0]"
            ".labelSelector.matchExpressions[0].operator",
            "expected one of In, NotIn, Exists, DoesNotExist",
        ),
        ({"affinity": {"nodeAffinity": {"matchFields": []}}}, None, "unknown field"),
        (
            {
                "topologySpreadConstraints": [
                    {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway"},
                    {"maxSkew": 2, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway"},
                ]
            },
            P + ".topologySpreadConstraints[1]",
            "same topologyKey and whenUnsatisfiable",
        ),
        (
            {
                "topologySpreadConstraints": [
                    {
                        "maxSkew": 1,
                        "topologyKey": "zone",
                        "whenUnsatisfiable": "ScheduleAnyway",
                        "minDomains": 2,
                    }
                ]
            },
            P + ".topologySpreadConstraints[0].minDomains",
            "only meaningful with whenUnsatisfiable DoNotSchedule",
        ),
        (
            {"topologySpreadConstraints": [{"topologyKey": "zone"}]},
            P + ".topologySpreadConstraints[0].maxSkew",
            "is required",
        ),
        ({"priorityClassName": "High"}, P + ".priorityClassName", "DNS-1123 subdomain"),
        ({"imagePullSecrets": ["regcred"]}, P + ".imagePullSecrets[0]", "expected a mapping"),
        (
            {"imagePullSecrets": [{"name": "a"}, {"name": "a"}]},
            P + ".imagePullSecrets[1]",
            "listed twice",
        ),
        ({"labels": {"team": "a b"}}, P + ".labels.team", "not a valid label value"),
        (
            {"labels": {"app.kubernetes.io/instance": "other"}},
            P + ".labels.app.kubernetes.io/instance",
            "reserved: the app.kubernetes.io/ and mailstack.dev/ keys are the operator's",
        ),
        (
            {"annotations": {"mailstack.dev/config-checksum": "0"}},
            P + ".annotations.mailstack.dev/config-checksum",
            "reserved",
        ),
        (
            {"annotations": {"kopf.mailstack.dev/last": "x"}},
            P + ".annotations.kopf.mailstack.dev/last",
            "reserved",
        ),
        (
            {"labels": {"controller-revision-hash": "x"}},
            P + ".labels.controller-revision-hash",
            "the StatefulSet controller sets it",
        ),
        ({"annotations": {"a": "x" * 4097}}, P + ".annotations.a", "at most 4096 characters"),
        ({"annotations": {"a": 1}}, P + ".annotations.a", "expected a string"),
        ({"labels": {f"k{i}": "v" for i in range(33)}}, P + ".labels", "at most 32 entries"),
    ],
)
def test_bad_pod_settings_name_their_field(fields: Doc, path: str | None, expected: str) -> None:
    problems = pod_problems(**fields)
    if path is None:
        assert any(expected in m for messages in problems.values() for m in messages), problems
    else:
        assert any(expected in m for m in problems.get(path, [])), problems


def test_every_problem_of_spec_pods_is_reported_at_once() -> None:
    problems = pod_problems(
        priorityClassName="X", labels={"a": "-"}, tolerations=[{"value": "x"}], nodeSelector=1
    )
    assert len(problems) == 4, problems


# --- layers ---------------------------------------------------------------------------------------


def test_a_maildomain_is_laid_over_the_defaults_field_by_field() -> None:
    defaults = pm.MailPods(
        resources=pm.PodResources(
            postfix=pm.ContainerResources(pm.Quantities("1", "1Gi"), pm.Quantities(memory="2Gi"))
        ),
        node_selector=(("pool", "mail"), ("zone", "a")),
        tolerations=(pm.Toleration("dedicated", value="mail"),),
        affinity=pm.Affinity(
            node_affinity=pm.NodeAffinity(required=((pm.Requirement("mail", "Exists"),),)),
            pod_anti_affinity=pm.PodAffinity(required=(pm.PodAffinityTerm("hostname"),)),
        ),
        priority_class_name="mail",
        image_pull_secrets=("regcred",),
        annotations=(("backup", "yes"),),
        labels=(("team", "platform"),),
    )
    domain = pm.MailPods(
        resources=pm.PodResources(
            postfix=pm.ContainerResources(pm.Quantities(memory="1536Mi")),
            rspamd=pm.ContainerResources(limits=pm.Quantities(cpu="2")),
        ),
        node_selector=(("zone", "b"),),
        tolerations=(),
        affinity=pm.Affinity(pod_anti_affinity=pm.PodAffinity()),
        labels=(("cost-center", "42"), ("team", "mail")),
    )
    merged = domain.over(defaults).over(pm.BUILT_IN)
    postfix = merged.resources.postfix
    assert postfix == pm.ContainerResources(
        pm.Quantities("1", "1536Mi"), pm.Quantities(memory="2Gi")
    )
    built_in = pm.BUILT_IN.resources
    assert merged.resources.rspamd == pm.ContainerResources(
        built_in.rspamd.requests, pm.Quantities("2", built_in.rspamd.limits.memory)
    )
    assert merged.resources.dovecot == built_in.dovecot
    assert merged.node_selector == (("pool", "mail"), ("zone", "b"))
    assert merged.tolerations == ()
    assert merged.affinity == pm.Affinity(
        node_affinity=defaults.affinity.node_affinity if defaults.affinity else None,
        pod_anti_affinity=pm.PodAffinity(),
    )
    assert (merged.priority_class_name, merged.image_pull_secrets) == ("mail", ("regcred",))
    assert merged.annotations == (("backup", "yes"),)
    assert merged.labels == (("cost-center", "42"), ("team", "mail"))
    assert pm.MailPods().over(defaults) == defaults


def test_requests_above_limits_are_conflicts_once_laid_over() -> None:
    domain = pm.MailPods(
        resources=pm.PodResources(dovecot=pm.ContainerResources(pm.Quantities(memory="1Gi")))
    )
    assert domain.conflicts() == []
    assert domain.over(pm.BUILT_IN).conflicts() == [
        "dovecot: the memory request 1Gi is more than its limit 512Mi"
    ]


def test_the_built_in_resources_are_canonical_and_consistent() -> None:
    for container in pm.CONTAINERS:
        resources = pm.BUILT_IN.resources.of(container)
        for value in (resources.requests.cpu, resources.requests.memory, resources.limits.memory):
            assert value is not None and canonical(value) == value
    assert pm.BUILT_IN.conflicts() == []


# --- the operator's defaults ------------------------------------------------------------------


def test_operator_defaults_parse_from_json() -> None:
    pods = parse_pod_defaults(
        '{"priorityClassName": "mail", "resources": {"rspamd": {"limits": {"memory": "1Gi"}}}}'
    )
    assert pods.priority_class_name == "mail"
    assert pods.resources.rspamd.limits.memory == "1Gi"
    assert parse_pod_defaults("") == parse_pod_defaults("{}") == pm.MailPods()


@pytest.mark.parametrize(
    ("text", "path", "expected"),
    [
        ("{", "mailPods", "not JSON"),
        ("[]", "mailPods", "expected a mapping"),
        ('{"priorityClassName": "X"}', "mailPods.priorityClassName", "DNS-1123 subdomain"),
        (
            '{"resources": {"postfix": {"requests": {"memory": "2Gi"}}}}',
            "mailPods.resources",
            "postfix: the memory request 2Gi is more than its limit 1280Mi",
        ),
    ],
)
def test_bad_operator_defaults_are_refused(text: str, path: str, expected: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_pod_defaults(text)
    (problem,) = info.value.problems
    assert (problem.document, problem.path) == ("mail pod defaults", path)
    assert expected in problem.message
