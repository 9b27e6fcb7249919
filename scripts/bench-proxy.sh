#!/usr/bin/env bash
# The sidecar's proxy side by side with HAProxy and nginx, in one run on this machine:
# the same two nginx backends, the same load generators (wrk for HTTP/1.1, h2load for h2c),
# each proxy on one thread or worker. Prints a markdown table (docs/performance.md).
#
#   scripts/bench-proxy.sh [SECONDS] [ROUNDS]   # default 10 s per run, 3 rounds
#
# The proxies take turns, round after round, and the table gives each row's median over the
# rounds: on a noisy machine one sequential pass can swing a ratio by a third.
#
# A/B: COMPARE_BIN=path/to/rookery (another build) and COMPARE_SET="key=value ..." (sidecar
# settings) add a second sidecar's rows, "rookery sidecar (compare)", to every round.
#
# Needs: haproxy, nginx, wrk, h2load (Debian: haproxy nginx wrk nghttp2-client).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
ROUNDS=${2:-3}
CONNS=50
for tool in haproxy nginx wrk h2load; do
    command -v $tool >/dev/null || { echo "missing $tool (apt-get install haproxy nginx wrk nghttp2-client)"; exit 1; }
done
cargo build --release -p rookery -q
BIN=$PWD/target/release/rookery
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 0.3; rm -rf "$WORK"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 200); do (echo >/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened"; exit 1; }

# Two nginx backends (two workers between them) answering a small body.
B1=$(free_port); B2=$(free_port)
cat > "$WORK/backend.conf" <<CONF
worker_processes 2;
pid $WORK/backend.pid;
error_log $WORK/backend.err;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    server { listen 127.0.0.1:$B1; location / { return 200 "hello from b1\n"; } }
    server { listen 127.0.0.1:$B2; location / { return 200 "hello from b2\n"; } }
}
CONF
nginx -c "$WORK/backend.conf" -g 'daemon off;' & PIDS+=($!)
wait_port $B1; wait_port $B2

# HAProxy: one thread, least connections, keep-alive to the backends.
HP=$(free_port); HP2=$(free_port)
cat > "$WORK/haproxy.cfg" <<CONF
global
    nbthread 1
    maxconn 4000
defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    option http-keep-alive
    http-reuse always
frontend f
    bind 127.0.0.1:$HP
    bind 127.0.0.1:$HP2 proto h2
    default_backend b
backend b
    balance leastconn
    server b1 127.0.0.1:$B1
    server b2 127.0.0.1:$B2
CONF
haproxy -f "$WORK/haproxy.cfg" 2>"$WORK/haproxy.log" & HAPROXY=$!; PIDS+=($HAPROXY)

