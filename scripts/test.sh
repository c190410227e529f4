#!/usr/bin/env bash
# The whole test suite: lint, format check, type check, the import contracts (the layers of
# docs/architecture.md, in pyproject.toml), then every test. With arguments, pytest gets them.
# Without, the mail tests (real daemons: mostly waiting on them) run beside the others in a
# second pytest: the suite spends most of its time waiting, not computing (9 of 22 minutes were
# CPU on two cores), and the two halves share nothing but the machine.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup.sh"
cd "$ROOT"

echo ">> ruff check";        .venv/bin/ruff check operator tests bench
echo ">> ruff format";       .venv/bin/ruff format --check operator tests bench
echo ">> mypy";              .venv/bin/mypy
echo ">> import contracts";  .venv/bin/lint-imports --no-cache
if [ "$#" -gt 0 ]; then
    echo ">> pytest";        exec .venv/bin/pytest "$@"
fi
MAIL_LOG="$(mktemp)"
trap 'rm -f "$MAIL_LOG"' EXIT
echo ">> pytest tests/mail (beside the rest; its output follows theirs)"
.venv/bin/pytest tests/mail >"$MAIL_LOG" 2>&1 &
MAIL_PID=$!
# Every other folder of tests (a new one is not left out).
mapfile -t OTHERS < <(find tests -mindepth 2 -maxdepth 2 -name 'test_*.py' -not -path 'tests/mail/*' -printf '%h\n' | sort -u)
echo ">> pytest ${OTHERS[*]}"
rest=0
.venv/bin/pytest "${OTHERS[@]}" || rest=$?
mail=0
wait "$MAIL_PID" || mail=$?
echo ">> pytest tests/mail"
cat "$MAIL_LOG"
echo ">> pytest: ${OTHERS[*]} exit $rest; tests/mail exit $mail"
[ "$rest" -eq 0 ] && [ "$mail" -eq 0 ]
