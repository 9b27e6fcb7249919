#!/usr/bin/env bash
# Runs both simulators in a release build.
#
# 1. The ZAB simulator (server/tests/sim.rs) over N seeds (default 10000; even seeds run 3 voters,
#    odd ones 5). A failure prints its seed and the command that replays it:
#    ROOKERY_SIM_SEED=<seed> cargo test -p rookery-server --test sim -- --nocapture
# 2. The whole-member simulator (history/src/sim: request processors, ZAB, log writers, disks,
#    clients) over M seeds of 3 members (default N/10) from SIM_FIRST_SEED (default 100), and M/5
#    seeds of 5 members. A failing seed keeps its history in /tmp/rookery-sim-seed-<seed>.json and
#    replays with SIM_SEEDS=1 SIM_FIRST_SEED=<seed> cargo test -p rookery-history --test sim
#
# Usage: scripts/sim.sh [N] [M]
set -euo pipefail
cd "$(dirname "$0")/.."
seeds="${1:-10000}"
members_seeds="${2:-$((seeds / 10))}"
ROOKERY_SIM_SEEDS="$seeds" cargo test --release -p rookery-server --test sim -- --nocapture sim_
SIM_SEEDS="$members_seeds" SIM_SEEDS_5="$((members_seeds / 5))" \
    cargo test --release -p rookery-history --test sim -- --nocapture
