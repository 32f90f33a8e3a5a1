#!/usr/bin/env bash
# Every test: unit tests, moto integration tests, and the offline infra linters.
# Installs what it needs (Python venvs) itself. Called by .ci/run.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/venv.sh
export MOTO_SERVER="$root/.venv/bin/moto_server"
cargo test --locked --all-targets 2>&1
if [ -x scripts/check-infra.sh ]; then
  bash scripts/check-infra.sh
fi
