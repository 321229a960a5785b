#!/usr/bin/env bash
# Compares idnode's DNS answering with NSD and Knot on the same records.
#
# One synthetic data set (`idnode bench load`) goes into a fresh idnode on
# loopback; its zone `idnode.internal.` is taken from idnode itself by AXFR
# and written as a zone file; NSD and Knot serve that file. The servers
# run side by side; each is driven by dnsperf over UDP with the same query
# file (TXT for random identifiers of the set, plus a share of misses under
# existing prefixes): a 30 s warm-up with the same questions in another
# order (the caches fill), then closed-loop runs for queries/s and the
# average latency, the servers taking turns for --rounds rounds (medians),
# then per server a run at a fixed rate with dnsperf's per-query output
# for the p99 (dnsperf 2.10 has no latency histogram of its own), and its
# memory.
# Everything listens on 127.0.0.1 on free ports and is stopped at the end.
#
# Usage: benches/dns-compare.sh [--count N] [--prefixes P] [--duration S]
#          [--warmup S] [--rounds N (default 3)] [--clients C] [--threads T] [--outstanding Q]
#          [--queries Q (default: max(count, 200000))] [--miss-ratio R] [--p99-rate QPS] [--seed N]
#          [--servers idnode,nsd,knot] [--keep]
#          [--idnode-arg ARG (one more argument of `idnode serve`; repeat)]
#          [--no-install] [--summary-json FILE]
# Needs: the release idnode ($CARGO_TARGET_DIR/release/idnode, or
# $IDNODE_BIN), dig, dnsperf; dnsperf, nsd and knot are installed with
# apt-get when missing, unless --no-install (a server that is not there is
# then skipped with a message; without dnsperf the script exits 1).
# --summary-json FILE also writes the figures for a script (benches/run.sh):
# {"count", "prefixes", "records", "queries", "duration_secs", "cores",
#  "idnode_rss_kb", "axfr_secs", "axfr_records", "servers": [{"server", "qps", "avg_us", "p50_us",
#  "p99_us", "rate_avg_us", "p99_rate", "lost", "codes", "rss_kb"}]}
# with null for what was not measured.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

count=100000 prefixes=100 duration=10 warmup=30 clients=4 threads=1 rounds=3
# idnode runs on its default settings; each server's resident memory
# (VmRSS) is read after its runs.
outstanding=64 nqueries="" miss_ratio=0.1 p99_rate=20000 seed=1
servers="idnode,nsd,knot" keep=0 idnode_args=() install=1 summary_json=""
while (($#)); do
  case "$1" in
    --count) count="$2"; shift 2 ;;
    --prefixes) prefixes="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    --warmup) warmup="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --clients) clients="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --outstanding) outstanding="$2"; shift 2 ;;
    --queries) nqueries="$2"; shift 2 ;;
    --miss-ratio) miss_ratio="$2"; shift 2 ;;
    --p99-rate) p99_rate="$2"; shift 2 ;;
    --seed) seed="$2"; shift 2 ;;
    --servers) servers="$2"; shift 2 ;;
    --keep) keep=1; shift ;;
    --idnode-arg) idnode_args+=("$2"); shift 2 ;;
    --no-install) install=0; shift ;;
    --summary-json) summary_json="$2"; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "dns-compare: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

APEX="idnode.internal."
# By default the query file asks as many questions as there are identifiers
# (at least 200,000), so that the working set grows with the data set.
[ -n "$nqueries" ] || nqueries=$((count > 200000 ? count : 200000))
IDNODE="${IDNODE_BIN:-$CARGO_TARGET_DIR/release/idnode}"
[ -x "$IDNODE" ] || { echo "dns-compare: no $IDNODE; build it: source scripts/env.sh && cargo build --release --bin idnode" >&2; exit 1; }
command -v dig >/dev/null || { echo "dns-compare: dig is missing (apt-get install bind9-dnsutils)" >&2; exit 1; }

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
apt_tried=0
# ensure <command> <package>: the path of the command, installing the package
# when missing; empty when that fails.
ensure() {
  local found
  found="$(command -v "$1" || true)"
  [ -n "$found" ] || [ ! -x "/usr/sbin/$1" ] || found="/usr/sbin/$1"
  if [ -z "$found" ] && ((install)); then
    echo "dns-compare: installing $2 ..." >&2
    if ((apt_tried == 0)); then $SUDO apt-get update -qq >/dev/null 2>&1 || true; apt_tried=1; fi
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$2" >/dev/null 2>&1 || true
    found="$(command -v "$1" || true)"
    [ -n "$found" ] || [ ! -x "/usr/sbin/$1" ] || found="/usr/sbin/$1"
  fi
  echo "$found"
}
DNSPERF="$(ensure dnsperf dnsperf)"
[ -n "$DNSPERF" ] || { echo "dns-compare: dnsperf is missing$( ((install)) && echo ' and could not be installed' || echo ' (--no-install)')" >&2; exit 1; }

