#!/usr/bin/env bash
# Runs every example of README.md (tests/docs/test_readme.py): the event examples
# against the schema, the AWS CLI and boto3 send examples and the secret read against
# a local moto, the saved queries against infra/template.yaml, then the demo (twice:
# its output must not change) and the by-hand recipe, which build the function's
# debug binary if needed. DOCS_SKIP_SLOW=1 leaves those two out.
# scripts/check-docs.sh runs the same tests together with the schema tests.
# Installs what it needs into .venv/ (pytest; the AWS CLI on first use).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/venv.sh
if ! .venv/bin/python -c 'import pytest' 2>/dev/null; then
  .venv/bin/pip install --quiet --disable-pip-version-check 'pytest>=8,<10'
fi
.venv/bin/python -m pytest tests/docs/test_readme.py -q -p no:cacheprovider -rs "$@"
