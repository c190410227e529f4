#!/usr/bin/env bash
# Run one benchmark: ./scripts/bench.sh mailpath|delivery|operator_load|images [its options; --help lists them]
# Installs what is needed (as the test command does), then runs `python bench/NAME.py`. The mail
# benchmarks start the stack with `mailstack up` and need root. Figures: docs/benchmarks.md.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
name="${1:-}"
if [ -z "$name" ] || [ ! -f "$ROOT/bench/$name.py" ]; then
  echo "usage: $0 NAME [OPTIONS]   NAME: $(cd "$ROOT/bench" && ls [a-z]*.py | sed 's/\.py$//' | tr '\n' ' ')" >&2
  exit 2
fi
shift
source "$ROOT/scripts/setup.sh"
cd "$ROOT"
exec .venv/bin/python "bench/$name.py" "$@"
