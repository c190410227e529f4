#!/usr/bin/env bash
# The main job on the example: run the example.com mail stack on this host with `mailstack up`
# (the exact objects the operator would create, run as local pods), until Ctrl-C.
# Keys, certificates, mail and queues are kept in ./state for the next run.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup.sh"
cd "$ROOT"

exec "$ROOT/.venv/bin/mailstack" up -f examples/example.com --state state "$@"
