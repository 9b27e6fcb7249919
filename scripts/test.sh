#!/usr/bin/env bash
# The whole test suite: what README.md tells a newcomer to run, and what .ci/run runs.
set -euo pipefail
cd "$(dirname "$0")/.."

# The binaries and the examples the integration tests start (rookery, demo-service).
cargo build --workspace --bins --examples
cargo test --workspace
ROOKERY_BIN="$PWD/target/debug/rookery" python3 -m pytest -q tests/compat
