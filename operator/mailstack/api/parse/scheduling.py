"""Where the mail pods may run: ``tolerations``, ``affinity`` and ``topologySpreadConstraints``
of ``spec.pods`` (and of the operator's defaults), in Kubernetes' own shape.

Owns a subset of Kubernetes' schema for them, the label selectors and requirements they use, and
the rules the API server applies across their fields (which operators take values, a toleration
without a key, ``tolerationSeconds`` with ``NoExecute``, one constraint per topology key and
policy), so that a rendered StatefulSet is never refused. The bounds are the CRD's.
"""

from __future__ import annotations

import re

from mailstack.api import validate
from mailstack.api.parse.common import sections, string_map
from mailstack.api.pod_models import (
    Affinity,
    LabelSelector,
    NodeAffinity,
    PodAffinity,
    PodAffinityTerm,
    PreferredNodeTerm,
    PreferredPodTerm,
    Requirement,
    Toleration,
    TopologySpreadConstraint,
)
from mailstack.api.reader import Reader, integer, join, one_of

MAX_TOLERATIONS = 32
MAX_TERMS = 8  # node selector terms, pod affinity terms (required or preferred)
MAX_EXPRESSIONS = 16  # match expressions of a term or selector; also match labels
MAX_VALUES = 32
MAX_CONSTRAINTS = 8
LABEL_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")
NODE_OPERATORS = (*LABEL_OPERATORS, "Gt", "Lt")
REQUIRED = "requiredDuringSchedulingIgnoredDuringExecution"
PREFERRED = "preferredDuringSchedulingIgnoredDuringExecution"
_weight = integer(1, 100)


def _requirement(r: Reader, value: object, path: str, operators: tuple[str, ...]) -> Requirement:
    fields = r.mapping(value, path, {"key", "operator", "values"})
    key = r.field(fields, "key", path, validate.label_key)
    operator = r.field(fields, "operator", path, one_of(*operators))
    values = r.items(fields, "values", path, validate.label_value, MAX_VALUES)
    where = join(path, "values")
    if operator in ("In", "NotIn") and not values:
        r.fail(where, "operators In and NotIn need values")
    if operator in ("Exists", "DoesNotExist") and values:
        r.fail(where, "operators Exists and DoesNotExist take no values")
    if operator in ("Gt", "Lt") and not (len(values) == 1 and re.fullmatch("[0-9]+", values[0])):
        r.fail(where, "operators Gt and Lt take exactly one value, an integer")
    return Requirement(key, operator, values)


def _label_requirement(r: Reader, value: object, path: str) -> Requirement:
    return _requirement(r, value, path, LABEL_OPERATORS)


def _node_requirement(r: Reader, value: object, path: str) -> Requirement:
    return _requirement(r, value, path, NODE_OPERATORS)


def label_selector(r: Reader, value: object, path: str) -> LabelSelector | None:
    if value is None:
        return None
    fields = r.mapping(value, path, {"matchLabels", "matchExpressions"})
    return LabelSelector(
        match_labels=string_map(
            r,
            fields.get("matchLabels"),
            join(path, "matchLabels"),
            validate.label_key,
            validate.label_value,
            "label key to value",
            MAX_EXPRESSIONS,
        ),
        match_expressions=sections(
            r,
            fields.get("matchExpressions"),
            join(path, "matchExpressions"),
            _label_requirement,
            MAX_EXPRESSIONS,
        ),
    )


def _node_term(r: Reader, value: object, path: str) -> tuple[Requirement, ...]:
    fields = r.mapping(value, path, {"matchExpressions"})
    where = join(path, "matchExpressions")
    if fields.get("matchExpressions") is None:
        r.fail(where, "is required")
    return sections(
        r, fields.get("matchExpressions"), where, _node_requirement, MAX_EXPRESSIONS, min_items=1
    )


def _preferred_node_term(r: Reader, value: object, path: str) -> PreferredNodeTerm:
    fields = r.mapping(value, path, {"weight", "preference"})
    weight = r.field(fields, "weight", path, _weight)
    if fields.get("preference") is None:
        r.fail(join(path, "preference"), "is required")
        return PreferredNodeTerm(weight, ())
    return PreferredNodeTerm(weight, _node_term(r, fields["preference"], join(path, "preference")))


def _node_affinity(r: Reader, value: object, path: str) -> NodeAffinity:
    fields = r.mapping(value, path, {REQUIRED, PREFERRED})
    required_path = join(path, REQUIRED)
    required = r.mapping(fields.get(REQUIRED), required_path, {"nodeSelectorTerms"})
    terms_path = join(required_path, "nodeSelectorTerms")
    if fields.get(REQUIRED) is not None and required.get("nodeSelectorTerms") is None:
        r.fail(terms_path, "is required")
    return NodeAffinity(
        required=sections(
            r, required.get("nodeSelectorTerms"), terms_path, _node_term, MAX_TERMS, min_items=1
        ),
        preferred=sections(
            r, fields.get(PREFERRED), join(path, PREFERRED), _preferred_node_term, MAX_TERMS
        ),
    )


