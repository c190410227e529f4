"""The command line: `mailstack render` and `mailstack dns plan` on the examples and bad input.

Most runs call ``mailstack.commands.main.main`` in-process; one runs the real
``python -m mailstack`` to see what a user sees (exit code, streams, no traceback). Rendering
hashes passwords with bcrypt, so the examples are rendered as few times as possible
(module-scoped fixtures).
"""

from __future__ import annotations

import contextlib
import io
import re
import stat
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from mailstack.commands.main import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
KINDS = {
    "ServiceAccount",
    "ConfigMap",
    "Secret",
    "Service",
    "StatefulSet",
    "NetworkPolicy",
    "PodDisruptionBudget",
}
DOMAINS = {("mail", "example-com"), ("default", "example-org")}
# examples/shared: a MailServer rendered as a stack, and its domains' own Secrets
SERVER = ("mail-platform", "shared")
JOINED = {("tenant-a", "acme"), ("tenant-b", "globex"), ("tenant-c", "initech")}


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str


Arg = str | Path


def cli(args: Sequence[Arg]) -> Run:
    """Run ``main`` in-process with its own captured streams (usable from any fixture scope)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return Run(code, out.getvalue(), err.getvalue())


def run_captured(capsys: pytest.CaptureFixture[str], args: Sequence[Arg]) -> Run:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return Run(code, captured.out, captured.err)


def documents(text: str) -> list[dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(text) if d is not None]
    assert all(isinstance(d, dict) for d in docs)
    return docs


def kinds_by_instance(docs: list[dict[str, Any]]) -> dict[tuple[str, str], set[str]]:
    """(namespace, MailDomain name) → kinds of the objects rendered for it."""
    result: dict[tuple[str, str], set[str]] = {}
    for doc in docs:
        labels = doc["metadata"].get("labels", {})
        instance = labels.get("app.kubernetes.io/instance") or doc["metadata"]["name"]
        key = (doc["metadata"]["namespace"], _domain_name_of(instance))
        result.setdefault(key, set()).add(doc["kind"])
    return result


def _domain_name_of(name: str) -> str:
    for _, domain in (*DOMAINS, SERVER, *JOINED):
        if name == domain or name.startswith(domain + "-"):
            return domain
    return name


def files_under(root: Path) -> dict[str, bytes]:
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


# --- render on the examples ---------------------------------------------------------------------


@dataclass(frozen=True)
class StateRender:
    state: Path
    first: Run
    second: Run


@pytest.fixture(scope="module")
def state_render(tmp_path_factory: pytest.TempPathFactory) -> StateRender:
    state = tmp_path_factory.mktemp("cli") / "state"
    first = cli(["render", "-f", EXAMPLES, "--state", state])
    second = cli(["render", "-f", EXAMPLES, "--state", state])
    return StateRender(state, first, second)


def test_render_examples_prints_every_kind_for_both_domains(
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = run_captured(capsys, ["render", "-f", f"{EXAMPLES}/"])
    assert run.code == 0, run.err
    assert run.err == ""
    assert run.out.startswith("---\n")
    docs = documents(run.out)
    assert run.out.count("---\n") >= len(docs)
    by_instance = kinds_by_instance(docs)
    assert set(by_instance) == DOMAINS | {SERVER} | JOINED
    for key in (*DOMAINS, SERVER):
        assert by_instance[key] == KINDS, key
    for key in JOINED:
        assert by_instance[key] == {"Secret"}, key
    names = {(d["metadata"]["namespace"], d["kind"], d["metadata"]["name"]) for d in docs}
    assert len(names) == len(docs), "an object is rendered twice"
    for ns, name in DOMAINS:
        for expected in (
            ("StatefulSet", f"{name}-mta"),
            ("StatefulSet", f"{name}-mda"),
            ("Service", name),
            ("Secret", f"{name}-dkim"),
            ("Secret", f"{name}-users"),
            ("Secret", f"{name}-tls"),
        ):
            assert (ns, *expected) in names


def test_render_with_state_is_byte_identical(state_render: StateRender) -> None:
    assert state_render.first.code == 0, state_render.first.err
    assert state_render.second.code == 0, state_render.second.err
    assert state_render.first.out
    assert state_render.first.out == state_render.second.out
    assert state_render.second.err == ""


def test_state_dir_layout(state_render: StateRender) -> None:
    state = state_render.state
    ca = (state / "ca.crt").read_text()
    # one CA per MailDomain (2 stacks, 3 on the server) and the server's own
    assert ca.count("-----BEGIN CERTIFICATE-----") == 6
    zone = (state / "records.zone").read_text()
    assert "mail2026._domainkey.example.com." in zone
    assert "mailstack._domainkey.example.org." in zone
    dkim = state / "secrets" / "mail" / "example-com-dkim"
    assert sorted(p.name for p in dkim.iterdir()) == ["mail2026.key", "mail2026.txt"]
    assert (dkim / "mail2026.txt").read_text().startswith("v=DKIM1; k=rsa; p=")
    assert (state / "secrets" / "default" / "example-org-dkim" / "mailstack.key").is_file()
    for folder in ("example-com-users", "example-com-tls", "example-com-ca"):
        assert (state / "secrets" / "mail" / folder).is_dir()
    assert stat.S_IMODE((dkim / "mail2026.key").stat().st_mode) == 0o600
    assert stat.S_IMODE(state.stat().st_mode) == 0o700


def test_state_dir_unchanged_by_a_second_render(state_render: StateRender, tmp_path: Path) -> None:
    before = files_under(state_render.state)
    run = cli(["render", "-f", EXAMPLES, "--state", state_render.state, "-o", tmp_path / "out"])
    assert run.code == 0, run.err
    assert files_under(state_render.state) == before


def test_output_dir_holds_one_file_per_object(state_render: StateRender, tmp_path: Path) -> None:
    out = tmp_path / "objects"
    run = cli(["render", "-f", EXAMPLES, "--state", state_render.state, "-o", out])
    assert run.code == 0, run.err
    assert run.out == ""
    docs = documents(state_render.first.out)
    written = files_under(out)
    expected = {
        f"{d['metadata']['namespace']}/{d['kind'].lower()}-{d['metadata']['name']}.yaml": d
        for d in docs
    }
    assert set(written) == set(expected)
    namespaces = {ns for ns, _ in (*DOMAINS, SERVER, *JOINED)}
    assert {name.split("/")[0] for name in written} == namespaces
    for name, data in written.items():
        assert documents(data.decode()) == [expected[name]], name
    # The files, in render order, are exactly the stdout stream of the same state.
    assert b"".join(written[name] for name in expected) == state_render.first.out.encode()


def test_output_dir_with_same_names_in_two_namespaces(tmp_path: Path) -> None:
    source = tmp_path / "two.yaml"
    source.write_text(
        "".join(
            f"---\napiVersion: mailstack.dev/v1alpha1\nkind: MailDomain\n"
            f"metadata: {{name: ex, namespace: {ns}}}\nspec: {{domain: {domain}}}\n"
            for ns, domain in (("a", "example.com"), ("b", "example.org"))
        )
    )
    out = tmp_path / "out"
    run = cli(["render", "-f", source, "-o", out])
    assert run.code == 0, run.err
    assert (out / "a" / "statefulset-ex-mta.yaml").is_file()
    assert (out / "b" / "statefulset-ex-mta.yaml").is_file()


def test_one_domain_claimed_in_two_namespaces_renders_nothing(tmp_path: Path) -> None:
    # Two tenants' files for the same domain: one mail service per domain, cluster-wide.
    for ns in ("tenant-a", "tenant-b"):
        (tmp_path / f"{ns}.yaml").write_text(
            "apiVersion: mailstack.dev/v1alpha1\nkind: MailDomain\n"
            f"metadata: {{name: victim, namespace: {ns}}}\nspec: {{domain: victim.example}}\n"
        )
    out = tmp_path / "out"
    run = cli(["render", "-f", tmp_path / "tenant-a.yaml", "-f", tmp_path / "tenant-b.yaml"])
    assert run.code == 2 and run.out == ""
    assert "MailDomain/tenant-b/victim spec.domain: victim.example is already served by" in run.err
    assert "MailDomain/tenant-a/victim" in run.err
    assert not out.exists()


def test_render_with_cluster_networks_has_the_tripwire_and_refuses_exempting_them(
    tmp_path: Path,
) -> None:
    domain = (
        "apiVersion: mailstack.dev/v1alpha1\nkind: MailDomain\n"
        "metadata: {name: shop, namespace: mail}\nspec: {domain: shop.example%s}\n"
    )
    (tmp_path / "shop.yaml").write_text(domain % "")
    networks = '{"pods": ["10.244.0.0/16"]}'
    run = cli(["render", "-f", tmp_path / "shop.yaml", "--cluster-networks", networks])
    assert run.code == 0, run.err
    (postfix,) = [d for d in documents(run.out) if d["metadata"]["name"] == "shop-postfix"]
    assert "10.244.0.0/16 mailstack_masked_client" in postfix["data"]["cluster-clients.cidr"]
    exempt = ", limits: {perClient: {exemptNetworks: [10.244.8.0/24]}}"
    (tmp_path / "shop.yaml").write_text(domain % exempt)
    run = cli(["render", "-f", tmp_path / "shop.yaml", "--cluster-networks", networks])
    assert run.code == 2 and run.out == ""
    assert "spec.limits.perClient.exemptNetworks[0]: 10.244.8.0/24 overlaps" in run.err
    assert cli(["render", "-f", tmp_path / "shop.yaml"]).code == 0  # no ranges, no rule
    with pytest.raises(SystemExit):
        cli(["render", "-f", tmp_path / "shop.yaml", "--cluster-networks", '{"pods": ["x"]}'])


def test_render_via_subprocess() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mailstack", "render", "-f", "examples/"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    by_instance = kinds_by_instance(documents(proc.stdout))
    assert {key: by_instance[key] for key in DOMAINS} == dict.fromkeys(DOMAINS, KINDS)


# --- bad input ----------------------------------------------------------------------------------

MAILDOMAIN = """\
apiVersion: mailstack.dev/v1alpha1
kind: MailDomain
metadata: {name: example, namespace: mail}
spec: {domain: example.com}
"""
MAILBOX = """\
---
apiVersion: mailstack.dev/v1alpha1
kind: Mailbox
metadata: {name: alice, namespace: mail}
spec:
  address: alice@example.com
  passwordSecretRef: {name: alice-pw}
