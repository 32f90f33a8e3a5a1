#!/usr/bin/env bash
# The whole function on this machine, through the real Lambda protocol: moto (local
# IAM, Secrets Manager, SES), the Lambda Runtime API of `cargo lambda watch`, the
# function's debug binary, and `cargo lambda invoke` for each sample in events/.
#
# After each step it prints the batch answer, the audit line(s) exactly as the
# function wrote them, what that step changed in AWS (never a secret's value), the
# mails that step sent, and one line saying what the step shows. Then a summary.
# stdout is the same on every run (see scripts/moto_show.py); build output and
# progress go to stderr.
#
# Needs cargo and python3; installs moto and cargo-lambda into .venv/ (scripts/venv.sh).
# Environment: MOTO_PORT, INVOKE_PORT (default: free ports), DEMO_DIR (default
# target/demo: the function's log and the stamped events, kept after the run).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
started=$SECONDS
bash scripts/venv.sh >&2
export PATH="$root/.venv/bin:$PATH"
py="$root/.venv/bin/python"

bold() { if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then printf '\033[1m%s\033[0m\n' "$*"; else printf '%s\n' "$*"; fi; }

read -r free1 free2 < <("$py" -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*(x.getsockname()[1] for x in s))')
moto_port="${MOTO_PORT:-$free1}"
invoke_port="${INVOKE_PORT:-$free2}"
endpoint="http://127.0.0.1:$moto_port"
dir="${DEMO_DIR:-$root/target/demo}"
rm -rf "$dir" && mkdir -p "$dir"

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

bold "== local AWS: moto (IAM, Secrets Manager, SES)"
echo "   moto on $endpoint, runtime API on 127.0.0.1:$invoke_port, logs in $dir" >&2
# One request at a time, so the output is the same on every run (moto_seed.py).
"$py" scripts/moto_seed.py --serve "$moto_port" >"$dir/moto.log" 2>&1 &
pids+=($!)
"$py" - "$endpoint" <<'EOF'
import sys, time, urllib.request
for _ in range(300):
    try:
        urllib.request.urlopen(sys.argv[1] + "/moto-api/", timeout=1)
        break
    except OSError:
        time.sleep(0.1)
else:
    sys.exit("moto did not start: see moto.log")
EOF
"$py" scripts/moto_seed.py "$endpoint" it@example.com | sed "s|$endpoint|moto|; s/^/   /"

bold "== the function (debug build; the first build takes several minutes)"
cargo build --bin bootstrap --bin hr-iam-audit >&2

# The Runtime API alone (--only-lambda-apis) and the binary started here, not by
# `cargo lambda watch`: watch would start the function with
# AWS_LAMBDA_MAX_CONCURRENCY set (its --concurrency, default 1), and the Lambda
# runtime warns about any value of that variable unless it is built with its
# `concurrency-tokio` feature, which this function does not use (one record at a
# time per instance, concurrency inside the batch). In AWS the variable is unset
# unless Lambda Managed Instances are used.
cargo lambda watch --only-lambda-apis --invoke-address 127.0.0.1 --invoke-port "$invoke_port" \
  >"$dir/runtime-api.log" 2>&1 &
pids+=($!)
"$py" - "$invoke_port" <<'EOF'
import socket, sys, time
for _ in range(300):
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()
        break
    except OSError:
        time.sleep(0.1)
else:
    sys.exit("the runtime API did not start: see runtime-api.log")
EOF
rules='{"default":{"groups":["staff"],"console":true,"access_key":false},"departments":{"engineering":{"groups":["developers","staff"],"console":true,"access_key":true},"sales":{"groups":["sales"],"console":true,"access_key":false}}}'
echo "   PROVISIONING_RULES=$rules"
echo "   LEAVER_ACTION=disable (default), SENDER_EMAIL=it@example.com, account alias acme-demo"
# Effective dates: schedules in group hr-provisioner deliver to the HR queue. A lead of a
# week, so that a hire starting next week falls due now and the demo can deliver it.
sched_env=(SCHEDULE_TARGET_ARN=arn:aws:sqs:us-east-1:123456789012:hr-events.fifo
           SCHEDULER_ROLE_ARN=arn:aws:iam::123456789012:role/hr-scheduler PROVISION_LEAD=P7D)
echo "   ${sched_env[*]}"
env -u AWS_LAMBDA_MAX_CONCURRENCY -u AWS_PROFILE -u AWS_SESSION_TOKEN -u AWS_DEFAULT_REGION \
  AWS_LAMBDA_RUNTIME_API="http://127.0.0.1:$invoke_port/.rt" AWS_LAMBDA_FUNCTION_NAME=_ \
  AWS_LAMBDA_FUNCTION_VERSION=1 AWS_LAMBDA_FUNCTION_MEMORY_SIZE=256 \
  AWS_ENDPOINT_URL="$endpoint" AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test \
  SENDER_EMAIL=it@example.com PROVISIONING_RULES="$rules" RUST_LOG=info "${sched_env[@]}" \
  target/debug/bootstrap >"$dir/function.log" 2>&1 &
