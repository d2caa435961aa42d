#!/usr/bin/env bash
# bench-peers.sh: the side-by-side fan-out benchmark of issue 5.
#
# Runs the same workloads against Herald, nchan (nginx module), Pushpin and the ideal fan-out
# loop (tools/bench/ideal_fanout.cc) in one run, each broker pinned to core 0 and the load
# generator (herald-bench) to core 1, alternating the broker order between runs, and writes
# medians and Herald/peer ratios into docs/benchmarks.md (between the bench-peers markers; text
# outside them is kept).
#
# Workloads:
#   a  SSE, 10,000 subscribers, 10 events/s: broker CPU per delivery, p99 publish->receive
#   b  SSE, 1,000 subscribers, publishing as fast as acknowledged: deliveries/s
#   c  idle SSE subscribers (5,000; --full: 18,000): broker RSS per subscriber
#   d  long-poll, 1,000 subscribers, 100 events/s: deliveries/s, events lost between polls
#   e  publishes/s on 50 keep-alive connections (Herald durable and --durability none, nchan)
#   f  WebSocket, 1,000 subscribers, publishing as fast as acknowledged (Herald GET /ws with the
#      pubsub subprotocol, nchan's websocket subscriber): deliveries/s (adds ~1.7 min at 3 runs)
#   g  100,000 SSE subscriptions as HTTP/2 streams (100 h2c connections x 1,000 streams), one
#      event/s: Herald only (nchan's SSE over HTTP/2 is broken on nginx >= 1.16; Pushpin has no
#      h2c): subscriptions held, events lost, RSS and CPU per subscription
#
# A run with only some workloads (e.g. --workloads f) replaces only those workloads' sections,
# per-run rows and target rows in the generated block; the other sections are kept as they are,
# and each section written by such a partial run carries its own "Measured ..." line.
#
# Needs: a Release build with herald, herald-bench and ideal-fanout:
#   cmake -S . -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build -j2
# Installs nginx, libnginx-mod-nchan, pushpin and zurl with apt-get when missing (root).
# Every process it starts is recorded by PID and stopped on exit; every step has a time limit.
set -euo pipefail

BUILD=build
RUNS=3
IDLE_SUBS=5000
WARMUP=3
MEASURE=10
DEFAULT_WORKLOADS="a b c d e f g"
WORKLOADS="$DEFAULT_WORKLOADS"
OUT=docs/benchmarks.md
INSTALL=1
KEEP_TMP=0
THREADS2=1
MAX_MINUTES=25
QUIET_PCT=30
NICE=0
QUIET_MAX=30

