"""The typed model of how the mail pods are tuned: ``spec.pods`` of a MailDomain, and the
operator-wide defaults in the same shape (the chart's ``mailPods``).

Owns the classes, the built-in resources (``BUILT_IN``: what the pods get when nobody says
otherwise) and how the layers stack (``MailPods.over``): a MailDomain over the operator's
defaults over the built-in ones. Unlike the rest of the models these are layers, not final
values: ``None`` means "not set here", so that the layer below shows through. Field by field:
resources per container and per request/limit key, maps (node selector, labels, annotations)
key by key, each kind of affinity whole; lists and single values are replaced.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Literal, TypeVar

from mailstack.api.quantities import quantity_value

Pairs = tuple[tuple[str, str], ...]  # a map, sorted by key
T = TypeVar("T")

CONTAINERS = ("postfix", "rspamd", "dovecot", "clamd", "freshclam")


def _first(top: T | None, base: T | None) -> T | None:
    return base if top is None else top


def _merged(top: Pairs | None, base: Pairs | None) -> Pairs | None:
    if top is None or base is None:
        return _first(top, base)
    return tuple(sorted({**dict(base), **dict(top)}.items()))


@dataclass(frozen=True)
class Quantities:
    """The cpu and memory of a container's requests, or of its limits (canonical quantities)."""

    cpu: str | None = None
    memory: str | None = None

    def over(self, base: Quantities) -> Quantities:
        return Quantities(_first(self.cpu, base.cpu), _first(self.memory, base.memory))


@dataclass(frozen=True)
class ContainerResources:
    requests: Quantities = field(default_factory=Quantities)
    limits: Quantities = field(default_factory=Quantities)

    def over(self, base: ContainerResources) -> ContainerResources:
        return ContainerResources(self.requests.over(base.requests), self.limits.over(base.limits))

    def conflicts(self) -> list[str]:
        """Requests above their limit, which the API server refuses."""
        return [
            f"the {key} request {request} is more than its limit {limit}"
            for key in ("cpu", "memory")
            if (request := getattr(self.requests, key)) is not None
            and (limit := getattr(self.limits, key)) is not None
            and quantity_value(request) > quantity_value(limit)
        ]


@dataclass(frozen=True)
class PodResources:
    """One entry per container of the mail pods."""

    postfix: ContainerResources = field(default_factory=ContainerResources)
    rspamd: ContainerResources = field(default_factory=ContainerResources)
    dovecot: ContainerResources = field(default_factory=ContainerResources)
    clamd: ContainerResources = field(default_factory=ContainerResources)
    freshclam: ContainerResources = field(default_factory=ContainerResources)

    def of(self, container: str) -> ContainerResources:
        result: ContainerResources = getattr(self, container)
        return result

    def over(self, base: PodResources) -> PodResources:
        return PodResources(*(self.of(c).over(base.of(c)) for c in CONTAINERS))


@dataclass(frozen=True)
class Toleration:
    key: str = ""  # "": every taint (operator Exists)
    operator: Literal["Exists", "Equal"] = "Equal"
    value: str = ""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None  # None: all
    toleration_seconds: int | None = None


@dataclass(frozen=True)
class Requirement:
    """A label selector requirement (or, with Gt and Lt, a node selector requirement)."""

    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"]
    values: tuple[str, ...] = ()


@dataclass(frozen=True)
class LabelSelector:
    match_labels: Pairs = ()
    match_expressions: tuple[Requirement, ...] = ()


@dataclass(frozen=True)
class PreferredNodeTerm:
    weight: int
    match_expressions: tuple[Requirement, ...]  # of the preference


@dataclass(frozen=True)
class NodeAffinity:
    required: tuple[tuple[Requirement, ...], ...] = ()  # node selector terms (ORed)
    preferred: tuple[PreferredNodeTerm, ...] = ()


@dataclass(frozen=True)
class PodAffinityTerm:
    topology_key: str
    label_selector: LabelSelector | None = None


