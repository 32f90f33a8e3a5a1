#!/usr/bin/env bash
# Offline checks of the SAM stack in infra/ (no AWS account needed):
#   1. cfn-lint infra/template.yaml                      (0 errors, 0 warnings)
#   2. sam validate --lint, and sam validate             (SAM CLI: its cfn-lint pass and the
#                                                        SAM transform of Globals and events)
#   3. checkov -d infra                                  (0 failed; skips justified in Metadata)
#   4. infra/tests/extract_policies.py -> parliament     (every IAM policy document; findings
#                                                        above LOW need a reason in
#                                                        infra/tests/parliament-allowlist.yaml)
#   5. infra/tests/cloudsplaining_check.py               (cloudsplaining on the roles, the
#                                                        boundary, the deny-all and the baseline
#                                                        group; every finding needs a reason in
#                                                        infra/tests/cloudsplaining-allowlist.yaml,
#                                                        and none may be an escalation through
#                                                        the boundary)
#   6. pytest infra/tests                                (least-privilege assertions, evaluated)
# Creates its virtualenvs on first use: .venv-infra/ (cfn-lint, parliament, cloudsplaining,
# aws-sam-cli, pytest, PyYAML) and .venv-checkov/ (checkov alone: it pins an old boto3).
# Runs all of them, prints each tool's summary line, exits non-zero if any failed.
# Runnable from any directory.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PYTHON="${PYTHON:-python3}"
export PYTHONDONTWRITEBYTECODE=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

# Pinned so that a new linter release cannot break the build unannounced. aws-sam-cli
# accepts this cfn-lint (pip check passes), so one venv holds them all.
INFRA_REQS=(cfn-lint==1.58.0 parliament==1.6.4 cloudsplaining==0.9.1 policy_sentry==0.15.2
            aws-sam-cli==1.170.0 pytest==9.2.0 PyYAML==6.0.4)
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
is_failed() { [[ " ${failed[*]-} " == *" $1 "* ]]; }

# 1. cfn-lint: silent on success, so the summary line is ours.
step cfn-lint .venv-infra/bin/cfn-lint infra/template.yaml
if is_failed cfn-lint; then
    n_err=$(grep -cE '^E[0-9]{4}' "$log/cfn-lint.out" || true)
    n_warn=$(grep -cE '^W[0-9]{4}' "$log/cfn-lint.out" || true)
    summary+=("cfn-lint: infra/template.yaml: $n_err errors, $n_warn warnings")
else
    summary+=("cfn-lint: infra/template.yaml: 0 errors, 0 warnings")
fi

# 2. SAM CLI. It needs a region and looks for credentials; dummy ones keep it offline
# (validate calls no AWS API for this template), telemetry off.
sam_env=(env SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=us-east-1 AWS_ACCESS_KEY_ID=offline
         AWS_SECRET_ACCESS_KEY=offline AWS_EC2_METADATA_DISABLED=true)
step sam-validate-lint "${sam_env[@]}" .venv-infra/bin/sam validate --lint --template-file infra/template.yaml
summary+=("sam validate --lint: $(grep -m1 -E 'valid SAM Template|Error' "$log/sam-validate-lint.out" | sed "s|$ROOT/||" || echo 'no summary line')")
step sam-validate "${sam_env[@]}" .venv-infra/bin/sam validate --template-file infra/template.yaml
summary+=("sam validate: $(grep -m1 -oE 'is a valid SAM Template|Error.*' "$log/sam-validate.out" || echo 'no summary line')")

# 3. checkov (BC_SKIP_MAPPING: no download of the platform's mapping, we are offline).
step checkov env BC_SKIP_MAPPING=TRUE .venv-checkov/bin/checkov -d infra --quiet --compact
summary+=("checkov: $(grep -m1 -E 'Passed checks: [0-9]+' "$log/checkov.out" || echo 'no summary line')")
# checkov exits 0 when it found nothing to scan: make sure the template was scanned.
if ! grep -qE 'Passed checks: [1-9]' "$log/checkov.out"; then
    is_failed checkov || failed+=("checkov")
fi

# 4. parliament on every policy document of the template.
step parliament .venv-infra/bin/python infra/tests/extract_policies.py
summary+=("$(grep -m1 -E '^parliament: [0-9]+ policy documents' "$log/parliament.out" || echo 'parliament: no summary line')")

# 5. cloudsplaining on the identity policies.
step cloudsplaining .venv-infra/bin/python infra/tests/cloudsplaining_check.py
summary+=("$(grep -m1 -E '^cloudsplaining: [0-9]+ policies' "$log/cloudsplaining.out" || echo 'cloudsplaining: no summary line')")

# 6. pytest (no cache dir in the repo).
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