# free_port: a port free on 127.0.0.1 for UDP and TCP alike (the DNS
# listens on both).
free_port() {
  python3 -c '
import socket
for _ in range(100):
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("127.0.0.1", 0))
    port = u.getsockname()[1]
    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        t.bind(("127.0.0.1", port))
    except OSError:
        continue
    print(port)
    break
'
}

# median <numbers...>
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR) printf "%.0f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

work="$(mktemp -d "${TMPDIR:-/tmp}/dns-compare.XXXXXX")"
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do
    kill "$p" 2>/dev/null || true
  done
  for p in "${pids[@]}"; do
    wait "$p" 2>/dev/null || true
  done
  if ((keep)); then echo "dns-compare: kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# stop <pid>: ends one server we started and waits for it.
stop() {
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  local p keep_pids=()
  for p in "${pids[@]}"; do [ "$p" = "$1" ] || keep_pids+=("$p"); done
  pids=("${keep_pids[@]}")
}

# wait_dns <port> <pid> <log>: until the server answers the apex SOA.
wait_dns() {
  local i
  for ((i = 0; i < 600; i++)); do
    kill -0 "$2" 2>/dev/null || { echo "dns-compare: server exited; log:" >&2; tail -20 "$3" >&2; return 1; }
    if dig +short +time=1 +tries=1 @127.0.0.1 -p "$1" "$APEX" SOA 2>/dev/null | grep -q .; then return 0; fi
    sleep 0.5
  done
  echo "dns-compare: no answer on port $1 after 300 s; log:" >&2; tail -20 "$3" >&2; return 1
}

# 1. idnode with the synthetic data set.
idn_dns="$(free_port)"
idn_grpc="$(free_port)"
echo "dns-compare: starting idnode (dns 127.0.0.1:$idn_dns), loading $count identifiers over $prefixes prefixes" >&2
"$IDNODE" serve --data-dir "$work/idnode" \
  --handle-listen 127.0.0.1:0 --quic-listen 127.0.0.1:0 \
  --grpc-listen "127.0.0.1:$idn_grpc" --http-listen 127.0.0.1:0 \
  --dns-listen "127.0.0.1:$idn_dns" --dns-quic-listen 127.0.0.1:0 \
  ${idnode_args[@]+"${idnode_args[@]}"} >"$work/idnode.log" 2>&1 &
idn_pid=$!
pids+=("$idn_pid")
for ((i = 0; i < 300; i++)); do
  grep -qs '^ready' "$work/idnode.log" && break
  kill -0 "$idn_pid" 2>/dev/null || { cat "$work/idnode.log" >&2; exit 1; }
  sleep 0.2
done
grep -q '^ready' "$work/idnode.log" || { echo "dns-compare: idnode not ready" >&2; cat "$work/idnode.log" >&2; exit 1; }
"$IDNODE" bench load --count "$count" --prefixes "$prefixes" -q \
  --grpc "http://127.0.0.1:$idn_grpc" --token-file "$work/idnode/admin.token" >&2

# 2. The zone file: idnode's own AXFR, with the closing SOA dropped.
zone="$work/idnode.internal.zone"
# On dig's default options (a 5 s timeout for each read): the node must
# start sending at once and keep sending, whatever the size of the zone.
axfr_start=$(date +%s.%N)
dig +nocmd +nocomments AXFR "$APEX" @127.0.0.1 -p "$idn_dns" >"$work/axfr.txt"
axfr_secs="$(awk -v s="$axfr_start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')"
axfr_records="$(sed -n 's/^;; XFR size: \([0-9]*\) records.*/\1/p' "$work/axfr.txt")"
echo "dns-compare: dig AXFR (default options): ${axfr_records:-no} records in $axfr_secs s" >&2
if [ -z "$axfr_records" ] || grep -q 'Transfer failed\|timed out\|communications error' "$work/axfr.txt"; then
  echo "dns-compare: dig AXFR failed:" >&2
  grep '^;' "$work/axfr.txt" | tail -5 >&2
  exit 1
