"""What the mail pods' templates take from the ``MailPods`` layers (``api.pod_models``).

Owns ``pod_settings`` (a MailDomain's ``spec.pods`` over the operator's defaults over the
built-in resources; a request above its limit is a ``RenderError``, as the API server would
refuse the StatefulSet) and the Kubernetes fields made from them: the resources of a container,
the scheduling fields of a pod spec and the template's extra labels and annotations. Only what is
set is rendered, so without ``spec.pods`` and operator defaults the pods are as they always were.
"""

from __future__ import annotations

from mailstack.api.assemble import MailService
from mailstack.api.pod_models import (
    BUILT_IN,
    Affinity,
    LabelSelector,
    MailPods,
    NodeAffinity,
    PodAffinity,
    PodAffinityTerm,
    Requirement,
    Toleration,
    TopologySpreadConstraint,
)
from mailstack.kubedoc import Obj
from mailstack.render.objects import RenderOptions
from mailstack.render.templating import RenderError

REQUIRED = "requiredDuringSchedulingIgnoredDuringExecution"
PREFERRED = "preferredDuringSchedulingIgnoredDuringExecution"


def pod_settings(service: MailService, options: RenderOptions) -> MailPods:
    domain = service.domain
    settings = domain.pods.over(options.mail_pods).over(BUILT_IN)
    conflicts = settings.conflicts()
    if conflicts:
        raise RenderError(
            f"{domain.ref} spec.pods.resources: {'; '.join(conflicts)} (spec.pods is laid over "
            "the operator's mailPods defaults, then the built-in resources: set both)"
        )
    return settings


def container_resources(settings: MailPods, container: str) -> Obj:
    resources = settings.resources.of(container)
    result: Obj = {}
    for part, quantities in (("requests", resources.requests), ("limits", resources.limits)):
        values = {"cpu": quantities.cpu, "memory": quantities.memory}
        if any(values.values()):
            result[part] = {key: value for key, value in values.items() if value is not None}
    return result


def template_metadata(settings: MailPods, labels: Obj, annotations: Obj) -> Obj:
    """The pod template's metadata: the operator's labels and annotations win (the parser
    refuses the operator's keys in ``spec.pods`` anyway)."""
    return {
        "labels": {**dict(settings.labels or ()), **labels},
        "annotations": {**dict(settings.annotations or ()), **annotations},
    }


def _requirement(requirement: Requirement) -> Obj:
    result: Obj = {"key": requirement.key, "operator": requirement.operator}
    if requirement.values:
        result["values"] = list(requirement.values)
    return result


def _selector(selector: LabelSelector | None) -> Obj:
    if selector is None:
        return {}
    result: Obj = {}
    if selector.match_labels:
        result["matchLabels"] = dict(selector.match_labels)
    if selector.match_expressions:
        result["matchExpressions"] = [_requirement(e) for e in selector.match_expressions]
    return {"labelSelector": result}


def _node_term(expressions: tuple[Requirement, ...]) -> Obj:
    return {"matchExpressions": [_requirement(e) for e in expressions]}


def _node_affinity(affinity: NodeAffinity) -> Obj:
    result: Obj = {}
    if affinity.required:
        result[REQUIRED] = {"nodeSelectorTerms": [_node_term(t) for t in affinity.required]}
    if affinity.preferred:
        result[PREFERRED] = [
            {"weight": term.weight, "preference": _node_term(term.match_expressions)}
            for term in affinity.preferred
        ]
    return result


def _pod_term(term: PodAffinityTerm) -> Obj:
    return {**_selector(term.label_selector), "topologyKey": term.topology_key}


def _pod_affinity(affinity: PodAffinity) -> Obj:
    result: Obj = {}
    if affinity.required:
        result[REQUIRED] = [_pod_term(term) for term in affinity.required]
    if affinity.preferred:
        result[PREFERRED] = [
            {"weight": term.weight, "podAffinityTerm": _pod_term(term.term)}
            for term in affinity.preferred
        ]
    return result


def _affinity(affinity: Affinity | None) -> Obj:
    if affinity is None:
        return {}
    kinds = {
        "nodeAffinity": _node_affinity(affinity.node_affinity) if affinity.node_affinity else {},
        "podAffinity": _pod_affinity(affinity.pod_affinity) if affinity.pod_affinity else {},
        "podAntiAffinity": _pod_affinity(affinity.pod_anti_affinity)
        if affinity.pod_anti_affinity
        else {},
    }
    return {kind: fields for kind, fields in kinds.items() if fields}


def _toleration(toleration: Toleration) -> Obj:
    result: Obj = {"operator": toleration.operator}
    if toleration.key:
        result["key"] = toleration.key
    if toleration.value:
        result["value"] = toleration.value
    if toleration.effect:
        result["effect"] = toleration.effect
    if toleration.toleration_seconds is not None:
        result["tolerationSeconds"] = toleration.toleration_seconds
    return result


def _constraint(constraint: TopologySpreadConstraint) -> Obj:
    optional = {
        "minDomains": constraint.min_domains,
        "nodeAffinityPolicy": constraint.node_affinity_policy,
        "nodeTaintsPolicy": constraint.node_taints_policy,
    }
    return {
        "maxSkew": constraint.max_skew,
        "topologyKey": constraint.topology_key,
        "whenUnsatisfiable": constraint.when_unsatisfiable,
        **_selector(constraint.label_selector),
        **{key: value for key, value in optional.items() if value is not None},
    }


def scheduling(settings: MailPods) -> Obj:
    """The pod spec's fields for where and how the pod is scheduled, those that are set."""
    fields: Obj = {
        "priorityClassName": settings.priority_class_name,
        "imagePullSecrets": [{"name": name} for name in settings.image_pull_secrets or ()],
        "nodeSelector": dict(settings.node_selector or ()),
        "tolerations": [_toleration(t) for t in settings.tolerations or ()],
        "affinity": _affinity(settings.affinity),
        "topologySpreadConstraints": [
            _constraint(c) for c in settings.topology_spread_constraints or ()
        ],
    }
    return {key: value for key, value in fields.items() if value}
