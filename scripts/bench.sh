#!/usr/bin/env bash
# The benchmark of issue 6 (see bench/README.md): builds the release binary as deployed,
# measures the deployment zip, then cold start, batch latency through a 40 ms proxy,
# AWS calls per joiner/leaver and peak RSS against a local moto. Prints the table and
# writes it to bench/results.md. Everything binds to 127.0.0.1; it stops what it starts.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
target="${CARGO_TARGET_DIR:-$root/target}"
bash scripts/venv.sh
py="$root/.venv/bin/python"

# `--front-door [--debug]`: issue 20 only, the front door's requests/s and p99 of one
# instance through the 40 ms proxy (bench/front_door.py; section front-door of
# bench/results.md). --debug measures the debug build instead of the release one.
if [ "${1:-}" = "--front-door" ]; then
  shift
  profile=release
  if [ "${1:-}" = "--debug" ]; then shift; profile=debug; fi
  echo "== cargo build --$profile --bin front-door" >&2
  if [ "$profile" = release ]; then cargo build --release --bin front-door >&2; else cargo build --bin front-door >&2; fi
  exec "$py" bench/front_door.py --binary "$target/$profile/front-door" "$@"
fi

echo "== cargo build --release --bin bootstrap" >&2
cargo build --release --bin bootstrap >&2

# Deployment zip: cargo-lambda (x86_64, its zig linker from the venv; never installs a
# toolchain: CARGO_LAMBDA_NO_INSTALL stops the zig prompt). Fallback: the release
# binary (already stripped by the profile) zipped as `bootstrap` with python's zipfile.
zip_bytes="" zip_how=""
lambda_zip="$target/lambda/bootstrap/bootstrap.zip"
echo "== cargo lambda build --release --x86-64 --output-format zip" >&2
# cargo-lambda links with zig; the PyPI package `ziglang` carries it (bench only, so
# CI's venv stays lean). cargo-lambda finds it through the venv's python on PATH.
"$root/.venv/bin/pip" install --quiet --disable-pip-version-check 'ziglang>=0.13' >&2 || true
if PATH="$root/.venv/bin:$PATH" timeout 900 "$root/.venv/bin/cargo-lambda" lambda build --release \
     --x86-64 --bin bootstrap --output-format zip </dev/null >&2 && [ -f "$lambda_zip" ]; then
  zip_bytes=$(stat -c %s "$lambda_zip")
  zip_how="cargo lambda build --release --x86-64 --output-format zip"
else
  echo "cargo lambda build failed; zipping target/release/bootstrap with python zipfile instead" >&2
  tmpzip="$(mktemp -d)/bootstrap.zip"
  "$py" - "$target/release/bootstrap" "$tmpzip" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[2], "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
    info = zipfile.ZipInfo("bootstrap"); info.external_attr = 0o755 << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    z.writestr(info, open(sys.argv[1], "rb").read())
PY
  zip_bytes=$(stat -c %s "$tmpzip")
  zip_how="stripped x86_64 release binary zipped with python zipfile (cargo lambda build failed)"
fi

# The cold start's baseline: a bare lambda_runtime function, same release profile,
# measured in the same run by the same method.
echo "== bare lambda_runtime function (bench/bare, same release profile)" >&2
CARGO_TARGET_DIR="$target/bare" cargo build --locked --release --manifest-path bench/bare/Cargo.toml >&2

echo "== measuring (about 2 minutes)" >&2
"$py" bench/bench.py --binary "$target/release/bootstrap" --bare "$target/bare/release/bare" \
  --zip-bytes "$zip_bytes" --zip-how "$zip_how" "$@"

# The front door's section too (release build), so one command writes every figure
# but the load table (scripts/load.sh, about 15 minutes).
echo "== cargo build --release --bin front-door" >&2
cargo build --release --bin front-door >&2
exec "$py" bench/front_door.py --binary "$target/release/front-door"
