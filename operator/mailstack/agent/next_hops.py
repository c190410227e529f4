"""The MTA's readiness beyond its own ports: can Postfix reach the Services it hands mail to?

Owns the check that Postfix resolves and reaches its LMTP next hop (``virtual_transport``), read
from the mounted main.cf as Postfix reads it, so the check follows whatever the renderer writes
there. Without it a Postfix that had lost
its Service names (a pod's hosts file gone, cluster DNS down) or its route to Dovecot still said
ready: submission failed and inbound mail waited or bounced while every probe said ok.

Names are resolved by ``getent ahosts`` (getaddrinfo, the lookup ``lmtp_host_lookup = native``
uses) in a child process: in the agent itself, glibc's NSS modules would stay loaded for the
life of the pod. The hop is the MDA's TLS tunnel (agent.tunnel): the probe completes a
handshake with the MTA's certificate and wants the MDA's pinned one, as Postfix will; a bare
connection would succeed while the tunnel refuses every handshake (a certificate rotated on one
side only). The handshake asks for the probe's server name (``layout.TUNNEL_PROBE_SERVER_NAME``),
which the tunnel serves on slots of its own: sessions that Postfix holds never make the MTA
unready, as taking it out of its Services would not free them. One handshake each probe period
(10 s) costs the MDA's agent well under a millisecond of CPU.
"""

from __future__ import annotations

import _socket  # not socket: see mailstack.agent.health

from mailstack.agent.processes import ProcessError, run
from mailstack.render import layout

# Not typing.TYPE_CHECKING (see mailstack.agent.command).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from mailstack.agent.tunnel import Identity

CONNECT_TIMEOUT = 2.0
# A resolver that never answers must make the probe say "not ready", not hang it past the
# kubelet's probe timeout (which would read as a failed probe with no reason).
RESOLVE_TIMEOUT = 3
# main.cf parameters that name an internal next hop, and what each is for.
NEXT_HOP_PARAMETERS = (("virtual_transport", "LMTP"),)


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


def next_hops(main_cf: str) -> list[tuple[str, str, int]]:
    """(purpose, host, port) of each internal next hop main.cf names over TCP."""
    parameters = main_cf_parameters(main_cf)
    hops = []
    for name, purpose in NEXT_HOP_PARAMETERS:
        endpoint = inet_endpoint(parameters.get(name, ""))
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


def tunnel_reach(identity: Identity) -> Callable[[str, int], str | None]:
    """A connector for ``probe_next_hops``: None when a TLS handshake to address:port with
    ``identity`` succeeds, the server shows the pinned certificate and its service greets;
    else the error."""

    # Imported here: agent.tunnel loads _ssl, which only the agents running a tunnel need.
    from mailstack.agent.tunnel import handshake
    from mailstack.agent.tunnel_sockets import Socket

    def connect(address: str, port: int) -> str | None:
        family = _socket.AF_INET6 if ":" in address else _socket.AF_INET
        conn = Socket(family, _socket.SOCK_STREAM)
        try:
            conn.settimeout(CONNECT_TIMEOUT)
            conn.connect((address, port))
        except OSError as err:
            conn.close()
            return str(err)
        try:
            # The first byte of the greeting (LMTP's banner): with
            # TLS 1.3 the server refuses a client certificate only after our side is done.
            # Asking for the probe's server name: the tunnel serves it on slots of its own.
            session = handshake(conn, identity, False, layout.TUNNEL_PROBE_SERVER_NAME)
            if not session.recv(1):
                return "no TLS tunnel: closed after the handshake"
        except (OSError, ValueError) as err:  # _ssl.SSLError is an OSError
            return f"no TLS tunnel: {err}"
        finally:
            conn.close()
        return None

    return connect


def mta_identity() -> Identity:
    """The MTA's side of the LMTP tunnel (as Postfix's main.cf presents it)."""
    from mailstack.agent.tunnel import Identity

    return Identity(layout.MTA_CLIENT_CERT, layout.MTA_CLIENT_KEY, layout.MDA_CLIENT_CERT)


def probe_next_hops(
    main_cf_path: str,
    resolver: Callable[[str], str | None] = resolve,
    connector: Callable[[str, int], str | None] | None = None,
) -> Callable[[], str | None]:
    """A readiness probe: healthy when every next hop of the main.cf resolves and completes a
    tunnel handshake (``connector``, by default ``tunnel_reach`` with the MTA's identity); else
    what failed, naming the parameter's purpose, host and port."""
    connector = connector or tunnel_reach(mta_identity())

    def probe() -> str | None:
        try:
            with open(main_cf_path, encoding="utf-8") as main_cf:
                hops = next_hops(main_cf.read())
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
