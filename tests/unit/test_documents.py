"""The document reader: what it refuses in a YAML file, and that the refusal names the place."""

from __future__ import annotations

from pathlib import Path

from mailstack.api.documents import load_documents

DOMAIN = """\
apiVersion: mailstack.dev/v1alpha1
kind: MailDomain
metadata: {name: example}
spec:
  domain: example.com
  service:
    type: LoadBalancer
"""


def test_a_key_named_twice_is_refused_with_both_lines(tmp_path: Path) -> None:
    """The #14 check: a user pasted the edge docs' ``service:`` block beside the example's own;
    YAML kept the last one and the stack came up without PROXY protocol, silently."""
    path = tmp_path / "domain.yaml"
    path.write_text(DOMAIN + "  service:\n    exposure: ProxyProtocol\n", encoding="utf-8")
    inputs = load_documents([path])
    assert inputs.domains == []
    (problem,) = inputs.problems
    assert "key 'service' is defined twice (first on line 6)" in problem.message
    assert problem.document == "line 8"


def test_the_same_key_in_sibling_mappings_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "domain.yaml"
    path.write_text(DOMAIN, encoding="utf-8")
    inputs = load_documents([path])
    assert inputs.problems == []
    assert [d.domain for d in inputs.domains] == ["example.com"]


def test_a_yaml_merge_key_still_merges(tmp_path: Path) -> None:
    path = tmp_path / "domain.yaml"
    path.write_text(
        "base: &base {type: LoadBalancer}\n---\n"
        + DOMAIN.replace(
            "  service:\n    type: LoadBalancer\n", "  service:\n    <<: {type: LoadBalancer}\n"
        ),
        encoding="utf-8",
    )
    inputs = load_documents([path])
    assert inputs.problems == []


def test_a_key_named_twice_reads_as_one_line_naming_file_and_lines(tmp_path: Path) -> None:
    """#14 re-check R4: PyYAML's own text, flattened, read as noise around the point."""
    path = tmp_path / "domain.yaml"
    path.write_text(DOMAIN + "  service:\n    exposure: ProxyProtocol\n", encoding="utf-8")
    (problem,) = load_documents([path]).problems
    assert str(problem) == f"{path}: line 8: key 'service' is defined twice (first on line 6)"


def test_a_syntax_error_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("kind: MailDomain\nspec: {domain: [\n", encoding="utf-8")
    (problem,) = load_documents([path]).problems
    assert str(problem).startswith(f"{path}: line 3: is not valid YAML: ")
    assert "unicode string" not in str(problem)
