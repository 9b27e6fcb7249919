#!/usr/bin/env bash
# The lock and leader-latch recipes of rookery-client and of Apache Curator 5.4 side by side, on
# Rookery and on Apache ZooKeeper 3.8, in one run; prints a markdown table (docs/performance.md).
#
#   scripts/bench-recipes.sh [--seconds N] [--rounds N] [--contenders N] [--repeat N] [--no-build]
#
#   --seconds N     length of each uncontended acquire+release loop (default 5)
#   --rounds N      measured lock hand-offs per run, after CONTENDERS warm-up ones (default 200)
#   --contenders N  sessions contending in the hand-off runs (default 8)
#   --repeat N      runs of every (metric, server, client); the table shows the median (default 1)
#   --no-build      use the release binaries already in target/release
#
# Both servers run standalone on 127.0.0.1 with tickTime=2000, each session has a 4 s session
# timeout. Every (server, client) pair runs each mode in turn, the client order alternating
# between repetitions. Needs: cargo, java and javac (17), the Debian packages zookeeper and
# libcurator-*-java (the jars in /usr/share/java), python3 (to find free ports).
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=5
ROUNDS=200
CONTENDERS=8
REPEAT=1
BUILD=1
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) SECS="$2"; shift 2 ;;
        --rounds) ROUNDS="$2"; shift 2 ;;
        --contenders) CONTENDERS="$2"; shift 2 ;;
        --repeat) REPEAT="$2"; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done

