"""The rendered configs are accepted, without warnings, by the real daemons' own checkers.

postconf (Postfix 3.7), doveconf (Dovecot 2.3), rspamadm configtest (rspamd 3.4) and sievec
(Pigeonhole) from Debian's packages; .ci/run installs them. Paths inside the configs point at
the container's mounts, so the checks run on copies with those paths rewritten to the test's
folders where a checker opens the files.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from mailstack.render import layout, tls_profile
from mailstack.render.rspamd import UNUSED_MODULES


def _need(tool: str) -> str:
    path = shutil.which(tool) or next(
        (p for p in (f"/usr/sbin/{tool}", f"/usr/bin/{tool}") if os.path.exists(p)), None
    )
    if path is None:
        pytest.fail(f"{tool} is not installed (the Debian package is required by the test suite)")
    return path


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def _postfix_copy(files: Path, tmp_path: Path) -> Path:
    """A copy of a rendered Postfix folder that postconf reads: Postfix ignores a main.cf
    younger than ~2 s, so the fresh copy is backdated."""
    config = tmp_path / "postfix"
    shutil.copytree(files, config)
    old = time.time() - 10
    for path in config.iterdir():
        os.utime(path, (old, old))
    return config


@pytest.mark.parametrize("domain", ["mail/example-com", "default/example-org"])
def test_postconf_accepts_main_and_master(
    example_files: dict[str, Path], domain: str, tmp_path: Path
) -> None:
    postconf = _need("postconf")
    config = _postfix_copy(example_files[f"{domain}-postfix"], tmp_path)
    result = _run(postconf, "-c", str(config), "-n")
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr
    params = dict(line.split(" = ", 1) for line in result.stdout.splitlines() if " = " in line)
    assert params["mynetworks"] == "127.0.0.0/8 [::1]/128"
    assert params["smtpd_sasl_auth_enable"] == "no"  # no logins: 587 and 465 are Dovecot's
    assert params["smtpd_relay_restrictions"].endswith("reject_unauth_destination")
    masters = _run(postconf, "-c", str(config), "-M")
    assert masters.returncode == 0 and masters.stderr == "", masters.stderr
    services = {tuple(line.split()[:2]) for line in masters.stdout.splitlines()}
    assert ("25", "inet") in services
    assert ("postlog", "unix-dgram") in services
    # The agent's probe listener: loopback only, its own process limit, no milter on the way.
    probe = next(
        line
        for line in masters.stdout.splitlines()
        if line.startswith(f"127.0.0.1:{layout.POSTFIX_PROBE_PORT} ")
    )
    limit = str(layout.POSTFIX_PROBE_PROCESSES)
    assert probe.split()[1:8] == ["inet", "n", "-", "n", "-", limit, "smtpd"], probe
    assert "smtpd_milters=" in probe.split(), probe


def test_postconf_detects_a_broken_file(example_files: dict[str, Path], tmp_path: Path) -> None:
    postconf = _need("postconf")
    config = tmp_path / "postfix"
    shutil.copytree(example_files["mail/example-com-postfix"], config)
    with open(config / "main.cf", "a") as handle:
        handle.write("no_such_parameter = 1\n")
    old = time.time() - 10
    for path in config.iterdir():
        os.utime(path, (old, old))
    assert "unused parameter" in _run(postconf, "-c", str(config), "-n").stderr


@pytest.mark.parametrize("domain", ["mail/example-com", "default/example-org"])
def test_doveconf_accepts_dovecot_conf(example_files: dict[str, Path], domain: str) -> None:
    doveconf = _need("doveconf")
    result = _run(doveconf, "-c", str(example_files[f"{domain}-dovecot"] / "dovecot.conf"), "-n")
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr
    assert "ssl = required" in result.stdout
    conf = str(example_files[f"{domain}-dovecot"] / "dovecot.conf")
    assert _run(doveconf, "-c", conf, "-h", "disable_plaintext_auth").stdout.strip() == "yes"
    for folder in ("Drafts", "Sent", "Junk", "Trash"):
        assert f"mailbox {folder} {{" in result.stdout


def test_old_junk_and_trash_expire_in_user_sessions_but_not_on_each_delivery(
    example_files: dict[str, Path],
) -> None:
    """Dovecot's own view per protocol: IMAP and POP3 sessions autoexpunge Junk and Trash, LMTP
    deliveries do not (the agent's daily sweep covers mailboxes nobody logs in to), and the
    folders keep their special use and subscription under LMTP too."""
    doveconf = _need("doveconf")
    conf = str(example_files["mail/example-com-dovecot"] / "dovecot.conf")

    def folders(protocol: str) -> dict[str, dict[str, str]]:
        result = _run(doveconf, "-c", conf, "-f", f"protocol={protocol}", "-a")
        assert result.returncode == 0, result.stderr
        found: dict[str, dict[str, str]] = {}
        current: dict[str, str] | None = None
        for line in result.stdout.splitlines():
            text = line.strip()
            if text.startswith("mailbox ") and text.endswith("{"):
                current = found.setdefault(text.split()[1], {})
            elif text == "}":
                current = None
            elif current is not None and " = " in text:
                key, value = text.split(" = ", 1)
                current[key] = value
        return found

    days = dict(layout.EXPUNGE_AFTER_DAYS)
    for protocol in ("imap", "pop3"):
        seen = folders(protocol)
        for folder, age in days.items():
            assert seen[folder]["autoexpunge"] == f"{age} days", (protocol, folder)
        assert seen["Sent"]["autoexpunge"] == "0"
    lmtp = folders("lmtp")
    for folder in days:
        assert lmtp[folder]["autoexpunge"] == "0"
        assert lmtp[folder]["special_use"] == f"\\{folder}"
        assert lmtp[folder]["auto"] == "subscribe"


def test_doveconf_detects_a_broken_file(example_files: dict[str, Path], tmp_path: Path) -> None:
    doveconf = _need("doveconf")
    conf = tmp_path / "dovecot.conf"
    conf.write_text(
        (example_files["mail/example-com-dovecot"] / "dovecot.conf").read_text() + "bogus = 1\n"
    )
    assert _run(doveconf, "-c", str(conf), "-n").returncode != 0


def test_rspamd_accepts_local_d(example_files: dict[str, Path], tmp_path: Path) -> None:
    rspamadm = _need("rspamadm")
    local = tmp_path / "rspamd"
    shutil.copytree(example_files["mail/example-com-rspamd"], local / "local.d")
    dkim = example_files["mail/example-com-dkim"]
    signing = local / "local.d" / "dkim_signing.conf"
    signing.write_text(signing.read_text().replace(layout.DKIM_DIR, str(dkim)))
    for sub in ("db", "run"):
        (tmp_path / sub).mkdir()
    variables = [
        f"--var=LOCAL_CONFDIR={local}",
        f"--var=DBDIR={tmp_path / 'db'}",
        f"--var=RUNDIR={tmp_path / 'run'}",
    ]
    result = _run(rspamadm, *variables, "configtest", "-s")
    assert result.returncode == 0 and "syntax OK" in result.stdout, result.stdout + result.stderr
    dump = _run(rspamadm, *variables, "configdump", "actions")
    assert "reject = 15" in dump.stdout and "add_header = 6" in dump.stdout
    # The modules this stack cannot use are switched off by configuration (so never loaded),
    # not left to load and then disable themselves for want of Redis.
    states = _run(rspamadm, *variables, "configdump", "--modules-state").stdout
    state = {
        line.split(":", 1)[0]: {m.strip() for m in line.split(":", 1)[1].split(",") if m.strip()}
        for line in states.splitlines()
        if line.startswith("Modules ")
    }
    assert set(UNUSED_MODULES) <= state["Modules disabled (explicitly)"], states
    assert not set(UNUSED_MODULES) & state["Modules enabled"]
    assert state["Modules disabled (no Redis)"] == set(), states
    assert {"dkim", "dkim_signing", "spf", "dmarc", "rbl", "milter_headers"} <= state[
        "Modules enabled"
    ]


def test_sieve_scripts_compile(example_files: dict[str, Path], tmp_path: Path) -> None:
    sievec = _need("sievec")
    conf = tmp_path / "sievec.conf"
    conf.write_text(f"base_dir = {tmp_path}/run\n")
    scripts = list(example_files["mail/example-com-sieve"].iterdir())
    scripts.append(example_files["mail/example-com-dovecot"] / "spam-to-junk.sieve")
    assert len(scripts) == 2
    for script in scripts:
        result = _run(sievec, "-c", str(conf), str(script), str(tmp_path / "out.svbin"))
        assert result.returncode == 0, f"{script.name}: {result.stdout}{result.stderr}"


@pytest.mark.parametrize("domain", ["mail/example-com", "default/example-org"])
def test_postfix_and_dovecot_read_the_tls_profile(
    example_files: dict[str, Path], domain: str, tmp_path: Path
) -> None:
    """The daemons' own reading of the rendered files: Mozilla's intermediate suites and curves
    on the server side, no server order, TLS 1.3 only towards the MDA's tunnel."""
    postconf = _need("postconf")
    config = _postfix_copy(example_files[f"{domain}-postfix"], tmp_path)
    names = [
        "smtpd_tls_protocols",
        "smtpd_tls_mandatory_protocols",
        "smtpd_tls_ciphers",
        "smtpd_tls_mandatory_ciphers",
        "tls_high_cipherlist",
        "tls_eecdh_auto_curves",
        "tls_preempt_cipherlist",
        "lmtp_tls_mandatory_protocols",
    ]
    result = _run(postconf, "-c", str(config), "-h", *names)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert dict(zip(names, result.stdout.splitlines(), strict=True)) == {
        "smtpd_tls_protocols": ">=TLSv1.2",
        "smtpd_tls_mandatory_protocols": ">=TLSv1.2",
        "smtpd_tls_ciphers": "high",
        "smtpd_tls_mandatory_ciphers": "high",
        "tls_high_cipherlist": ":".join(tls_profile.TLS12_CIPHERS),
        "tls_eecdh_auto_curves": " ".join(tls_profile.CURVES),
        "tls_preempt_cipherlist": "no",
        "lmtp_tls_mandatory_protocols": ">=TLSv1.3",
    }
    doveconf = _need("doveconf")
    conf = str(example_files[f"{domain}-dovecot"] / "dovecot.conf")
    settings = [
        "ssl_min_protocol",
        "ssl_cipher_list",
        "ssl_curve_list",
        "ssl_prefer_server_ciphers",
    ]
    dovecot = _run(doveconf, "-c", conf, "-h", *settings)
    assert dovecot.returncode == 0 and dovecot.stderr == "", dovecot.stderr
    assert dovecot.stdout.splitlines() == [
        "TLSv1.2",
        ":".join(tls_profile.TLS12_CIPHERS),
        ":".join(tls_profile.CURVES),
        "no",
    ]
