"""The account data: Dovecot's passwd-file, Postfix's lookup tables and the users' Sieve scripts.

These change whenever a Mailbox does, so they live in the ``<name>-users`` Secret and the
``<name>-sieve`` ConfigMap, which the agents reload without restarting the pods. Postfix reads the
tables as ``texthash:`` maps (no postmap step). Every key and value here is a validated address or
hash, and ``_line`` refuses anything that could split a line or a field.
"""

from __future__ import annotations

import hashlib

from mailstack.api.assemble import MailService
from mailstack.api.models import Mailbox
from mailstack.api.validate import has_control_characters
from mailstack.material import Material
from mailstack.render import layout
from mailstack.render.dovecot import SIEVE_BINDIR
from mailstack.render.forwarding import (
    FORWARDING_MAP_KEY,
    held_alias_entries,
    render_forwarding_map,
)
from mailstack.render.templating import RenderError


def _line(*fields: str, separator: str) -> str:
    for value in fields:
        if not value or any(c.isspace() or ord(c) < 32 for c in value):
            raise RenderError(f"refusing to write a map entry with whitespace: {value[:40]!r}")
    return separator.join(fields)


def dovecot_quota_rule(quota: int) -> str:
    """A Dovecot quota rule for a size in bytes (Dovecot's k/M/G are powers of 1024)."""
    for suffix, factor in (("G", 1024**3), ("M", 1024**2)):
        if quota % factor == 0:
            return f"*:storage={quota // factor}{suffix}"
    return f"*:storage={-(-quota // 1024)}k"  # integer ceiling: floats lose precision


def sieve_file_name(address: str) -> str:
    """A file name for a user's Sieve script that no address can turn into a path."""
    return "user-" + hashlib.sha256(address.encode()).hexdigest()[:24] + ".sieve"


def _passwd_entry(box: Mailbox, password_hash: str) -> str:
    extra: list[str] = []
    if box.quota is not None:
        extra.append(f"userdb_quota_rule={dovecot_quota_rule(box.quota)}")
    if box.sieve is not None:
        script = f"{layout.SIEVE_DIR}/{sieve_file_name(box.address)}"
        extra.append(f"userdb_sieve_before2={script};bindir={SIEVE_BINDIR}")
    if box.suspended:
        # The account keeps receiving mail, but no login (IMAP, POP3, SMTP AUTH) succeeds.
        extra.append("nologin=y")
        extra.append("reason=account_suspended")
    for field in (box.address, password_hash, *extra):
        if (":" in field and not field.startswith("userdb_quota_rule=")) or "\n" in field:
            raise RenderError(f"refusing to write a passwd-file field with ':': {field[:40]!r}")
    # user:password:uid:gid:gecos:home:shell:extra. All eight fields are written: Dovecot's
    # passwd-file userdb does not find an entry that stops after the password.
    home = f"{layout.MAIL_DIR}/{box.domain}/{box.local_part}"
    fields = [box.address, password_hash, str(layout.VMAIL_UID), str(layout.VMAIL_GID), "", home]
    return ":".join([*fields, "", " ".join(extra)])


def render_passwd_file(service: MailService, material: Material) -> str:
    """Dovecot's passwd-file: one line per Mailbox whose password could be resolved."""
    lines = []
    for box in service.mailboxes:
        password_hash = material.password_hash(box.address)
        if password_hash is None:
            continue
        lines.append(_passwd_entry(box, password_hash))
    return "".join(line + "\n" for line in lines)


def virtual_alias_entries(service: MailService) -> list[tuple[str, tuple[str, ...]]]:
    """Every virtual alias of the domain, in lookup-table order (the catch-all last)."""
    domain = service.domain
    entries: dict[str, tuple[str, ...]] = {}
    for box in service.mailboxes:
        # The identity entry keeps the catch-all from swallowing real mailboxes, and is how a
        # forwarding mailbox keeps its copy.
        if box.forward_to:
            targets = ((box.address,) if box.keep_copy else ()) + box.forward_to
        else:
            targets = (box.address,)
        entries[box.address] = targets
    for address, targets in service.alias_map().items():
        entries[address] = targets
    postmaster = service.postmaster_target()
    if postmaster:
        for role in ("postmaster", "abuse"):
            address = f"{role}@{domain.domain}"
            if address not in entries and address != postmaster:
                entries[address] = (postmaster,)
    ordered = sorted(entries.items())
    if domain.catch_all:
        ordered.append((f"@{domain.domain}", (domain.catch_all,)))
    return ordered


def render_virtual_aliases(service: MailService) -> str:
    """The alias entries, then the held addresses of forwarding mailboxes (render/forwarding)."""
    entries = virtual_alias_entries(service)
    held = held_alias_entries(entries, service.domain.domain)
    return "".join(
        _line(address, ",".join(targets), separator=" ") + "\n"
        for address, targets in [*entries, *held]
    )


def render_virtual_mailboxes(service: MailService) -> str:
    return "".join(_line(box.address, "OK", separator=" ") + "\n" for box in service.mailboxes)


def sender_login_entries(service: MailService) -> list[tuple[str, tuple[str, ...]]]:
    """Which logins may use which sender address: their own and the aliases that reach them."""
    logins: dict[str, set[str]] = {box.address: {box.address} for box in service.mailboxes}
    for address, _ in virtual_alias_entries(service):
        if address.startswith("@") or address in logins:
            continue
        owners = service.resolve(address) & service.addresses
        if owners:
            logins[address] = set(owners)
    return [(address, tuple(sorted(owners))) for address, owners in sorted(logins.items())]


def render_sender_logins(service: MailService) -> str:
    return "".join(
        _line(address, ",".join(owners), separator=" ") + "\n"
        for address, owners in sender_login_entries(service)
    )


def render_relay_passwords(service: MailService, material: Material) -> str | None:
    relay = service.domain.relay
    if relay is None or material.relay_credentials is None:
        return None
    username, password = material.relay_credentials
    # A map value runs to the end of its line, so blanks inside the password are kept; the user
    # name ends at the first ':' and no value may break the line.
    if ":" in username or any(c.isspace() for c in username):
        raise RenderError("the relay user name contains ':' or whitespace")
    if has_control_characters(username + password):
        raise RenderError("relay credentials contain control characters")
    if password != password.strip():
        raise RenderError("the relay password starts or ends with whitespace")
    return f"[{relay.host}]:{relay.port} {username}:{password}\n"


def render_users_secret_data(service: MailService, material: Material) -> dict[str, str]:
    """The files of the ``<name>-users`` Secret."""
    data = {
        "passwd": render_passwd_file(service, material),
        "virtual_mailboxes": render_virtual_mailboxes(service),
        "virtual_aliases": render_virtual_aliases(service),
        "sender_logins": render_sender_logins(service),
        FORWARDING_MAP_KEY: render_forwarding_map(
            virtual_alias_entries(service), service.domain.domain
        ),
    }
    relay = render_relay_passwords(service, material)
    if relay is not None:
        data["relay_passwords"] = relay
    return data


def render_sieve_scripts(service: MailService) -> dict[str, str]:
    """The files of the ``<name>-sieve`` ConfigMap: each user's script under a hashed name."""
    return {
        sieve_file_name(box.address): box.sieve
        for box in service.mailboxes
        if box.sieve is not None
    }
