#!/usr/bin/env bash
# The whole test suite: lint, format check, type check, the import contracts (the layers of
# docs/architecture.md, in pyproject.toml), then every test.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup.sh"
cd "$ROOT"

echo ">> ruff check";        .venv/bin/ruff check operator tests bench
echo ">> ruff format";       .venv/bin/ruff format --check operator tests bench
echo ">> mypy";              .venv/bin/mypy
echo ">> import contracts";  .venv/bin/lint-imports --no-cache
echo ">> pytest";            .venv/bin/pytest "$@"