def _pod_term(r: Reader, value: object, path: str) -> PodAffinityTerm:
    fields = r.mapping(value, path, {"labelSelector", "topologyKey"})
    return PodAffinityTerm(
        topology_key=r.field(fields, "topologyKey", path, validate.label_key),
        label_selector=label_selector(r, fields.get("labelSelector"), join(path, "labelSelector")),
    )


def _preferred_pod_term(r: Reader, value: object, path: str) -> PreferredPodTerm:
    fields = r.mapping(value, path, {"weight", "podAffinityTerm"})
    weight = r.field(fields, "weight", path, _weight)
    where = join(path, "podAffinityTerm")
    if fields.get("podAffinityTerm") is None:
        r.fail(where, "is required")
        return PreferredPodTerm(weight, PodAffinityTerm(""))
    return PreferredPodTerm(weight, _pod_term(r, fields["podAffinityTerm"], where))


def _pod_affinity(r: Reader, value: object, path: str) -> PodAffinity:
    fields = r.mapping(value, path, {REQUIRED, PREFERRED})
    return PodAffinity(
        required=sections(r, fields.get(REQUIRED), join(path, REQUIRED), _pod_term, MAX_TERMS),
        preferred=sections(
            r, fields.get(PREFERRED), join(path, PREFERRED), _preferred_pod_term, MAX_TERMS
        ),
    )


def parse_affinity(r: Reader, value: object, path: str) -> Affinity | None:
    """``affinity``; each kind given (even empty) replaces the same kind of the layer below."""
    if value is None:
        return None
    fields = r.mapping(value, path, {"nodeAffinity", "podAffinity", "podAntiAffinity"})

    def given(key: str) -> bool:
        return fields.get(key) is not None

    return Affinity(
        node_affinity=_node_affinity(r, fields["nodeAffinity"], join(path, "nodeAffinity"))
        if given("nodeAffinity")
        else None,
        pod_affinity=_pod_affinity(r, fields["podAffinity"], join(path, "podAffinity"))
        if given("podAffinity")
        else None,
        pod_anti_affinity=_pod_affinity(r, fields["podAntiAffinity"], join(path, "podAntiAffinity"))
        if given("podAntiAffinity")
        else None,
    )


def toleration(r: Reader, value: object, path: str) -> Toleration:
    fields = r.mapping(value, path, {"key", "operator", "value", "effect", "tolerationSeconds"})
    default = Toleration
    key = r.field(fields, "key", path, validate.label_key, default.key)
    operator = r.field(fields, "operator", path, one_of("Exists", "Equal"), default.operator)
    text = r.field(fields, "value", path, validate.label_value, default.value)
    effect = r.field(
        fields, "effect", path, one_of("NoSchedule", "PreferNoSchedule", "NoExecute"), None
    )
    seconds = r.field(fields, "tolerationSeconds", path, integer(0, 2**31 - 1), None)
    if not key and operator != "Exists":
        r.fail(path, "a toleration without a key must have operator Exists (for every taint)")
    if operator == "Exists" and text:
        r.fail(join(path, "value"), "a toleration with operator Exists has no value")
    if seconds is not None and effect != "NoExecute":
        r.fail(join(path, "tolerationSeconds"), "is only meaningful with effect NoExecute")
    return Toleration(key, operator, text, effect, seconds)


def _constraint(r: Reader, value: object, path: str) -> TopologySpreadConstraint:
    fields = r.mapping(
        value,
        path,
        {
            "maxSkew",
            "topologyKey",
            "whenUnsatisfiable",
            "labelSelector",
            "minDomains",
            "nodeAffinityPolicy",
            "nodeTaintsPolicy",
        },
    )
    when = r.field(fields, "whenUnsatisfiable", path, one_of("DoNotSchedule", "ScheduleAnyway"))
    min_domains = r.field(fields, "minDomains", path, integer(1, 1000), None)
    if min_domains is not None and when != "DoNotSchedule":
        r.fail(join(path, "minDomains"), "is only meaningful with whenUnsatisfiable DoNotSchedule")
    return TopologySpreadConstraint(
        max_skew=r.field(fields, "maxSkew", path, integer(1, 1000)),
        topology_key=r.field(fields, "topologyKey", path, validate.label_key),
        when_unsatisfiable=when,
        label_selector=label_selector(r, fields.get("labelSelector"), join(path, "labelSelector")),
        min_domains=min_domains,
        node_affinity_policy=r.field(
            fields, "nodeAffinityPolicy", path, one_of("Honor", "Ignore"), None
        ),
        node_taints_policy=r.field(
            fields, "nodeTaintsPolicy", path, one_of("Honor", "Ignore"), None
        ),
    )


def topology_spread(r: Reader, value: object, path: str) -> tuple[TopologySpreadConstraint, ...]:
    constraints = sections(r, value, path, _constraint, MAX_CONSTRAINTS)
    seen: set[tuple[str, str]] = set()
    for index, constraint in enumerate(constraints):
        pair = (constraint.topology_key, constraint.when_unsatisfiable)
        if pair in seen:
            r.fail(
                join(path, index),
                "another constraint has the same topologyKey and whenUnsatisfiable",
            )
        seen.add(pair)
    return constraints
