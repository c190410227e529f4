"""Load MailDomain, MailServer, Mailbox, Secret and MailDomainPolicy documents from YAML files
and folders.

Folders are read recursively (``*.yaml``, ``*.yml``) in sorted order. Documents of other kinds
are skipped, so an examples folder may also hold, say, a kustomization. Everything is parsed
before anything is returned: the caller gets all models and all problems at once. A mapping
that names a key twice is refused, as kubectl refuses it: YAML would keep the last one silently,
and a user who pastes a documented block beside an existing key would lose the first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mailstack.api import models as m
from mailstack.api.errors import Problem, ValidationError
from mailstack.api.parse import parse_mailbox, parse_maildomain, parse_secret
from mailstack.api.parse.server import parse_mailserver
from mailstack.api.policy import KIND as POLICY_KIND
from mailstack.api.policy import MailDomainPolicy, parse_policy
from mailstack.api.server_models import KIND as SERVER_KIND
from mailstack.api.server_models import MailServer
from mailstack.kubedoc import meta_of


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A mapping names ``key`` twice: on ``first_line`` and again on ``line`` (1-based)."""

    def __init__(self, key: Any, first: yaml.Mark, again: yaml.Mark, mapping: yaml.Mark) -> None:
        super().__init__(
            "while constructing a mapping",
            mapping,
            f"found duplicate key {key!r} (first on line {first.line + 1})",
            again,
        )
        self.key = key
        self.first_line = first.line + 1
        self.line = again.line + 1


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses a key named twice in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # "<<": SafeLoader merges it later
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node.start_mark)
            except TypeError:  # an unhashable key: SafeLoader's own error says so
                break
            if first is not key_node.start_mark:
                raise DuplicateKeyError(key, first, key_node.start_mark, node.start_mark)
        return super().construct_mapping(node, deep=deep)


@dataclass
class Inputs:
    domains: list[m.MailDomain] = field(default_factory=list)
    servers: list[MailServer] = field(default_factory=list)
    mailboxes: list[m.Mailbox] = field(default_factory=list)
    secrets: list[m.Secret] = field(default_factory=list)
    policies: list[MailDomainPolicy] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    # "Kind/namespace/name" -> the file (and position) it came from
    sources: dict[str, str] = field(default_factory=dict)
    # (namespace, domain) of the MailDomains refused with a problem of their own (a document
    # that did not parse, or in a file that did not): their Mailboxes add no error of their own.
    refused_domains: set[tuple[str, str]] = field(default_factory=set)
    # Files that could not be read at all: any MailDomain may have been in them.
    unreadable: list[str] = field(default_factory=list)
    # (namespace, name) of the Secrets in a file refused for a duplicate key: whatever names
    # them gets no "not found" error that points away from the cause.
    refused_secrets: set[tuple[str, str]] = field(default_factory=set)

    def secrets_in(self, namespace: str) -> dict[str, m.Secret]:
        return {s.name: s for s in self.secrets if s.namespace == namespace}


def yaml_files(paths: Iterable[str | Path]) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files += sorted(
                p for p in path.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file()
            )
        else:
            files.append(path)
    return files


def parse_documents(
    documents: Iterable[tuple[str, Any]], default_namespace: str = "default"
) -> Inputs:
    """Parse (source, document) pairs; problems are collected, never raised."""
    inputs = Inputs()
    seen: dict[tuple[str, str, str], str] = {}
    for source, doc in documents:
        if doc is None:
            continue
        if not isinstance(doc, Mapping):
            inputs.problems.append(
                Problem("document", "", "expected a mapping (a Kubernetes object)", source)
            )
            continue
        kind = doc.get("kind")
        if kind not in ("MailDomain", SERVER_KIND, "Mailbox", "Secret", POLICY_KIND):
            continue
        meta = meta_of(doc)
        namespace = "" if kind == POLICY_KIND else meta.get("namespace") or default_namespace
        key = (str(kind), str(namespace), str(meta.get("name")))
        if key in seen:
            inputs.problems.append(
                Problem(
                    f"{key[0]}/{key[1]}/{key[2]}",
                    "metadata.name",
                    f"defined twice (also in {seen[key]})",
                    source,
                )
            )
            continue
        seen[key] = source
        inputs.sources[f"{key[0]}/{key[1]}/{key[2]}"] = source
        try:
            if kind == "MailDomain":
                inputs.domains.append(parse_maildomain(doc, source, default_namespace))
            elif kind == SERVER_KIND:
                inputs.servers.append(parse_mailserver(doc, source, default_namespace))
            elif kind == "Mailbox":
                inputs.mailboxes.append(parse_mailbox(doc, source, default_namespace))
            elif kind == POLICY_KIND:
                inputs.policies.append(parse_policy(doc, source))
            else:
                inputs.secrets.append(parse_secret(doc, source, default_namespace))
        except ValidationError as err:
            inputs.problems.extend(err.problems)
            if kind == "MailDomain":
                inputs.refused_domains |= _served(doc, default_namespace)
    return inputs