usage() {
    cat <<EOF
usage: tools/bench-peers.sh [options]
  --build-dir DIR     build directory with herald and tools/bench/* (default: build)
  --runs N            runs per workload and broker; medians are reported (default: 3)
  --quick             shorter windows (warm-up 2 s, window 5 s)
  --full              idle workload at 18,000 subscribers (default: 5,000)
  --idle-subs N       idle workload subscriber count
  --warmup S          warm-up seconds (default 3)
  --measure S         measured window seconds (default 10)
  --workloads LIST    subset of "a b c d e f" (comma or space separated; default all);
                      only the named workloads' results in --out are replaced
  --no-threads2       skip the extra Herald --threads 2 row of workload a
  --out FILE          markdown file to update (default docs/benchmarks.md)
  --no-install        do not apt-get install missing peers
  --keep-tmp          keep the temp dir (configs, logs, raw JSON lines)
  --max-minutes M     skip remaining steps once the run has taken this long (default 25)
  --quiet-pct P       before each run wait until both cores are at most P % busy (default 30)
  --quiet-max S       ... but at most S seconds (default 30)
  --nice N            run every broker and the bench at this nice level, also as the nice level
                      of this session's scheduler autogroup (e.g. -10 when other work shares
                      the machine; the same for all brokers; default 0)
EOF
}

CMDLINE="tools/bench-peers.sh $*"
while [ $# -gt 0 ]; do
    case "$1" in
    --build-dir) BUILD="$2"; shift 2 ;;
    --runs) RUNS="$2"; shift 2 ;;
    --quick) WARMUP=2; MEASURE=5; shift ;;
    --full) IDLE_SUBS=18000; shift ;;
    --idle-subs) IDLE_SUBS="$2"; shift 2 ;;
    --warmup) WARMUP="$2"; shift 2 ;;
    --measure) MEASURE="$2"; shift 2 ;;
    --workloads) WORKLOADS="${2//,/ }"; shift 2 ;;
    --no-threads2) THREADS2=0; shift ;;
    --out) OUT="$2"; shift 2 ;;
    --no-install) INSTALL=0; shift ;;
    --keep-tmp) KEEP_TMP=1; shift ;;
    --max-minutes) MAX_MINUTES="$2"; shift 2 ;;
    --quiet-pct) QUIET_PCT="$2"; shift 2 ;;
    --quiet-max) QUIET_MAX="$2"; shift 2 ;;
    --nice) NICE="$2"; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "bench-peers: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
done

cd "$(dirname "$0")/.."
HERALD="$BUILD/herald"
BENCH="$BUILD/tools/bench/herald-bench"
IDEAL="$BUILD/tools/bench/ideal-fanout"
for bin in "$HERALD" "$BENCH" "$IDEAL"; do
    if [ ! -x "$bin" ]; then
        echo "bench-peers: $bin missing; build first:" >&2
        echo "  cmake -S . -B $BUILD -DCMAKE_BUILD_TYPE=Release && cmake --build $BUILD -j2" >&2
        exit 1
    fi
done

# ---- peers from Debian ------------------------------------------------------------------------
if [ "$INSTALL" = 1 ]; then
    missing=()
    for pkg in nginx libnginx-mod-nchan pushpin zurl; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' ||
            missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "bench-peers: installing ${missing[*]}" >&2
        timeout 600 apt-get update
        DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y --no-install-recommends \
            "${missing[@]}"
    fi
fi
NCHAN_MODULE=/usr/lib/nginx/modules/ngx_nchan_module.so
[ -f "$NCHAN_MODULE" ] || { echo "bench-peers: $NCHAN_MODULE missing" >&2; exit 1; }
command -v pushpin >/dev/null || { echo "bench-peers: pushpin missing" >&2; exit 1; }

# With autogroup scheduling (kernel.sched_autogroup_enabled=1) a process's nice level only
# counts inside its session; the session's own nice sets its share against other sessions.
if [ "$NICE" != 0 ]; then
    renice -n "$NICE" -p $$ >/dev/null
    if [ -w /proc/$$/autogroup ]; then
        echo "$NICE" >/proc/$$/autogroup
    fi
fi

HERALD_PORT=18080
NCHAN_PORT=18081
PUSHPIN_PORT=18082
ORIGIN_PORT=18083
IDEAL_PORT=18090
for port in $HERALD_PORT $NCHAN_PORT $PUSHPIN_PORT $ORIGIN_PORT $IDEAL_PORT 5560 5561 5562 5563; do
    if ss -Htln "sport = :$port" | grep -q .; then
        echo "bench-peers: port $port is in use; stop whatever listens there first" >&2
        exit 1
    fi
done

# ---- temp dir, process tracking, cleanup ----------------------------------------------------
TMP=$(mktemp -d /tmp/bench-peers.XXXXXX)
chmod 755 "$TMP"
STARTED_PIDS=()
cleanup() {
    local pid
    for pid in "${STARTED_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${STARTED_PIDS[@]}"; do
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    done
    if [ "$KEEP_TMP" = 1 ]; then
        echo "bench-peers: kept $TMP" >&2
    else
        rm -rf "$TMP"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

track() { STARTED_PIDS+=("$@"); }
untrack() {
    local keep=() p q drop
    for p in "${STARTED_PIDS[@]}"; do
        drop=0
        for q in "$@"; do
            if [ "$p" = "$q" ]; then drop=1; fi
        done
        if [ "$drop" = 0 ]; then keep+=("$p"); fi
    done
    STARTED_PIDS=("${keep[@]}")
}

# Children of a process (direct), space separated.
children_of() { cat /proc/"$1"/task/*/children 2>/dev/null | tr -s ' \n' ' ' | sed 's/ $//'; }

wait_port() { # port seconds
    local i
    for i in $(seq 1 $(($2 * 10))); do
        ss -Htln "sport = :$1" | grep -q . && return 0
        sleep 0.1
    done
    echo "bench-peers: nothing listens on port $1 after $2 s" >&2
    return 1
}

# Stops the processes given by PID: TERM, then KILL after 10 s.
stop_pids() {
    local pid
    for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "$@"; do
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    untrack "$@"
}

# ---- configs ----------------------------------------------------------------------------------
HISTORY=10000 # Herald history per topic and nchan message buffer: the same retention
mkdir -p "$TMP/nchan/logs"
cat >"$TMP/nchan/nginx.conf" <<EOF
load_module $NCHAN_MODULE;
daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile 20000;
pid $TMP/nchan/nginx.pid;
error_log $TMP/nchan/logs/error.log warn;
events { worker_connections 19800; multi_accept on; use epoll; }
http {
  access_log off;
  client_body_temp_path $TMP/nchan/body;
  proxy_temp_path $TMP/nchan/proxy;
  fastcgi_temp_path $TMP/nchan/fastcgi;
  uwsgi_temp_path $TMP/nchan/uwsgi;
  scgi_temp_path $TMP/nchan/scgi;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  nchan_max_reserved_memory 1024M;
  server {
    listen 127.0.0.1:$NCHAN_PORT backlog=4096;
    location = /pub {
      nchan_publisher;
      nchan_channel_id \$arg_id;
      nchan_message_buffer_length $HISTORY;
      nchan_message_timeout 1h;
    }
    location ~ ^/sub/(.+)\$ {
      nchan_subscriber;
      nchan_channel_id \$1;
      nchan_subscriber_timeout 0;
      nchan_message_buffer_length $HISTORY;
      nchan_message_timeout 1h;
    }
  }
}
EOF

