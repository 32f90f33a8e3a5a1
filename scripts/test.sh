#!/usr/bin/env bash
# Every test: unit tests, moto and ministack integration and SDK-mock tests, the
# fault-injection suite, the reduced load scenario, the docs (schema, README
# examples, demo) and the offline infra linters.
# Installs what it needs (Python venvs) itself. Called by .ci/run.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/venv.sh
# Headless Chromium for the access review's browser test (tests/review_html.rs).
bash scripts/chromium.sh
export MOTO_SERVER="$root/.venv/bin/moto_server"
cargo test --locked --all-targets 2>&1
# The function as a real process (Lambda Runtime API) under throttling, crashes,
# duplicates; and a leak scan. Ends with "N passed, M failed".
bash scripts/fault-suite.sh
# Acquisition day in small: K=3 instances, 30 joiners, IAM at 10 calls/s through a
# FIFO queue with its DLQ; fails on any record dead-lettered or applied twice.
bash scripts/load.sh --ci
# A SCIM client that is not ours (python-scim's scim2-client and scim2-tester)
# against the local front door over moto. Ends with "scim-check: ...".
bash scripts/test-front-door-scim.sh
# The event schema against every sample, the contract's links and lists.
bash scripts/check-docs.sh
# cfn-lint, checkov, parliament and the template tests.
bash scripts/check-infra.sh
