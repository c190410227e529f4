"""The MTA's readiness beyond its own ports: can Postfix reach the Services it hands mail to?

Owns the check that Postfix resolves and reaches its LMTP next hop (``virtual_transport``) and
Dovecot's auth service (``smtpd_sasl_path``), read from the mounted main.cf as Postfix reads
them, so the check follows whatever the renderer writes there. Without it a Postfix that had lost
its Service names (a pod's hosts file gone, cluster DNS down) or its route to Dovecot still said
ready: submission failed and inbound mail waited or bounced while every probe said ok.

Names are resolved by ``getent ahosts`` (getaddrinfo, the lookup ``lmtp_host_lookup = native``
uses) in a child process: in the agent itself, glibc's NSS modules would stay loaded for the
life of the pod. Only a TCP connection is made: what is spoken on it (plain, TLS) is Dovecot's
and Postfix's business, and its failure is the daemons' log's.
"""

from __future__ import annotations

import _socket  # not socket: see mailstack.agent.health
import os

from mailstack.agent.processes import ProcessError, run
from mailstack.render import layout

# Not typing.TYPE_CHECKING (see mailstack.agent.command).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

CONNECT_TIMEOUT = 2.0
# A resolver that never answers must make the probe say "not ready", not hang it past the
# kubelet's probe timeout (which would read as a failed probe with no reason).
RESOLVE_TIMEOUT = 3
# main.cf parameters that name an internal next hop, and what each is for.
NEXT_HOP_PARAMETERS = (("virtual_transport", "LMTP"), ("smtpd_sasl_path", "auth"))


def main_cf_parameters(text: str) -> dict[str, str]:
    """``name = value`` pairs of a main.cf (comments skipped, continuation lines joined)."""
    parameters: dict[str, str] = {}
    last = ""
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line[0].isspace() and last:
            parameters[last] = f"{parameters[last]} {line.strip()}".strip()
            continue
        name, equals, value = line.partition("=")
        if equals:
            last = name.strip()
            parameters[last] = value.strip()
    return parameters


def inet_endpoint(value: str) -> tuple[str, int] | None:
    """(host, port) of a Postfix ``inet:host:port``, ``lmtp:inet:host:port``, ``lmtp:host:port``
    or ``[host]:port`` destination; None for a unix socket or anything else."""
    for prefix in ("lmtp:", "inet:"):
        if value.startswith(prefix):
            value = value[len(prefix) :]
    if value.startswith("unix:") or ":" not in value:
        return None
    host, _, port = value.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not host or not port.isdigit():
        return None
    return host, int(port)


def next_hops(main_cf: str, carried: dict[str, str] | None = None) -> list[tuple[str, str, int]]:
    """(purpose, host, port) of each internal next hop main.cf names over TCP. ``carried``: a
    local socket main.cf names and the ``host:port`` the agent's tunnel carries it to (Postfix's
    SASL client, agent.tunnel), which is then the next hop."""
    parameters = main_cf_parameters(main_cf)
    hops = []
    for name, purpose in NEXT_HOP_PARAMETERS:
        value = parameters.get(name, "")
        endpoint = inet_endpoint((carried or {}).get(value, value))
        if endpoint is not None:
            hops.append((purpose, *endpoint))
    return hops


def resolve(host: str) -> str | None:
    """The first address ``getent ahosts`` gives for ``host``; None when it does not resolve."""
    try:
        code, output = run(
            ["timeout", "-k", "1", str(RESOLVE_TIMEOUT), "getent", "ahosts", host], capture=True
        )
    except ProcessError:
        return None
    words = output.split()
    return words[0] if code == 0 and words else None


def reach(address: str, port: int, timeout: float = CONNECT_TIMEOUT) -> str | None:
    """None when a TCP connection to address:port opens; else the error."""
    family = _socket.AF_INET6 if ":" in address else _socket.AF_INET
    conn = _socket.socket(family, _socket.SOCK_STREAM)
    try:
        conn.settimeout(timeout)
        conn.connect((address, port))
    except OSError as err:
        return str(err)
    finally:
        conn.close()
    return None


def probe_next_hops(
    main_cf_path: str,
    resolver: Callable[[str], str | None] = resolve,
    connector: Callable[[str, int], str | None] = reach,
    carried: dict[str, str] | None = None,
) -> Callable[[], str | None]:
    """A readiness probe: healthy when every next hop of the main.cf resolves and accepts a
    connection; else what failed, naming the parameter's purpose, host and port. ``carried``
    (``next_hops``) defaults to the agent's SASL tunnel and the target the pod spec gives it."""
    if carried is None:
        carried = {layout.SASL_TUNNEL_SOCKET: os.environ.get(layout.AUTH_SERVER_ENV, "")}

    def probe() -> str | None:
        try:
            with open(main_cf_path, encoding="utf-8") as main_cf:
                hops = next_hops(main_cf.read(), carried)
        except OSError as err:
            return f"{main_cf_path}: {err}"
        problems = []
        for purpose, host, port in hops:
            address = resolver(host)
            if address is None:
                problems.append(f"{purpose} service {host} does not resolve")
                continue
            error = connector(address, port)
            if error is not None:
                problems.append(f"{purpose} service {host}:{port} ({address}): {error}")
        return "; ".join(problems) or None

    return probe
