#!/usr/bin/env bash
# Runs the deterministic ZAB simulator (server/tests/sim.rs) over N seeds (default 10000; even
# seeds run 3 voters, odd ones 5), in a release build. A failure prints its seed and the command
# that replays it: ROOKERY_SIM_SEED=<seed> cargo test -p rookery-server --test sim -- --nocapture
set -euo pipefail
cd "$(dirname "$0")/.."
seeds="${1:-10000}"
ROOKERY_SIM_SEEDS="$seeds" cargo test --release -p rookery-server --test sim -- --nocapture sim_
