"""Typed models of ``spec.postscreen``: Postfix's postscreen(8) in front of port 25.

Owns: the actions, the DNS lists with their weights and filters, and the networks that skip the
tests. Produced by ``api.parse.postscreen`` only (every string validated), read by
``render.postfix``; a part of ``models.MailDomain``, kept apart to keep that module short.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

PostscreenAction = Literal["enforce", "drop", "ignore"]


@dataclass(frozen=True)
class DnsblSite:
    """A DNS list postscreen asks about each new client (``postscreen_dnsbl_sites``): the
    answers that count (``filter``, Postfix's ``d.d.d.d`` with ``[a..b;c]`` patterns; None: any
    answer) add ``weight`` to the client's score (negative: an allow list such as DNSWL)."""

    name: str
    weight: int = 1
    filter: str | None = None


@dataclass(frozen=True)
class Dnsbl:
    """``spec.postscreen.dnsbl``: no sites by default, since the lists refuse queries from the
    public resolvers a cluster's DNS often forwards to (docs/operator.md, "postscreen")."""

    sites: tuple[DnsblSite, ...] = ()
    threshold: int = 1
    allowlist_threshold: int = 0  # 0: off; at or below it a client skips the other tests
    action: PostscreenAction = "enforce"


@dataclass(frozen=True)
class Postscreen:
    """postscreen(8) in front of port 25's smtpd (``spec.postscreen``): the pregreet test on a
    first connection (``greet_wait`` seconds, then remembered a day), the DNS lists, and the
    client networks that skip every test (``allow_networks``, canonical CIDR ranges)."""

    pregreet: PostscreenAction = "enforce"
    greet_wait: int = 3
    deep_protocol_tests: bool = False
    dnsbl: Dnsbl = field(default_factory=Dnsbl)
    allow_networks: tuple[str, ...] = ()