@dataclass(frozen=True)
class PreferredPodTerm:
    weight: int
    term: PodAffinityTerm


@dataclass(frozen=True)
class PodAffinity:
    """``podAffinity`` or ``podAntiAffinity``."""

    required: tuple[PodAffinityTerm, ...] = ()
    preferred: tuple[PreferredPodTerm, ...] = ()


@dataclass(frozen=True)
class Affinity:
    node_affinity: NodeAffinity | None = None
    pod_affinity: PodAffinity | None = None
    pod_anti_affinity: PodAffinity | None = None

    def over(self, base: Affinity) -> Affinity:
        return Affinity(
            *(_first(getattr(self, f.name), getattr(base, f.name)) for f in fields(self))
        )


@dataclass(frozen=True)
class TopologySpreadConstraint:
    max_skew: int
    topology_key: str
    when_unsatisfiable: Literal["DoNotSchedule", "ScheduleAnyway"]
    label_selector: LabelSelector | None = None
    min_domains: int | None = None
    node_affinity_policy: Literal["Honor", "Ignore"] | None = None
    node_taints_policy: Literal["Honor", "Ignore"] | None = None


@dataclass(frozen=True)
class MailPods:
    """How the pods of both StatefulSets (``<name>-mta``, ``<name>-mda``) are tuned."""

    resources: PodResources = field(default_factory=PodResources)
    node_selector: Pairs | None = None
    tolerations: tuple[Toleration, ...] | None = None
    affinity: Affinity | None = None
    topology_spread_constraints: tuple[TopologySpreadConstraint, ...] | None = None
    priority_class_name: str | None = None
    image_pull_secrets: tuple[str, ...] | None = None
    annotations: Pairs | None = None  # extra pod-template metadata, e.g. for backup tools
    labels: Pairs | None = None

    def over(self, base: MailPods) -> MailPods:
        """This layer over ``base``: what is set here wins, field by field."""
        affinity = (
            self.affinity.over(base.affinity)
            if self.affinity is not None and base.affinity is not None
            else _first(self.affinity, base.affinity)
        )
        return replace(
            self,
            resources=self.resources.over(base.resources),
            node_selector=_merged(self.node_selector, base.node_selector),
            tolerations=_first(self.tolerations, base.tolerations),
            affinity=affinity,
            topology_spread_constraints=_first(
                self.topology_spread_constraints, base.topology_spread_constraints
            ),
            priority_class_name=_first(self.priority_class_name, base.priority_class_name),
            image_pull_secrets=_first(self.image_pull_secrets, base.image_pull_secrets),
            annotations=_merged(self.annotations, base.annotations),
            labels=_merged(self.labels, base.labels),
        )

    def conflicts(self) -> list[str]:
        """Each container whose requests exceed its limits, said in a sentence."""
        return [
            f"{container}: {problem}"
            for container in CONTAINERS
            for problem in self.resources.of(container).conflicts()
        ]


def _resources(cpu: str, memory: str, memory_limit: str) -> ContainerResources:
    return ContainerResources(Quantities(cpu, memory), Quantities(memory=memory_limit))


# What the mail pods get when neither the MailDomain nor the operator's defaults say otherwise.
BUILT_IN = MailPods(
    resources=PodResources(
        # The limit covers every smtpd the three public ports may run (600, about 1.75 MiB each
        # while a flood holds them): below it, a flood got the container OOM-killed, 25 with it.
        postfix=_resources("50m", "64Mi", "1280Mi"),
        rspamd=_resources("100m", "192Mi", "512Mi"),
        dovecot=_resources("50m", "64Mi", "512Mi"),
        # With spec.spam.antivirus only. clamd holds the official databases in about 1.2 GiB
        # and builds a second engine beside the first while it reloads them (ClamAV's docs).
        clamd=_resources("100m", "1280Mi", "3Gi"),
        freshclam=_resources("10m", "32Mi", "256Mi"),
    )
)
