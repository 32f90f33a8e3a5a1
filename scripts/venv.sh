#!/usr/bin/env bash
# Creates (once) the project's Python venv with the local AWS emulator (moto),
# cargo-lambda and jsonschema (the event schema test, scripts/check-docs.sh).
# Idempotent: a venv that already has all three is left alone; one that lacks any
# gets the missing ones (pip leaves what is already installed as it is).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
if [ -x "$venv/bin/moto_server" ] && [ -x "$venv/bin/cargo-lambda" ] \
  && "$venv/bin/python" -c 'import jsonschema' 2>/dev/null; then
  exit 0
fi
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check \
  'moto[server]==5.2.5' 'cargo-lambda>=1.8,<2' 'jsonschema>=4.18,<5'
