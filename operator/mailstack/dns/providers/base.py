"""The provider interface every DNS provider module implements, and small shared helpers.

A provider reads the current records of one zone and applies a ``Plan``'s changes to it. It
declares the record types it can write (``supports``, as octoDNS providers do); the planner marks
other desired records ``Manual``. Values cross the interface in canonical form
(``records.canonical_value``); each provider translates to and from its own wire or API form and
keeps the raw form of what it read, so values it does not own are written back unchanged.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Sequence

from mailstack.dns.plan import Change, ZoneState

# The record types mailstack publishes (records.desired_records) plus the ownership TXT.
MAIL_TYPES = frozenset({"A", "AAAA", "CAA", "CNAME", "MX", "SRV", "TXT"})


class Provider(ABC):
    """One zone at one provider.

    Subclasses must:

    - set ``kind`` (the ``spec.dns.provider`` key) and ``supports`` (the record types they write:
      ``MAIL_TYPES``, or none for a provider that writes nothing);
    - implement ``read(names)``: the RRsets in canonical form, of the whole zone with
      ``complete=True`` when it can be listed, else of ``names`` with ``complete=False``; and keep
      what ``apply`` needs of what was read (raw values, record ids), so values that are not ours
      are written back unchanged or left alone;
    - implement ``apply(changes)``: the changes in the order given, on the wire too where writes
      are not atomic: the plan puts ownership claims before the records they cover and their
      removal after them. Count each write request in ``writes``; raise ``ProviderError`` when
      the provider refuses, ``CredentialsError`` when it refuses the credentials;
    - come with a module function ``from_domain`` (``construction.Constructor``) listed in
      ``providers.PROVIDERS``, which raises ``DnsConfigError`` for a missing or unusable Secret.

    Subclasses should:

    - write a plan in as few requests as the API allows, atomic where it can be (one UPDATE
      message, one PATCH, change batches), within the API's limits;
    - retry with backoff what is transient (throttling, 5xx answers, a lost connection), and
      nothing else;
    - override ``describe`` when the server or a zone id helps a message.
    """

    kind: str = ""
    supports: frozenset[str] = MAIL_TYPES

    def __init__(self, zone: str) -> None:
        self.zone = zone.rstrip(".").lower()
        self.writes = 0  # write requests sent (API calls / UPDATE messages), for tests and logs

    @abstractmethod
    def read(self, names: Collection[str]) -> ZoneState:
        """The current RRsets: the whole zone if the provider can list it, else ``names``."""

    @abstractmethod
    def apply(self, changes: Sequence[Change]) -> None:
        """Apply the changes in order; raise ``ProviderError`` when the provider refuses."""

    def describe(self) -> str:
        return f"{self.kind} zone {self.zone}"


def absolute(name: str) -> str:
    return name if name.endswith(".") else name + "."


def relative_name(name: str) -> str:
    """A name as read from a provider (maybe with a trailing dot, any case) in canonical form."""
    return name.rstrip(".").lower()