"""
SECRET_WITH_NEWLINE = """\
---
apiVersion: v1
kind: Secret
metadata: {name: alice-pw, namespace: mail, labels: {mailstack.dev/usable-by: mailboxes}}
stringData:
  password: "correct horse\\nbattery staple"
"""


@dataclass(frozen=True)
class BadCase:
    files: dict[str, str | None]  # name → content; None: do not create it
    culprit: str  # the file the message must name
    expected: tuple[str, ...]  # substrings of the problem line (document, field, message)


BAD_CASES = {
    "bad-domain": BadCase(
        {"domain.yaml": MAILDOMAIN.replace("example.com", "Example.COM")},
        "domain.yaml",
        ("MailDomain/mail/example", "spec.domain", "must be lowercase ('example.com')"),
    ),
    "missing-secret": BadCase(
        {"mail.yaml": MAILDOMAIN + MAILBOX},
        "mail.yaml",
        ("Mailbox/mail/alice", "spec.passwordSecretRef", "Secret alice-pw not found"),
    ),
    "password-newline": BadCase(
        {"mail.yaml": MAILDOMAIN + MAILBOX, "secret.yaml": SECRET_WITH_NEWLINE},
        "mail.yaml",
        (
            "Mailbox/mail/alice",
            "spec.passwordSecretRef",
            "Secret alice-pw key password: the password contains a newline",
        ),
    ),
    "invalid-yaml": BadCase(
        {"broken.yaml": "apiVersion: v1\nkind: [unclosed\n"},
        "broken.yaml",
        ("is not valid YAML", "line 3"),
    ),
    "nonexistent-file": BadCase({"missing.yaml": None}, "missing.yaml", ("cannot read",)),
    "no-maildomain": BadCase(
        {"empty.yaml": "# nothing here\n"}, "", ("no MailDomain found in the given files",)
    ),
}


def write_case(case: BadCase, folder: Path) -> list[Path]:
    paths = []
    for name, content in case.files.items():
        path = folder / name
        if content is not None:
            path.write_text(content)
        paths.append(path)
    return paths


def problem_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error: ")]


def assert_refused(run: Run) -> None:
    assert run.code == 2, (run.code, run.err)
    assert run.out == ""
    assert "Traceback" not in run.err
    assert problem_lines(run.err), run.err
    assert re.search(r"^\d+ problem\(s\); nothing was written$", run.err, re.M), run.err


@pytest.mark.parametrize("case", BAD_CASES.values(), ids=BAD_CASES.keys())
def test_render_refuses_bad_input_and_writes_nothing(case: BadCase, tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    paths = write_case(case, inputs)
    out, state = tmp_path / "out", tmp_path / "state"
    args: list[Arg] = ["render", "-o", out, "--state", state]
    for path in paths:
        args += ["-f", path]
    run = cli(args)
    assert_refused(run)
    assert any(all(part in line for part in case.expected) for line in problem_lines(run.err)), (
        run.err
    )
    assert not out.exists()
    assert not state.exists()


def test_render_into_existing_dirs_leaves_them_empty(tmp_path: Path) -> None:
    case = BAD_CASES["password-newline"]
    paths = write_case(case, tmp_path)
    out, state = tmp_path / "out", tmp_path / "state"
    out.mkdir()
    state.mkdir()
    run = cli(["render", "-f", paths[0], "-f", paths[1], "-o", out, "--state", state])
    assert_refused(run)
    assert list(out.iterdir()) == []
    assert list(state.iterdir()) == []


@pytest.mark.parametrize(
    "name",
    [
        "bad-domain",
        "missing-secret",
        "password-newline",
        "invalid-yaml",
        "nonexistent-file",
    ],
)
def test_problem_line_names_the_file(name: str, tmp_path: Path) -> None:
    case = BAD_CASES[name]
    paths = write_case(case, tmp_path)
    args: list[Arg] = ["render"]
    for path in paths:
        args += ["-f", path]
    run = cli(args)
    assert_refused(run)
    culprit = str(tmp_path / case.culprit)
    assert any(
        line.startswith(f"error: {culprit}") and all(part in line for part in case.expected)
        for line in problem_lines(run.err)
    ), run.err


def test_problem_of_a_later_document_names_file_and_position(tmp_path: Path) -> None:
    path = tmp_path / "mail.yaml"
    path.write_text(MAILDOMAIN + MAILBOX.replace("alice@example.com", "alice smith@example.com"))
    run = cli(["render", "-f", path])
    assert_refused(run)
    assert problem_lines(run.err)[0].startswith(
        f"error: {path}#2: Mailbox/mail/alice spec.address: address 'alice smith@example.com'"
    )


def test_every_problem_of_every_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(MAILDOMAIN.replace("example.com", "example"))
    (tmp_path / "b.yaml").write_text("kind: [\n")
    (tmp_path / "c.yaml").write_text(
        MAILDOMAIN.replace("name: example", "name: other").replace(
            "{domain: example.com}", "{domain: example.org, hostnme: x}"
        )
    )
    run = cli(["render", "-f", tmp_path])
    assert_refused(run)
    lines = problem_lines(run.err)
    assert len(lines) == 3, run.err
    assert f"{len(lines)} problem(s); nothing was written" in run.err
    assert any(str(tmp_path / "a.yaml") in line and "spec.domain" in line for line in lines)
    assert any(str(tmp_path / "b.yaml") in line and "not valid YAML" in line for line in lines)
    assert any(
        str(tmp_path / "c.yaml") in line and "MailDomain/mail/other spec.hostnme" in line
        for line in lines
    )


def test_bad_input_via_subprocess_has_no_traceback(tmp_path: Path) -> None:
    paths = write_case(BAD_CASES["password-newline"], tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "mailstack", "render", "-f", str(paths[0]), "-f", str(paths[1])],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    assert "Mailbox/mail/alice spec.passwordSecretRef" in proc.stderr
    assert "newline" in proc.stderr


def test_dns_plan_refuses_bad_input_and_writes_no_state(tmp_path: Path) -> None:
    paths = write_case(BAD_CASES["bad-domain"], tmp_path)
    state = tmp_path / "state"
    run = cli(["dns", "plan", "-f", paths[0], "--state", state])
    assert_refused(run)
    assert "spec.domain" in run.err
    assert not state.exists()


# --- dns plan -----------------------------------------------------------------------------------


def zone_records(text: str) -> list[tuple[str, int, str, str]]:
    """(name, ttl, type, rdata) of every record line of a zone; comments skipped."""
    records = []
    for line in text.splitlines():
        if not line or line.startswith(";"):
            continue
        name, ttl, klass, rtype, rdata = line.split(None, 4)
        assert klass == "IN"
        records.append((name, int(ttl), rtype, rdata))
    return records


def txt_value(rdata: str) -> str:
    """The text of a TXT record: its quoted character-strings joined."""
    return "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', rdata))


@pytest.fixture(scope="module")
def dns_plans(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Run, Run]:
    state = tmp_path_factory.mktemp("dns") / "state"
    args: list[Arg] = ["dns", "plan", "-f", EXAMPLES / "example.com", "--state", state]
    return state, cli(args), cli(args)


def test_dns_plan_prints_the_records(dns_plans: tuple[Path, Run, Run]) -> None:
    _, run, _ = dns_plans
    assert run.code == 0, run.err
    assert "note: without --state" not in run.err
    records = zone_records(run.out)
    by_type: dict[str, list[tuple[str, str]]] = {}
    for name, ttl, rtype, rdata in records:
        assert ttl == 3600
        by_type.setdefault(rtype, []).append((name, rdata))
    assert by_type["MX"] == [("example.com.", "10 mail.example.com.")]
    assert ("mail.example.com.", "192.0.2.10") in by_type["A"]
    assert ("mail.example.com.", "2001:db8::10") in by_type["AAAA"]
    txt = {name: txt_value(rdata) for name, rdata in by_type["TXT"]}
    assert txt["example.com."].startswith("v=spf1 ")
    assert txt["example.com."].endswith(" -all")
    assert txt["mail2026._domainkey.example.com."].startswith("v=DKIM1; k=rsa; p=")
    assert txt["_dmarc.example.com."].startswith("v=DMARC1; p=quarantine")
    srv = {name: rdata for name, rdata in by_type["SRV"]}
    # priority weight port target (RFC 2782); priorities rank TLS variants first (RFC 8314)
    assert srv["_submission._tcp.example.com."].split()[2:] == ["587", "mail.example.com."]
    assert srv["_imaps._tcp.example.com."].split()[2:] == ["993", "mail.example.com."]
    assert "_submissions._tcp.example.com." in srv
    assert all(name.endswith("example.com.") for name, _, _, _ in records)


def test_dns_plan_dkim_key_is_the_stored_one_and_stable(
    dns_plans: tuple[Path, Run, Run],
) -> None:
    state, first, second = dns_plans
    assert first.code == 0 and second.code == 0, (first.err, second.err)

    def dkim(run: Run) -> str:
        for name, _, rtype, rdata in zone_records(run.out):
            if rtype == "TXT" and name == "mail2026._domainkey.example.com.":
                return txt_value(rdata)
        raise AssertionError("no DKIM record in:\n" + run.out)

    stored = (state / "secrets" / "mail" / "example-com-dkim" / "mail2026.txt").read_text()
    assert dkim(first) == stored.strip()
    assert dkim(second) == dkim(first)
    assert first.out == second.out
    assert (state / "records.zone").read_text() == first.out.split("\n", 1)[1]


def test_dns_plan_without_state_says_the_key_is_new(capsys: pytest.CaptureFixture[str]) -> None:
    run = run_captured(capsys, ["dns", "plan", "-f", EXAMPLES / "example.com"])
    assert run.code == 0, run.err
    assert "note: without --state a new DKIM key was generated" in run.err
    assert "mail2026._domainkey.example.com." in run.out


def test_the_agent_runs_without_the_rest_of_the_package() -> None:
    """`mailstack agent` lives beside every daemon: it must not load render/dns/material code,
    nor the standard modules it does not need (argparse, dataclasses, pathlib, typing, and
    subprocess, hashlib, threading, socketserver, shutil: see mailstack.agent.processes; socket,
    signal and the enum, selectors and collections they import: see mailstack.agent.health)."""
    probe = (
        "import sys\n"
        "import mailstack.agent.supervisor as supervisor\n"
        "import mailstack.agent.health, mailstack.agent.processes, mailstack.agent.watch\n"
        "supervisor.main = lambda name, port: print('RUN', name, port) or 0\n"
        "from mailstack.entry import main\n"
        "assert main(['agent', 'dovecot', '--health-port', '9103']) == 0\n"
        "print(' '.join(sorted(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    ran, loaded_line = result.stdout.splitlines()
    assert ran == "RUN dovecot 9103"
    loaded = set(loaded_line.split())
    heavy = {
        "jinja2",
        "yaml",
        "cryptography",
        "dns",
        "bcrypt",
        "mailstack.commands",
        "mailstack.api",
    }
    heavy |= {"argparse", "dataclasses", "pathlib", "typing"}
    heavy |= {"subprocess", "hashlib", "threading", "socketserver", "shutil"}
    heavy |= {"socket", "signal", "enum", "selectors", "collections"}
    assert not heavy & loaded, heavy & loaded


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["nosuchdaemon"], "invalid choice: 'nosuchdaemon'"),
        (["postfix", "--health-port", "x"], "invalid int value: 'x'"),
        (["postfix", "--verbose"], "unrecognized arguments: --verbose"),
    ],
)
def test_agent_argument_mistakes_get_argparse_messages(argv: list[str], message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mailstack", "agent", *argv], capture_output=True, text=True
    )
    assert result.returncode == 2 and message in result.stderr, result.stderr
