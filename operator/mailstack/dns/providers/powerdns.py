"""PowerDNS through its HTTP API (``/api/v1/servers/<server>/zones/<zone>``).

Owns: reading a zone's RRsets (one GET returns the whole zone) and applying a plan as one
``PATCH`` of rrsets, which PowerDNS applies in a single transaction. PowerDNS replaces an RRset
whole (``changetype: REPLACE``), so the records of a shared RRset that are not ours are sent back
exactly as read (content and ``disabled`` flag). TXT content must be quoted in this API
(``"v=spf1 mx -all"``); long values are sent as several ≤255-byte quoted strings.
Bad API key → 401 (``CredentialsError``); an unknown zone → 404/422.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from mailstack.api.dns_models import PowerDnsSettings
from mailstack.api.models import MailDomain, Secret
from mailstack.dns.errors import ProviderError
from mailstack.dns.plan import Change, RRset, ZoneState
from mailstack.dns.providers.base import MAIL_TYPES, Provider, absolute, relative_name
from mailstack.dns.providers.construction import ProviderOptions, credentials_text, settings_of
from mailstack.dns.providers.http import JsonApi
from mailstack.dns.providers.reach import Reach
from mailstack.dns.records import canonical_value, txt_value_from_text, txt_zone_text

TIMEOUT = 10.0  # seconds per request


def content_value(rtype: str, content: str) -> str:
    """The canonical value of one PowerDNS record content."""
    if rtype == "TXT":
        return txt_value_from_text(content)
    return canonical_value(rtype, content)


def value_content(rtype: str, value: str) -> str:
    return txt_zone_text(value) if rtype == "TXT" else value


def _error_text(body: Any) -> str:
    if isinstance(body, dict):
        return str(body.get("error", ""))
    return str(body or "")


class PowerDnsProvider(Provider):
    kind = "powerdns"
    supports = MAIL_TYPES

    def __init__(
        self,
        zone: str,
        api_url: str,
        api_key: str,
        server_id: str = PowerDnsSettings.server_id,
        timeout: float = TIMEOUT,
        api: JsonApi | None = None,
        reach: Reach | None = None,
    ) -> None:
        super().__init__(zone)
        base = api_url.rstrip("/")
        base = base.removesuffix("/api/v1")
        self.api_url = base
        self.api = api or JsonApi(
            base,
            {"X-API-Key": api_key},
            f"PowerDNS at {base}",
            _error_text,
            timeout=timeout,
            reach=reach,
        )
        quoted = urllib.parse.quote(absolute(self.zone), safe=".")
        self.path = f"/api/v1/servers/{urllib.parse.quote(server_id)}/zones/{quoted}"
        # (name, type) -> TTL, canonical value -> content, and the disabled records as read.
        self._raw: dict[tuple[str, str], tuple[dict[str, str], list[dict[str, Any]]]] = {}

    def describe(self) -> str:
        return f"powerdns zone {self.zone} at {self.api_url}"

    def read(self, names: Collection[str]) -> ZoneState:
        answer = self.api.call("GET", self.path)
        if answer.status in (404, 422):
            raise ProviderError(
                f"PowerDNS at {self.api_url}: zone {self.zone} does not exist "
                f"(HTTP {answer.status}: {_error_text(answer.body)}); create it first"
            )
        if answer.status != 200 or not isinstance(answer.body, dict):
            raise ProviderError(
                f"PowerDNS at {self.api_url}: reading zone {self.zone}: HTTP {answer.status}: "
                f"{_error_text(answer.body)}"
            )
        self._raw = {}
        rrsets: list[RRset] = []
        for item in answer.body.get("rrsets", []):
            name, rtype = relative_name(item["name"]), str(item["type"])
            contents: dict[str, str] = {}
            disabled: list[dict[str, Any]] = []
            for record in item.get("records", []):
                if record.get("disabled"):
                    disabled.append(record)
                    continue
                try:
                    contents[content_value(rtype, record["content"])] = record["content"]
                except ValueError:
                    disabled.append(record)  # unparseable for us: kept as it is
            self._raw[(name, rtype)] = (contents, disabled)
            if contents:
                rrsets.append(RRset(name, rtype, int(item.get("ttl", 0)), tuple(contents)))
        return ZoneState(self.zone, tuple(sorted(rrsets)), complete=True)

    def _rrset(self, change: Change) -> dict[str, Any]:
        entry: dict[str, Any] = {"name": absolute(change.name), "type": change.type}
        after = change.after
        contents, disabled = self._raw.get((change.name, change.type), ({}, []))
        if after is None and not disabled:
            entry["changetype"] = "DELETE"
            return entry
        records = [
            {"content": contents.get(v) or value_content(change.type, v), "disabled": False}
            for v in (after.values if after else ())
        ]
        records += [{"content": r["content"], "disabled": True} for r in disabled]
        ttl = after.ttl if after else (change.before.ttl if change.before else 3600)
        entry.update(changetype="REPLACE", ttl=ttl, records=records)
        return entry

    def apply(self, changes: Sequence[Change]) -> None:
        if not changes:
            return
        body = {"rrsets": [self._rrset(change) for change in changes]}
        self.writes += 1
        answer = self.api.call("PATCH", self.path, body)
        if answer.status not in (200, 204):
            raise ProviderError(
                f"PowerDNS at {self.api_url}: updating zone {self.zone} refused "
                f"(HTTP {answer.status}): {_error_text(answer.body)}"
            )


def from_domain(
    domain: MailDomain, secrets: Mapping[str, Secret], options: ProviderOptions
) -> PowerDnsProvider:
    settings = settings_of(domain, PowerDnsSettings)
    return PowerDnsProvider(
        settings.zone,
        settings.api_url,
        credentials_text(domain, secrets),
        server_id=settings.server_id,
        timeout=options.timeout or TIMEOUT,
        reach=options.reach(named_by_tenant=True),
    )
