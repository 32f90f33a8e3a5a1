#!/usr/bin/env bash
# Fault-injection suite of issue 6 (see bench/README.md): throttling, crash after each
# mutating call, duplicates/shuffling and a leak scan, against a local moto through
# bench/tools/awsproxy.py, with the debug `bootstrap` as a real process under the
# runtime emulator. Last line: `N passed, M failed`; non-zero exit on any failure.
# Extra arguments go to bench/fault_suite.py (e.g. --only crash -v).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
target="${CARGO_TARGET_DIR:-$root/target}"
bash scripts/venv.sh
cargo build --bin bootstrap >&2
exec "$root/.venv/bin/python" bench/fault_suite.py --binary "$target/debug/bootstrap" "$@"