# Pushpin needs an origin that answers subscribe requests with GRIP instructions.
mkdir -p "$TMP/pushpin/run" "$TMP/pushpin/log"
cat >"$TMP/pushpin/origin.py" <<'EOF'
# GRIP origin for the benchmark: every GET /sub/{topic} is held as an SSE stream on channel
# {topic} (or, with ?transport=poll, as a long-poll response).
import http.server
import socketserver
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        path, _, query = self.path.partition("?")
        topic = path.rstrip("/").rsplit("/", 1)[-1]
        self.send_response(200)
        if "transport=poll" in query:
            body = b"{}"
            self.send_header("Content-Type", "application/json")
            self.send_header("Grip-Hold", "response")
            self.send_header("Grip-Timeout", "120")
        else:
            body = b":ok\n\n"
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Grip-Hold", "stream")
        self.send_header("Grip-Channel", topic)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    request_queue_size = 4096


Server(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
EOF
echo "* 127.0.0.1:$ORIGIN_PORT" >"$TMP/pushpin/routes"
cat >"$TMP/pushpin/pushpin.conf" <<EOF
[global]
include={libdir}/internal.conf
rundir=$TMP/pushpin/run
ipc_prefix=pushpin-
port_offset=0
stats_connection_ttl=120
[runner]
# zurl carries the proxy's requests to the origin; Debian's runner does not start it by default.
services=condure,zurl,pushpin-proxy,pushpin-handler
http_port=$PUSHPIN_PORT
logdir=$TMP/pushpin/log
log_level=1
client_buffer_size=8192
client_maxconn=19500
condure_bin=condure
zurl_bin=zurl
[proxy]
routesfile=routes
zurl_out_specs=ipc://{rundir}/{ipc_prefix}zurl-in
zurl_out_stream_specs=ipc://{rundir}/{ipc_prefix}zurl-in-stream
zurl_in_specs=ipc://{rundir}/{ipc_prefix}zurl-out
debug=false
auto_cross_origin=false
accept_x_forwarded_protocol=false
set_x_forwarded_protocol=proto-only
x_forwarded_for=
x_forwarded_for_trusted=
orig_headers_need_mark=
accept_pushpin_route=false
log_from=false
log_user_agent=false
sig_iss=pushpin
sig_key=changeme
upstream_key=
updates_check=off
organization_name=
[handler]
push_in_spec=tcp://127.0.0.1:5560
push_in_sub_specs=tcp://127.0.0.1:5562
push_in_sub_connect=false
push_in_http_addr=127.0.0.1
push_in_http_port=5561
push_in_http_max_headers_size=10000
push_in_http_max_body_size=1000000
stats_spec=ipc://{rundir}/{ipc_prefix}stats
command_spec=tcp://127.0.0.1:5563
# The default message_rate=2500 caps deliveries at 2,500/s; raised for a fair comparison.
message_rate=1000000
message_hwm=1000000
message_wait=5000
id_cache_ttl=60
connection_subscription_max=20
subscription_linger=60
stats_subscription_ttl=60
stats_report_interval=10
stats_format=tnetstring
EOF

# ---- brokers ----------------------------------------------------------------------------------
# start_broker NAME sets BROKER_STOP (PIDs to stop) and BROKER_PIDS (comma list to measure).
SEQ=0
start_broker() {
    local name=$1 pid kids
    SEQ=$((SEQ + 1))
    case "$name" in
    herald | herald-none | herald-t2)
        local durability=sync threads=1 cpus=0
        if [ "$name" = herald-none ]; then durability=none; fi
        if [ "$name" = herald-t2 ]; then threads=2 cpus=0,1; fi
        nice -n "$NICE" taskset -c "$cpus" "$HERALD" --listen "127.0.0.1:$HERALD_PORT" --data "$TMP/herald-data.$SEQ" \
            --durability "$durability" --threads "$threads" --history "$HISTORY" \
            --max-connections 19500 >"$TMP/herald.$SEQ.log" 2>&1 &
        pid=$!
        track "$pid"
        wait_port $HERALD_PORT 30
        BROKER_STOP="$pid"
        BROKER_PIDS="$pid"
        ;;
    nchan)
        nice -n "$NICE" taskset -c 0 nginx -p "$TMP/nchan/" -c "$TMP/nchan/nginx.conf" >"$TMP/nchan.$SEQ.log" 2>&1 &
        pid=$!
        track "$pid"
        wait_port $NCHAN_PORT 30
        kids=$(children_of "$pid")
        BROKER_STOP="$pid $kids"
        BROKER_PIDS="${kids// /,}"
        # shellcheck disable=SC2086
        track $kids
        ;;
    pushpin)
        nice -n "$NICE" taskset -c 0 python3 "$TMP/pushpin/origin.py" $ORIGIN_PORT >"$TMP/origin.$SEQ.log" 2>&1 &
        local origin=$!
        track "$origin"
        nice -n "$NICE" taskset -c 0 pushpin --config "$TMP/pushpin/pushpin.conf" --merge-output \
            >"$TMP/pushpin.$SEQ.log" 2>&1 &
        pid=$!
        track "$pid"
        wait_port $PUSHPIN_PORT 30
        wait_port 5561 30
        wait_port $ORIGIN_PORT 30
        sleep 1
        kids=$(children_of "$pid")
        # shellcheck disable=SC2086
        track $kids
        BROKER_STOP="$pid $kids $origin"
        BROKER_PIDS="${kids// /,}"
        ;;
    ideal)
        nice -n "$NICE" taskset -c 0 "$IDEAL" --listen "127.0.0.1:$IDEAL_PORT" >"$TMP/ideal.$SEQ.log" 2>&1 &
        pid=$!
        track "$pid"
        wait_port $IDEAL_PORT 30
        BROKER_STOP="$pid"
        BROKER_PIDS="$pid"
        ;;
    esac
}

