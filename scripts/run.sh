#!/usr/bin/env bash
# The main job on the example: render the complete object set of examples/ (keys and certificates
# kept in ./state, objects written to ./out) and show the DNS records to publish.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup.sh"
cd "$ROOT"

MAILSTACK="$ROOT/.venv/bin/mailstack"
rm -rf out
"$MAILSTACK" render -f examples/ --state state -o out
echo ">> rendered $(find out -name '*.yaml' | wc -l) objects into out/ (one file per object):"
find out -name '*.yaml' | sort | sed 's/^/   /'
echo ">> DNS records for the example domains (also in state/records.zone):"
"$MAILSTACK" dns plan -f examples/ --state state
echo ">> the internal CA that clients must trust: state/ca.crt"
