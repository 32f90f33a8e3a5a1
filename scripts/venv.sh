#!/usr/bin/env bash
# Creates (once) the project's Python venv with the local AWS emulator (moto) and
# cargo-lambda. Idempotent: a venv that already has both is left alone.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
if [ -x "$venv/bin/moto_server" ] && [ -x "$venv/bin/cargo-lambda" ]; then
  exit 0
fi
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check \
  'moto[server]==5.2.5' 'cargo-lambda>=1.8,<2'
