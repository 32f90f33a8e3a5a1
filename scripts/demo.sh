#!/usr/bin/env bash
# The whole function on this machine, through the real Lambda protocol:
# moto (local IAM, Secrets Manager, SES) + `cargo lambda watch` + `cargo lambda invoke`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/venv.sh
export PATH="$root/.venv/bin:$PATH"

moto_port="${MOTO_PORT:-5077}"
invoke_port="${INVOKE_PORT:-9077}"
endpoint="http://127.0.0.1:$moto_port"
logs="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "starting moto on $endpoint"
moto_server -H 127.0.0.1 -p "$moto_port" >"$logs/moto.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -sf "$endpoint/moto-api/" >/dev/null && break; sleep 0.1; done
python scripts/moto_seed.py "$endpoint" it@example.com

step "building the function (debug)"
cargo build --bin bootstrap

step "starting the function under cargo lambda watch (port $invoke_port)"
rules='{"default":{"groups":["staff"],"console":true,"access_key":false},"departments":{"engineering":{"groups":["developers","staff"],"console":true,"access_key":true},"sales":{"groups":["sales"],"console":true,"access_key":false}}}'
AWS_ENDPOINT_URL="$endpoint" AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test \
SENDER_EMAIL=it@example.com PROVISIONING_RULES="$rules" \
  cargo lambda watch --invoke-port "$invoke_port" --ignore-changes >"$logs/function.log" 2>&1 &
pids+=($!)
for _ in $(seq 300); do
  (echo >"/dev/tcp/127.0.0.1/$invoke_port") 2>/dev/null && break; sleep 0.2
done

# The samples' occurred_at would expire (older than MAX_EVENT_AGE_DAYS is rejected):
# each file is sent as a copy stamped with the current time by stamp_event.py, in
# sending order (a repeated event_id keeps its first stamp, so the duplicate stays
# a duplicate; the leaver is later than the joiner, the rehire later still).
stamps="$logs/stamps.json"
invoke() {
  step "invoke: $1"
  local stamped="$logs/stamped-$1"
  "$root/.venv/bin/python" scripts/stamp_event.py --state "$stamps" "events/$1" "$stamped"
  cargo lambda invoke bootstrap --invoke-port "$invoke_port" --data-file "$stamped" -o json
  echo
  sleep 0.3
  echo "audit:"
  grep '"audit":true' "$logs/function.log" | tail -n "$2" | python -c '
import json, sys
for line in sys.stdin:
    start = line.find("{")
    a = json.loads(line[start:])
    print("  ", a["message_id"], a["outcome"], a.get("user_name"), a["actions"], a.get("reason", ""))'
}

invoke joiner-engineering.json 1
invoke joiner-sales.json 1
invoke joiner-duplicate.json 1
invoke invalid.json 2

step "what AWS holds now"
python scripts/moto_show.py "$endpoint" jane.doe sam.sales

invoke leaver.json 1
step "after the leaver (LEAVER_ACTION=disable)"
python scripts/moto_show.py "$endpoint" jane.doe

invoke rehire.json 1
step "after the rehire"
python scripts/moto_show.py "$endpoint" jane.doe

step "done (function log: $logs/function.log)"