stop_broker() {
    # shellcheck disable=SC2086
    stop_pids $BROKER_STOP
    rm -rf "$TMP"/herald-data.*
    sleep 1 # let the kernel finish closing the sockets before the next broker
}

# URL and publish options of each broker for herald-bench.
bench_target() { # name transport
    case "$1" in
    herald | herald-none | herald-t2)
        TARGET=(--sub-url "http://127.0.0.1:$HERALD_PORT/topics/{topic}"
            --pub-url "http://127.0.0.1:$HERALD_PORT/topics/{topic}" --poll-cursor herald) ;;
    nchan)
        TARGET=(--sub-url "http://127.0.0.1:$NCHAN_PORT/sub/{topic}"
            --pub-url "http://127.0.0.1:$NCHAN_PORT/pub?id={topic}" --poll-cursor nchan) ;;
    pushpin)
        local sub="http://127.0.0.1:$PUSHPIN_PORT/sub/{topic}"
        if [ "$2" = poll ]; then sub="$sub?transport=poll"; fi
        TARGET=(--sub-url "$sub" --pub-url "http://127.0.0.1:5561/publish/"
            --pub-content-type application/json --poll-cursor none
            --pub-body '{"items":[{"channel":"{topic}","formats":{"http-stream":{"content":"data: {data}\n\n"},"http-response":{"body":"{data}\n"}}}]}') ;;
    ideal)
        TARGET=(--sub-url "http://127.0.0.1:$IDEAL_PORT/topics/{topic}"
            --pub-url "http://127.0.0.1:$IDEAL_PORT/topics/{topic}") ;;
    esac
    if [ "$2" = ws ]; then
        case "$1" in
        herald | herald-none | herald-t2) # GET /ws, pubsub subprotocol: {"op":"sub"} per socket
            TARGET=(--sub-url "http://127.0.0.1:$HERALD_PORT/ws"
                --pub-url "http://127.0.0.1:$HERALD_PORT/topics/{topic}") ;;
        nchan) # nchan's websocket subscriber on the same subscriber location; the URL names it
            TARGET=(--sub-url "http://127.0.0.1:$NCHAN_PORT/sub/{topic}" --ws-sub-op 0
                --pub-url "http://127.0.0.1:$NCHAN_PORT/pub?id={topic}") ;;
        esac
    fi
}

RESULTS="$TMP/results.jsonl"
: >"$RESULTS"
T_START=$(date +%s)
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

# Busy share of both cores over one second, in percent (from /proc/stat).
machine_busy() {
    local a b
    read -ra a </proc/stat
    sleep 1
    read -ra b </proc/stat
    local total=0 idle i
    for i in 1 2 3 4 5 6 7 8; do total=$((total + b[i] - a[i])); done
    idle=$((b[4] - a[4] + b[5] - a[5]))
    if [ "$total" -le 0 ]; then echo 0; else echo $((100 * (total - idle) / total)); fi
}

# Other sessions may share the machine: before each run wait (bounded) for a quieter moment.
quiet_wait() {
    local waited=0 busy
    busy=$(machine_busy)
    while [ "$busy" -gt "$QUIET_PCT" ] && [ "$waited" -lt "$QUIET_MAX" ]; do
        sleep 4
        waited=$((waited + 5))
        busy=$(machine_busy)
    done
    BUSY=$busy
}

# run_one WORKLOAD BROKER RUN -- herald-bench options...
run_one() {
    local workload=$1 broker=$2 run=$3
    shift 4
    local elapsed=$(($(date +%s) - T_START))
    if [ "$elapsed" -gt $((MAX_MINUTES * 60)) ]; then
        echo "bench-peers: over $MAX_MINUTES minutes, skipping $workload/$broker/$run" >&2
        return 0
    fi
    local transport=sse a
    for a in "$@"; do
        if [ "$a" = poll ] || [ "$a" = ws ]; then transport=$a; fi
    done
    quiet_wait
    start_broker "$broker"
    bench_target "$broker" "$transport"
    local load line
    load=$(cut -d' ' -f1 /proc/loadavg)
    echo "bench-peers: [$workload] $broker run $run (load $load, machine busy $BUSY %)" >&2
    line=$(timeout -k 5 400 nice -n "$NICE" taskset -c 1 "$BENCH" "${TARGET[@]}" --broker-pid "$BROKER_PIDS" \
        --label "$workload/$broker/$run" "$@" 2> >(sed 's/^/    /' >&2)) || true
    stop_broker
    if [ -n "$line" ]; then
        printf '{"workload":"%s","broker":"%s","run":%s,"load":%s,"busy":%s,"result":%s}\n' \
            "$workload" "$broker" "$run" "$load" "$BUSY" "$line" >>"$RESULTS"
    else
        echo "bench-peers: no result for $workload/$broker/$run" >&2
    fi
}

# Brokers in a different order each run, so drift on a noisy machine hits all of them alike.
rotate() { # run brokers...
    local r=$1
    shift
    local list=("$@") n=$# i
    for ((i = 0; i < n; i++)); do printf '%s ' "${list[$(((i + r) % n))]}"; done
}