fi
awk '$1 ~ /^;/ || NF == 0 { next } $4 == "SOA" { if (soa++) next } { print }' "$work/axfr.txt" >"$zone"
rm -f "$work/axfr.txt"
records="$(wc -l <"$zone")"
echo "dns-compare: zone file $records records, $(du -h "$zone" | cut -f1)" >&2

# 3. The query file: TXT for random identifiers of the set, plus misses
# (names under existing prefixes that were never registered).
awk '$4 == "TXT" && $1 ~ /^BENCH-/ && !seen[$1]++ { print $1 }' "$zone" >"$work/names.txt"
nnames="$(wc -l <"$work/names.txt")"
awk -v n="$nqueries" -v miss="$miss_ratio" -v seed="$seed" '
  { name[NR] = $0 }
  END {
    srand(seed)
    for (i = 0; i < n; i++) {
      q = name[int(rand() * NR) + 1]
      if (rand() < miss) { sub(/^BENCH-/, "MISS-", q) }
      print q " TXT"
    }
  }' "$work/names.txt" >"$work/queries.txt"
# The warm-up asks the same questions in another order: a server whose
# cache fills in the order it is asked would otherwise meet the measured
# run's questions laid out in memory one after the other.
awk -v seed="$((seed + 1))" 'BEGIN { srand(seed) } { print rand() "\t" $0 }' "$work/queries.txt" |
  sort -k1,1 | cut -f2- >"$work/warmup.txt"
echo "dns-compare: $nqueries queries over $nnames identifiers, miss ratio $miss_ratio" >&2

# A few answers of each server are compared with idnode's before its run.
head -5 "$work/names.txt" >"$work/check.txt"
answers() {
  local n
  while read -r n; do dig +short +time=2 +tries=1 @127.0.0.1 -p "$1" "$n" TXT | sort; done <"$work/check.txt"
}

# memory_kb <pid>: the memory of a server after its runs, in KiB: the
# proportional set size (Pss) of the process and its children, summed, so
# that a server of several processes (NSD) is counted once for the pages
# they share; for one process it is its resident memory.
memory_kb() {
  local all=("$1") i=0 kids
  while ((i < ${#all[@]})); do
    kids="$(cat /proc/"${all[i]}"/task/*/children 2>/dev/null || true)"
    for k in $kids; do all+=("$k"); done
    i=$((i + 1))
  done
  local total=0 p v
  for p in "${all[@]}"; do
    v="$(awk '/^Pss:/ { print $2 }' /proc/"$p"/smaps_rollup 2>/dev/null || true)"
    [ -n "$v" ] && total=$((total + v))
  done
  ((total > 0)) && echo "$total" || true
}

results="$work/results.tsv"
: >"$results"
dnsperf_run() { # dnsperf_run <port> <query file> <seconds> <out> [more dnsperf args]
  local port="$1" file="$2" secs="$3" out="$4"
  shift 4
  "$DNSPERF" -s 127.0.0.1 -p "$port" -d "$file" -e -t 2 -c "$clients" -T "$threads" \
    -q "$outstanding" -l "$secs" "$@" >"$out" 2>&1
}

# 4. Every server started (one after the other), its answers checked
# against idnode's, and warmed up; they then all run side by side, idle
# but for the one being measured.
labels=() ports=() spids=()
IFS=, read -r -a wanted <<<"$servers"
reference="$(answers "$idn_dns")"
for server in "${wanted[@]}"; do
  case "$server" in
    idnode) port="$idn_dns" pid="$idn_pid" ;;
    nsd)
      NSD="$(ensure nsd nsd)"
      if [ -z "$NSD" ]; then echo "dns-compare: skipping NSD: not installed$( ((install)) && echo ' and could not be installed' || echo ' (--no-install)')" >&2; continue; fi
      port="$(free_port)" d="$work/nsd"
      mkdir -p "$d"
      cat >"$d/nsd.conf" <<EOF
server:
    ip-address: 127.0.0.1@$port
    port: $port
    do-ip6: no
    username: ""
    chroot: ""
    zonesdir: "$d"
    database: ""
    zonelistfile: "$d/zone.list"
    xfrdfile: "$d/xfrd.state"
    xfrdir: "$d"
    pidfile: "$d/nsd.pid"
    logfile: "$d/nsd.log"
    server-count: $(nproc)
    verbosity: 1
    # Response rate limiting is on by default in NSD (200/s a /24): off, as
    # in idnode and Knot, or it answers the load generator with nothing.
    rrl-ratelimit: 0
    rrl-whitelist-ratelimit: 0
remote-control:
    control-enable: no
zone:
    name: "$APEX"
    zonefile: "$zone"
EOF
      echo "dns-compare: starting NSD on 127.0.0.1:$port" >&2
      "$NSD" -d -c "$d/nsd.conf" >"$d/stdout.log" 2>&1 &
      pid=$!
      pids+=("$pid")
      load_start=$(date +%s.%N)
      if ! wait_dns "$port" "$pid" "$d/nsd.log"; then stop "$pid"; continue; fi
      echo "dns-compare: NSD answers after $(awk -v s="$load_start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }') s (loading the zone file)" >&2
            ;;
    knot)
      KNOTD="$(ensure knotd knot)"
      if [ -z "$KNOTD" ]; then echo "dns-compare: skipping Knot: not installed$( ((install)) && echo ' and could not be installed' || echo ' (--no-install)')" >&2; continue; fi
      port="$(free_port)" d="$work/knot"
      mkdir -p "$d"
      cat >"$d/knot.conf" <<EOF
