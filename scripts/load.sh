#!/usr/bin/env bash
# The load bench of issue 12 (see bench/README.md): an acquisition day through the
# real path, moto's FIFO SQS queue + DLQ -> an event-source loop of concurrency K ->
# K function processes under the Runtime API emulator -> awsproxy.py with an
# account-wide token bucket of R IAM calls/s -> moto. Everything binds to 127.0.0.1;
# it stops only what it starts.
#
#   scripts/load.sh          the full table (K = 1, 5, 20 x N = 200 / 1,000 at R = 50,
#                            N = 200 at R = 10) and the cold-start ratio against a bare
#                            lambda_runtime function (bench/bare/), both release
#                            builds; writes its section of bench/results.md.
#                            About 15 minutes on 2 cores, plus the builds.
#   scripts/load.sh --ci     the reduced scenario (K = 3, N = 30, R = 10) with the
#                            debug binary: non-zero exit on any record in the DLQ,
#                            any joiner missing or any duplicate (user, key, secret,
#                            mail). About a minute once the debug build is there.
#
# Extra arguments go to bench/load.py (e.g. --cells 5:200:50 --no-write).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
target="${CARGO_TARGET_DIR:-$root/target}"
bash scripts/venv.sh
py="$root/.venv/bin/python"

if [ "${1:-}" = "--ci" ]; then
  shift
  cargo build --bin bootstrap >&2
  exec "$py" bench/load.py --ci --binary "$target/debug/bootstrap" "$@"
fi

echo "== cargo build --release --bin bootstrap" >&2
cargo build --release --bin bootstrap >&2
echo "== bare lambda_runtime function (bench/bare, same release profile)" >&2
CARGO_TARGET_DIR="$target/bare" cargo build --locked --release --manifest-path bench/bare/Cargo.toml >&2
echo "== measuring (about 15 minutes)" >&2
exec "$py" bench/load.py --binary "$target/release/bootstrap" --bare "$target/bare/release/bare" "$@"
