#!/usr/bin/env bash
# Long history-checking runs (history/, reliability issue #16): a real 3-member ensemble with
# every peer link through the testkit's fault proxy, concurrent rookery-client sessions doing
# reads, sync-reads, writes, CAS and sequential creates, reads leaving watches, a queue,
# multi writes and multiRead reads of a pair of registers, ephemeral nodes of sessions that are
# closed or cut off, faults on a seeded schedule (kill -9 of the leader / a random member / all
# members, SIGSTOP of the leader past the session timeout, partitions, one-way and partial
# partitions, a slow leader, a member that stops reading, a blackholed leader), optionally
# with skewed member clocks (libfaketime), then every checker. Prints per run and in total:
# histories checked, operations, faults injected by kind, anomalies found, acknowledged writes
# lost, watches, queue items and ephemerals checked. Exits 1 when a run found anything; a failing
# run prints its seed and keeps its history as JSON.
#
# Flags go to the binary (see --help); each has an environment variable:
#   HISTORY_DURATION_S (180)  seconds of load per run
#   HISTORY_SEED       (random) the first run's seed; run i uses seed+i
#   HISTORY_RUNS       (1)    runs, one after the other
#   HISTORY_FAULTS     (all)  comma list: kill-leader,kill-random,kill-all,pause-leader,
#                             partition-leader,partition-random,one-way-leader,
#                             one-way-random,partial-partition,slow-leader,stall-leader,
#                             stall-random,blackhole-leader,partition-minority,
#                             majorities-ring (five members or more),
#                             chaos-leader; or none
#   HISTORY_CLOCK_SKEW (none) members whose clocks run skewed, under libfaketime (apt-get
#                             install faketime): default (member 1 "+1h x1.5", member 2
#                             "-30m x0.7") or a list such as "1=+1h x1.5,3=-5m x0.9"
#   HISTORY_MEMBERS (3), HISTORY_CLIENTS (4), HISTORY_KEYS (3), HISTORY_QUIET_MS (1000,3000),
#   HISTORY_THINK_MS (10), HISTORY_DUMP_DIR (none: only failing runs are dumped, to $TMPDIR)
#   HISTORY_PROFILE    (debug) or release: which build of rookery and the harness to run
#
# Examples:
#   scripts/history.sh                                  # one 3-minute run, every fault
#   HISTORY_DURATION_S=30 HISTORY_RUNS=10 scripts/history.sh
#   scripts/history.sh --seed 42 --faults pause-leader,partition-leader --duration-s 60
#   scripts/history.sh --faults stall-leader,stall-random,blackhole-leader --duration-s 60
#   HISTORY_CLOCK_SKEW=default scripts/history.sh --duration-s 60   # C1: skewed clocks
#   HISTORY_MEMBERS=5 scripts/history.sh --faults majorities-ring,partition-minority  # N1
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${HISTORY_PROFILE:-debug}"
case "$profile" in
    debug) build=() ;;
    release) build=(--release) ;;
    *) echo "HISTORY_PROFILE must be debug or release" >&2; exit 2 ;;
esac
cargo build "${build[@]}" -p rookery -p rookery-history
target="${CARGO_TARGET_DIR:-$PWD/target}/$profile"
export ROOKERY_BIN="$target/rookery"
exec "$target/rookery-history" "$@"
