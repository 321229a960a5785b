#!/usr/bin/env bash
# Measures the figures of the README's "Performance" table, one after the
# other on this machine, and prints that table in Markdown on stdout
# (progress and the tools' own output on stderr).
#
# It starts its own servers on 127.0.0.1 on free ports, with a fresh data
# directory each, and stops them (by their PIDs) when it ends:
#   0. `idnode import` of N identifiers of three values each (JSONL from
#      benches/gen-identifiers.py, a generator apart from the node's own)
#      into a fresh node on its defaults, --rounds times: the median rate
#      of the command;
#   1. a node loaded with the synthetic data set (`idnode bench load
#      --count N --prefixes P --compact`): registration rate, then the
#      node's resident memory (VmRSS in /proc/PID/status);
#   2. the echo server (`idnode bench echo-server`, the node's UDP worker
#      model answering a fixed response): the ceiling of loopback UDP;
#   3. closed-loop runs, alternating for --rounds rounds (echo server,
#      Handle over UDP, Handle over QUIC), since the ceiling itself moves
#      from one run to the next; each figure is the median of its rounds
#      and the ratio is taken against the median of the same run;
#   4. the node's resident memory after those runs; the node is stopped;
#   5. HTTP against nginx (wrk): the REST API's JSON of identifiers spread
#      over the set and the proxy's redirects, beside nginx serving a
#      static file of the same JSON (Debian's nginx; installed unless
#      --no-install);
#   6. DNS over UDP against NSD and Knot (benches/dns-compare.sh, dnsperf),
#      which loads a node of its own with the same data set, takes its zone
#      with `dig AXFR` on dig's default options (timed), and reads each
#      server's memory after its runs;
#   7. the in-process hot path (`cargo bench --bench resolve` and
#      `--bench codec`, criterion).
# A row whose tool is missing (dnsperf, cargo) says so instead of a figure.
#
# Usage: benches/run.sh [--quick] [--count N] [--prefixes P] [--duration S]
#          [--rounds N] [--concurrency C] [--no-criterion] [--criterion]
#          [--no-dns] [--no-http] [--no-install] [--keep]
#   --quick          small and short: 2,000 identifiers, 2 s a run, 2 rounds,
#                    no criterion (unless --criterion: then with short
#                    settings), DNS only when dnsperf is installed (nothing
#                    is installed); about a minute in all
#   --count N        identifiers in the data set (default 1,000,000)
#   --prefixes P     prefixes they are spread over (default 100)
#   --duration S     seconds each run measures, after a warm-up (default 8)
#   --rounds N       echo / UDP / QUIC rounds (default 3)
#   --concurrency C  requests outstanding in the closed loops (default 64)
#   --no-criterion   skip the criterion rows (they need cargo, and build
#                    the benches; the resolve bench loads 1M records into
#                    $CARGO_TARGET_DIR/bench-data once)
#   --criterion      run them in --quick mode too, with short settings
#   --no-dns         skip the DNS row
#   --no-http        skip the HTTP rows
#   --no-install     let dns-compare.sh install nothing (implied by --quick)
#   --keep           keep the working directory (logs, JSON reports)
# Needs: the release idnode ($CARGO_TARGET_DIR/release/idnode after
# `source scripts/env.sh`, or $IDNODE_BIN), python3; wrk and nginx for the
# HTTP rows, dig and dnsperf for the DNS row, cargo for the criterion rows.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
die() { echo "run.sh: $*" >&2; exit 1; }
say() { echo "run.sh: $*" >&2; }

quick=0 count="" prefixes=100 duration="" rounds="" concurrency=64
criterion="" dns=1 http=1 install=1 keep=0
need_value() { [ $# -ge 2 ] && [ -n "$2" ] || { echo "run.sh: $1 needs a value (see --help)" >&2; exit 2; }; }
while (($#)); do
  case "$1" in
    --quick) quick=1; shift ;;
    --count|--prefixes|--duration|--rounds|--concurrency)
      need_value "$@"
      [[ "$2" =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: $1 takes a positive whole number, not '$2'" >&2; exit 2; }
      case "$1" in
        --count) count="$2" ;; --prefixes) prefixes="$2" ;; --duration) duration="$2" ;;
        --rounds) rounds="$2" ;; --concurrency) concurrency="$2" ;;
      esac
      shift 2 ;;
    --no-criterion) criterion=0; shift ;;
    --criterion) criterion=1; shift ;;
    --no-dns) dns=0; shift ;;
    --no-http) http=0; shift ;;
    --no-install) install=0; shift ;;
    --keep) keep=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "run.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
