"""``mailstack render`` on a MailDomain refused for an error of its own: its Mailboxes add no
errors that point away from the cause (#14 re-check R4)."""

from __future__ import annotations

import contextlib
import dataclasses
import io
from pathlib import Path

from mailstack.api.errors import Problem
from mailstack.api.models import Secret
from mailstack.api.secret_access import MAILBOXES as MAILBOXES_KIND
from mailstack.api.secret_access import SECRET_NOT_FOUND, refusal_problem
from mailstack.commands.main import main
from mailstack.pipeline import without_refused_secrets

DOMAIN = """\
apiVersion: mailstack.dev/v1alpha1
kind: MailDomain
metadata: {name: example, namespace: mail}
spec:
  domain: example.com
  service:
    type: LoadBalancer
"""
MAILBOXES = """\
apiVersion: mailstack.dev/v1alpha1
kind: Mailbox
metadata: {name: alice, namespace: mail}
spec: {address: alice@example.com, passwordSecretRef: {name: alice-pw}}
---
apiVersion: mailstack.dev/v1alpha1
kind: Mailbox
metadata: {name: bob, namespace: mail}
spec: {address: bob@example.com, passwordSecretRef: {name: bob-pw}}
"""


def errors_of(folder: Path) -> list[str]:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main(["render", "-f", str(folder)])
    assert code == 2, err.getvalue()
    return [line for line in err.getvalue().splitlines() if line.startswith("error: ")]


def test_a_domain_file_with_a_duplicate_key_gives_one_error(tmp_path: Path) -> None:
    (tmp_path / "maildomain.yaml").write_text(DOMAIN + "  service:\n    exposure: ProxyProtocol\n")
    (tmp_path / "mailboxes.yaml").write_text(MAILBOXES)
    (line,) = errors_of(tmp_path)
    assert "line 8: key 'service' is defined twice (first on line 6)" in line


def test_a_domain_refused_for_a_bad_field_gives_only_its_own_error(tmp_path: Path) -> None:
    (tmp_path / "maildomain.yaml").write_text(DOMAIN.replace("domain: ", "hostnme: x\n  domain: "))
    (tmp_path / "mailboxes.yaml").write_text(MAILBOXES)
    (line,) = errors_of(tmp_path)
    assert "MailDomain/mail/example spec.hostnme" in line


def test_a_file_that_does_not_parse_is_named_as_a_possible_cause(tmp_path: Path) -> None:
    (tmp_path / "maildomain.yaml").write_text("kind: MailDomain\nspec: {domain: [\n")
    (tmp_path / "mailboxes.yaml").write_text(MAILBOXES)
    lines = errors_of(tmp_path)
    assert len(lines) == 3, lines
    unserved = [line for line in lines if "no MailDomain in namespace mail serves" in line]
    assert len(unserved) == 2, lines
    assert all(f"unless it is in {tmp_path / 'maildomain.yaml'}" in line for line in unserved)


def test_a_mailbox_without_any_domain_still_says_so(tmp_path: Path) -> None:
    (tmp_path / "maildomain.yaml").write_text(DOMAIN.replace("example.com", "example.org"))
    (tmp_path / "mailboxes.yaml").write_text(MAILBOXES)
    lines = errors_of(tmp_path)
    assert len(lines) == 2, lines
    assert all("no MailDomain in namespace mail serves the domain example.com" in x for x in lines)
    assert not any("unless" in line for line in lines)


SECRETS = """\
apiVersion: v1
kind: Secret
metadata:
  name: alice-pw
  namespace: mail
  labels: {mailstack.dev/usable-by: mailboxes}
stringData:
  password: one-two-three
  password: four-five-six
---
apiVersion: v1
kind: Secret
metadata:
  name: bob-pw
  namespace: mail
  labels: {mailstack.dev/usable-by: mailboxes}
stringData: {password: three-little-pigs}
"""


def test_a_secret_file_with_a_duplicate_key_gives_one_error(tmp_path: Path) -> None:
    """The second #14 check (N1): the Mailboxes of a Secret file refused for a duplicate key
    each got "Secret ... not found" with advice to label it, pointing away from the cause."""
    (tmp_path / "maildomain.yaml").write_text(DOMAIN)
    (tmp_path / "mailboxes.yaml").write_text(MAILBOXES)
    (tmp_path / "secrets.yaml").write_text(SECRETS)
    (line,) = errors_of(tmp_path)
    assert "line 9: key 'password' is defined twice (first on line 8)" in line


def test_a_secret_missing_from_the_files_is_still_reported(tmp_path: Path) -> None:
    (tmp_path / "maildomain.yaml").write_text(DOMAIN)
    (tmp_path / "mailboxes.yaml").write_text(MAILBOXES)
    (tmp_path / "secrets.yaml").write_text(SECRETS.split("---\n")[1])
    (line,) = errors_of(tmp_path)
    assert "Secret alice-pw not found" in line


def test_refused_secrets_are_told_apart_by_their_kind_not_their_words() -> None:
    """``pipeline`` drops the "not found" errors about a Secret refused for a file error by the
    problem's kind and subject: a reworded message is still dropped, and another problem that
    happens to read like one is kept."""
    marked = {"kind": SECRET_NOT_FOUND, "subject": "alice-pw"}
    reworded = Problem("Mailbox/mail/alice", "p", "no such Secret", **marked)
    lookalike = Problem("Mailbox/mail/bob", "p", "Secret alice-pw not found (a look-alike)")
    other = dataclasses.replace(reworded, subject="bob-pw")
    kept = without_refused_secrets([reworded, lookalike, other], {"alice-pw"})
    assert kept == [lookalike, other]


def test_a_missing_secret_is_marked_with_its_name() -> None:
    """What the filter reads is what ``secret_access`` marks: absent, not merely unlabelled."""
    missing = refusal_problem({}, "alice-pw", MAILBOXES_KIND, "Mailbox/mail/alice", "p")
    assert missing is not None
    assert (missing.kind, missing.subject) == (SECRET_NOT_FOUND, "alice-pw")
    unlabelled = Secret(name="alice-pw", namespace="mail")
    refused = refusal_problem({"alice-pw": unlabelled}, "alice-pw", MAILBOXES_KIND, "d", "p")
    assert refused is not None and refused.kind != SECRET_NOT_FOUND