server:
    rundir: "$d"
    listen: 127.0.0.1@$port
    udp-workers: $(nproc)
    tcp-workers: 1
    background-workers: 1
database:
    storage: "$d"
control:
    listen: "$d/knot.sock"
log:
  - target: "$d/knot.log"
    any: info
template:
  - id: default
    storage: "$d"
    semantic-checks: off
    journal-content: none
    zonefile-sync: -1
zone:
  - domain: $APEX
    file: "$zone"
EOF
      echo "dns-compare: starting Knot on 127.0.0.1:$port" >&2
      "$KNOTD" -c "$d/knot.conf" >"$d/stdout.log" 2>&1 &
      pid=$!
      pids+=("$pid")
      load_start=$(date +%s.%N)
      if ! wait_dns "$port" "$pid" "$d/knot.log"; then stop "$pid"; continue; fi
      echo "dns-compare: Knot answers after $(awk -v s="$load_start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }') s (loading the zone file)" >&2
            ;;
    *) echo "dns-compare: unknown server $server (idnode, nsd, knot)" >&2; continue ;;
  esac
  [ "$(answers "$port")" = "$reference" ] || echo "dns-compare: warning: $server's answers differ from idnode's" >&2
  echo "dns-compare: $server: warm-up ${warmup}s" >&2
  dnsperf_run "$port" "$work/warmup.txt" "$warmup" /dev/null || true
  labels+=("$server") ports+=("$port") spids+=("$pid")
done

# 5. Closed-loop runs, the servers taking turns for --rounds rounds (the
# machine's speed moves from one minute to the next); each figure is the
# median of its rounds.
for ((r = 1; r <= rounds; r++)); do
  for i in "${!labels[@]}"; do
    echo "dns-compare: round $r of $rounds: ${labels[i]}, ${duration}s" >&2
    dnsperf_run "${ports[i]}" "$work/queries.txt" "$duration" "$work/dnsperf-${labels[i]}-$r.txt"
  done
done

