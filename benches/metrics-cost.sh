#!/usr/bin/env bash
# What counting costs the UDP path: the load generator's Handle-over-UDP
# figure (the README's closed loop, `idnode bench --concurrency 64`)
# against a node with metrics on and the same node with `[metrics]
# enabled = false`, alternating on/off for --rounds rounds, in one run.
# With --what rrl, the same for response rate limiting: on, the load
# generator's address is not exempt and every answer passes the limiter
# (limits far above the load, so none is refused); off, `[rate_limit]
# enabled = false`. The amplification cap is off in both (it would send
# the non-exempt load generator to TCP).
#
# It loads one node with the synthetic data set (`idnode bench load
# --compact`), stops it, copies its data directory, then runs two nodes on
# the two copies (one with metrics on, one off; the idle one takes no
# CPU) on 127.0.0.1 with ports the kernel picks, and stops them by their
# PIDs when it ends. Prints each run's answers/s and the medians.
#
# Usage: benches/metrics-cost.sh [--count N] [--prefixes P] [--duration S]
#          [--rounds N] [--concurrency C]
#   --count N        identifiers in the data set (default 1,000,000)
#   --prefixes P     prefixes they are spread over (default 100)
#   --duration S     seconds each run measures, after a 1 s warm-up
#                    (default 8)
#   --rounds N       on/off rounds (default 3)
#   --concurrency C  requests outstanding (default 64)
#   --what W         metrics (default) or rrl
# Needs: the release idnode ($CARGO_TARGET_DIR/release/idnode after
# `source scripts/env.sh`, or $IDNODE_BIN), python3.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

count=1000000 prefixes=100 duration=8 rounds=3 concurrency=64 what=metrics
while (($#)); do
  case "$1" in
    --what)
      [ $# -ge 2 ] && [[ "$2" =~ ^(metrics|rrl)$ ]] || { echo "metrics-cost.sh: --what takes metrics or rrl" >&2; exit 2; }
      what="$2"
      shift 2 ;;
    --count|--prefixes|--duration|--rounds|--concurrency)
      [ $# -ge 2 ] && [[ "$2" =~ ^[1-9][0-9]*$ ]] || { echo "metrics-cost.sh: $1 takes a positive whole number" >&2; exit 2; }
      case "$1" in
        --count) count="$2" ;; --prefixes) prefixes="$2" ;; --duration) duration="$2" ;;
        --rounds) rounds="$2" ;; --concurrency) concurrency="$2" ;;
      esac
      shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "metrics-cost.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

IDNODE="${IDNODE_BIN:-$CARGO_TARGET_DIR/release/idnode}"
[ -x "$IDNODE" ] || { echo "metrics-cost.sh: no idnode binary at $IDNODE" >&2; exit 1; }
work="$(mktemp -d "${TMPDIR:-/tmp}/idnode-metrics.XXXXXX")"
pids=()
cleanup() {
  local p
  for p in ${pids[@]+"${pids[@]}"}; do kill "$p" 2>/dev/null || true; done
  for p in ${pids[@]+"${pids[@]}"}; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
say() { echo "metrics-cost.sh: $*" >&2; }
json() { python3 -c 'import json, sys; print(eval(sys.argv[2], {}, {"j": json.load(open(sys.argv[1]))}))' "$1" "$2"; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { printf "%.0f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# start <dir> <serve args...>: sets pid and udp.
start() {
  local dir="$1" i
  shift
  rm -f "$dir.ready.json"
  "$IDNODE" serve --data-dir "$dir" --ready-file "$dir.ready.json" --no-dns --no-http \
    --handle-listen 127.0.0.1:0 --quic-listen 127.0.0.1:0 --grpc-listen 127.0.0.1:0 \
    "$@" >"$dir.log" 2>"$dir.stderr" &
  pid=$!
  pids+=("$pid")
  for ((i = 0; i < 600; i++)); do
    [ -s "$dir.ready.json" ] && break
    kill -0 "$pid" 2>/dev/null || { tail "$dir.stderr" >&2; exit 1; }
    sleep 0.1
  done
  udp="$(json "$dir.ready.json" 'j["handle_udp"]')"
  grpc="$(json "$dir.ready.json" 'j["grpc"]')"
}

say "loading $count identifiers over $prefixes prefixes"
start "$work/on"
"$IDNODE" bench load --count "$count" --prefixes "$prefixes" --compact -q \
  --grpc "http://$grpc" --token-file "$work/on/admin.token" >&2
kill "$pid"
wait "$pid" 2>/dev/null || true
cp -a "$work/on" "$work/off"
if [ "$what" = metrics ]; then
  printf '' >"$work/on.toml"
  printf '[metrics]\nenabled = false\n' >"$work/off.toml"
else
  printf '[rate_limit]\nenabled = true\nexempt = []\namplification = 0\nresponses_per_second = 1000000000\nall_per_second = 1000000000\n' >"$work/on.toml"
  printf '[rate_limit]\nenabled = false\nexempt = []\namplification = 0\n' >"$work/off.toml"
fi

start "$work/on" --config "$work/on.toml"
on_udp="$udp"
start "$work/off" --config "$work/off.toml"
off_udp="$udp"

run() {
  "$IDNODE" bench --server "$1" --count "$count" --prefixes "$prefixes" \
    --concurrency "$concurrency" --duration "${duration}s" --warmup 1s --json >"$work/run.json" 2>"$work/run.stderr" ||
    { cat "$work/run.stderr" >&2; exit 1; }
  json "$work/run.json" 'round(j["qps"])'
}
# One unmeasured pass each: both response caches warm.
run "$on_udp" >/dev/null
run "$off_udp" >/dev/null
on=() off=()
for ((r = 1; r <= rounds; r++)); do
  q="$(run "$on_udp")"
  on+=("$q")
  say "round $r: $what on  $q answers/s"
  q="$(run "$off_udp")"
  off+=("$q")
  say "round $r: $what off $q answers/s"
done
m_on="$(median "${on[@]}")" m_off="$(median "${off[@]}")"
echo "$what on:  ${on[*]} answers/s (median $m_on)"
echo "$what off: ${off[*]} answers/s (median $m_off)"
awk -v a="$m_on" -v b="$m_off" 'BEGIN { printf "on / off: %.1f %%\n", 100 * a / b }'
