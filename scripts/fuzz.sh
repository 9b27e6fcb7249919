#!/usr/bin/env bash
# Fuzzes the proto crate's request decode path with cargo-fuzz (libFuzzer).
#
# Usage: scripts/fuzz.sh [seconds] [target]
#   seconds  how long to fuzz (default 30)
#   target   fuzz target in fuzz/fuzz_targets/ (default decode_request)
#
# Installs cargo-fuzz if it is missing (about 30 s on 2 cores), builds the target (about 30 s
# from clean), then fuzzes from the committed seeds in fuzz/corpus-seed/<target>/ plus the
# working corpus in fuzz/corpus/<target>/ (gitignored; new inputs land there).
# Exits non-zero on a crash, a timeout or running out of memory; the input that did it is saved
# under fuzz/artifacts/<target>/ and can be replayed with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run -a <target> fuzz/artifacts/<target>/<file>
#
# Only the stable toolchain is needed: cargo-fuzz passes nightly-only rustc flags (the sanitizer
# and coverage instrumentation), which RUSTC_BOOTSTRAP=1 allows on stable.
set -euo pipefail

secs="${1:-30}"
target="${2:-decode_request}"
cargo_fuzz_version="${CARGO_FUZZ_VERSION:-0.13.2}"

case "$secs" in
  '' | *[!0-9]*)
    echo "usage: $0 [seconds] [target]" >&2
    exit 2
    ;;
esac

cd "$(dirname "$0")/.."

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: installing cargo-fuzz $cargo_fuzz_version" >&2
  start=$(date +%s)
  cargo install cargo-fuzz --locked --version "$cargo_fuzz_version"
  echo "fuzz.sh: cargo-fuzz installed in $(($(date +%s) - start)) s" >&2
fi

seeds="fuzz/corpus-seed/$target"
corpus="fuzz/corpus/$target"
if [ ! -d "$seeds" ]; then
  echo "fuzz.sh: no seed corpus at $seeds" >&2
  exit 2
fi
mkdir -p "$corpus"

export RUSTC_BOOTSTRAP=1
# -a: debug assertions and overflow checks, so arithmetic overflow is a crash too.
start=$(date +%s)
cargo fuzz build -a "$target"
echo "fuzz.sh: built $target in $(($(date +%s) - start)) s; fuzzing for $secs s" >&2

# libFuzzer: -timeout flags an input that takes over 10 s (a hang), -rss_limit_mb one that
# needs over 2 GiB. cargo fuzz exits non-zero when libFuzzer finds anything.
if ! cargo fuzz run -a "$target" "$corpus" "$seeds" -- \
  -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1; then
  echo "fuzz.sh: $target FAILED; the input is in fuzz/artifacts/$target/" >&2
  exit 1
fi
echo "fuzz.sh: $target ran $secs s with no crash" >&2