# 6. Per server: a run at a fixed rate with per-query latencies (p99),
# then its memory.
for i in "${!labels[@]}"; do
  label="${labels[i]}" out="$work/dnsperf-${labels[i]}"
  echo "dns-compare: $label: ${duration}s at $p99_rate queries/s with per-query latencies" >&2
  dnsperf_run "${ports[i]}" "$work/queries.txt" "$duration" "$out-rate.txt" -Q "$p99_rate" -v
  qs=() avgs=()
  for ((r = 1; r <= rounds; r++)); do
    q="$(awk -F': *' '/Queries per second/ { printf "%.0f", $2 }' "$out-$r.txt")"
    a="$(awk '/Average Latency/ { printf "%.0f", $4 * 1e6 }' "$out-$r.txt")"
    [ -z "$q" ] || qs+=("$q")
    [ -z "$a" ] || avgs+=("$a")
  done
  qps="$(median ${qs[@]+"${qs[@]}"})" avg="$(median ${avgs[@]+"${avgs[@]}"})"
  rounds_list="$(IFS=/; echo "${qs[*]:-}")"
  lost="$(awk '/Queries lost/ { s += $3 } END { print s + 0 }' "$out"-[0-9]*.txt)"
  rate_lost="$(awk '/Queries lost/ { print $3 }' "$out-rate.txt")"
  codes="$(awk -F': *' '/Response codes/ { print $2 }' "$out-$rounds.txt" | sed 's/ ([0-9.]*%)//g')"
  # Verbose lines: "> NOERROR name TXT 0.000123" (latency in seconds, last).
  read -r p50 p99 rate_avg < <(awk '/^> / { print $NF * 1e6 }' "$out-rate.txt" | sort -n | awk '
    { v[NR] = $1; s += $1 }
    END { if (NR) printf "%.0f %.0f %.0f\n", v[int(NR * 0.5) + 1], v[int(NR * 0.99) + 1], s / NR; else print "- - -" }')
  rss="$(memory_kb "${spids[i]}")"
  [ "$label" != idnode ] || idn_rss_kb="$rss"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "${qps:--}" "${avg:--}" "$p50" "$p99" "$rate_avg" "${lost:--} / ${rate_lost:--}" "${codes:--}" "${rss:--}" "${rounds_list:--}" >>"$results"
done
for pid in "${spids[@]}"; do stop "$pid"; done

cores="$(nproc)"
echo
echo "DNS over UDP, $count identifiers over $prefixes prefixes ($records records), $nqueries TXT queries (miss ratio $miss_ratio), $cores cores shared with dnsperf"
echo "closed loop: dnsperf -c $clients -T $threads -q $outstanding -e, ${duration}s runs, the servers taking turns for $rounds rounds (median), after a ${warmup}s warm-up each (the same questions in another order); fixed rate: the same at -Q $p99_rate, per-query latencies (-v)"
echo
printf '| %-7s | %12s | %-26s | %14s | %21s | %21s | %21s | %-21s | %10s | %s |\n' server "queries/s" "rounds" "avg latency" "p50 at $p99_rate/s" "p99 at $p99_rate/s" "avg at $p99_rate/s" "lost (closed / rate)" "memory" "response codes (last round)"
printf '|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n' --------- -------------- ---------------------------- ---------------- ----------------------- ----------------------- ----------------------- ----------------------- ------------ ----------------
while IFS=$'\t' read -r label qps avg p50 p99 ravg lost codes rss rlist; do
  mem="-"
  [ "$rss" = "-" ] || mem="$((rss / 1024)) MiB"
  printf '| %-7s | %12s | %-26s | %11s µs | %18s µs | %18s µs | %18s µs | %-21s | %10s | %s |\n' "$label" "$qps" "$rlist" "$avg" "$p50" "$p99" "$ravg" "$lost" "$mem" "$codes"
done <"$results"
echo "memory: Pss of the server's processes after its runs (for one process, its resident memory); idnode on its default settings"

# The same figures for a script.
if [ -n "$summary_json" ]; then
  # json_value <text>: a number as is, anything else as a JSON string, "-" or empty as null.
  json_value() {
    case "$1" in
      '' | -) printf 'null' ;;
      *[!0-9.]* | *.*.* | .*) printf '"%s"' "$(printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g')" ;;
      *) printf '%s' "$1" ;;
    esac
  }
  {
    printf '{"count": %s, "prefixes": %s, "records": %s, "queries": %s, "miss_ratio": %s, "duration_secs": %s, "cores": %s, "idnode_rss_kb": %s, "axfr_secs": %s, "axfr_records": %s, "servers": [' \
      "$count" "$prefixes" "$records" "$nqueries" "$(json_value "$miss_ratio")" "$(json_value "$duration")" "$cores" "$(json_value "${idn_rss_kb:-}")" "$(json_value "$axfr_secs")" "$(json_value "${axfr_records:-}")"
    sep=""
    while IFS=$'\t' read -r label qps avg p50 p99 ravg lost codes rss rlist; do
      printf '%s\n  {"server": "%s", "qps": %s, "rounds": %s, "avg_us": %s, "p50_us": %s, "p99_us": %s, "rate_avg_us": %s, "p99_rate": %s, "lost": %s, "codes": %s, "rss_kb": %s}' \
        "$sep" "$label" "$(json_value "$qps")" "$(json_value "$rlist")" "$(json_value "$avg")" "$(json_value "$p50")" "$(json_value "$p99")" "$(json_value "$ravg")" "$p99_rate" "$(json_value "$lost")" "$(json_value "$codes")" "$(json_value "$rss")"
      sep=","
    done <"$results"
    printf '\n]}\n'
  } >"$summary_json"
fi