pids+=($!)

echo
echo "Each step: the records sent (events/ stamped with the current time: a sample's own"
echo "date would be outside the time window), the answer to SQS, the audit line(s) as the"
echo "function wrote them, what changed in AWS (secrets: field names and tags, never values),"
echo "the mails sent by this step. <key-N>, <tN>: ids and times that differ from run to run."

step() {
  "$py" scripts/moto_show.py step --dir "$dir" --endpoint "$endpoint" --invoke-port "$invoke_port" \
    --why "$2" "events/$1"
}

step joiner-engineering.json \
  "A joiner: the user is created tagged hr:welcome=owed:<event> (a mail is due); its password and key are stored in the secret before the login profile exists; the mail is sent, then TagUser records hr:welcome=sent:<event>."
step joiner-sales.json \
  "No username in the event: the user name is the email's local part, lower-cased (Sam.Sales -> sam.sales). The sales rule gives console only, so the secret holds no key."
step joiner-duplicate.json \
  "The same HR event again (same event_id, a new SQS message): already in effect, so the duplicate changes nothing and sends no second mail."
step invalid.json \
  "Two bad records: both rejected, nothing changed, and both listed in batchItemFailures on purpose, so SQS retries them up to the receive limit and then moves them to the dead-letter queue where someone sees them."
step mover.json \
  "A mover (engineering -> sales): sales added, developers and staff removed (other rules grant them, sales does not); console and password kept; the access key deleted and removed from the secret with its key tags; no mail."
step leaver.json \
  "A leaver: cut off first (status retired and the deny-all policy in one stage), then stripped of console and groups; the secret is emptied before deletion so no stale credential survives a restore, and stays recoverable for 30 days."
step rehire.json \
  "The rehire tags the user twice: once to claim it and clear the retired status (hr:welcome=owed:), once to record the welcome mail (sent:). The deny-all goes, the secret is restored and refilled with fresh credentials."

fire() {
  "$py" scripts/moto_show.py fire --dir "$dir" --endpoint "$endpoint" --invoke-port "$invoke_port" \
    --why "$2" "$1"
}
step joiner-future-start.json \
  "A hire entered today who starts next week (start_date 7 days and 2 minutes ahead), with PROVISION_LEAD=P7D: scheduled. Nothing in IAM, Secrets Manager or SES; one one-time schedule, hr-start-E1003, that delivers this joiner at start_date - PROVISION_LEAD to the HR queue (message group E1003), deleted by Scheduler after it ran."
fire hr-start-E1003 \
  "moto never fires schedules, so the demo delivers the schedule's stored input itself, as Scheduler does when it falls due: the joiner is applied (its age counts from its due time), the user gets hr:start-date, and the schedule, done, is deleted."
step contractor.json \
  "A contractor whose end_date is 2 minutes ahead: the joiner is applied now, and an end schedule, hr-end-E1004, will deliver a leaver built from the record (its own event_id, occurred_at = end_date)."
fire hr-end-E1004 \
  "The end date arrives: the scheduled leaver retires the contractor like any leaver (cut off, stripped, secret emptied and scheduled for deletion)."

"$py" scripts/moto_show.py summary --dir "$dir" --endpoint "$endpoint"

# The security team's view: what AWS holds against HR and the rules, from read-only
# calls (authorization details, credential report, secrets listed with their tags).
audit() {
  if env AWS_ENDPOINT_URL="$endpoint" AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=test \
    AWS_SECRET_ACCESS_KEY=test PROVISIONING_RULES="$rules" \
    target/debug/hr-iam-audit --format csv 2>/dev/null; then
    echo "exit 0: clean"
  else
    echo "exit $?"
  fi
}
echo
bold "== 12. the audit of what the demo made (hr-iam-audit --format csv: one finding a row)"
echo "   Every managed user matches its rule and every key is the stored one: no finding, exit 0."
audit | sed 's/^/   /'
echo
bold "== 13. one change by hand, then the audit again"
echo "   Someone adds sam.sales to developers by hand: the audit reports it (extra-grant), exit 1."
"$py" - "$endpoint" <<'EOF'
import sys, boto3
boto3.client("iam", endpoint_url=sys.argv[1], region_name="us-east-1", aws_access_key_id="test",
             aws_secret_access_key="test").add_user_to_group(UserName="sam.sales", GroupName="developers")
EOF
audit | sed 's/^/   /'
echo "   function log: ${dir#"$root"/}/function.log"
echo "demo took $((SECONDS - started)) s" >&2