has() { case " $WORKLOADS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
for w in $WORKLOADS; do
    case "$w" in
    a | b | c | d | e | f | g) ;;
    *) echo "bench-peers: unknown workload $w" >&2; exit 2 ;;
    esac
done

# --batch-us 200: a worker that found few ready sockets pauses 200 us before the next
# epoll_wait. Without it the generator's cost per delivery depends on how a broker spreads its
# writes over time (one wake-up per delivery for a slow writer): against nchan it hit 100 % of
# its core at 100k deliveries/s and inflated nchan's latency and CPU. Same setting for all.
COMMON=(--warmup "$WARMUP" --measure "$MEASURE" --connect-timeout 120 --drain 15 --duration 300
    --batch-us 200)
for run in $(seq 1 "$RUNS"); do
    if has a; then
        brokers=(herald nchan pushpin ideal)
        if [ "$THREADS2" = 1 ]; then brokers+=(herald-t2); fi
        for b in $(rotate "$run" "${brokers[@]}"); do
            run_one a "$b" "$run" -- --transport sse --subs 10000 --procs 2 --rate 10 \
                --pub-conns 4 "${COMMON[@]}"
        done
    fi
    if has b; then
        for b in $(rotate "$run" herald nchan ideal); do
            run_one b "$b" "$run" -- --transport sse --subs 1000 --rate max --pub-conns 4 "${COMMON[@]}"
        done
    fi
    if has c; then
        for b in $(rotate "$run" herald nchan pushpin ideal); do
            run_one c "$b" "$run" -- --transport sse --subs "$IDLE_SUBS" --rate 0 --settle 2 \
                --warmup 0 --measure 2 --connect-timeout 120 --duration 300 --batch-us 200
        done
    fi
    if has d; then
        for b in $(rotate "$run" herald nchan); do
            run_one d "$b" "$run" -- --transport poll --subs 1000 --rate 100 --pub-conns 4 \
                "${COMMON[@]}"
        done
    fi
    if has e; then
        for b in $(rotate "$run" herald herald-none nchan); do
            run_one e "$b" "$run" -- --subs 0 --rate max --pub-conns 50 --warmup 1 \
                --measure "$MEASURE" --duration 120
        done
    fi
    # The bench runs on core 1 only: --procs 2 would split the subscribers over two processes
    # on that one core and add no capacity, so f runs one worker process, as b does, and the
    # table shows the bench's CPU so a reader sees when the generator is the limit.
    if has f; then
        for b in $(rotate "$run" herald nchan); do
            run_one f "$b" "$run" -- --transport ws --subs 1000 --procs 1 --rate max --pub-conns 4 \
                "${COMMON[@]}"
        done
    fi
    # One bench process: 100 connections, so the descriptor limit is no concern.
    if has g; then
        run_one g herald "$run" -- --transport h2-sse --streams-per-conn 1000 --subs 100000 \
            --procs 1 --rate 1 --settle 2 --warmup "$WARMUP" --measure "$MEASURE" --connect-timeout 120 \
            --drain 15 --duration 300
    fi
done

T_END=$(date +%s)
# ---- report -----------------------------------------------------------------------------------
BP_RESULTS="$RESULTS" BP_OUT="$OUT" BP_CMD="$CMDLINE" BP_IDLE="$IDLE_SUBS"
BP_MINUTES=$(((T_END - T_START + 59) / 60))
BP_LOAD_BEFORE="$LOAD_BEFORE"
BP_LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
BP_WARMUP="$WARMUP" BP_MEASURE="$MEASURE" BP_RUNS="$RUNS" BP_NICE="$NICE"
BP_WORKLOADS="$WORKLOADS" BP_DEFAULT="$DEFAULT_WORKLOADS"
BP_CPU=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')
BP_KERNEL=$(uname -r)
BP_NOFILE=$(ulimit -Hn)
BP_NGINX=$(nginx -v 2>&1 | sed 's/.*nginx\///')
BP_NCHAN=$(dpkg-query -W -f='${Version}' libnginx-mod-nchan 2>/dev/null || echo '?')
BP_PUSHPIN=$(dpkg-query -W -f='${Version}' pushpin 2>/dev/null || echo '?')
BP_COMMIT="$(git rev-parse --short HEAD 2>/dev/null || echo '?')"
if ! git diff --quiet 2>/dev/null; then BP_COMMIT="$BP_COMMIT + uncommitted changes"; fi
export BP_RESULTS BP_OUT BP_CMD BP_IDLE BP_MINUTES BP_LOAD_BEFORE BP_LOAD_AFTER BP_WARMUP \
    BP_MEASURE BP_RUNS BP_NICE BP_WORKLOADS BP_DEFAULT BP_CPU BP_KERNEL BP_NOFILE BP_NGINX BP_NCHAN BP_PUSHPIN BP_COMMIT
python3 - <<'PY'
import json, os, re, statistics, datetime

rows = [json.loads(l) for l in open(os.environ["BP_RESULTS"]) if l.strip()]
by = {}
for r in rows:
    by.setdefault((r["workload"], r["broker"]), []).append(r)