J=/usr/share/java
CURATOR_CP="$J/curator-recipes.jar:$J/curator-framework.jar:$J/curator-client.jar:$J/zookeeper.jar"
CURATOR_CP="$CURATOR_CP:$J/zookeeper-jute.jar:$J/guava.jar:$J/slf4j-api.jar:$J/slf4j-nop.jar"
ZK_CP="$J/zookeeper.jar:$J/slf4j-simple.jar"
for f in ${CURATOR_CP//:/ } $J/slf4j-simple.jar; do
    [ -e "$f" ] || { echo "missing $f (apt-get install zookeeper libcurator-recipes-java)" >&2; exit 1; }
done
for t in java javac python3 timeout; do
    command -v "$t" >/dev/null || { echo "missing $t" >&2; exit 1; }
done

log() { echo "[bench-recipes] $*" >&2; }

if [ "$BUILD" = 1 ]; then
    log "building (release)"
    timeout 3600 cargo build --release -p rookery-examples --example recipe_bench
    timeout 3600 cargo build --release -p rookery --bin rookery
fi
RUST_BENCH="$PWD/target/release/examples/recipe_bench"
ROOKERY="$PWD/target/release/rookery"
[ -x "$RUST_BENCH" ] && [ -x "$ROOKERY" ] || { echo "missing release binaries" >&2; exit 1; }

TMP="$(mktemp -d "${TMPDIR:-/tmp}/bench-recipes.XXXXXX")"
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -9 "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "compiling examples/java/RecipeBench.java"
mkdir -p "$TMP/classes"
timeout 300 javac -nowarn -encoding UTF-8 -cp "$CURATOR_CP" -d "$TMP/classes" \
    examples/java/RecipeBench.java
JAVA_BENCH=(java -Xmx256m -cp "$CURATOR_CP:$TMP/classes" RecipeBench)
RUST_CMD=("$RUST_BENCH")

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Waits (at most 120 s) until the server on port $1 answers ruok with imok.
wait_ruok() {
    local port=$1 pid=$2 deadline=$((SECONDS + 120)) reply
    while [ $SECONDS -lt $deadline ]; do
        kill -0 "$pid" 2>/dev/null || { echo "the server on port $port exited" >&2; return 1; }
        reply=$(timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port && printf ruok >&3 && cat <&3" \
            2>/dev/null || true)
        [ "$reply" = imok ] && return 0
        sleep 0.1
    done
    echo "the server on port $port did not answer ruok within 120 s" >&2
    return 1
}

log "starting Rookery and ZooKeeper"
RK_PORT=$(free_port)
mkdir -p "$TMP/rookery/data"
cat >"$TMP/rookery/zoo.cfg" <<EOF
tickTime=2000
dataDir=$TMP/rookery/data
clientPort=$RK_PORT
clientPortAddress=127.0.0.1
maxClientCnxns=0
4lw.commands.whitelist=ruok,srvr
EOF
"$ROOKERY" server --config "$TMP/rookery/zoo.cfg" >"$TMP/rookery/server.log" 2>&1 &
RK_PID=$!
PIDS+=("$RK_PID")

ZK_PORT=$(free_port)
mkdir -p "$TMP/zookeeper/data"
cat >"$TMP/zookeeper/zoo.cfg" <<EOF
tickTime=2000
dataDir=$TMP/zookeeper/data
clientPort=$ZK_PORT
clientPortAddress=127.0.0.1
maxClientCnxns=0
4lw.commands.whitelist=ruok,srvr
forceSync=yes
admin.enableServer=false
EOF
java -Xmx1000m -cp "$ZK_CP" org.apache.zookeeper.server.quorum.QuorumPeerMain \
    "$TMP/zookeeper/zoo.cfg" >"$TMP/zookeeper/server.log" 2>&1 &
ZK_PID=$!
PIDS+=("$ZK_PID")

wait_ruok "$RK_PORT" "$RK_PID"
wait_ruok "$ZK_PORT" "$ZK_PID"
log "Rookery on 127.0.0.1:$RK_PORT, ZooKeeper on 127.0.0.1:$ZK_PORT"

RESULTS="$TMP/results"
: >"$RESULTS"

# client_cmd rust|curator: sets CMD to the client's command.
client_cmd() {
    if [ "$1" = rust ]; then CMD=("${RUST_CMD[@]}"); else CMD=("${JAVA_BENCH[@]}"); fi
}

json_field() { sed -n "s/.*\"$1\":\([0-9.]*\).*/\1/p" <<<"$2"; }

record() { echo "$1 $2 $3 $4" >>"$RESULTS"; }

# Waits (at most $3 s) until file $1 has a line matching regex $2, while pid $4 lives.
wait_line() {
    local file=$1 re=$2 deadline=$((SECONDS + $3)) pid=$4
    while [ $SECONDS -lt $deadline ]; do
        grep -Eq "$re" "$file" 2>/dev/null && return 0
        if ! kill -0 "$pid" 2>/dev/null; then
            grep -Eq "$re" "$file" 2>/dev/null && return 0
            echo "process $pid exited before printing /$re/ (in $file)" >&2
            return 1
        fi
        sleep 0.01
    done
    echo "no /$re/ in $file within $3 s" >&2
    return 1
}

# Drops pid $1 from the processes the exit trap kills (once it has been waited for).
forget() {
    local keep=() p
    for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

# Waits (at most $2 s) for pid $1 to exit; kills it after that.
wait_exit() {
    local pid=$1 deadline=$((SECONDS + $2))
    while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.05; done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    forget "$pid"
}

run_uncontended() { # server port client rep
    local out
    client_cmd "$3"
    out=$(timeout $((SECS + 120)) "${CMD[@]}" "127.0.0.1:$2" uncontended "/bench/$3-uncontended-$4" \
        "$SECS" 2>"$TMP/err")  || { cat "$TMP/err" >&2; return 1; }
    log "$1 $3 uncontended: $out"
    record "$1" "$3" uncontended "$(json_field ops_per_sec "$out")"
}

run_handoff() { # server port client rep
    local out
    client_cmd "$3"
    out=$(timeout 900 "${CMD[@]}" "127.0.0.1:$2" handoff "/bench/$3-handoff-$4" "$CONTENDERS" \
        "$ROUNDS" 2>"$TMP/err") || { cat "$TMP/err" >&2; return 1; }
    log "$1 $3 handoff: $out"
    record "$1" "$3" handoff_p50 "$(json_field p50_us "$out")"
    record "$1" "$3" handoff_p99 "$(json_field p99_us "$out")"
}

run_failover() { # server port client rep
    local path="/bench/$3-latch-$4" lpid fpid killed led
    client_cmd "$3"
    : >"$TMP/leader.out"
    : >"$TMP/follower.out"
    "${CMD[@]}" "127.0.0.1:$2" latch-leader "$path" leader >"$TMP/leader.out" 2>"$TMP/leader.err" &
    lpid=$!
    PIDS+=("$lpid")
    wait_line "$TMP/leader.out" '^leader$' 120 "$lpid" || { cat "$TMP/leader.err" >&2; return 1; }
    "${CMD[@]}" "127.0.0.1:$2" latch-follower "$path" follower >"$TMP/follower.out" \
        2>"$TMP/follower.err" &
    fpid=$!
    PIDS+=("$fpid")
    wait_line "$TMP/follower.out" '^follower$' 120 "$fpid" || { cat "$TMP/follower.err" >&2; return 1; }
    # In one group with stderr closed: no "Killed" notice from the shell.
    { kill -9 "$lpid"; killed=$(date +%s%3N); wait "$lpid"; } 2>/dev/null || true
    forget "$lpid"
    wait_line "$TMP/follower.out" '^leader [0-9]+$' 120 "$fpid" || { cat "$TMP/follower.err" >&2; return 1; }
    led=$(sed -n 's/^leader \([0-9]*\)$/\1/p' "$TMP/follower.out")
    wait_exit "$fpid" 30
    log "$1 $3 failover: $((led - killed)) ms"
    record "$1" "$3" failover "$((led - killed))"
}

for rep in $(seq 1 "$REPEAT"); do
    if [ $((rep % 2)) = 1 ]; then clients="rust curator"; else clients="curator rust"; fi
    for mode in uncontended handoff failover; do
        for server in rookery zookeeper; do
            if [ $server = rookery ]; then port=$RK_PORT; else port=$ZK_PORT; fi
            for client in $clients; do
                "run_$mode" "$server" "$port" "$client" "$rep"
            done
        done
    done
done

# The table: the median of the repetitions of each (server, client, metric).
median() { # server client metric
    awk -v s="$1" -v c="$2" -v m="$3" '$1 == s && $2 == c && $3 == m { print $4 }' "$RESULTS" \
        | sort -g | awk '{ v[NR] = $1 } END {
            if (NR == 0) { print "nan"; exit }
            if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

echo
echo "| metric | Rookery + rookery-client | Rookery + Curator | ZooKeeper + rookery-client | ZooKeeper + Curator | rookery-client/Curator on Rookery | rookery-client/Curator on ZooKeeper |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for metric in uncontended handoff_p50 handoff_p99 failover; do
    case $metric in
        uncontended) label="uncontended acquire+release/s"; scale=1; fmt="%.0f" ;;
        handoff_p50) label="hand-off p50 ms ($CONTENDERS contenders)"; scale=0.001; fmt="%.3f" ;;
        handoff_p99) label="hand-off p99 ms ($CONTENDERS contenders)"; scale=0.001; fmt="%.3f" ;;
        failover) label="leader failover ms (4 s session timeout)"; scale=1; fmt="%.0f" ;;
    esac
    rr=$(median rookery rust $metric)
    rc=$(median rookery curator $metric)
    zr=$(median zookeeper rust $metric)
    zc=$(median zookeeper curator $metric)
    awk -v l="$label" -v f="$fmt" -v k="$scale" -v rr="$rr" -v rc="$rc" -v zr="$zr" -v zc="$zc" \
        'function ratio(a, b) { return b > 0 ? sprintf("%.2f×", a / b) : "n/a" }
         BEGIN { printf "| %s | " f " | " f " | " f " | " f " | %s | %s |\n",
                 l, rr * k, rc * k, zr * k, zc * k, ratio(rr, rc), ratio(zr, zc) }'
done
echo
echo "Median of $REPEAT run(s); uncontended: $SECS s per run; hand-off: $ROUNDS measured rounds" \
    "after $CONTENDERS warm-up ones, $CONTENDERS sessions. Ratios above 1 favour rookery-client" \
    "for acquire+release/s, below 1 for the times."
