#!/usr/bin/env bash
# The whole test suite: what README.md tells a newcomer to run, and what .ci/run runs.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --workspace
cargo test --workspace
ROOKERY_BIN="$PWD/target/debug/rookery" python3 -m pytest -q tests/compat