def values(w, b, f):
    return [f(r["result"]) for r in sorted(by.get((w, b), []), key=lambda r: r["run"])
            if f(r["result"]) is not None]

def med(w, b, f):
    v = values(w, b, f)
    return statistics.median(v) if v else None

def pair_ratios(w, a, b, f):
    ra = {r["run"]: f(r["result"]) for r in by.get((w, a), [])}
    rb = {r["run"]: f(r["result"]) for r in by.get((w, b), [])}
    out = []
    for run in sorted(set(ra) & set(rb)):
        if ra[run] is not None and rb[run]:
            out.append(ra[run] / rb[run])
    return out

def fmt(v, d=1):
    if v is None:
        return "–"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.{d}f}"

def ratio_cell(w, a, b, f):
    ma, mb = med(w, a, f), med(w, b, f)
    if ma is None or not mb:
        return "–"
    pr = pair_ratios(w, a, b, f)
    runs = ", ".join(f"{x:.2f}" for x in pr)
    return f"{ma / mb:.2f} ({runs})" if pr else f"{ma / mb:.2f}"

lat99 = lambda r: r["latency_ms"]["p99"] if r["latency_ms"]["samples"] else None
bwait = lambda r: r.get("broker_runq_wait_pct")
xwait = lambda r: r.get("bench_runq_wait_pct")
lat50 = lambda r: r["latency_ms"]["p50"] if r["latency_ms"]["samples"] else None
cpu = lambda r: r["cpu_us_per_delivery_run"] if r["cpu_us_per_delivery_run"] is not None else r["cpu_us_per_delivery"]
cpu_pct = lambda r: r["broker_cpu_pct"]
dps = lambda r: r["deliveries_per_s"]
lost = lambda r: r["lost"]
rss = lambda r: r["rss_per_sub_bytes"]
pps = lambda r: r["publishes_per_s"]
ready = lambda r: r["subs_ready"]

idle = os.environ["BP_IDLE"]
requested = os.environ["BP_WORKLOADS"].split()
default = os.environ["BP_DEFAULT"].split()
present = lambda w: any(k[0] == w for k in by)
ran = {w for w in requested if present(w)}
# A run that measured the whole default set rewrites the header; any other run keeps the header
# (it describes the run that measured the sections without a "Measured" line of their own).
full = set(default) <= ran
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
commit = os.environ["BP_COMMIT"]

head = []
head.append(f"Measured {now} by `{os.environ['BP_CMD']}` ({os.environ['BP_MINUTES']} min; "
            f"{os.environ['BP_RUNS']} runs per broker and workload, warm-up "
            f"{os.environ['BP_WARMUP']} s, window {os.environ['BP_MEASURE']} s; medians, and "
            "Herald/peer ratios as ratio of medians with the per-run ratios in brackets).")
head.append("")
head.append(f"Machine: {os.environ['BP_CPU']}, 2 cores, kernel {os.environ['BP_KERNEL']}, "
            f"{os.environ['BP_NOFILE']} open files per process (hard), loopback only; load average "
            f"{os.environ['BP_LOAD_BEFORE']} before and {os.environ['BP_LOAD_AFTER']} after the "
            f"run (other work shared the machine; brokers and bench ran at nice {os.environ['BP_NICE']}). "
            "Broker on core 0 (`taskset -c 0`, Herald "
            "`--threads 1` unless noted), herald-bench on core 1. Herald "
            f"{commit}, nginx {os.environ['BP_NGINX']} + nchan "
            f"{os.environ['BP_NCHAN']}, Pushpin {os.environ['BP_PUSHPIN']}.")
head.append("")
# The "Measured" line of a section that the header's run did not measure.
own_run = (f"Measured {now} by `{os.environ['BP_CMD']}`, not in the run of the header above "
           f"({os.environ['BP_MINUTES']} min; {os.environ['BP_RUNS']} runs per broker, warm-up "
           f"{os.environ['BP_WARMUP']} s, window {os.environ['BP_MEASURE']} s; load average "
           f"{os.environ['BP_LOAD_BEFORE']} before and {os.environ['BP_LOAD_AFTER']} after; nice "
           f"{os.environ['BP_NICE']}; Herald {commit}, nginx {os.environ['BP_NGINX']} + nchan "
           f"{os.environ['BP_NCHAN']}; same pinning as above).")

sections = {}
def table(w, title, metrics, brokers, pairs):
    out = [f"### {w}. {title}", ""]
    if not full or w not in default:
        out += [own_run, ""]
    out.append("| " + " | ".join(["metric"] + brokers + [f"{a}/{b}" for a, b in pairs]) + " |")
    out.append("|" + "---|" * (1 + len(brokers) + len(pairs)))
    for label, f, d in metrics:
        cells = [fmt(med(w, b, f), d) for b in brokers]
        ratios = [ratio_cell(w, a, b, f) for a, b in pairs]
        out.append("| " + " | ".join([label] + cells + ratios) + " |")
    out.append("")
    sections[w] = out

