#!/usr/bin/env bash
# The documentation checks: docs/event.schema.json is a valid JSON Schema and every
# sample in events/ agrees with it (tests/docs). Installs what it needs into .venv/.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/venv.sh
if ! .venv/bin/python -c 'import pytest' 2>/dev/null; then
  .venv/bin/pip install --quiet --disable-pip-version-check 'pytest>=8,<10'
fi
.venv/bin/python -m pytest tests/docs -q -p no:cacheprovider
