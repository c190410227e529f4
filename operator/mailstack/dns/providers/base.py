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
    """One zone at one provider."""

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