H = "herald"
bench_cpu = lambda r: r["bench_cpu_pct"]
if "a" in ran:
    table("a", "SSE, 10,000 subscribers, 10 events/s (one topic)",
          [("broker CPU µs per delivery", cpu, 2),
           ("broker CPU % of one core", cpu_pct, 1),
           ("p50 publish→receive, ms", lat50, 1),
           ("p99 publish→receive, ms", lat99, 1),
           ("events lost", lost, 0),
           ("subscribers connected", ready, 0),
           ("broker waiting for a CPU, % of window", bwait, 1),
           ("bench waiting for a CPU, % of window", xwait, 1),
           ("bench CPU, % of its core", bench_cpu, 1)],
          ["herald", "herald-t2", "nchan", "pushpin", "ideal"],
          [(H, "nchan"), (H, "pushpin"), (H, "ideal"), ("herald-t2", "nchan")])
if "b" in ran:
    table("b", "SSE, 1,000 subscribers, publishing as fast as acknowledged (4 connections)",
          [("deliveries/s", dps, 0),
           ("publishes/s", pps, 0),
           ("p99 publish→receive, ms", lat99, 1),
           ("events lost", lost, 0),
           ("broker CPU µs per delivery", lambda r: r["cpu_us_per_delivery"], 2),
           ("broker waiting for a CPU, % of window", bwait, 1),
           ("bench CPU, % of its core", bench_cpu, 1)],
          ["herald", "nchan", "ideal"], [(H, "nchan"), (H, "ideal")])
if "c" in ran:
    table("c", f"Idle SSE subscribers ({int(idle):,})",
          [("broker RSS bytes per subscriber", rss, 0),
           ("subscribers connected", ready, 0)],
          ["herald", "nchan", "pushpin", "ideal"], [(H, "nchan"), (H, "pushpin"), (H, "ideal")])
if "d" in ran:
    table("d", "Long-poll, 1,000 subscribers, 100 events/s",
          [("deliveries/s", dps, 0),
           ("events lost", lost, 0),
           ("p99 publish→receive, ms", lat99, 1),
           ("broker CPU µs per delivery", cpu, 2),
           ("broker waiting for a CPU, % of window", bwait, 1)],
          ["herald", "nchan"], [(H, "nchan")])
if "e" in ran:
    table("e", "Publishes/s on 50 keep-alive connections, no subscribers",
          [("publishes/s", pps, 0),
           ("p99 acknowledgement, ms", lambda r: r["pub_ack_ms"]["p99"], 2),
           ("broker CPU µs per publish", lambda r: r["cpu_us_per_publish"], 2)],
          ["herald", "herald-none", "nchan"], [(H, "nchan"), ("herald-none", "nchan")])
if "f" in ran:
    table("f", "WebSocket, 1,000 subscribers, publishing as fast as acknowledged (4 connections; "
          "Herald `GET /ws` with the pubsub subprotocol, nchan's websocket subscriber)",
          [("deliveries/s", dps, 0),
           ("publishes/s", pps, 0),
           ("p99 publish→receive, ms", lat99, 1),
           ("events lost", lost, 0),
           ("subscribers connected", ready, 0),
           ("broker CPU µs per delivery", lambda r: r["cpu_us_per_delivery"], 2),
           ("broker waiting for a CPU, % of window", bwait, 1),
           ("bench CPU, % of its core (one process on core 1)", bench_cpu, 1),
           ("bench waiting for a CPU, % of window", xwait, 1)],
          ["herald", "nchan"], [(H, "nchan")])

if "g" in ran:
    table("g", "100,000 SSE subscriptions as HTTP/2 streams (100 h2c connections × 1,000 streams), "
          "1 event/s; Herald only",
          [("subscriptions connected", ready, 0),
           ("deliveries/s", dps, 0),
           ("events lost", lost, 0),
           ("p50 publish→receive, ms", lat50, 1),
           ("p99 publish→receive, ms", lat99, 1),
           ("broker RSS bytes per subscription", rss, 0),
           ("broker CPU µs per delivery", cpu, 2)],
          ["herald"], [])

# Targets of issue 5, as (workload, target, verdict).
def chk(ok):
    return "–" if ok is None else ("met" if ok else "**missed**")
def lt(a, b, k=1.0):
    return None if a is None or b is None else a <= k * b
def ge(a, b, k=1.0):
    return None if a is None or b is None else a >= k * b
tg = []
tg.append(("a", "CPU per delivery ≤ 0.65× nchan (a)", lt(med("a", "herald", cpu), med("a", "nchan", cpu), 0.65)))
tg.append(("a", "CPU per delivery ≤ 1.1× ideal loop (a)", lt(med("a", "herald", cpu), med("a", "ideal", cpu), 1.1)))
tg.append(("a", "p99 ≤ nchan on one core, durable (a)", lt(med("a", "herald", lat99), med("a", "nchan", lat99))))
tg.append(("a", "p99 ≤ 0.5× nchan with --threads 2 (a)", lt(med("a", "herald-t2", lat99), med("a", "nchan", lat99), 0.5)))
tg.append(("b", "saturated SSE deliveries/s ≥ 1.5× nchan (b)", ge(med("b", "herald", dps), med("b", "nchan", dps), 1.5)))
c_h = med("c", "herald", rss)
tg.append(("c", f"idle SSE ≤ 2 KiB RSS per subscriber (c, at {int(idle):,}; the target is at 18,000)", None if c_h is None else c_h <= 2048))
d_h, d_n, d_l = med("d", "herald", dps), med("d", "nchan", dps), med("d", "herald", lost)
tg.append(("d", "long-poll deliveries/s ≥ nchan, nothing lost (d)", None if d_h is None or d_n is None else (d_h >= d_n and d_l == 0)))
e_h, e_hn, e_n = med("e", "herald", pps), med("e", "herald-none", pps), med("e", "nchan", pps)
tg.append(("e", "durable publishes/s at 50 connections ≥ 30k (e)", None if e_h is None else e_h >= 30000))
tg.append(("e", "--durability none publishes/s ≥ nchan (e)", ge(e_hn, e_n)))
tg.append(("f", "saturated WebSocket deliveries/s ≥ 1.5× nchan (f)", ge(med("f", "herald", dps), med("f", "nchan", dps), 1.5)))
g_r, g_l = med("g", "herald", ready), med("g", "herald", lost)
tg.append(("g", "100,000 concurrent subscriptions over h2, nothing lost (g)", None if g_r is None or g_l is None else (g_r >= 100000 and g_l == 0)))