if ((quick)); then
  : "${count:=2000}" "${duration:=2}" "${rounds:=2}" "${criterion:=0}"
  install=0 warmup=500ms
else
  : "${count:=1000000}" "${duration:=8}" "${rounds:=3}" "${criterion:=1}"
  warmup=1s
fi
((prefixes <= count)) || { echo "run.sh: --prefixes ($prefixes) is more than --count ($count)" >&2; exit 2; }

IDNODE="${IDNODE_BIN:-$CARGO_TARGET_DIR/release/idnode}"
[ -x "$IDNODE" ] || die "no idnode binary at $IDNODE; build it: source scripts/env.sh && cargo build --release --bin idnode (or set IDNODE_BIN)"
command -v python3 >/dev/null || die "python3 is missing (it reads the JSON reports)"
export IDNODE_BIN="$IDNODE" # for dns-compare.sh

work="$(mktemp -d "${TMPDIR:-/tmp}/idnode-run.XXXXXX")"
pids=()
cleanup() {
  local p
  for p in ${pids[@]+"${pids[@]}"}; do kill "$p" 2>/dev/null || true; done
  for p in ${pids[@]+"${pids[@]}"}; do wait "$p" 2>/dev/null || true; done
  if ((keep)); then say "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# stop <pid>: ends one process we started and waits for it.
stop() {
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  local p rest=()
  for p in ${pids[@]+"${pids[@]}"}; do [ "$p" = "$1" ] || rest+=("$p"); done
  pids=(${rest[@]+"${rest[@]}"})
}

# --- helpers ----------------------------------------------------------------

# json <file> <python expression over j>: prints the value, empty if absent.
json() {
  python3 - "$1" "$2" <<'EOF' 2>/dev/null || true
import json, sys
try:
    j = json.load(open(sys.argv[1]))
    v = eval(sys.argv[2], {}, {"j": j})
except Exception:
    v = None
if v is not None:
    print(v)
EOF
}
# median <numbers...>
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR) printf "%.0f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# thousands <number>: 1234567.8 -> 1,234,568
thousands() { awk -v n="$1" 'BEGIN { s = sprintf("%.0f", n); o = ""; while (length(s) > 3) { o = "," substr(s, length(s) - 2) o; s = substr(s, 1, length(s) - 3) } print s o }'; }
# percent <a> <b>: a / b as "95 %"
percent() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.0f %%", 100 * a / b; else print "-" }'; }
# list <numbers...>: "1,234, 2,345"
list() { local x out=""; for x in "$@"; do out+="${out:+; }$(thousands "$x")"; done; echo "$out"; }

# The table's rows, printed at the end in the order of their keys:
# row <key> <what> <command> <figure> <peer> <ratio>.
rows=()
row() {
  local cell line="$1	|"
  shift
  for cell in "$@"; do line+=" ${cell//|/\\|} |"; done
  rows+=("$line")
}

# A new node starts empty (the demo data only with `--demo`).
echo_cmd=echo-server

# start_node <dir> <serve args...>: starts `idnode serve` on 127.0.0.1, every
# listener on a port the kernel picks, and waits until it is ready. Sets
# node_pid, node_udp, node_quic, node_grpc, node_http, node_cert (addresses as
# host:port, empty when that listener is off). The one place that knows
# how a node tells its addresses: its start-up lines on stdout (`handle
# udp  127.0.0.1:PORT`, ... then `ready`); with `--ready-file` the file is
# the readiness signal too.
start_node() {
  local dir="$1" log="$1.log" ready="$1.ready.json" i
  shift
  rm -f "$ready"
  "$IDNODE" serve --data-dir "$dir" --ready-file "$ready" \
    --handle-listen 127.0.0.1:0 --quic-listen 127.0.0.1:0 --grpc-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 \
    "$@" >"$log" 2>"$dir.stderr" &
  node_pid=$!
  pids+=("$node_pid")
  # The ready file is written (whole, by rename) once every listener is bound.
  for ((i = 0; i < 600; i++)); do
    [ -s "$ready" ] && break
    kill -0 "$node_pid" 2>/dev/null || { tail -20 "$log" "$dir.stderr" >&2; die "idnode serve exited"; }
    sleep 0.1
  done
  [ -s "$ready" ] || { tail -20 "$log" "$dir.stderr" >&2; die "idnode serve not ready after 60 s"; }
  node_udp="$(json "$ready" 'j["handle_udp"]')"
  node_quic="$(json "$ready" 'j["handle_quic"] or ""')"
  node_grpc="$(json "$ready" 'j["grpc"]')"
  node_http="$(json "$ready" 'j["http"] or ""')"
  node_cert="$(json "$ready" 'j["tls_certificate"] or ""')"
  [ -n "$node_udp" ] && [ -n "$node_grpc" ] || { cat "$ready" >&2; die "cannot read the node's addresses from $ready"; }
}

