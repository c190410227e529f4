"""RFC 2136 dynamic updates with TSIG (BIND, Knot, PowerDNS with dnsupdate, Windows DNS).

Owns: reading a zone by AXFR (falling back to per-name queries when the server refuses the
transfer) and applying a plan as one atomic UPDATE message per batch. Each change carries an
RFC 2136 prerequisite: a created RRset must not exist yet, an updated or deleted one must still
hold exactly the records read. A zone edited between read and apply makes the update fail as a
whole (YXRRSET/NXRRSET) instead of overwriting someone else's change.

Values are changed record by record (delete the old rdata as read, add the new one), so records of
a shared RRset that are not ours stay byte for byte as they were, whatever their string split.
TXT values are written as ≤255-byte strings and read back joined; MX/SRV targets absolute.

Every query, transfer and update gets ``timeout`` seconds in all (dnspython's timeouts are
totals), cut to what is left of the publication's deadline; the server's name is resolved
through ``reach.HostGuard`` when there is one (absolute, addresses checked).
"""

from __future__ import annotations

import base64
import binascii
import socket
from collections.abc import Collection, Mapping, Sequence

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.tsig
import dns.update
import dns.xfr
import dns.zone
from dns.rdtypes.ANY.TXT import TXT

from mailstack.api.dns_models import Rfc2136Settings
from mailstack.api.models import MailDomain, Secret
from mailstack.dns.errors import (
    CredentialsError,
    DnsConfigError,
    ProviderError,
    ProviderTimeoutError,
)
from mailstack.dns.ownership import marker_name
from mailstack.dns.plan import Change, RRset, ZoneState
from mailstack.dns.providers.base import MAIL_TYPES, Provider
from mailstack.dns.providers.construction import ProviderOptions, credentials_text, settings_of
from mailstack.dns.providers.reach import Reach, capped
from mailstack.dns.records import rdata_value, txt_strings

ALGORITHMS = {"hmac-sha256": dns.tsig.HMAC_SHA256, "hmac-sha512": dns.tsig.HMAC_SHA512}
BATCH = 50  # changes per UPDATE message; keeps messages far below 64 KiB with DKIM keys
TIMEOUT = 5.0  # seconds per query or update

_PREREQ_FAILED = {
    dns.rcode.YXDOMAIN,
    dns.rcode.YXRRSET,
    dns.rcode.NXRRSET,
    dns.rcode.NXDOMAIN,
}


def value_rdata(rtype: str, value: str) -> dns.rdata.Rdata:
    """The rdata for a canonical value (TXT split into ≤255-byte strings)."""
    if rtype == "TXT":
        return TXT(dns.rdataclass.IN, dns.rdatatype.TXT, [s.encode() for s in txt_strings(value)])
    return dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.from_text(rtype), value)


