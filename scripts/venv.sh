#!/usr/bin/env bash
# Creates (once) the project's Python venvs:
#  - .venv: the local AWS emulator (moto), cargo-lambda and jsonschema (the event
#    schema test, scripts/check-docs.sh);
#  - .venv-ministack: ministack, a second, independent emulator (tests/ministack.rs),
#    kept apart because it pins its own botocore.
# Idempotent: a venv that already has what it needs is left alone; one that lacks
# anything gets it (pip leaves what is already installed as it is).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
if ! { [ -x "$venv/bin/moto_server" ] && [ -x "$venv/bin/cargo-lambda" ] \
  && "$venv/bin/python" -c 'import jsonschema' 2>/dev/null; }; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    'moto[server]==5.2.5' 'cargo-lambda>=1.8,<2' 'jsonschema>=4.18,<5'
fi
ms="$root/.venv-ministack"
if [ ! -x "$ms/bin/ministack" ]; then
  python3 -m venv "$ms"
  "$ms/bin/pip" install --quiet --disable-pip-version-check 'ministack==1.5.33'
fi
