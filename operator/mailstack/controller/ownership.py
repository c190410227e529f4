"""Owns the test of whether a live object is a MailDomain's own, and which names are taken.

A MailDomain's children have fixed names (``<name>-tls``, ``<name>``, ``<name>-mta``, ...), so a
MailDomain named after an object someone else made would, by server-side apply with
``force``, merge its fields into that object, make itself its controller (the garbage collector
then deletes it with the MailDomain) and read its Secrets as material. The operator touches an
object of such a name only when it is this MailDomain's:

- a controller ownerReference with this MailDomain's uid (every release so far wrote one), or,
  for kinds other than Secret, no controller at all and the labels
  ``app.kubernetes.io/managed-by=mailstack`` and ``app.kubernetes.io/instance=<name>`` (the
  objects of ``mailstack render`` applied by hand before the operator took over);
- a Secret needs the ownerReference and the labels: its contents are read back (a DKIM or CA
  key planted under the name would otherwise become the domain's), and the uid only exists once
  the MailDomain does;
- the ``<name>-tls`` Secret may also be cert-manager's, for a Certificate that is the
  operator's: live and owned (also when the issuer switched to internal), or rendered in this
  pass when the Secret carries the labels the Certificate's ``secretTemplate`` gives it. An
  orphan of another app's Certificate of the same name (cert-manager keeps a Secret when its
  Certificate goes) is taken: its key would have been mounted in the mail pods.

Any other object of a child's name makes the name taken: nothing is applied (a half stack never
runs) and the MailDomain says which object to remove or to rename the MailDomain for. Nothing
here performs I/O.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

from mailstack.api.errors import Problem
from mailstack.controller import reasons
from mailstack.controller.children import Owner, child_key
from mailstack.controller.kinds import CERTIFICATE, DNS_ENDPOINT, SECRET, ChildKey
from mailstack.controller.plan import Rendered
from mailstack.kubedoc import Obj, meta_of
from mailstack.render import layout
from mailstack.render.objects import INSTANCE_LABEL, MANAGED_BY_LABEL, MANAGER

# The annotation cert-manager writes on the Secret it issues for a Certificate.
CERTIFICATE_NAME_ANNOTATION = "cert-manager.io/certificate-name"


def _controllers(meta: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    refs = meta.get("ownerReferences") or []
    return [r for r in refs if isinstance(r, Mapping) and r.get("controller")]


def _labelled(meta: Mapping[str, Any], owner: Owner) -> bool:
    labels = meta.get("labels") or {}
    return bool(
        labels.get(MANAGED_BY_LABEL) == MANAGER and labels.get(INSTANCE_LABEL) == owner.name
    )


def is_ours(live: Mapping[str, Any], owner: Owner) -> bool:
    """Whether ``live`` is this MailDomain's to read back, overwrite or delete."""
    meta = meta_of(live)
    controllers = _controllers(meta)
    by_uid = any(ref.get("uid") == owner.uid for ref in controllers)
    if live.get("kind") in (None, "", SECRET.kind):  # unknown: the stricter rule
        return by_uid and _labelled(meta, owner)
    return by_uid or (not controllers and _labelled(meta, owner))


def own_secrets(live: Mapping[ChildKey, Obj | None], owner: Owner) -> dict[ChildKey, Obj | None]:
    """The Secrets among ``live`` that may be read back as material (the others as absent)."""
    return {key: obj if obj is None or is_ours(obj, owner) else None for key, obj in live.items()}


def mounted_secrets(objects: Sequence[Obj]) -> Iterator[ChildKey]:
    """The Secrets the pod templates of ``objects`` mount."""
    for obj in objects:
        template = (obj.get("spec") or {}).get("template") or {}
        for volume in (template.get("spec") or {}).get("volumes") or []:
            secret = volume.get("secret") if isinstance(volume, Mapping) else None
            if isinstance(secret, Mapping) and isinstance(secret.get("secretName"), str):
                yield SECRET.key(secret["secretName"])


def _issued_for_ours(
    live: Mapping[str, Any], owner: Owner, live_ours: set[str], rendered: set[str]
) -> bool:
    """A Secret cert-manager issued for the operator's Certificate: one that exists and is
    this MailDomain's, or one rendered now whose ``secretTemplate`` labels the Secret carries.
    The annotation alone names a Certificate, not which one: another app's, deleted, left it."""
    meta = meta_of(live)
    certificate = (meta.get("annotations") or {}).get(CERTIFICATE_NAME_ANNOTATION)
    return certificate in live_ours or (certificate in rendered and _labelled(meta, owner))


def names_to_check(objects: Sequence[Obj], later: Sequence[ChildKey] = ()) -> list[ChildKey]:
    """Every name the operator would write or mount for ``objects``, and ``later`` (written
    after the others, like the DNSEndpoint), in order."""
    keys = [*(child_key(o) for o in objects), *later, *mounted_secrets(objects)]
    return list(dict.fromkeys(keys))


def written_later(rendered: Rendered) -> list[ChildKey]:
    """The child written after the others (the externalDNS DNSEndpoint), when there is one."""
    if rendered.model is None or not rendered.externally_published:
        return []
    return [DNS_ENDPOINT.key(layout.object_names(rendered.model.name)["dns_endpoint"])]


def taken_names(
    objects: Sequence[Obj],
    live: Mapping[ChildKey, Obj | None],
    owner: Owner,
    later: Sequence[ChildKey] = (),
) -> list[str]:
    """``Kind/name`` of each existing object among ``names_to_check`` that is not this
    MailDomain's (``live`` must hold all of them; a missing key counts as absent)."""
    # cert-manager's Secrets carry no owner: theirs is the Certificate's, ours when it exists
    # (also an issuer switched away from certManager, the Certificate pruned in this pass, the
    # Secret then applied by the operator), or, before it does, when the Secret has its labels.
    rendered = {child_key(o).name for o in objects if o["kind"] == CERTIFICATE.kind}
    ours = {
        k.name for k, o in live.items() if k.kind == CERTIFICATE.kind and o and is_ours(o, owner)
    }
    taken = []
    for key in names_to_check(objects, later):
        obj = live.get(key)
        if obj is None or is_ours(obj, owner):
            continue
        if key.kind == SECRET.kind and _issued_for_ours(obj, owner, ours, rendered):
            continue
        taken.append(f"{key.kind}/{key.name}")
    return taken


def refuse_taken(rendered: Rendered, taken: Sequence[str]) -> Rendered:
    """``rendered`` made invalid (``NameTaken``): nothing of it may be applied or published."""
    assert rendered.model is not None
    verb = "exists and is" if len(taken) == 1 else "exist and are"
    message = (
        f"{', '.join(taken)} {verb} not this MailDomain's: nothing is applied; rename the "
        "MailDomain or remove the object"
    )
    problem = Problem(rendered.model.ref, "metadata.name", message)
    return replace(
        rendered,
        domain_problems=[*rendered.domain_problems, problem],
        invalid_reason=reasons.NAME_TAKEN,
    )