def _served(doc: Any, default_namespace: str) -> set[tuple[str, str]]:
    """(namespace, domain) of a MailDomain document that was refused, read as far as it goes."""
    if not isinstance(doc, Mapping) or doc.get("kind") != "MailDomain":
        return set()
    spec = doc.get("spec")
    domain = spec.get("domain") if isinstance(spec, Mapping) else None
    if not isinstance(domain, str):
        return set()
    namespace = meta_of(doc).get("namespace") or default_namespace
    return {(str(namespace), domain.strip().lower().rstrip("."))}


def _yaml_problem(err: yaml.YAMLError, path: Path) -> Problem:
    """A YAML error as one line that names the line at fault: ``file: line 8: ...``."""
    if isinstance(err, DuplicateKeyError):
        return Problem(
            f"line {err.line}",
            "",
            f"key {err.key!r} is defined twice (first on line {err.first_line})",
            str(path),
        )
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None)
    if mark is not None and problem:
        return Problem(f"line {mark.line + 1}", "", f"is not valid YAML: {problem}", str(path))
    return Problem("file", "", f"is not valid YAML: {err}".replace("\n", " "), str(path))


def _refused_in(
    text: str, default_namespace: str
) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """The MailDomains (namespace, domain) and Secrets (namespace, name) a file refused for a
    duplicate key would have held (YAML's own reading, which keeps the last value): errors of
    the Mailboxes on those domains, or of what names those Secrets, point away from the cause."""
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError:
        return set(), set()
    domains: set[tuple[str, str]] = set().union(*(_served(d, default_namespace) for d in docs))
    secrets = {
        (str(meta_of(d).get("namespace") or default_namespace), str(meta_of(d).get("name")))
        for d in docs
        if isinstance(d, Mapping) and d.get("kind") == "Secret"
    }
    return domains, secrets


def load_documents(paths: Iterable[str | Path], default_namespace: str = "default") -> Inputs:
    """Read and parse every document in the given files and folders."""
    pairs: list[tuple[str, Any]] = []
    problems: list[Problem] = []
    refused_domains: set[tuple[str, str]] = set()
    refused_secrets: set[tuple[str, str]] = set()
    unreadable: list[str] = []
    for path in yaml_files(paths):
        try:
            text = path.read_text(encoding="utf-8")
            for index, doc in enumerate(yaml.load_all(text, Loader=_UniqueKeyLoader)):
                pairs.append((f"{path}#{index + 1}" if index else str(path), doc))
        except OSError as err:
            problems.append(Problem("file", "", f"cannot read: {err.strerror}", str(path)))
            unreadable.append(str(path))
        except UnicodeDecodeError:
            problems.append(Problem("file", "", "is not UTF-8 text", str(path)))
            unreadable.append(str(path))
        except yaml.YAMLError as err:
            problems.append(_yaml_problem(err, path))
            refused, secrets = _refused_in(text, default_namespace)
            refused_domains |= refused
            refused_secrets |= secrets
            if not refused and not secrets:
                unreadable.append(str(path))
    inputs = parse_documents(pairs, default_namespace)
    inputs.problems[:0] = problems
    inputs.refused_domains |= refused_domains
    inputs.unreadable += unreadable
    inputs.refused_secrets |= refused_secrets
    return inputs