# nginx as a proxy: one worker, pooled upstream connections.
NP=$(free_port); NP2=$(free_port)
cat > "$WORK/proxy.conf" <<CONF
worker_processes 1;
pid $WORK/proxy.pid;
error_log $WORK/proxy.err;
events { worker_connections 4096; }
http {
    access_log off;
    upstream b { least_conn; server 127.0.0.1:$B1; server 127.0.0.1:$B2; keepalive 64; }
    server {
        listen 127.0.0.1:$NP;
        listen 127.0.0.1:$NP2 http2;
        location / { proxy_pass http://b; proxy_http_version 1.1; proxy_set_header Connection ""; }
    }
}
CONF
nginx -c "$WORK/proxy.conf" -g 'daemon off;' & NGINX=$!; PIDS+=($NGINX)

# Rookery: a server, the two backends registered by two sidecars, and the measured sidecar
# (one runtime thread).
ZK=$(free_port)
mkdir -p "$WORK/zk"
printf 'tickTime=2000\ndataDir=%s\nclientPort=%s\nclientPortAddress=127.0.0.1\n' "$WORK/zk" $ZK > "$WORK/zoo.cfg"
$BIN server --config "$WORK/zoo.cfg" 2>"$WORK/zk.log" & PIDS+=($!)
wait_port $ZK
for b in $B1 $B2; do
    $BIN sidecar --zookeeper 127.0.0.1:$ZK --service bench --id b$b --app 127.0.0.1:$b \
        --outbound 127.0.0.1:$(free_port) --admin 127.0.0.1:$(free_port) 2>>"$WORK/reg.log" & PIDS+=($!)
done
RP=$(free_port); RA=$(free_port)
RUST_LOG=warn $BIN sidecar --zookeeper 127.0.0.1:$ZK --outbound 127.0.0.1:$RP --admin 127.0.0.1:$RA \
    --set workers=1 --route "/=bench" 2>"$WORK/sidecar.log" & ROOKERY=$!; PIDS+=($ROOKERY)
CP=
if [ -n "${COMPARE_BIN:-}${COMPARE_SET:-}" ]; then
    CP=$(free_port); CA=$(free_port); SETS=()
    for kv in ${COMPARE_SET:-}; do SETS+=(--set "$kv"); done
    RUST_LOG=warn ${COMPARE_BIN:-$BIN} sidecar --zookeeper 127.0.0.1:$ZK --outbound 127.0.0.1:$CP \
        --admin 127.0.0.1:$CA --set workers=1 "${SETS[@]}" --route "/=bench" \
        2>"$WORK/compare.log" & COMPARE=$!; PIDS+=($COMPARE)
    wait_port $CP
fi
wait_port $HP; wait_port $NP; wait_port $RP
for _ in $(seq 1 200); do
    n=$(curl -s 127.0.0.1:$RA/endpoints | python3 -c 'import json,sys; d=json.load(sys.stdin); print(sum(1 for e in d["services"].get("bench",{}).get("endpoints",[]) if e["state"]=="healthy"))' 2>/dev/null || echo 0)
    [ "$n" = 2 ] && break; sleep 0.1
done
[ "$n" = 2 ] || { echo "the sidecar never saw both backends"; cat "$WORK/sidecar.log"; exit 1; }
# The compare sidecar watches the same registry; give it the same moment to see both.
[ -z "$CP" ] || sleep 1

cpu_ticks() { awk '{print $14+$15}' /proc/$1/stat; }
rss_kb() { awk '/VmHWM/{print $2}' /proc/$1/status; }
TCK=$(getconf CLK_TCK)

# run NAME PID URL: one wrk run; prints a table row.
run_h1() {
    local name=$1 pid=$2 url=$3
    wrk -t1 -c$CONNS -d2s "$url" >/dev/null 2>&1   # warm-up
    local before=0; [ "$pid" != - ] && before=$(cpu_ticks $pid)
    local out; out=$(wrk -t1 -c$CONNS -d${SECS}s --latency "$url")
    local after=0; [ "$pid" != - ] && after=$(cpu_ticks $pid)
    local rps p50 p99 reqs
    rps=$(awk '/Requests\/sec/{print $2}' <<<"$out")
    reqs=$(awk '/requests in/{print $1}' <<<"$out")
    p50=$(awk '$1=="50%"{print $2}' <<<"$out")
    p99=$(awk '$1=="99%"{print $2}' <<<"$out")
    local us="-" rss="-"
    if [ "$pid" != - ]; then
        us=$(python3 -c "print(f'{($after-$before)/$TCK/$reqs*1e6:.1f}')")
        rss=$(python3 -c "print(f'{$(rss_kb $pid)/1024:.1f}')")
    fi
    echo "$name|HTTP/1.1|$rps|$p50|$p99|$us|$rss" >> "$WORK/rows"
}
run_h2() {
    local name=$1 pid=$2 url=$3
    local before; before=$(cpu_ticks $pid)
    local out; out=$(h2load -D $SECS -c $CONNS -m 10 -t 1 "$url" 2>&1)
    local after; after=$(cpu_ticks $pid)
    local rps reqs
    rps=$(awk '/finished in/{print $4}' <<<"$out" | tr -d ',')
    reqs=$(awk '/requests:/{print $8}' <<<"$out")
    local us; us=$(python3 -c "print(f'{($after-$before)/$TCK/max($reqs,1)*1e6:.1f}')")
    echo "$name|h2c|$rps|-|-|$us|$(python3 -c "print(f'{$(rss_kb $pid)/1024:.1f}')")" >> "$WORK/rows"
}

for round in $(seq 1 "$ROUNDS"); do
    echo "round $round of $ROUNDS" >&2
    run_h1 "none (nginx backend directly)" - "http://127.0.0.1:$B1/"
    run_h1 "HAProxy 2.6 (nbthread 1)" $HAPROXY "http://127.0.0.1:$HP/"
    run_h1 "nginx 1.22 (1 worker)" $(pgrep -P $NGINX | head -1) "http://127.0.0.1:$NP/"
    run_h1 "rookery sidecar (1 thread)" $ROOKERY "http://127.0.0.1:$RP/"
    [ -z "$CP" ] || run_h1 "rookery sidecar (compare)" $COMPARE "http://127.0.0.1:$CP/"
    run_h2 "HAProxy 2.6 (nbthread 1)" $HAPROXY "http://127.0.0.1:$HP2/"
    run_h2 "nginx 1.22 (1 worker)" $(pgrep -P $NGINX | head -1) "http://127.0.0.1:$NP2/"
    run_h2 "rookery sidecar (1 thread)" $ROOKERY "http://127.0.0.1:$RP/"
    [ -z "$CP" ] || run_h2 "rookery sidecar (compare)" $COMPARE "http://127.0.0.1:$CP/"
done

# Each row's median over the rounds. Peak RSS is the process's high-water mark (VmHWM) after
# the row's first round: in round 1 the HTTP/1.1 rows run before any h2c load.
python3 - "$WORK/rows" "$ROUNDS" <<'PY'
import statistics, sys
def ms(v):
    if v == "-": return None
    for unit, f in (("us", 1e-3), ("ms", 1.0), ("s", 1e3)):
        if v.endswith(unit): return float(v[:-len(unit)]) * f
    return float(v)
rows = {}
for line in open(sys.argv[1]):
    name, proto, rps, p50, p99, us, rss = line.strip().split("|")
    rows.setdefault((name, proto), []).append((float(rps), ms(p50), ms(p99), None if us == "-" else float(us), rss))
def med(xs, fmt):
    xs = [x for x in xs if x is not None]
    return fmt.format(statistics.median(xs)) if xs else "-"
print(f"Medians of {sys.argv[2]} rounds:\n")
print("| proxy | protocol | requests/s | p50 | p99 | CPU µs/request | peak RSS MB |")
print("|---|---|---|---|---|---|---|")
for (name, proto), rs in rows.items():
    print(f"| {name} | {proto} | {med([r[0] for r in rs], '{:.0f}')} | {med([r[1] for r in rs], '{:.2f} ms')} "
          f"| {med([r[2] for r in rs], '{:.2f} ms')} | {med([r[3] for r in rs], '{:.1f}')} | {rs[0][4]} |")
PY
