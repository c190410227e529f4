"""The TLS profile (Mozilla's "intermediate"), as a scanner and as legacy clients see it.

testssl.sh scans every port it can speak to (ManageSieve it cannot: that port is covered by the
direct checks below): protocols, the standard cipher categories, forward secrecy (the suites
and curves) and the vulnerability checks. The seven scans run at once and share
one module-scoped run. The direct check is cheap: a TLS 1.2 client offering only CBC suites is
refused on every port, and the same client offering AEAD suites is served (a TLS 1.1 client's
refusal is in ``test_tls``).
"""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import time
import warnings
from pathlib import Path
from typing import Any

import pytest

from mailstack.render import tls_profile
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
# Measured on a shared 2-core machine (load average 15-20): one port 39 s (-p -s -f) + 49 s
# (-U); all seven at once 409-457 s. Each scan is one bash process: they run in parallel.
SCAN_TIMEOUT = 600
# Both key types: the internal CA's certificate is ECDSA, an ACME one may be RSA.
TLS12_CBC_ONLY = ":".join(
    f"ECDHE-{key}-{suite}"
    for key in ("ECDSA", "RSA")
    for suite in ("AES128-SHA256", "AES256-SHA384", "AES128-SHA", "AES256-SHA")
)
TLS12_AEAD = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256"
# testssl's severities that flag nothing: its own notes (DEBUG), facts (INFO), passes (OK).
# LOW is a finding: testssl 3.0.8 files the "average" CBC class and LUCKY13 under it.
NOT_FLAGGED = ("OK", "INFO", "DEBUG")


def _scan(stack: Stack, name: str, folder: Path) -> subprocess.Popen[bytes]:
    json_file = folder / f"{name}.json"
    argv = ["testssl", "--quiet", "--warnings", "off", "--color", "0", "--jsonfile", str(json_file)]
    if SCANNED[name]:
        argv += ["--starttls", str(SCANNED[name])]
    # Protocols, cipher categories, forward secrecy (with the suites and curves offered), the
    # vulnerabilities. Not -E (each suite per protocol): -s and -f say the same, -E costs most.
    argv += ["-p", "-s", "-f", "-U", f"127.0.0.1:{stack.port(name)}"]
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
def test_testssl_sees_the_profiles_suites_and_curves_only(
    scans: dict[str, list[dict[str, Any]]], name: str
) -> None:
    findings = scans[name]
    # The categories testssl rates below "strong": none offered ("average" is the CBC class).
    for category in ("NULL", "aNULL", "EXPORT", "LOW", "3DES_IDEA", "AVERAGE"):
        assert _finding(findings, f"cipherlist_{category}").startswith("not offered"), (
            name,
            category,
        )
    # Among the strong ones, those with forward secrecy: the profile's (TLS 1.2, OpenSSL
    # names) and TLS 1.3's; and none without it (no RSA key transport, which ROBOT looks for).
    suites = _finding(findings, "PFS_ciphers").split()
    tls12 = [s for s in suites if not s.startswith("TLS_")]
    assert tls12 and set(tls12) <= set(tls_profile.TLS12_CIPHERS), (name, suites)
    assert "no RSA key transport" in _finding(findings, "ROBOT"), name
    assert set(_finding(findings, "PFS_ECDHE_curves").split()) == set(tls_profile.CURVES), name


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
    # Postfix answers with a handshake_failure alert; Dovecot closes the connection.
    assert refused.value.reason in (
        "SSLV3_ALERT_HANDSHAKE_FAILURE",
        "UNEXPECTED_EOF_WHILE_READING",
    ), refused.value
    # The same client with AEAD suites is served: the refusal is the suites'.
    with tls_connection(stack, name, _context(stack, TLS12_AEAD, v12, v12)) as tls:
        assert tls.version() == "TLSv1.2"
