"""``spec.pods`` of a MailDomain, and the operator-wide defaults in the same shape (the chart's
``mailPods``, given to ``mailstack operator --mail-pod-defaults``).

Owns ``parse_pods`` (one layer, see ``api.pod_models``: what is not given stays ``None``),
``parse_pod_defaults``, the sections ``resources``, ``imagePullSecrets``, ``annotations`` and
``labels``, and which pod label and annotation keys are not the user's. Scheduling sections are
in ``scheduling``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from mailstack.api import validate
from mailstack.api.errors import FieldError
from mailstack.api.parse.common import option_json, raise_problems, sections, string_map
from mailstack.api.parse.scheduling import (
    MAX_TOLERATIONS,
    parse_affinity,
    toleration,
    topology_spread,
)
from mailstack.api.pod_models import (
    BUILT_IN,
    CONTAINERS,
    ContainerResources,
    MailPods,
    PodResources,
    Quantities,
)
from mailstack.api.quantities import quantity
from mailstack.api.reader import Reader, join

POD_FIELDS = frozenset(
    {
        "resources",
        "nodeSelector",
        "tolerations",
        "affinity",
        "topologySpreadConstraints",
        "priorityClassName",
        "imagePullSecrets",
        "annotations",
        "labels",
    }
)
MAX_ENTRIES = 32  # of nodeSelector, labels and annotations
MAX_ANNOTATION_VALUE = 4096
MAX_PULL_SECRETS = 8
DEFAULTS_DOCUMENT = "mail pod defaults"
DEFAULTS_PATH = "mailPods"

# Pod label and annotation keys that are not the user's: the operator's own (selector labels,
# config checksum) and those the StatefulSet controller sets on the pods it creates.
_RESERVED_PREFIX = re.compile(r"^(([^/]*\.)?mailstack\.dev|app\.kubernetes\.io)/")
RESERVED_KEYS = (
    "controller-revision-hash",
    "statefulset.kubernetes.io/pod-name",
    "apps.kubernetes.io/pod-index",
)


def _user_key(check: Callable[[Any], str]) -> Callable[[Any], str]:
    def user_key(value: object) -> str:
        key = check(value)
        if _RESERVED_PREFIX.match(key):
            raise FieldError(
                f"{key!r} is reserved: the app.kubernetes.io/ and mailstack.dev/ keys are "
                "the operator's"
            )
        if key in RESERVED_KEYS:
            raise FieldError(f"{key!r} is reserved: the StatefulSet controller sets it on its pods")
        return key

    return user_key


def _annotation_value(value: object) -> str:
    if not isinstance(value, str) or len(value) > MAX_ANNOTATION_VALUE:
        raise FieldError(f"expected a string of at most {MAX_ANNOTATION_VALUE} characters")
    return value


def _quantities(r: Reader, value: object, path: str) -> Quantities:
    fields = r.mapping(value, path, {"cpu", "memory"})
    return Quantities(
        cpu=r.field(fields, "cpu", path, quantity, None),
        memory=r.field(fields, "memory", path, quantity, None),
    )


def _container(r: Reader, value: object, path: str) -> ContainerResources:
    fields = r.mapping(value, path, {"requests", "limits"})
    return ContainerResources(
        requests=_quantities(r, fields.get("requests"), join(path, "requests")),
        limits=_quantities(r, fields.get("limits"), join(path, "limits")),
    )


def _resources(r: Reader, value: object, path: str) -> PodResources:
    fields = r.mapping(value, path, set(CONTAINERS))
    return PodResources(*(_container(r, fields.get(c), join(path, c)) for c in CONTAINERS))


def _pull_secret(r: Reader, value: object, path: str) -> str:
    fields = r.mapping(value, path, {"name"})
    name: str = r.field(fields, "name", path, validate.kubernetes_subdomain)
    return name


def _pull_secrets(r: Reader, value: object, path: str) -> tuple[str, ...]:
    names = sections(r, value, path, _pull_secret, MAX_PULL_SECRETS)
    for index, name in enumerate(names):
        if name in names[:index]:
            r.fail(join(path, index), f"{name!r} is listed twice")
    return names


def parse_pods(r: Reader, value: object, path: str) -> MailPods:
    """One layer of mail pod settings (``spec.pods``, or the operator's defaults)."""
    fields = r.mapping(value, path, POD_FIELDS)

    def given(key: str) -> bool:
        return fields.get(key) is not None

    def string_pairs(
        key: str, check_key: Callable[[Any], str], check_value: Callable[[Any], str], what: str
    ) -> tuple[tuple[str, str], ...] | None:
        if not given(key):
            return None
        return string_map(
            r, fields[key], join(path, key), check_key, check_value, what, MAX_ENTRIES
        )

    tolerations_path = join(path, "tolerations")
    return MailPods(
        resources=_resources(r, fields.get("resources"), join(path, "resources")),
        node_selector=string_pairs(
            "nodeSelector", validate.label_key, validate.label_value, "label key to value"
        ),
        tolerations=sections(
            r, fields["tolerations"], tolerations_path, toleration, MAX_TOLERATIONS
        )
        if given("tolerations")
        else None,
        affinity=parse_affinity(r, fields.get("affinity"), join(path, "affinity")),
        topology_spread_constraints=topology_spread(
            r, fields["topologySpreadConstraints"], join(path, "topologySpreadConstraints")
        )
        if given("topologySpreadConstraints")
        else None,
        priority_class_name=r.field(
            fields, "priorityClassName", path, validate.kubernetes_subdomain, None
        ),
        image_pull_secrets=_pull_secrets(
            r, fields["imagePullSecrets"], join(path, "imagePullSecrets")
        )
        if given("imagePullSecrets")
        else None,
        annotations=string_pairs(
            "annotations",
            _user_key(validate.annotation_key),
            _annotation_value,
            "annotation key to value",
        ),
        labels=string_pairs(
            "labels", _user_key(validate.label_key), validate.label_value, "label key to value"
        ),
    )


def parse_pod_defaults(text: str, source: str = "") -> MailPods:
    """The operator's defaults from their JSON (the chart renders ``mailPods`` with ``toJson``);
    raises ``ValidationError``. Over the built-in resources no request may exceed its limit."""
    r = Reader(DEFAULTS_DOCUMENT, source)
    pods = parse_pods(r, option_json(r, text, DEFAULTS_PATH), DEFAULTS_PATH)
    raise_problems(r)
    for conflict in pods.over(BUILT_IN).conflicts():
        r.fail(join(DEFAULTS_PATH, "resources"), f"{conflict} (over the built-in resources)")
    raise_problems(r)
    return pods
