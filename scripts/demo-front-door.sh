#!/usr/bin/env bash
# The front door on this machine (docs/contract.md section 10): moto, the
# provisioner and the front door behind Lambda Runtime API emulators, the front
# door served over HTTP as a function URL would (scripts/front_door_local.py),
# and three requests through it to the provisioner:
#   1. a signed webhook joiner (the README's signing recipe),
#   2. a SCIM create (Entra's shape, with the enterprise extension),
#   3. a SCIM PATCH active "False" (Entra's disable: a leaver),
# each followed by what IAM then holds; then a forged webhook and a wrong SCIM
# token (refused, nothing enqueued), and the front door's audit lines.
#
# Needs cargo and python3; installs moto into .venv/ (scripts/venv.sh).
# Environment: MOTO_PORT, FRONT_DOOR_PORT (default: free ports), DEMO_DIR
# (default target/demo-front-door: logs, kept after the run).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/venv.sh >&2
export PATH="$root/.venv/bin:$PATH"
py="$root/.venv/bin/python"

read -r free1 free2 < <("$py" -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*(x.getsockname()[1] for x in s))')
moto_port="${MOTO_PORT:-$free1}"
fd_port="${FRONT_DOOR_PORT:-$free2}"
endpoint="http://127.0.0.1:$moto_port"
dir="${DEMO_DIR:-$root/target/demo-front-door}"
rm -rf "$dir" && mkdir -p "$dir"

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

echo "== local AWS: moto on $endpoint"
"$py" scripts/moto_seed.py --serve "$moto_port" >"$dir/moto.log" 2>&1 &
pids+=($!)
"$py" scripts/moto_seed.py "$endpoint" it@example.com | sed "s|$endpoint|moto|; s/^/   /"

echo "== the provisioner and the front door (debug build; the first takes minutes)"
cargo build --bin bootstrap --bin front-door >&2
"$py" scripts/front_door_local.py --endpoint "$endpoint" --port "$fd_port" --dir "$dir" --sync \
  2>"$dir/local.log" &
pids+=($!)
for _ in $(seq 300); do [ -f "$dir/ready" ] && break; sleep 0.1; done
[ -f "$dir/ready" ] || { cat "$dir/local.log" >&2; exit 1; }
echo "   front door on http://127.0.0.1:$fd_port: POST /events (signed webhook), /scim/v2 (SCIM)"

FRONT_DOOR_URL="http://127.0.0.1:$fd_port" KEYS="$dir/keys.json" ENDPOINT="$endpoint" "$py" - <<'EOF'
import datetime as dt, hashlib, hmac, json, os, subprocess, sys, time, urllib.request, uuid

url, keys = os.environ["FRONT_DOOR_URL"], json.load(open(os.environ["KEYS"]))

def call(method, path, body=None, headers=None):
    data = body if isinstance(body, bytes) else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url + path, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()

def show(*users):
    out = subprocess.run([sys.executable, "scripts/moto_show.py", os.environ["ENDPOINT"], *users],
                         capture_output=True, text=True).stdout
    print("   IAM now:")
    print("".join("     " + line + "\n" for line in out.splitlines()))

def signed(body: bytes, key: str) -> dict:
    # The README's recipe: HMAC-SHA256 over "<t>.<body>", hex.
    t = str(int(time.time()))
    sig = hmac.new(key.encode(), t.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "X-Hr-Signature": f"t={t},v1={sig}"}

now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
print("== 1. a signed webhook: an HR system's joiner (engineering)")
event = json.dumps({"event_id": str(uuid.uuid4()), "event_type": "employee.joined",
                    "occurred_at": now.isoformat().replace("+00:00", "Z"),
                    "employee": {"employee_id": "E2001", "email": "wh.jones@example.com",
                                 "first_name": "Wes", "last_name": "Jones", "department": "engineering"}}).encode()
status, answer = call("POST", "/events", event, signed(event, keys["webhook"]))
print(f"   POST /events -> {status} {answer}")
show("wh.jones")

scim = {"Authorization": "Bearer " + keys["scim_token"], "Content-Type": "application/scim+json"}
print("== 2. SCIM create (Entra's shape): a joiner in sales, manager = the webhook's user")
user = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User",
                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
        "externalId": "E2002", "userName": "Ada.Lovelace@example.com", "active": True,
        "emails": [{"primary": True, "type": "work", "value": "ada.lovelace@example.com"}],
        "name": {"givenName": "Ada", "familyName": "Lovelace"},
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
            "department": "sales", "manager": {"value": "wh.jones"}}}
status, answer = call("POST", "/scim/v2/Users", user, scim)
print(f"   POST /scim/v2/Users -> {status}")
print(f"   {answer}")
show("ada.lovelace@example.com")

print("== 3. SCIM PATCH active \"False\" (Entra's disable): a leaver")
patch = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
         "Operations": [{"op": "Replace", "path": "active", "value": "False"}]}
status, answer = call("PATCH", "/scim/v2/Users/ada.lovelace@example.com", patch, scim)
print(f"   PATCH /scim/v2/Users/ada.lovelace@example.com -> {status}")
show("ada.lovelace@example.com")
status, answer = call("GET", '/scim/v2/Users?filter=userName%20eq%20%22Ada.Lovelace%40example.com%22', None, scim)
print(f"   GET /scim/v2/Users?filter=userName eq \"Ada.Lovelace@example.com\" -> {status}: "
      f"active = {json.loads(answer)['Resources'][0]['active']}")

print("== 4. refused: a forged webhook and a wrong SCIM token (nothing enqueued)")
status, answer = call("POST", "/events", event, signed(event, "not-the-key-0123456789abcdef0123"))
print(f"   POST /events (wrong key) -> {status} {answer}")
status, answer = call("GET", "/scim/v2/Users", None, {"Authorization": "Bearer nope"})
print(f"   GET /scim/v2/Users (wrong token) -> {status} {answer}")
EOF

echo "== the front door's audit lines (one per request; ids only, no names or emails)"
grep '"front_door":true' "$dir/front-door.log" | "$py" -c '
import json, sys
for line in sys.stdin:
    a = json.loads(line)
    keep = {k: a[k] for k in ("who", "method", "route", "status", "outcome", "reason", "event_type",
                              "employee_id", "user_name") if k in a}
    print("   " + json.dumps(keep))'
echo "   logs: ${dir#"$root"/}/front-door.log, provisioner.log"
