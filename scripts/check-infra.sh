#!/usr/bin/env bash
# Offline checks of the SAM stack in infra/ (no AWS account needed):
#   1. cfn-lint infra/template.yaml                      (0 errors, 0 warnings)
#   2. checkov -d infra                                  (0 failed; skips justified in Metadata)
#   3. infra/tests/extract_policies.py -> parliament     (every IAM policy document; findings
#                                                        above LOW need a reason in
#                                                        infra/tests/parliament-allowlist.yaml)
#   4. pytest infra/tests                                (least-privilege assertions)
# Creates its virtualenvs on first use: .venv-infra/ (cfn-lint, parliament, pytest, PyYAML)
# and .venv-checkov/ (checkov alone: it pins an old boto3). Runs all four, prints each
# tool's summary line, exits non-zero if any failed. Runnable from any directory.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PYTHON="${PYTHON:-python3}"
export PYTHONDONTWRITEBYTECODE=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

# Pinned so that a new linter release cannot break the build unannounced.
INFRA_REQS=(cfn-lint==1.58.0 parliament==1.6.4 pytest==9.2.0 PyYAML==6.0.4)
CHECKOV_REQS=(checkov==3.3.30)

ensure_venv() {
    local dir="$1"; shift
    local want="$*"
    if [[ -x "$dir/bin/python" && -f "$dir/.requirements" && "$(cat "$dir/.requirements")" == "$want" ]]; then
        return 0
    fi
    echo "check-infra: installing $want into $dir" >&2
    rm -rf "$dir"
    "$PYTHON" -m venv "$dir"
    "$dir/bin/python" -m pip install --quiet "$@" >&2
    printf '%s' "$want" >"$dir/.requirements"
}

ensure_venv .venv-infra "${INFRA_REQS[@]}"
ensure_venv .venv-checkov "${CHECKOV_REQS[@]}"

failed=()
summary=()
log="$(mktemp -d)"
trap 'rm -rf "$log"' EXIT

# Runs "$@", shows its output, records pass/fail under the name $1.
step() {
    local name="$1"; shift
    echo "=== $name: $*"
    local rc=0
    "$@" >"$log/$name.out" 2>&1 || rc=$?
    cat "$log/$name.out"
    if [[ $rc -ne 0 ]]; then
        failed+=("$name")
        echo "=== $name: FAILED (exit $rc)"
    fi
    return 0
}

# 1. cfn-lint: silent on success, so the summary line is ours.
step cfn-lint .venv-infra/bin/cfn-lint infra/template.yaml
if [[ " ${failed[*]-} " == *" cfn-lint "* ]]; then
    n_err=$(grep -cE '^E[0-9]{4}' "$log/cfn-lint.out" || true)
    n_warn=$(grep -cE '^W[0-9]{4}' "$log/cfn-lint.out" || true)
    summary+=("cfn-lint: infra/template.yaml: $n_err errors, $n_warn warnings")
else
    summary+=("cfn-lint: infra/template.yaml: 0 errors, 0 warnings")
fi

# 2. checkov (BC_SKIP_MAPPING: no download of the platform's mapping, we are offline).
step checkov env BC_SKIP_MAPPING=TRUE .venv-checkov/bin/checkov -d infra --quiet --compact
summary+=("checkov: $(grep -m1 -E 'Passed checks: [0-9]+' "$log/checkov.out" || echo 'no summary line')")
# checkov exits 0 when it found nothing to scan: make sure the template was scanned.
if ! grep -qE 'Passed checks: [1-9]' "$log/checkov.out"; then
    [[ " ${failed[*]-} " == *" checkov "* ]] || failed+=("checkov")
fi

# 3. parliament on every policy document of the template.
step parliament .venv-infra/bin/python infra/tests/extract_policies.py
summary+=("$(grep -m1 -E '^parliament: [0-9]+ policy documents' "$log/parliament.out" || echo 'parliament: no summary line')")

# 4. pytest (no cache dir in the repo).
step pytest .venv-infra/bin/python -m pytest -p no:cacheprovider infra/tests
summary+=("pytest: $(grep -E '^=+ .*(passed|failed|error).* =+$' "$log/pytest.out" | tail -n1 | tr -d '=' | sed 's/^ *//;s/ *$//')")

echo
echo "=== check-infra summary"
printf '%s\n' "${summary[@]}"
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "check-infra: FAILED: ${failed[*]}"
    exit 1
fi
echo "check-infra: all checks passed"
