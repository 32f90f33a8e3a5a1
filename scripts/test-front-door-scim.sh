#!/usr/bin/env bash
# A SCIM client that is not ours against the local front door (issue 18): moto, the
# provisioner and the front door (scripts/front_door_local.py --sync), driven by
# python-scim's scim2-client and scim2-tester (scripts/scim_check.py). Installs them
# into .venv-scim/ (their own venv: they need Python >= 3.11 and pin pydantic 2).
# Ends with "scim-check: all required checks passed" or the failures. Called by
# scripts/test.sh.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/venv.sh
py="$root/.venv/bin/python"
scim_venv="$root/.venv-scim"
want="scim2-tester[httpx2]==0.5.2 scim2-client==0.13.2"
# scim2-tester needs Python 3.11+; the rest of the project runs on 3.10.
if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "scim-check: SKIPPED: scim2-tester needs Python 3.11 or newer ($(python3 --version))"
  exit 0
fi
if [ "$(cat "$scim_venv/.requirements" 2>/dev/null)" != "$want" ]; then
  rm -rf "$scim_venv"
  python3 -m venv "$scim_venv"
  # shellcheck disable=SC2086
  "$scim_venv/bin/pip" install --quiet --disable-pip-version-check $want
  printf '%s' "$want" >"$scim_venv/.requirements"
fi
cargo build --locked --bin bootstrap --bin front-door 2>&1 | tail -1

read -r moto_port fd_port < <("$py" -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*(x.getsockname()[1] for x in s))')
dir="$root/target/scim-check"
rm -rf "$dir" && mkdir -p "$dir"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
"$py" scripts/moto_seed.py --serve "$moto_port" >"$dir/moto.log" 2>&1 &
pids+=($!)
"$py" scripts/moto_seed.py "http://127.0.0.1:$moto_port" it@example.com >/dev/null
"$py" scripts/front_door_local.py --endpoint "http://127.0.0.1:$moto_port" --port "$fd_port" \
  --dir "$dir" --sync 2>"$dir/local.log" &
pids+=($!)
for _ in $(seq 300); do [ -f "$dir/ready" ] && break; sleep 0.1; done
[ -f "$dir/ready" ] || { cat "$dir/local.log" >&2; exit 1; }
token=$("$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["scim_token"])' "$dir/keys.json")
"$scim_venv/bin/python" scripts/scim_check.py --url "http://127.0.0.1:$fd_port/scim/v2" --token "$token"
