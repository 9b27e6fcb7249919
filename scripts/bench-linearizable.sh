#!/usr/bin/env bash
# The cost of linearizable reads: a 3-member Rookery ensemble on loopback, run once as ZooKeeper
# serves reads (locally, possibly stale) and once with linearizableReads=true (each read waits for
# the leader's quorum-confirmed commit point), with the same `rookery bench` workloads against
# both; prints a markdown table with the ratios (docs/reliability.md).
#
#   scripts/bench-linearizable.sh [--duration 10s] [--sessions N] [--in-flight N] [--no-build]
#
# Needs: cargo, python3 (free ports). Members listen on 127.0.0.1-3 with tickTime=2000.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=10s
SESSIONS=16
IN_FLIGHT=4
BUILD=1
while [ $# -gt 0 ]; do
    case "$1" in
        --duration) DURATION="$2"; shift 2 ;;
        --sessions) SESSIONS="$2"; shift 2 ;;
        --in-flight) IN_FLIGHT="$2"; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done

log() { echo "[bench-linearizable] $*" >&2; }

if [ "$BUILD" = 1 ]; then
    log "building (release)"
    timeout 3600 cargo build --release -p rookery --bin rookery
fi
ROOKERY="$PWD/target/release/rookery"
[ -x "$ROOKERY" ] || { echo "missing $ROOKERY" >&2; exit 1; }

TMP="$(mktemp -d "${TMPDIR:-/tmp}/bench-linearizable.XXXXXX")"
PIDS=()
stop_all() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -9 "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    PIDS=()
}
cleanup() {
    stop_all
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket,sys; s=socket.socket(); s.bind((sys.argv[1],0)); print(s.getsockname()[1])' "$1"
}

# Starts a fresh ensemble in $TMP/$1 with the extra zoo.cfg line $2; sets CONNECT.
start_ensemble() {
    local name="$1" extra="$2" i
    local -a client quorum election
    for i in 1 2 3; do
        client[$i]=$(free_port "127.0.0.$i")
        quorum[$i]=$(free_port "127.0.0.$i")
        election[$i]=$(free_port "127.0.0.$i")
    done
    CONNECT=""
    for i in 1 2 3; do
        local dir="$TMP/$name/m$i"
        mkdir -p "$dir/data"
        echo "$i" > "$dir/data/myid"
        {
            echo "tickTime=2000"
            echo "initLimit=10"
            echo "syncLimit=5"
            echo "dataDir=$dir/data"
            echo "clientPort=${client[$i]}"
            echo "clientPortAddress=127.0.0.$i"
            echo "admin.enableServer=false"
            echo "4lw.commands.whitelist=srvr"
            echo "$extra"
            local j
            for j in 1 2 3; do
                echo "server.$j=127.0.0.$j:${quorum[$j]}:${election[$j]}"
            done
        } > "$dir/zoo.cfg"
        "$ROOKERY" server --config "$dir/zoo.cfg" 2> "$dir/server.log" &
        PIDS+=($!)
        CONNECT="${CONNECT:+$CONNECT,}127.0.0.$i:${client[$i]}"
    done
    # Every member serves (srvr answers with a Mode line) within 30 s.
    local deadline=$((SECONDS + 30))
    for i in 1 2 3; do
        until python3 - "127.0.0.$i" "${client[$i]}" <<'EOF' 2>/dev/null
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1)
s.sendall(b"srvr")
data = b""
while True:
    chunk = s.recv(4096)
    if not chunk:
        break
    data += chunk
sys.exit(0 if b"Mode: " in data and b"not currently serving" not in data else 1)
EOF
        do
            [ $SECONDS -lt $deadline ] || { echo "member $i of $name did not serve" >&2; exit 1; }
            sleep 0.2
        done
    done
}

run_bench() {
    local name="$1"
    "$ROOKERY" bench --server "$CONNECT" --workloads get,mixed --duration "$DURATION" \
        --warmup 2s --sessions "$SESSIONS" --in-flight "$IN_FLIGHT" \
        --json "$TMP/$name.json" > "$TMP/$name.txt" 2>&1 || {
        cat "$TMP/$name.txt" >&2
        exit 1
    }
}

log "plain reads (as ZooKeeper serves them)"
start_ensemble plain ""
run_bench plain
stop_all
log "linearizableReads=true"
start_ensemble linearizable "linearizableReads=true"
run_bench linearizable
stop_all

python3 - "$TMP/plain.json" "$TMP/linearizable.json" "$SESSIONS" "$IN_FLIGHT" "$DURATION" <<'EOF'
import json, sys

plain, lin = (json.load(open(p)) for p in sys.argv[1:3])

def rows(doc):
    return {r["workload"]: r for r in doc["results"]}

def figures(r):
    lat = r["latency"]
    return {
        "ops/s": r.get("ops_per_sec") or 0.0,
        "p50 ms": lat["p50_us"] / 1000,
        "p99 ms": lat["p99_us"] / 1000,
    }

p, l = rows(plain), rows(lin)
print(f"3 members on loopback, {sys.argv[3]} sessions x {sys.argv[4]} in flight, {sys.argv[5]} per workload\n")
print("| workload | figure | plain reads | linearizableReads | ratio |")
print("|---|---|---:|---:|---:|")
for w in p:
    if w not in l:
        continue
    a, b = figures(p[w]), figures(l[w])
    for key in a:
        ratio = b[key] / a[key] if a[key] else float("nan")
        print(f"| {w} | {key} | {a[key]:.2f} | {b[key]:.2f} | {ratio:.2f}x |")
EOF
