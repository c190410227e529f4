"""Cloudflare through its v4 API (``/zones/<id>/dns_records``), with an API token.

Owns: finding the zone id (``GET /zones?name=``, unless ``zoneId`` is given), listing every record
page by page (``page``/``per_page``, until ``result_info.total_pages``), and applying a plan record
by record: Cloudflare has no RRsets and no atomic change sets, so a changed value updates the
record in place (``PUT``), extra values are created (``POST``) or deleted (``DELETE``). Ownership
claims are written before anything else and released after everything else.

API rules followed: every answer is ``{"success", "errors": [{"code", "message"}], "result"}``;
HTTP 429 is retried after ``Retry-After`` (see ``http.JsonApi``); MX carries ``priority`` apart
from the target, SRV and CAA carry their fields in ``data``; names have no trailing dot; TTL 1
means "automatic"; mail records are never proxied. TXT content is sent unquoted (Cloudflare
splits values over 255 bytes itself) and read in either form, quoted or not.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import dns.rdata
import dns.rdataclass
import dns.rdatatype
from dns.rdtypes.ANY.CAA import CAA
from dns.rdtypes.IN.SRV import SRV

from mailstack.api.dns_models import CloudflareSettings
from mailstack.api.models import MailDomain, Secret
from mailstack.dns.errors import ProviderError
from mailstack.dns.plan import Change, RRset, ZoneState
from mailstack.dns.providers.base import MAIL_TYPES, Provider, relative_name
from mailstack.dns.providers.construction import ProviderOptions, credentials_text, settings_of
from mailstack.dns.providers.http import JsonApi, Response
from mailstack.dns.providers.reach import Reach
from mailstack.dns.records import canonical_value, txt_value_from_text

API_URL = "https://api.cloudflare.com/client/v4"
PER_PAGE = 100
TIMEOUT = 15.0  # seconds per request


def _error_text(body: Any) -> str:
    if isinstance(body, dict):
        errors = body.get("errors") or []
        parts = [
            f"{e.get('code')}: {e.get('message')}" if isinstance(e, dict) else str(e)
            for e in errors
        ]
        return "; ".join(parts)
    return str(body or "")


def record_value(record: dict[str, Any]) -> str:
    """The canonical value of one Cloudflare DNS record."""
    rtype = str(record["type"])
    content = str(record.get("content", ""))
    data = record.get("data") or {}
    if rtype == "TXT":
        if len(content) >= 2 and content.startswith('"') and content.endswith('"'):
            return txt_value_from_text(content)
        return content
    if rtype == "MX":
        return canonical_value("MX", f"{record.get('priority', 0)} {content}.")
    if rtype == "SRV":
        if data:
            target = str(data["target"]).rstrip(".") + "."
            text = f"{data['priority']} {data['weight']} {data['port']} {target}"
        else:
            text = f"{record.get('priority', 0)} {content.rstrip('.')}."
        return canonical_value("SRV", text)
    if rtype == "CAA" and data:
        value = str(data["value"]).replace("\\", "\\\\").replace('"', '\\"')
        return canonical_value("CAA", f'{data["flags"]} {data["tag"]} "{value}"')
    if rtype == "CNAME":
        return canonical_value("CNAME", content.rstrip(".") + ".")
    return canonical_value(rtype, content)


def value_body(name: str, rtype: str, ttl: int, value: str) -> dict[str, Any]:
    """The request body creating or replacing one record with a canonical value."""
    body: dict[str, Any] = {"type": rtype, "name": name, "ttl": ttl}
    if rtype in ("A", "AAAA", "CNAME"):
        body.update(content=value.rstrip(".") if rtype == "CNAME" else value, proxied=False)
    elif rtype == "MX":
        priority, target = value.split(maxsplit=1)
        body.update(content=target.rstrip("."), priority=int(priority))
    elif rtype == "SRV":
        srv = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.SRV, value)
        assert isinstance(srv, SRV)
        body["data"] = {
            "priority": srv.priority,
            "weight": srv.weight,
            "port": srv.port,
            "target": srv.target.to_text().rstrip(".") or ".",
        }
    elif rtype == "CAA":
        caa = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.CAA, value)
        assert isinstance(caa, CAA)
        body["data"] = {
            "flags": caa.flags,
            "tag": caa.tag.decode(),
            "value": caa.value.decode(),
        }
    else:
        body["content"] = value
    return body


class CloudflareProvider(Provider):
    kind = "cloudflare"
    supports = MAIL_TYPES

    def __init__(
        self,
        zone: str,
        api_token: str,
        zone_id: str | None = None,
        api_url: str = API_URL,
        timeout: float = TIMEOUT,
        api: JsonApi | None = None,
        per_page: int = PER_PAGE,
        reach: Reach | None = None,
    ) -> None:
        super().__init__(zone)
        self.api = api or JsonApi(
            api_url,
            {"Authorization": f"Bearer {api_token}"},
            "Cloudflare",
            _error_text,
            timeout=timeout,
            reach=reach,
        )
        self.zone_id = zone_id
        self.per_page = per_page
        # (name, type) -> canonical value -> record ids (Cloudflare allows duplicates)
        self._ids: dict[tuple[str, str], dict[str, list[str]]] = {}

    def _result(self, answer: Response, what: str) -> Any:
        body = answer.body
        if 200 <= answer.status < 300 and isinstance(body, dict) and body.get("success"):
            return body.get("result")
        raise ProviderError(
            f"Cloudflare: {what}: HTTP {answer.status}: {_error_text(body) or 'no error given'}"
        )

    def _zone(self) -> str:
        if self.zone_id is None:
            found = self._result(
                self.api.call("GET", "/zones", query={"name": self.zone}), f"finding {self.zone}"
            )
            if not found:
                raise ProviderError(
                    f"Cloudflare: zone {self.zone} not found (or the token may not read it)"
                )
            self.zone_id = str(found[0]["id"])
        return self.zone_id

    def read(self, names: Collection[str]) -> ZoneState:
        path = f"/zones/{self._zone()}/dns_records"
        records: list[dict[str, Any]] = []
        page = 1
        while True:
            answer = self.api.call("GET", path, query={"page": page, "per_page": self.per_page})
            result = self._result(answer, f"listing the records of {self.zone}")
            records += result or []
            info = answer.body.get("result_info") or {}
            if page >= int(info.get("total_pages") or 1) or not result:
                break
            page += 1
        self._ids = {}
        ttls: dict[tuple[str, str], int] = {}
        values: dict[tuple[str, str], dict[str, None]] = defaultdict(dict)
        for record in records:
            key = (relative_name(record["name"]), str(record["type"]))
            try:
                value = record_value(record)
            except (ValueError, KeyError):
                continue
            self._ids.setdefault(key, {}).setdefault(value, []).append(str(record["id"]))
            values[key][value] = None
            ttls.setdefault(key, int(record.get("ttl", 1)))
        rrsets = [RRset(k[0], k[1], ttls[k], tuple(v)) for k, v in values.items()]
        return ZoneState(self.zone, tuple(sorted(rrsets)), complete=True)

    def _write(self, method: str, path: str, body: object, what: str) -> None:
        self.writes += 1
        self._result(self.api.call(method, path, body), what)

    def _delete(self, key: tuple[str, str], value: str) -> None:
        base = f"/zones/{self._zone()}/dns_records"
        for record_id in self._ids.get(key, {}).pop(value, []):
            self._write("DELETE", f"{base}/{record_id}", None, f"deleting {key[0]} {key[1]}")

    def apply(self, changes: Sequence[Change]) -> None:
        base = f"/zones/{self._zone()}/dns_records"
        released: list[tuple[tuple[str, str], str]] = []
        for change in changes:
            key = (change.name, change.type)
            after = change.after
            what = f"writing {change.name} {change.type}"
            if change.marker:
                released += [(key, value) for value in change.removed]
                for value in change.added:
                    self._write("POST", base, value_body(*key, after.ttl, value), what)  # type: ignore[union-attr]
                continue
            removed = list(change.removed)
            for value in change.added:
                assert after is not None
                body = value_body(*key, after.ttl, value)
                ids = self._ids.get(key, {}).get(removed[0], []) if removed else []
                if ids:
                    old = removed.pop(0)
                    self._write("PUT", f"{base}/{ids[0]}", body, what)
                    self._ids[key].pop(old)
                    for extra in ids[1:]:
                        self._write("DELETE", f"{base}/{extra}", None, what)
                else:
                    self._write("POST", base, body, what)
            for value in removed:
                self._delete(key, value)
            before = change.before
            if after is not None and before is not None and before.ttl != after.ttl:
                for value in set(after.values) & set(before.values):
                    for record_id in self._ids.get(key, {}).get(value, []):
                        body = value_body(*key, after.ttl, value)
                        self._write("PUT", f"{base}/{record_id}", body, what)
        for key, value in released:
            self._delete(key, value)


def from_domain(
    domain: MailDomain, secrets: Mapping[str, Secret], options: ProviderOptions
) -> CloudflareProvider:
    settings = settings_of(domain, CloudflareSettings)
    return CloudflareProvider(
        settings.zone,
        credentials_text(domain, secrets),
        zone_id=settings.zone_id,
        api_url=options.cloudflare_api_url or API_URL,
        timeout=options.timeout or TIMEOUT,
        reach=options.reach(named_by_tenant=False),
    )
