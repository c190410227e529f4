"""The TLS profile (Mozilla's "intermediate"), as a scanner and as legacy clients see it.

testssl.sh scans every port it can speak to (ManageSieve it cannot: that port is covered by the
direct checks below): protocols, each cipher offered per protocol, the standard cipher
categories, forward secrecy and the vulnerability checks. The seven scans run at once and share
one module-scoped run. The direct check is cheap: a TLS 1.2 client offering only CBC suites is
refused on every port, and the same client offering AEAD suites is served (a TLS 1.1 client's
refusal is in ``test_tls``).
"""

from __future__ import annotations

import json
import re
import shutil
import ssl
import subprocess
import time
import warnings
from pathlib import Path
from typing import Any

import pytest

from tests.mail.conftest import Stack
from tests.mail.test_tls import PORTS, tls_connection

# port name -> testssl's --starttls protocol (None: implicit TLS). ManageSieve is not scanned.
SCANNED = {
    "smtp": "smtp",
    "submission": "smtp",
    "submissions": None,
    "imap": "imap",
    "imaps": None,
    "pop3": "pop3",
    "pop3s": None,
}
SCAN_TIMEOUT = 240
# A TLS 1.2 suite of the profile: ephemeral key exchange, an AEAD cipher, a SHA-2 PRF.
AEAD_SUITE = re.compile(
    r"^TLS_(ECDHE|DHE)_(RSA|ECDSA)_WITH_(AES_(128|256)_GCM|CHACHA20_POLY1305)_SHA(256|384)$"
)
TLS12_CBC_ONLY = "ECDHE-RSA-AES128-SHA256:ECDHE-RSA-AES256-SHA384:ECDHE-RSA-AES128-SHA:AES128-SHA"
TLS12_AEAD = "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-CHACHA20-POLY1305"
# testssl's severities that flag nothing: its own notes (DEBUG), facts (INFO), passes (OK).
# LOW is a finding: testssl 3.0.8 files the "average" CBC class and LUCKY13 under it.
NOT_FLAGGED = ("OK", "INFO", "DEBUG")


def _scan(stack: Stack, name: str, folder: Path) -> subprocess.Popen[bytes]:
    json_file = folder / f"{name}.json"
    argv = ["testssl", "--quiet", "--warnings", "off", "--color", "0", "--jsonfile", str(json_file)]
    if SCANNED[name]:
        argv += ["--starttls", str(SCANNED[name])]
    # Protocols, ciphers per protocol, cipher categories, forward secrecy, vulnerabilities.
    argv += ["-p", "-E", "-s", "-f", "-U", f"127.0.0.1:{stack.port(name)}"]
    log = open(folder / f"{name}.log", "wb")  # noqa: SIM115 (closed with the process)
    return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)


@pytest.fixture(scope="module")
def scans(stack: Stack) -> dict[str, list[dict[str, Any]]]:
    """Each scanned port's testssl findings (its JSON file), the scans run in parallel."""
    if not shutil.which("testssl"):
        pytest.fail("testssl is not installed: run ./scripts/setup.sh")
    folder = stack.workdir / "testssl"
    folder.mkdir(exist_ok=True)
    started = time.monotonic()
    processes = {name: _scan(stack, name, folder) for name in SCANNED}
    try:
        for process in processes.values():
            process.wait(timeout=max(SCAN_TIMEOUT - (time.monotonic() - started), 1))
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    print(f"testssl on {len(processes)} ports: {time.monotonic() - started:.0f} s")
    found = {}
    for name in SCANNED:
        text = (folder / f"{name}.json").read_text()
        found[name] = json.loads(text)
        assert found[name], (folder / f"{name}.log").read_text()
    return found


def _finding(findings: list[dict[str, Any]], id_: str) -> str:
    matches = [f["finding"] for f in findings if f["id"] == id_]
    assert len(matches) == 1, (id_, [f["id"] for f in findings])
    return str(matches[0])


@pytest.mark.parametrize("name", list(SCANNED))
def test_testssl_sees_tls_12_and_13_only(scans: dict[str, list[dict[str, Any]]], name: str) -> None:
    findings = scans[name]
    for old in ("SSLv2", "SSLv3", "TLS1", "TLS1_1"):
        assert _finding(findings, old).startswith("not offered"), (name, old)
    for current in ("TLS1_2", "TLS1_3"):
        assert _finding(findings, current).startswith("offered"), (name, current)


@pytest.mark.parametrize("name", list(SCANNED))
def test_testssl_sees_aead_suites_only(scans: dict[str, list[dict[str, Any]]], name: str) -> None:
    offered = [f["finding"] for f in scans[name] if f["id"].startswith("cipher-tls1_2_")]
    assert offered, name
    # A finding: "TLSv1.2  xc02f  ECDHE-RSA-AES128-GCM-SHA256  ECDH 253  AESGCM  128  TLS_...".
    rfc_names = [finding.split()[-1] for finding in offered]
    assert [n for n in rfc_names if not AEAD_SUITE.match(n)] == [], (name, offered)
    # The categories testssl rates below "strong": none offered (the "average" CBC class too).
    for category in ("NULL", "aNULL", "EXPORT", "LOW", "3DES_IDEA", "AVERAGE"):
        assert _finding(scans[name], f"cipherlist_{category}").startswith("not offered"), (
            name,
            category,
        )


@pytest.mark.parametrize("name", list(SCANNED))
def test_testssl_flags_nothing(scans: dict[str, list[dict[str, Any]]], name: str) -> None:
    flagged = [f for f in scans[name] if f["severity"] not in NOT_FLAGGED]
    assert flagged == [], (name, flagged)


def _context(
    stack: Stack, ciphers: str, minimum: ssl.TLSVersion, maximum: ssl.TLSVersion
) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cafile=str(stack.state / "ca.crt"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = minimum
        context.maximum_version = maximum
    context.set_ciphers(f"{ciphers}:@SECLEVEL=0")
    return context


@pytest.mark.parametrize("name", list(PORTS))
def test_a_tls_12_client_with_cbc_suites_only_is_refused(stack: Stack, name: str) -> None:
    v12 = ssl.TLSVersion.TLSv1_2
    with pytest.raises(ssl.SSLError) as refused:  # noqa: SIM117 (the raise is in the handshake)
        with tls_connection(stack, name, _context(stack, TLS12_CBC_ONLY, v12, v12)):
            pass
    assert refused.value.reason in ("SSLV3_ALERT_HANDSHAKE_FAILURE", "NO_SHARED_CIPHER"), (
        refused.value
    )
    # The same client with AEAD suites is served: the refusal is the suites'.
    with tls_connection(stack, name, _context(stack, TLS12_AEAD, v12, v12)) as tls:
        assert tls.version() == "TLSv1.2"
