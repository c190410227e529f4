"""Sessions held on both submission ports against the MTA's readiness (outside re-check of #21,
2026-12-07): every smtpd of 587 and 465 holds a connection to Dovecot's auth service through
the MDA's SASL tunnel from its session's start, so clients that hold Postfix's process limits
of sessions there hold as many tunnel sessions. The tunnel carries more than Postfix can open,
and the MTA's readiness probe has slots of its own.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator

from tests.mail.conftest import Stack
from tests.mail.messages import MTA
from tests.mail.test_held_sessions import HOLD_SUBMISSION_SCRIPT
from tests.mail.test_probes_under_load import release


def readyz(address: str) -> tuple[int, str]:
    """The postfix agent's /readyz: its status and text (0 when it does not answer)."""
    try:
        with urllib.request.urlopen(f"http://{address}:9101/readyz", timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()
    except OSError as err:
        return 0, str(err)


@contextlib.contextmanager
def internet_address(stack: Stack) -> Iterator[str]:
    """A further address of the internet namespace (routed from the host), so that what a test
    does to per-address limits stays off the namespace's main address."""
    source = f"10.102.{secrets.randbelow(250)}.{10 + secrets.randbelow(200)}"
    subprocess.run(
        ["ip", "-n", stack.internet.netns, "addr", "add", f"{source}/32", "dev", "eth0"],
        check=True,
    )
    subprocess.run(["ip", "route", "add", f"{source}/32", "dev", stack.internet.veth], check=True)
    try:
        yield source
    finally:
        subprocess.run(
            ["ip", "route", "del", f"{source}/32", "dev", stack.internet.veth], check=False
        )
        subprocess.run(
            ["ip", "-n", stack.internet.netns, "addr", "del", f"{source}/32", "dev", "eth0"],
            check=False,
        )


HOLDERS = 6  # addresses, 17 sessions each (smtpConnections: 20 per address)


def submission_args(port: str) -> Callable[[Stack, str], list[str]]:
    """HOLD_SUBMISSION_SCRIPT's arguments after the host, for ``port``, from an address."""
    implicit = "1" if port == "submissions" else "0"
    return lambda stack, source: [str(stack.port(port)), implicit, source, "17"]


@contextlib.contextmanager
def holding(
    stack: Stack, script: str, per_address: list[Callable[[Stack, str], list[str]]]
) -> Iterator[list[int]]:
    """One holding ``script`` per new internet address, with the arguments after the host that
    ``per_address`` gives for it; yields how many sessions each holds, releases them after."""
    holders: list[subprocess.Popen[str]] = []
    with contextlib.ExitStack() as addresses:
        try:
            for arguments in per_address:
                source = addresses.enter_context(internet_address(stack))
                holders.append(
                    subprocess.Popen(
                        [
                            *("ip", "netns", "exec", stack.internet.netns, sys.executable),
                            *("-c", script, stack.internet.host_ip, *arguments(stack, source)),
                        ],
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        text=True,
                    )
                )
            yield [int(h.stdout.readline() or 0) for h in holders]  # type: ignore[union-attr]
        finally:
            for holder in holders:
                release(holder)


def test_both_submission_ports_held_leave_the_mta_ready(stack: Stack) -> None:
    """Attack: 102 sessions on 587 and 102 on 465 from 12 internet addresses (17 each), never
    logging in. Each smtpd of a submission port holds a connection to Dovecot's auth service
    through the MDA's SASL tunnel (which served 200 at most before); the MTA's readiness
    probe handshakes through that tunnel. Expected: the MTA stays ready (/readyz 200), else the pod
    leaves the Service and port 25 goes with it."""
    mta = json.loads((stack.state / "endpoints.json").read_text())["pods"][f"mail/{MTA}"]
    both = [submission_args("submission"), submission_args("submissions")] * HOLDERS
    with holding(stack, HOLD_SUBMISSION_SCRIPT, both) as held:
        time.sleep(2)
        answers = [readyz(mta) for _ in range(3)]
    print(f"\nheld {held} (sum {sum(held)}); MTA /readyz: {answers}")
    assert sum(held) >= 190, held
    assert all(code == 200 for code, _ in answers), answers
