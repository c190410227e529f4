"""What ``mailstack up`` itself prints: its progress messages and, once ready, the endpoints.

Messages go to stderr with a ``mailstack up:`` prefix; the endpoints banner goes to stdout, where
the containers' own output goes too (``local.processes``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

# What each published port is, for the banner (the names of the public Service ports).
_PORT_DESCRIPTIONS = {
    "smtp": "SMTP (inbound, STARTTLS)",
    "submission": "submission (STARTTLS + AUTH)",
    "submissions": "submissions (implicit TLS + AUTH)",
    "imap": "IMAP (STARTTLS)",
    "imaps": "IMAPS",
    "pop3": "POP3 (STLS)",
    "pop3s": "POP3S",
    "sieve": "ManageSieve",
}


def log(message: str) -> None:
    """One progress message of ``mailstack up`` on stderr."""
    print(f"mailstack up: {message}", file=sys.stderr, flush=True)


def _host(address: str) -> str:
    """A ``--listen`` address as it goes before ``:port`` (an IPv6 one in brackets)."""
    bare = address.strip("[]")
    return f"[{bare}]" if ":" in bare else bare


def print_endpoints(endpoints: dict[str, Any], state: Path) -> None:
    """The ready banner: each MailDomain's ports on every ``--listen`` address, the CA to
    trust and the zone to publish."""
    hosts = [_host(address) for address in endpoints["listen"]]
    print("mailstack up: ready", flush=True)
    for domain, ports in sorted(endpoints["domains"].items()):
        print(f"{domain}:")
        for name, port in sorted(ports.items(), key=lambda item: item[1]):
            published = ", ".join(f"{host}:{port}" for host in hosts)
            print(f"  {_PORT_DESCRIPTIONS.get(name, name):36} {published}")
    print(f"CA certificate clients must trust:     {state / 'ca.crt'}")
    print(f"DNS records to publish:                {state / 'records.zone'}", flush=True)