# rss_kb <pid>
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || true; }

# bench <out.json> <bench args...>: one closed-loop run; prints its answers/s.
bench() {
  local out="$1"
  shift
  if "$IDNODE" bench --count "$count" --prefixes "$prefixes" --concurrency "$concurrency" \
    --duration "${duration}s" --warmup "$warmup" --json "$@" >"$out" 2>"$out.stderr"; then
    json "$out" 'round(j["qps"])'
  else
    sed 's/^/  /' "$out.stderr" >&2
  fi
}

cores="$(nproc)"
cpu="$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)"
# What else the machine was doing: its 1-minute load average at the start.
loadavg="$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || true)"
started=$SECONDS
say "idnode $IDNODE; $count identifiers over $prefixes prefixes; ${duration}s runs (+$warmup warm-up), $rounds round$( ((rounds == 1)) || echo s); $cores cores shared by the servers and the generator; work dir $work"

# --- 0. `idnode import` into a fresh node on its defaults -------------------

imp_what="bulk registration with \`idnode import\` (JSONL of three values an identifier, a fresh node on its defaults)"
imp_cmd="benches/gen-identifiers.py $count $prefixes ids.jsonl && idnode import ids.jsonl"
say "import: writing $count identifiers with benches/gen-identifiers.py"
if python3 benches/gen-identifiers.py "$count" "$prefixes" "$work/ids.jsonl" >"$work/ids.prefixes" 2>"$work/gen.stderr"; then
  # The file just written is still going to disk: let it, or its writeback
  # competes with the node's write-ahead log syncs.
  sync
  # --rounds imports, each into a fresh node: the figure is their median
  # (runs of one command move by 20 % from one minute to the next here).
  imp_rates=() imp_all=() imp_failed=""
  for ((r = 1; r <= rounds; r++)); do
    start_node "$work/import" --dns-listen 127.0.0.1:0 --dns-quic-listen 127.0.0.1:0
    imp_env=(IDNODE_GRPC="http://$node_grpc" IDNODE_TOKEN_FILE="$work/import/admin.token")
    while read -r p; do
      env "${imp_env[@]}" "$IDNODE" prefix create "$p" >/dev/null 2>>"$work/import.stderr" || die "cannot home prefix $p"
    done <"$work/ids.prefixes"
    say "import: round $r of $rounds: idnode import of $(du -h "$work/ids.jsonl" | cut -f1)"
    if env "${imp_env[@]}" "$IDNODE" import --quiet "$work/ids.jsonl" >"$work/import.txt" 2>>"$work/import.stderr"; then
      cat "$work/import.txt" >&2
      rate="$(sed -n 's/^imported [0-9]* identifiers .* in \([0-9.]*\)s (\([0-9]*\)\/s).*/\2/p' "$work/import.txt" | head -1)"
      secs="$(sed -n 's/^imported [0-9]* identifiers .* in \([0-9.]*\)s (.*/\1/p' "$work/import.txt" | head -1)"
      if [ -n "$rate" ]; then
        imp_rates+=("$rate")
        imp_all+=("$(thousands "$rate") in $secs s")
      fi
    else
      cat "$work/import.txt" "$work/import.stderr" >&2
      imp_failed=1
    fi
    stop "$node_pid"
    rm -rf "$work/import"
  done
  rm -f "$work/ids.jsonl"
  if [ -n "$imp_failed" ]; then
    row 81 "$imp_what" "\`$imp_cmd\`" "not measured: idnode import failed (its messages are on stderr)" "" ""
  elif ((${#imp_rates[@]})); then
    all="$(IFS=';'; echo "${imp_all[*]}")"
    row 81 "$imp_what" "\`$imp_cmd\`" "$(thousands "$(median "${imp_rates[@]}")") identifiers/s, the whole command (median of ${#imp_rates[@]} runs, $(thousands "$count") each: ${all//;/; })" "" ""
  else
    row 81 "$imp_what" "\`$imp_cmd\`" "not measured: no rate in its output" "" ""
  fi
else
  cat "$work/gen.stderr" >&2
  row 81 "$imp_what" "\`$imp_cmd\`" "not measured: the generator failed" "" ""
fi

# --- 1. the node, loaded -----------------------------------------------------

say "starting a node and loading $count identifiers"
start_node "$work/node" --no-dns
gen_args=(--count "$count" --prefixes "$prefixes")
load_cmd="idnode bench load --count $count --prefixes $prefixes --compact"
if "$IDNODE" bench load "${gen_args[@]}" --compact -q --grpc "http://$node_grpc" \
  --token-file "$work/node/admin.token" >"$work/load.txt" 2>"$work/load.stderr"; then
  cat "$work/load.txt" >&2
  reg_rate="$(sed -n 's/.*identifiers in .* s (\([0-9.]*\) identifiers\/s).*/\1/p' "$work/load.txt" | head -1)"
  compact_secs="$(sed -n 's/^compacted the store in \([0-9.]*\)s.*/\1/p' "$work/load.txt" | head -1)"
  if [ -n "$reg_rate" ]; then
    row 80 "bulk registration through the gRPC batch stream (a fresh node)" "\`$load_cmd\`" \
      "$(thousands "$reg_rate") identifiers/s${compact_secs:+; compaction ${compact_secs} s}" "" ""
  else
    row 80 "bulk registration through the gRPC batch stream (a fresh node)" "\`$load_cmd\`" "not measured: no rate in its output" "" ""
  fi
else
  cat "$work/load.txt" "$work/load.stderr" >&2
  die "idnode bench load failed"
fi
sleep 1
rss_after_load="$(rss_kb "$node_pid")"

# --- 2-3. echo server, Handle over UDP and QUIC, alternating -----------------

say "starting the echo server"
: >"$work/echo.log"
"$IDNODE" bench "$echo_cmd" --listen 127.0.0.1:0 "${gen_args[@]}" >"$work/echo.log" 2>&1 &
echo_pid=$!
pids+=("$echo_pid")
echo_addr=""
for ((i = 0; i < 100; i++)); do
  echo_addr="$(sed -n 's/^echo server on udp \([^:]*:[0-9]*\).*/\1/p' "$work/echo.log" | head -1 || true)"
  [ -n "$echo_addr" ] && break
  kill -0 "$echo_pid" 2>/dev/null || { cat "$work/echo.log" >&2; die "the echo server exited"; }
  sleep 0.1
done
[ -n "$echo_addr" ] || { cat "$work/echo.log" >&2; die "the echo server did not say its address"; }

quic_args=()
if [ -n "$node_quic" ] && [ -n "$node_cert" ]; then quic_args=(-t quic --server "$node_quic" --ca-file "$node_cert"); fi
echo_qps=() udp_qps=() quic_qps=()
for ((r = 1; r <= rounds; r++)); do
  say "round $r of $rounds: echo server"
  q="$(bench "$work/echo-$r.json" --server "$echo_addr")"
  [ -z "$q" ] || echo_qps+=("$q")
  say "round $r of $rounds: Handle over UDP${q:+ (echo: $q answers/s)}"
  q="$(bench "$work/udp-$r.json" --server "$node_udp")"
  [ -z "$q" ] || udp_qps+=("$q")
  if ((${#quic_args[@]})); then
    say "round $r of $rounds: Handle over QUIC${q:+ (UDP: $q answers/s)}"
    q="$(bench "$work/quic-$r.json" "${quic_args[@]}")"
    [ -z "$q" ] || quic_qps+=("$q")
  fi
done
rss_after_runs="$(rss_kb "$node_pid")"
stop "$echo_pid"

# --- 5. HTTP against nginx ----------------------------------------------------

# free_port: a TCP port on 127.0.0.1 nobody listens on now.
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# wrk_rps <name> <url> [lua script]: one wrk run; prints its requests/s, or
# nothing (and why, on stderr) when it failed or saw errors.
wrk_rps() {
  local out="$work/wrk-$1.txt"
  shift
  if ! wrk -t 2 -c "$concurrency" -d "${duration}s" ${2:+-s "$2"} "$1" >"$out" 2>&1; then
    sed 's/^/  /' "$out" >&2
    return 0
  fi
  sed 's/^/  /' "$out" >&2
  if grep -q -E 'Non-2xx or 3xx responses|Socket errors' "$out"; then
    say "wrk saw errors against $1: not counted"
    return 0
  fi
  awk '/^Requests\/sec:/ { printf "%.0f", $2 }' "$out"
}
http_what="HTTP: \`GET /api/handles/{id}\` (the REST API's JSON), identifiers spread uniformly over the set"
redirect_what="HTTP: \`GET /{id}\` (the proxy's 302 to the identifier's URL), spread the same way"
http_cmd="\`wrk -t 2 -c $concurrency -d ${duration}s -s <random identifier>.lua http://<node http>/api/handles/\`"
if ((http == 0)); then
  say "HTTP: skipped (--no-http)"
elif [ -z "$node_http" ]; then
  row 35 "$http_what" "$http_cmd" "not measured: the node serves no HTTP" "" ""
else
  if ((install)) && { ! command -v wrk >/dev/null || ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; } && [ "$(id -u)" = 0 ]; then
    say "HTTP: installing wrk and nginx-light (apt-get)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nginx-light; } >&2 || true
  fi
  nginx_bin="$(command -v nginx || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; } || true)"
  if ! command -v wrk >/dev/null; then
    row 35 "$http_what" "$http_cmd" "not measured: wrk is not installed (apt-get install wrk)" "" ""
  else
    # One Lua script per path: each request asks for identifier n, drawn
    # uniformly, named as the synthetic set names it (crates/bench's
    # workload). nginx gets the same script, so both clients do the same
    # work, and serves its one file for every path.
    for kind in api redirect; do
      base="/"; [ "$kind" = api ] && base="/api/handles/"
      cat >"$work/$kind.lua" <<LUA
math.randomseed(os.time())
request = function()
  local n = math.random(0, $count - 1)
  local k = n % $prefixes
  return wrk.format("GET", string.format("${base}88.%d.%d/BENCH-%d", 900 + math.floor(k / 1000), k % 1000 + 1, n))
end
LUA
    done
    nginx_rps=""
    if [ -n "$nginx_bin" ]; then
      mkdir -p "$work/www" "$work/nginx-tmp"
      sample="$(awk -v c="$count" -v p="$prefixes" 'BEGIN { n = int(c / 2); k = n % p; printf "88.%d.%d/BENCH-%d", 900 + int(k / 1000), k % 1000 + 1, n }')"
      python3 -c 'import sys, urllib.request
sys.stdout.buffer.write(urllib.request.urlopen(sys.argv[1], timeout=10).read())' \
        "http://$node_http/api/handles/$sample" >"$work/www/record.json"
      nginx_port="$(free_port)"
      cat >"$work/nginx.conf" <<NGINX
$( [ "$(id -u)" = 0 ] && echo "user root;" )
worker_processes auto;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $work/nginx-tmp/body;
  proxy_temp_path $work/nginx-tmp/proxy;
  fastcgi_temp_path $work/nginx-tmp/fastcgi;
  uwsgi_temp_path $work/nginx-tmp/uwsgi;
  scgi_temp_path $work/nginx-tmp/scgi;
  default_type application/json;
  server {
    listen 127.0.0.1:$nginx_port;
    root $work/www;
    location / { try_files /record.json =404; }
  }
}
NGINX
      "$nginx_bin" -c "$work/nginx.conf" -p "$work" >"$work/nginx.out" 2>&1 &
      nginx_pid=$!
      pids+=("$nginx_pid")
      sleep 1
      if kill -0 "$nginx_pid" 2>/dev/null; then
        say "HTTP: nginx serving a static copy of one record's JSON ($(wc -c <"$work/www/record.json") bytes)"
        nginx_rps="$(wrk_rps nginx "http://127.0.0.1:$nginx_port/" "$work/api.lua")"
      else
        cat "$work/nginx.out" "$work/nginx.err" >&2 2>/dev/null || true
        say "HTTP: nginx did not start"
      fi
      stop "$nginx_pid"
    fi
    say "HTTP: the REST API"
    api_rps="$(wrk_rps api "http://$node_http/" "$work/api.lua")"
    say "HTTP: the proxy's redirects"
    redirect_rps="$(wrk_rps redirect "http://$node_http/" "$work/redirect.lua")"
    peer="" ; [ -z "$nginx_rps" ] || peer="nginx, the same JSON as a static file (same wrk script): $(thousands "$nginx_rps") requests/s"
    [ -n "$nginx_rps" ] || peer="nginx not measured (not installed, or it failed: see stderr)"
    if [ -n "$api_rps" ]; then
      row 35 "$http_what" "$http_cmd" "$(thousands "$api_rps") requests/s" "$peer" "${nginx_rps:+$(percent "$api_rps" "$nginx_rps") of nginx}"
    else
      row 35 "$http_what" "$http_cmd" "not measured: wrk failed or saw errors (see stderr)" "$peer" ""
    fi
    if [ -n "$redirect_rps" ]; then
      row 36 "$redirect_what" "${http_cmd/\/api\/handles\//\/}" "$(thousands "$redirect_rps") requests/s" "$peer" "${nginx_rps:+$(percent "$redirect_rps" "$nginx_rps") of nginx}"
    else
      row 36 "$redirect_what" "${http_cmd/\/api\/handles\//\/}" "not measured: wrk failed or saw errors (see stderr)" "$peer" ""
    fi
  fi
fi
stop "$node_pid"

run_args="--count $count --prefixes $prefixes --concurrency $concurrency --duration ${duration}s"
of_rounds() { if (($# == 1)); then echo "one run"; else echo "median of $# runs: $(list "$@")"; fi; }
echo_median="" udp_median=""
if ((${#echo_qps[@]})); then
  echo_median="$(median "${echo_qps[@]}")"
  row 10 "UDP ceiling: the echo server with the node's worker model" \
    "\`idnode bench $echo_cmd --listen 127.0.0.1:0 --count $count --prefixes $prefixes\`, then \`idnode bench --server <echo> $run_args\`" \
    "$(thousands "$echo_median") answers/s ($(of_rounds "${echo_qps[@]}"))" "" ""
else
  row 10 "UDP ceiling: the echo server with the node's worker model" "\`idnode bench $echo_cmd\`" "not measured: every run failed (see stderr)" "" ""
fi
if ((${#udp_qps[@]})); then
  udp_median="$(median "${udp_qps[@]}")"
  row 20 "Handle over UDP, closed loop, $concurrency outstanding, uniform over the $(thousands "$count") identifiers" \
    "\`idnode bench --server <node udp> $run_args\`, each run right after an echo run" \
    "$(thousands "$udp_median") answers/s ($(of_rounds "${udp_qps[@]}"))" \
    "${echo_median:+echo server $(thousands "$echo_median") answers/s}" \
    "${echo_median:+$(percent "$udp_median" "$echo_median") of the echo server}"
else
  row 20 "Handle over UDP, closed loop" "\`idnode bench --server <node udp> $run_args\`" "not measured: every run failed (see stderr)" "" ""
fi
quic_what="Handle over QUIC, closed loop, $concurrency streams in flight"
quic_cmd="\`idnode bench -t quic --server <node quic> --ca-file <data>/tls/cert.pem $run_args\`"
if ((${#quic_args[@]} == 0)); then
  row 30 "$quic_what" "$quic_cmd" "not measured: the node serves no Handle over QUIC" "" ""
elif ((${#quic_qps[@]})); then
  quic_median="$(median "${quic_qps[@]}")"
  row 30 "$quic_what" "$quic_cmd, after the UDP run of each round" \
    "$(thousands "$quic_median") answers/s ($(of_rounds "${quic_qps[@]}"))" \
    "${udp_median:+Handle over UDP $(thousands "$udp_median") answers/s}" \
    "${udp_median:+$(percent "$quic_median" "$udp_median") of UDP}"
else
  row 30 "$quic_what" "$quic_cmd" "not measured: every run failed (see stderr)" "" ""
fi
mib() { awk -v k="$1" 'BEGIN { printf "%.0f MiB", k / 1024 }'; }
if [ -n "$rss_after_load" ]; then
  row 70 "resident memory of the node with $(thousands "$count") identifiers" \
    "\`grep VmRSS /proc/<pid>/status\`, after the load and again after the runs above" \
    "$(mib "$rss_after_load") after the load${rss_after_runs:+; $(mib "$rss_after_runs") after the runs}" "" ""
else
  row 70 "resident memory of the node" "\`grep VmRSS /proc/<pid>/status\`" "not measured: no /proc/$node_pid/status" "" ""
fi

# --- 6. DNS over UDP against NSD and Knot -----------------------------------

dns_what="DNS over UDP, TXT for identifiers of the set (10 % misses), closed loop"
if ((dns == 0)); then
  say "DNS: skipped (--no-dns)"
elif ! command -v dig >/dev/null; then
  row 40 "$dns_what" "\`benches/dns-compare.sh\`" "not measured: dig is not installed (apt-get install bind9-dnsutils)" "" ""
elif ((install == 0)) && ! command -v dnsperf >/dev/null; then
  row 40 "$dns_what" "\`benches/dns-compare.sh\`" "not measured: dnsperf is not installed (apt-get install dnsperf; benches/dns-compare.sh installs it without --quick)" "" ""
else
  dns_args=(--count "$count" --prefixes "$prefixes" --duration "$duration" --rounds "$rounds" --summary-json "$work/dns.json")
  if ((quick)); then dns_args+=(--warmup 1 --queries 20000 --p99-rate 5000); fi
  ((install)) || dns_args+=(--no-install)
  dns_cmd="benches/dns-compare.sh --count $count --prefixes $prefixes --duration $duration --rounds $rounds"
  ((quick == 0)) || dns_cmd+=" --warmup 1 --queries 20000"
  say "DNS: $dns_cmd"
  if benches/dns-compare.sh "${dns_args[@]}" >&2; then
    # mib <server>: its memory after its runs, in MiB.
    mib() { json "$work/dns.json" "next(round(s['rss_kb'] / 1024) for s in j['servers'] if s['server'] == '$1' and s['rss_kb'])"; }
    idn="$(json "$work/dns.json" 'next(s["qps"] for s in j["servers"] if s["server"] == "idnode")')"
    idn_mib="$(mib idnode)"
    peers="" ratios=""
    for s in nsd knot; do
      name="$([ "$s" = nsd ] && echo NSD || echo Knot)"
      q="$(json "$work/dns.json" "next(s['qps'] for s in j['servers'] if s['server'] == '$s')")"
      m="$(mib "$s")"
      if [ -n "$q" ]; then
        peers+="${peers:+; }$name $(thousands "$q") queries/s${m:+, $(thousands "$m") MiB}"
        [ -z "$idn" ] || ratios+="${ratios:+; }$(percent "$idn" "$q") of $name"
        [ -z "$idn_mib" ] || [ -z "$m" ] || ratios+=" ($(percent "$idn_mib" "$m") of its memory)"
      else
        peers+="${peers:+; }$name not measured (not installed, or it failed: see stderr)"
      fi
    done
    if [ -n "$idn" ]; then
      idn_rounds="$(json "$work/dns.json" 'next(s["rounds"] for s in j["servers"] if s["server"] == "idnode")')"
      row 40 "$dns_what (dnsperf), idnode on its defaults, the servers taking turns; memory after the runs" "\`$dns_cmd\`" "$(thousands "$idn") queries/s (median of $rounds rounds${idn_rounds:+: ${idn_rounds//\// \/ }})${idn_mib:+, $(thousands "$idn_mib") MiB}" "$peers" "$ratios"
    else
      row 40 "$dns_what (dnsperf)" "\`$dns_cmd\`" "not measured: no idnode figure in its summary" "$peers" ""
    fi
    axfr_secs="$(json "$work/dns.json" 'j["axfr_secs"]')"
    axfr_records="$(json "$work/dns.json" 'j["axfr_records"]')"
    if [ -n "$axfr_records" ]; then
      row 41 "zone transfer of the same zone with dig's default options (5 s timeout a read)" "\`dig AXFR idnode.internal. @<node> -p <port>\`" \
        "$(thousands "$axfr_records") records in $axfr_secs s" "" ""
    fi
  else
    row 40 "$dns_what" "\`$dns_cmd\`" "not measured: benches/dns-compare.sh failed (its messages are on stderr)" "" ""
  fi
fi

# --- 7. criterion ------------------------------------------------------------

# criterion_rows <bench> <output file> <pattern|label|per> ...: a row per
# benchmark whose name matches the pattern (an awk regular expression);
# `per` divides the time of an iteration (e.g. 32 for a batch of 32).
criterion_time() {
  # Criterion prints `group/name  time:   [low est high]`, the name on a line
  # of its own when it is long. Prints "<estimate> <unit>" for the pattern.
  awk -v pat="$2" '
    /^[^ \t]/ && !/time:/ { name = $0 }
    /time: +\[/ {
      line = $0
      n = line; sub(/ *time:.*/, "", n); if (n != "") name = n
      sub(/.*time: +\[/, "", line)
      split(line, v, " ")
      if (name ~ pat) { print v[3], v[4]; exit }
    }' "$1"
}
# ns <value> <unit> <per>: in nanoseconds, divided by per.
ns() {
  awk -v x="$1" -v u="$2" -v per="$3" 'BEGIN {
    m = (u == "ps") ? 0.001 : (u == "ns") ? 1 : (u == "µs" || u == "us") ? 1000 : (u == "ms") ? 1e6 : (u == "s") ? 1e9 : 0
    if (m == 0) exit 1
    t = x * m / per
    if (t < 10) printf "%.2f ns", t; else if (t < 1000) printf "%.1f ns", t; else printf "%.2f µs", t / 1000
  }'
}
if ((criterion == 0)); then
  say "criterion: skipped ($( ((quick)) && echo '--quick; --criterion runs it' || echo '--no-criterion'))"
elif ! command -v cargo >/dev/null; then
  row 50 "the hot path in process (criterion)" "\`cargo bench --bench resolve\`, \`cargo bench --bench codec\`" "not measured: cargo is not installed" "" ""
else
  crit_args=()
  ((quick)) && crit_args=(--warm-up-time 0.2 --measurement-time 0.5 --sample-size 10)
  crit_note="${crit_args[*]:+ -- ${crit_args[*]}}"
  for b in codec resolve; do
    say "criterion: cargo bench --bench $b$crit_note (builds the bench first)"
    if ! cargo bench --bench "$b" -- ${crit_args[@]+"${crit_args[@]}"} >"$work/criterion-$b.txt" 2>"$work/criterion-$b.stderr"; then
      tail -20 "$work/criterion-$b.stderr" >&2
      row 50 "criterion: \`$b\`" "\`cargo bench --bench $b$crit_note\`" "not measured: the bench failed (its messages are on stderr)" "" ""
      continue
    fi
    grep -B1 'time:' "$work/criterion-$b.txt" >&2 || true
    if [ "$b" = codec ]; then
      figs=""
      for spec in "normalize identifier|normalize" "decode request|decode" "encode response$|encode a 5-value response" "SHA-256|with a SHA-256 digest"; do
        t="$(criterion_time "$work/criterion-$b.txt" "${spec%%|*}")"
        [ -z "$t" ] || figs+="${figs:+; }${spec#*|} $(ns $t 1)"
      done
      row 90 "the codec: normalize an identifier, decode a request, encode a 5-value response" \
        "\`cargo bench --bench codec$crit_note\`" "${figs:-not measured: no figures in its output}" "" ""
    else
      hit="$(criterion_time "$work/criterion-$b.txt" 'response cache hit$')"
      hit_all="$(criterion_time "$work/criterion-$b.txt" 'all 1M cached, random$')"
      read_one="$(criterion_time "$work/criterion-$b.txt" 'no response cache \(decode')"
      read_batch="$(criterion_time "$work/criterion-$b.txt" 'no response cache, batches of 32')"
      figs=""
      [ -z "$hit" ] || figs+="$(ns $hit 1) a hit (its 10,000 questions)"
      [ -z "$hit_all" ] || figs+="${figs:+; }$(ns $hit_all 1) with all 1M cached, questions spread over them"
      row 50 "whole resolution in process, response-cache hit" "\`cargo bench --bench resolve$crit_note\`" "${figs:-not measured: no figures in its output}" "" ""
      figs=""
      [ -z "$read_one" ] || figs+="$(ns $read_one 1) one at a time"
      [ -z "$read_batch" ] || figs+="${figs:+; }$(ns $read_batch 32) a resolution in batches of 32 (one multi-get, the UDP path)"
      row 60 "whole resolution in process reading RocksDB (no response cache), 1M records" "\`cargo bench --bench resolve$crit_note\`" "${figs:-not measured: no figures in its output}" "" ""
    fi
  done
fi

# --- the table ---------------------------------------------------------------

say "done in $((SECONDS - started)) s"
echo "On $cores cores${cpu:+ ($cpu)}, $(uname -sr)${loadavg:+ (load average $loadavg at the start)}, loopback, the load generator sharing the cores with the servers; release build; \`idnode serve --no-dns\` with default settings; $(thousands "$count") identifiers over $prefixes prefixes (\`idnode bench load --compact\`); ${duration} s runs after a $warmup warm-up, $rounds round$( ((rounds == 1)) || echo s) alternating; made by \`benches/run.sh$( ((quick)) && echo ' --quick')\`."
echo
echo "| what | command | figure | peer (same run) | ratio |"
echo "|---|---|---|---|---|"
printf '%s\n' "${rows[@]}" | sort -s -n -k1,1 | cut -f2-
