"""Owns the operator's log lines: plain text or JSON, and the object each line is about.

A reconcile pass runs inside ``about(body)`` (``metrics.observed_pass`` enters it): every record
logged meanwhile, by any logger, in the pass's task and in the tasks it starts (a DNS
publication going on in the background), carries the MailDomain's reference as ``k8s_ref``,
which is what kopf's per-object logger attaches too. kopf's JSON formatter writes it as the
``object`` field (``apiVersion``, ``kind``, ``namespace``, ``name``, ``uid``), so a JSON line
of a pass names its MailDomain whichever module logged it. A context variable, not a logger
passed down: the reconciler's modules keep their module loggers.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import kopf

_current: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "mailstack_log_object", default=None
)
FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def reference(body: Mapping[str, Any]) -> dict[str, Any]:
    """The object reference kopf logs (``k8s_ref``)."""
    meta = body.get("metadata") or {}
    return {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "namespace": meta.get("namespace"),
        "name": meta.get("name"),
        "uid": meta.get("uid"),
    }


@contextmanager
def about(body: Mapping[str, Any]) -> Iterator[None]:
    """Every record logged inside is about this object."""
    token = _current.set(reference(body))
    try:
        yield
    finally:
        _current.reset(token)


class ObjectFilter(logging.Filter):
    """Attaches the current object (``about``) to records that carry none of their own."""

    def filter(self, record: logging.LogRecord) -> bool:
        current = _current.get()
        if current is not None and not hasattr(record, "k8s_ref"):
            record.k8s_ref = current
        return True


def configure(log_format: str, *, verbose: bool) -> None:
    """The operator's logging: ``text`` (one line per record) or ``json`` (kopf's JSON lines,
    with ``object`` on every line about a MailDomain)."""
    if log_format == "json":
        kopf.configure(verbose=verbose, log_format=kopf.LogFormat.JSON, log_prefix=False)
    else:
        logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=TEXT_FORMAT)
    for handler in logging.getLogger().handlers:
        handler.addFilter(ObjectFilter())
    if not verbose:
        logging.getLogger("kopf").setLevel(logging.WARNING)  # per-event chatter
        logging.getLogger("aiohttp").setLevel(logging.WARNING)