class Rfc2136Provider(Provider):
    kind = "rfc2136"
    supports = MAIL_TYPES

    def __init__(
        self,
        zone: str,
        server: str,
        port: int = Rfc2136Settings.port,
        key_name: str | None = None,
        secret: str | bytes | None = None,
        algorithm: str = Rfc2136Settings.tsig_algorithm,
        timeout: float = TIMEOUT,
        reach: Reach | None = None,
    ) -> None:
        super().__init__(zone)
        self.reach = reach or Reach()
        self.server = server
        self.port = port
        self.timeout = timeout
        self.key_name = key_name
        self.algorithm = algorithm
        self.keyring: dict[dns.name.Name, dns.tsig.Key] | None = None
        if key_name is not None:
            if algorithm not in ALGORITHMS:
                raise DnsConfigError(f"TSIG algorithm {algorithm!r} is not one of hmac-sha256/512")
            if secret is None:
                raise DnsConfigError(f"TSIG key {key_name}: no secret")
            text = secret.decode("ascii", "replace") if isinstance(secret, bytes) else secret
            try:
                raw = base64.b64decode("".join(text.split()), validate=True)
            except (binascii.Error, ValueError):
                raise DnsConfigError(f"TSIG key {key_name}: the secret is not base64") from None
            if not raw:
                raise DnsConfigError(f"TSIG key {key_name}: the secret is empty")
            key = dns.tsig.Key(key_name, raw, ALGORITHMS[algorithm])
            self.keyring = {key.name: key}
        self._address: str | None = None
        # What was read, as read: (name, type) -> TTL and canonical value -> rdata.
        self._raw: dict[tuple[str, str], tuple[int, dict[str, dns.rdata.Rdata]]] = {}
        self.transfer_refused = False

    def describe(self) -> str:
        return f"rfc2136 zone {self.zone} at {self.server}:{self.port}"

    # -- plumbing -----------------------------------------------------------------------------

    def _where(self) -> str:
        if self._address is None:
            guard = self.reach.guard
            if guard is not None:
                self._address = guard.addresses(self.server, self.port)[0]  # all checked
                return self._address
            try:
                infos = socket.getaddrinfo(self.server, self.port, type=socket.SOCK_STREAM)
            except OSError as err:
                raise ProviderError(f"cannot resolve DNS server {self.server}: {err}") from None
            self._address = str(infos[0][4][0])
        return self._address

    def _timeout(self) -> float:
        """The time one call may take: ``timeout``, or what is left of the deadline."""
        return capped(self.reach.deadline, self.timeout, f"{self.server}:{self.port}")

    def _key(self) -> dns.tsig.Key | None:
        return next(iter(self.keyring.values())) if self.keyring else None

    def _fail(self, err: BaseException, what: str) -> ProviderError:
        where = f"{self.server}:{self.port}"
        key = f"TSIG key {self.key_name} ({self.algorithm})"
        if isinstance(err, dns.tsig.PeerBadKey):
            return CredentialsError(f"{what}: {where} does not know {key} (TSIG BADKEY)")
        if isinstance(err, dns.tsig.PeerBadSignature):
            return CredentialsError(
                f"{what}: {where} refused the signature of {key} (TSIG BADSIG: wrong secret)"
            )
        if isinstance(err, dns.tsig.PeerBadTime):
            return CredentialsError(f"{what}: {where}: TSIG BADTIME (clocks differ)")
        if isinstance(err, dns.exception.Timeout):
            return ProviderTimeoutError(f"{what}: {where} did not answer in time")
        if isinstance(err, OSError):
            reason = err.strerror or str(err)
            return ProviderError(f"{what}: cannot reach {where}: {reason}")
        return ProviderError(f"{what}: {where}: {err}")

    def _rcode_error(self, rcode: dns.rcode.Rcode, what: str) -> ProviderError:
        where = f"{self.server}:{self.port}"
        text = dns.rcode.to_text(rcode)
        if rcode in _PREREQ_FAILED:
            return ProviderError(
                f"{what}: zone {self.zone} changed since it was read (prerequisite failed: "
                f"{text}); nothing was changed by this update, run again"
            )
        if rcode == dns.rcode.REFUSED:
            who = f"TSIG key {self.key_name}" if self.key_name else "an unsigned request"
            return CredentialsError(
                f"{what}: {where} refused it (REFUSED): {who} may not update {self.zone}, or a "
                "server-side check failed (BIND refuses an MX whose target in the zone has no "
                "A/AAAA record; its log says which)"
            )
        if rcode == dns.rcode.NOTAUTH:
            return CredentialsError(
                f"{what}: {where} is not authoritative for {self.zone} or rejected the TSIG "
                "signature (NOTAUTH)"
            )
        return ProviderError(f"{what}: {where} answered {text}")

    # -- reading ------------------------------------------------------------------------------

    def read(self, names: Collection[str]) -> ZoneState:
        self._raw = {}
        try:
            return self._read_axfr()
        except _TransferRefused:
            self.transfer_refused = True
        return self._read_names(names)

    def _remember(self, name: str, rdataset: dns.rdataset.Rdataset) -> RRset | None:
        rtype = dns.rdatatype.to_text(rdataset.rdtype)
        if rdataset.rdclass != dns.rdataclass.IN:
            return None
        values: dict[str, dns.rdata.Rdata] = {}
        for rdata in rdataset:
            try:
                values[rdata_value(rdata)] = rdata
            except ValueError:
                continue
        key = (name, rtype)
        self._raw[key] = (rdataset.ttl, values)
        return RRset(name, rtype, rdataset.ttl, tuple(values))

    def _read_axfr(self) -> ZoneState:
        origin = dns.name.from_text(self.zone)
        zone = dns.zone.Zone(origin, relativize=False)
        query = dns.message.make_query(origin, dns.rdatatype.AXFR)
        key = self._key()
        if key is not None:
            query.use_tsig(self.keyring, key.name, algorithm=key.algorithm)
        try:
            timeout = self._timeout()
            dns.query.inbound_xfr(
                self._where(), zone, query, port=self.port, timeout=timeout, lifetime=timeout
            )
        except dns.xfr.TransferError as err:
            if err.rcode in (dns.rcode.REFUSED, dns.rcode.NOTAUTH, dns.rcode.NOTIMP):
                raise _TransferRefused() from None
            raise self._rcode_error(err.rcode, f"reading zone {self.zone}") from None
        except (dns.exception.DNSException, OSError, EOFError) as err:
            if isinstance(err, EOFError | ConnectionResetError):
                # BIND closes the connection on a refused, unsigned transfer.
                raise _TransferRefused() from None
            raise self._fail(err, f"reading zone {self.zone}") from None
        rrsets: list[RRset] = []
        for name, rdataset in zone.iterate_rdatasets():
            rrset = self._remember(name.to_text().rstrip(".").lower(), rdataset)
            if rrset is not None:
                rrsets.append(rrset)
        return ZoneState(self.zone, tuple(sorted(rrsets)), complete=True)

    def _read_names(self, names: Collection[str]) -> ZoneState:
        wanted = sorted(set(names) | {marker_name(n) for n in names})
        rrsets: list[RRset] = []
        for name in wanted:
            for rtype in sorted(self.supports | {"CNAME"}):
                query = dns.message.make_query(name, rtype)
                query.flags &= ~dns.flags.RD
                key = self._key()
                if key is not None:
                    query.use_tsig(self.keyring, key.name, algorithm=key.algorithm)
                try:
                    response, _ = dns.query.udp_with_fallback(
                        query, self._where(), timeout=self._timeout(), port=self.port
                    )
                except (dns.exception.DNSException, OSError) as err:
                    raise self._fail(err, f"reading {name} {rtype}") from None
                rcode = response.rcode()
                if rcode == dns.rcode.NXDOMAIN:
                    break
                if rcode != dns.rcode.NOERROR:
                    raise self._rcode_error(rcode, f"reading {name} {rtype}")
                for rrset in response.answer:
                    if rrset.name.to_text().rstrip(".").lower() != name:
                        continue
                    if dns.rdatatype.to_text(rrset.rdtype) != rtype:
                        continue
                    found = self._remember(name, rrset)
                    if found is not None:
                        rrsets.append(found)
        return ZoneState(self.zone, tuple(sorted(set(rrsets))), complete=False)

    # -- writing ------------------------------------------------------------------------------

    def _rdata(self, key: tuple[str, str], value: str) -> dns.rdata.Rdata:
        raw = self._raw.get(key)
        if raw is not None and value in raw[1]:
            return raw[1][value]
        return value_rdata(key[1], value)

    def _rdataset(self, rrset: RRset, ttl: int | None = None) -> dns.rdataset.Rdataset:
        rdatas = [self._rdata(rrset.key, v) for v in rrset.values]
        return dns.rdataset.from_rdata_list(rrset.ttl if ttl is None else ttl, rdatas)

    def _add(self, update: dns.update.UpdateMessage, change: Change) -> None:
        name = dns.name.from_text(change.name)
        rdtype = dns.rdatatype.from_text(change.type)
        before, after = change.before, change.after
        if before is None:
            update.absent(name, rdtype)
        else:
            # Value-dependent prerequisite (RFC 2136 §2.4.2): exactly these records, TTL zero.
            update.present(name, self._rdataset(before, ttl=0))
        if after is None:
            update.delete(name, rdtype)
        elif before is None or before.ttl != after.ttl:
            update.replace(name, self._rdataset(after))
        else:
            for value in change.removed:
                update.delete(name, self._rdata(before.key, value))
            for value in change.added:
                update.add(name, after.ttl, self._rdata(after.key, value))

    def apply(self, changes: Sequence[Change]) -> None:
        for start in range(0, len(changes), BATCH):
            batch = changes[start : start + BATCH]
            update = dns.update.UpdateMessage(self.zone)
            key = self._key()
            if key is not None:
                update.use_tsig(self.keyring, key.name, algorithm=key.algorithm)
            for change in batch:
                self._add(update, change)
            what = f"updating zone {self.zone}"
            try:
                self.writes += 1
                response = dns.query.tcp(
                    update, self._where(), timeout=self._timeout(), port=self.port
                )
            except (dns.exception.DNSException, OSError) as err:
                raise self._fail(err, what) from None
            if response.rcode() != dns.rcode.NOERROR:
                raise self._rcode_error(response.rcode(), what)


class _TransferRefused(Exception):
    pass


def from_domain(
    domain: MailDomain, secrets: Mapping[str, Secret], options: ProviderOptions
) -> Rfc2136Provider:
    settings = settings_of(domain, Rfc2136Settings)
    return Rfc2136Provider(
        settings.zone,
        settings.server,
        settings.port,
        key_name=settings.tsig_key_name,
        secret=credentials_text(domain, secrets),
        algorithm=settings.tsig_algorithm,
        timeout=options.timeout or TIMEOUT,
        reach=options.reach(named_by_tenant=True),
    )
