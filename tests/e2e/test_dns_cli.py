"""``mailstack dns plan|apply|check`` end to end: the example domain pushed to a real BIND with
TSIG, read back with ``dig``, checked, and the failure modes seen by a user (exit code, one line).
"""

from __future__ import annotations

import contextlib
import io
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from mailstack.commands.main import main
from mailstack.dns.records import canonical_value, desired_records, txt_value_from_text
from mailstack.pipeline import prepare
from mailstack.statedir import StateDir
from tests.e2e.dnsservers import Bind, bind_server, free_port, require

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "example.com"
FOREIGN = '@ IN TXT "google-site-verification=abc123"\nwww IN A 192.0.2.80\n'


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str


def cli(*args: object) -> Run:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return Run(code, out.getvalue(), err.getvalue())


def example_for(directory: Path, server: Bind, secret: str | None = None) -> Path:
    """examples/example.com with an rfc2136 provider pointing at ``server`` and a TSIG Secret."""
    directory.mkdir(parents=True, exist_ok=True)
    for path in EXAMPLE.glob("*.yaml"):
        shutil.copy(path, directory / path.name)
    domain_file = directory / "maildomain.yaml"
    doc = yaml.safe_load(domain_file.read_text())
    doc["spec"]["dns"]["provider"] = {
        "rfc2136": {
            "server": "127.0.0.1",
            "port": server.port,
            "tsigKeyName": server.key_name,
            "tsigSecretRef": {"name": "dns-tsig", "key": "secret"},
        }
    }
    domain_file.write_text(yaml.safe_dump(doc))
    tsig = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "dns-tsig",
            "namespace": "mail",
            "labels": {"mailstack.dev/usable-by": "maildomains"},
        },
        "stringData": {"secret": secret or server.secret},
    }
    (directory / "dns-tsig.yaml").write_text(yaml.safe_dump(tsig))
    return directory


@pytest.fixture
def bind(tmp_path: Path) -> Iterator[Bind]:
    with bind_server(tmp_path / "named", "example.com", FOREIGN) as server:
        yield server


def dig(server: Bind, name: str, rtype: str) -> list[str]:
    binary = require("dig")
    proc = subprocess.run(
        [binary, "+short", "+norec", "@127.0.0.1", "-p", str(server.port), name, rtype],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    return [line for line in proc.stdout.splitlines() if line]


def test_apply_publishes_what_dig_reads_back_and_check_agrees(bind: Bind, tmp_path: Path) -> None:
    files = example_for(tmp_path / "in", bind)
    state = tmp_path / "state"

    plan = cli("dns", "plan", "-f", files, "--state", state)
    assert plan.code == 0, plan.err
    assert "; rfc2136 zone example.com at 127.0.0.1:" in plan.out
    assert "0 to delete" in plan.out and "0 in conflict" in plan.out

    first = cli("dns", "apply", "-f", files, "--state", state)
    assert first.code == 0, first.err
    assert first.err == ""

    prepared = prepare([files], StateDir(state))
    [(service, material)] = prepared.services
    records = desired_records(service.domain, material.dkim)
    assert len(records) == 16  # with TLS-RPT, MTA-STS and the ManageSieve SRV
    for record in records:
        answer = dig(bind, record.name, record.type)
        if record.type == "TXT":
            values = [txt_value_from_text(line) for line in answer]
            assert [v for v in values if record.owns_value(v)] == list(record.values), record
        else:
            assert sorted(canonical_value(record.type, a) for a in answer) == sorted(
                record.values
            ), record
    assert '"google-site-verification=abc123"' in dig(bind, "example.com", "TXT")
    assert dig(bind, "www.example.com", "A") == ["192.0.2.80"]

    second = cli("dns", "apply", "-f", files, "--state", state)
    assert second.code == 0, second.err
    assert "; applied 0 change(s)" in second.out and "in 0 write request(s)" in second.out

    check = cli(
        "dns", "check", "example.com", "--server", f"127.0.0.1:{bind.port}",
        "-f", files, "--state", state, "--no-follow",
    )  # fmt: skip
    assert check.code == 0, check.out + check.err
    assert "; 16 of 16 records right" in check.out
    found = cli(
        "dns", "check", "example.com", "--server", f"127.0.0.1:{bind.port}",
        "--selector", "mail2026", "--no-follow",
    )  # fmt: skip
    assert found.code == 0, found.out + found.err
    assert "!!" not in found.out


def test_check_before_apply_reports_missing_records(bind: Bind, tmp_path: Path) -> None:
    files = example_for(tmp_path / "in", bind)
    run = cli(
        "dns", "check", "example.com", "--server", f"127.0.0.1:{bind.port}",
        "-f", files, "--state", tmp_path / "state", "--no-follow",
    )  # fmt: skip
    assert run.code == 1
    assert "!! missing   example.com. MX" in run.out
    assert run.err.count("\n") == 1 and run.err.startswith("error: 16 record(s) of example.com")


def test_conflict_exits_3_with_one_line(tmp_path: Path) -> None:
    theirs = FOREIGN + '_dmarc IN TXT "v=DMARC1; p=none"\n'
    with bind_server(tmp_path / "named", "example.com", theirs) as server:
        files = example_for(tmp_path / "in", server)
        run = cli("dns", "apply", "-f", files, "--state", tmp_path / "state")
        assert run.code == 3
        assert run.err.count("\n") == 1
        assert run.err.startswith("error: conflict: _dmarc.example.com TXT: held by records")
        assert "! conflict _dmarc.example.com. TXT" in run.out
        assert dig(server, "_dmarc.example.com", "TXT") == ['"v=DMARC1; p=none"']
        assert dig(server, "example.com", "MX") == ["10 mail.example.com."]


def test_refused_tsig_and_unreachable_server_exit_1_with_one_line(
    bind: Bind, tmp_path: Path
) -> None:
    files = example_for(tmp_path / "bad", bind, secret="A" * 43 + "=")
    run = cli("dns", "apply", "-f", files, "--state", tmp_path / "state")
    assert run.code == 1
    assert run.err.count("\n") == 1 and "TSIG BADSIG" in run.err
    assert run.err.startswith("error: reading zone example.com: 127.0.0.1:")
    assert dig(bind, "example.com", "MX") == []

    closed = Bind(
        tmp_path,
        "example.com",
        free_port(),
        "mailstack",
        "hmac-sha256",
        bind.secret,
        "",
        bind.process,
    )
    files = example_for(tmp_path / "down", closed)
    run = cli("dns", "apply", "-f", files, "--state", tmp_path / "state")
    assert run.code == 1
    assert run.err.count("\n") == 1 and "cannot reach 127.0.0.1:" in run.err


def test_apply_without_state_or_dkim_secret_is_refused(bind: Bind, tmp_path: Path) -> None:
    files = example_for(tmp_path / "in", bind)
    run = cli("dns", "apply", "-f", files)
    assert run.code == 2
    assert "newly generated DKIM key" in run.err
    assert dig(bind, "example.com", "MX") == []


def test_manual_provider_apply_prints_the_zone(tmp_path: Path) -> None:
    run = cli("dns", "apply", "-f", EXAMPLE, "--state", tmp_path / "state")
    assert run.code == 0, run.err
    assert "example.com.\t3600\tIN\tMX\t10 mail.example.com." in run.out
    assert "provider manual: nothing was pushed" in run.err