def run_row(r):
    x = r["result"]
    return "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} / {} | {} | {} / {} | {} | {} | {} |".format(
        r["workload"], r["broker"], r["run"], r.get("busy", "–"), x["subs_ready"],
        x["sub_disconnects"], fmt(x["deliveries_per_s"], 0),
        fmt(x["lost"], 0), fmt(x["latency_ms"]["p50"], 1), fmt(x["latency_ms"]["p99"], 1),
        fmt(x["cpu_us_per_delivery"], 2), fmt(x["cpu_us_per_delivery_run"], 2),
        fmt(x["broker_cpu_pct"], 1), fmt(x.get("broker_runq_wait_pct"), 1),
        fmt(x.get("bench_runq_wait_pct"), 1), fmt(x["bench_cpu_pct"], 1),
        fmt(x["rss_per_sub_bytes"], 0),
        fmt(x["publishes_per_s"], 0))

# ---- merge with the block already in the file ----------------------------------------------
# The block is: header lines, "### X. ..." sections (one per workload), "### Targets of issue 5"
# (rows tagged "(X)" or "(X, ..."), and the per-run table in <details> (first cell = workload).
# Workloads this run measured replace their parts; everything else is kept line for line.
begin, end = "<!-- bench-peers:begin -->", "<!-- bench-peers:end -->"
path = os.environ["BP_OUT"]
try:
    text = open(path).read()
except FileNotFoundError:
    text = "# Benchmarks\n\n" + begin + "\n" + end + "\n"
old_head, old_sections, old_targets, old_runs = [], {}, {}, {}
m = re.search(re.escape(begin) + "\n?(.*?)" + re.escape(end), text, flags=re.S)
if m:
    part, key = "head", None
    for line in m.group(1).split("\n"):
        sm = re.match(r"### ([a-z])\. ", line)
        if sm:
            part, key = "section", sm.group(1)
            old_sections[key] = []
        elif line.startswith("### Targets"):
            part = "targets"
        elif line.startswith("<details>"):
            part = "runs"
        if part == "head":
            old_head.append(line)
        elif part == "section":
            old_sections[key].append(line)
        elif part == "targets":
            tm = re.findall(r"\(([a-z])[,)]", line)
            if line.startswith("| ") and not line.startswith("| target |") and tm:
                old_targets.setdefault(tm[-1], []).append(line)
        else:
            rm = re.match(r"\| ([a-z]) \| ", line)
            if rm:
                old_runs.setdefault(rm.group(1), []).append(line)
    while old_head and old_head[-1] == "":
        old_head.pop()
    if old_head:
        old_head.append("")
    for k in old_sections:  # a section ends with one blank line
        while old_sections[k] and old_sections[k][-1] == "":
            old_sections[k].pop()
        old_sections[k].append("")

out = list(head) if full or not old_head else list(old_head)
for w in sorted(set(sections) | set(old_sections)):
    out += sections[w] if w in sections else old_sections[w]
out.append("### Targets of issue 5")
out.append("")
out.append("| target | result |")
out.append("|---|---|")
for w in sorted({t[0] for t in tg} | set(old_targets)):
    if w in ran or (w not in old_targets and w in default):
        out += [f"| {name} | {chk(ok)} |" for tw, name, ok in tg if tw == w]
    elif w in old_targets:
        out += old_targets[w]
out.append("")
out.append("<details><summary>Per-run values</summary>")
out.append("")
out.append("| workload | broker | run | machine busy before % | subs ready | disconnects | deliveries/s | lost | p50 ms | p99 ms | CPU µs/delivery (window / run) | broker CPU % | broker / bench CPU wait % | bench CPU % | RSS B/sub | publishes/s |")
out.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for w in sorted(ran | set(old_runs)):
    if w in ran:
        out += [run_row(r) for r in sorted(rows, key=lambda r: (r["broker"], r["run"]))
                if r["workload"] == w]
    else:
        out += old_runs[w]
out.append("")
out.append("</details>")

block = begin + "\n" + "\n".join(out) + "\n" + end
if m:
    text = text[:m.start()] + block + text[m.end():]
else:
    text = text.rstrip("\n") + "\n\n" + block + "\n"
open(path, "w").write(text)
print("\n".join(out))
PY
echo "bench-peers: wrote $OUT" >&2
