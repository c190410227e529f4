"""The shape of the code, held by tests: small modules, each saying what it owns, no dangling
references (docs/architecture.md, "Layers"; the import contracts are in pyproject.toml).

A module over ``MAX_LINES`` is split along its seams, unless it is a table (data that reads best
in one place): such a module is listed in ``TABLES`` with the reason.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "operator" / "mailstack"
MAX_LINES = 400
TABLES: dict[str, str] = {}  # path under operator/mailstack → why it may be longer
MODULES = sorted(PACKAGE.rglob("*.py"))


def _name(path: Path) -> str:
    return str(path.relative_to(PACKAGE))


def test_every_module_reads_in_one_sitting() -> None:
    long = {
        _name(p): n
        for p in MODULES
        if (n := len(p.read_text().splitlines())) > MAX_LINES and _name(p) not in TABLES
    }
    assert not long, f"modules over {MAX_LINES} lines: split them along their seams: {long}"
    assert set(TABLES) <= {_name(p) for p in MODULES}, "TABLES names a module that is gone"


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_every_module_opens_with_what_it_owns(path: Path) -> None:
    docstring = ast.get_docstring(ast.parse(path.read_text()))
    assert docstring and len(docstring.split()) >= 4, f"{_name(path)}: no module docstring"


# The first design lived in a document outside the repository; its "design §N" references were
# unreadable for anyone with a clone. docs/architecture.md replaced it.
OUTSIDE_REFERENCES = re.compile(r"design §|\.\./shared/")
TEXT_SUFFIXES = {".py", ".md", ".j2", ".yaml", ".yml", ".toml", ".sh", ".tpl", ".txt", ".json"}


def test_nothing_refers_to_documents_outside_the_repository() -> None:
    found = []
    for folder in ("operator", "tests", "bench", "docs", "charts", "crds", "scripts", "images"):
        for path in (ROOT / folder).rglob("*"):
            if path.suffix in TEXT_SUFFIXES and path != Path(__file__).resolve():
                for number, line in enumerate(path.read_text().splitlines(), 1):
                    if OUTSIDE_REFERENCES.search(line):
                        found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    readme = (ROOT / "README.md").read_text()
    found += [f"README.md: {m}" for m in OUTSIDE_REFERENCES.findall(readme)]
    assert not found, "\n".join(found)
