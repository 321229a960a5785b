#!/usr/bin/env bash
# A local demo hierarchy on loopback, in the foreground until interrupted:
#
#   top-level   homes 88        Handle UDP+TCP 127.0.0.1:26410
#   secondary   homes 88.100    127.0.0.1:26420 (88.100 delegated to it by the top)
#   enterprise1 homes 88.100.1  127.0.0.1:26430 (delegated by the secondary)
#   enterprise2 homes 88.100.2  127.0.0.1:26440 (delegated by the secondary)
#   recursive   root = top      127.0.0.1:26450 (resolves for clients that set REC)
#
# Each node also listens on port+1 (gRPC), +2 (Handle over QUIC), +3 (DNS
# UDP/TCP), +4 (DNS over QUIC) and +5 (HTTP: REST API and browser proxy).
# State lives in $IDNODE_DEMO_DIR
# (default ./hierarchy-data), wiped at start. Prints `ready` once all five
# answer; Ctrl-C (or SIGTERM) stops every node it started.
#
# Usage: deploy/hierarchy-demo.sh          (builds idnode first if needed)
#        IDNODE_BIN=/path/to/idnode deploy/hierarchy-demo.sh
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
demo_dir="${IDNODE_DEMO_DIR:-$PWD/hierarchy-data}"

if [ -z "${IDNODE_BIN:-}" ]; then
  # shellcheck source=../scripts/env.sh
  source "$root/scripts/env.sh"
  (cd "$root" && cargo build --release --bin idnode >&2)
  IDNODE_BIN="$CARGO_TARGET_DIR/release/idnode"
fi
bin="$IDNODE_BIN"

pids=()
stop_all() {
  trap - INT TERM EXIT
  if [ "${#pids[@]}" -gt 0 ]; then
    echo "stopping ${#pids[@]} nodes" >&2
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
  fi
}
trap 'stop_all; exit 0' INT TERM
trap stop_all EXIT

rm -rf "$demo_dir"
mkdir -p "$demo_dir"

# start NAME PORT [serve flags...]: starts a node, waits for its `ready`.
start() {
  local name=$1 port=$2
  shift 2
  local dir="$demo_dir/$name"
  mkdir -p "$dir"
  RUST_LOG="${RUST_LOG:-warn}" "$bin" serve --data-dir "$dir" \
    --handle-listen "127.0.0.1:$port" --grpc-listen "127.0.0.1:$((port + 1))" \
    --quic-listen "127.0.0.1:$((port + 2))" --dns-listen "127.0.0.1:$((port + 3))" \
    --dns-quic-listen "127.0.0.1:$((port + 4))" --http-listen "127.0.0.1:$((port + 5))" \
    --udp-workers 1 "$@" \
    >"$dir/node.log" 2>&1 &
  pids+=($!)
  local waited=0
  until grep -qx ready "$dir/node.log" 2>/dev/null; do
    if ! kill -0 "${pids[-1]}" 2>/dev/null; then
      echo "node $name did not start:" >&2
      cat "$dir/node.log" >&2
      exit 1
    fi
    sleep 0.1
    waited=$((waited + 1))
    if [ "$waited" -gt 600 ]; then
      echo "node $name did not print ready within 60 s" >&2
      exit 1
    fi
  done
  echo "started $name on 127.0.0.1:$port" >&2
}

# admin NAME PORT ARGS...: runs an idnode admin command against that node.
admin() {
  local name=$1 port=$2
  shift 2
  "$bin" --grpc "http://127.0.0.1:$((port + 1))" \
    --token-file "$demo_dir/$name/admin.token" "$@" >/dev/null
}

urls() { echo "udp://127.0.0.1:$1,tcp://127.0.0.1:$1"; }

# seed NAME PORT PREFIX COUNT: a few product identifiers for an enterprise.
seed() {
  local name=$1 port=$2 prefix=$3 count=$4 file="$demo_dir/$1/seed.jsonl"
  : >"$file"
  for i in $(seq 1 "$count"); do
    printf '{"identifier":"%s/PUMP-%04d","values":[{"index":1,"type":"URL","data":"https://%s.example.com/pumps/%04d"},{"index":2,"type":"productName","data":"Pump %d of %s"}]}\n' \
      "$prefix" "$i" "$name" "$i" "$i" "$name" >>"$file"
  done
  admin "$name" "$port" import "$file"
}

start top 26410
start secondary 26420
start enterprise1 26430
start enterprise2 26440
start recursive 26450 --root "$(urls 26410)"

admin top 26410 prefix home 88
admin top 26410 prefix delegate 88.100 --to "$(urls 26420)"
admin secondary 26420 prefix home 88.100
admin secondary 26420 prefix delegate 88.100.1 --to "$(urls 26430)"
admin secondary 26420 prefix delegate 88.100.2 --to "$(urls 26440)"
admin enterprise1 26430 prefix home 88.100.1
admin enterprise2 26440 prefix home 88.100.2
seed enterprise1 26430 88.100.1 20
seed enterprise2 26440 88.100.2 20

# All five answer: the recursive node through the whole tree, each other
# node directly.
for port in 26410 26420 26430 26440 26450; do
  "$bin" resolve --server "127.0.0.1:$port" 0.NA/88 >/dev/null 2>&1 || true
done
"$bin" resolve --server 127.0.0.1:26430 88.100.1/PUMP-0001 >/dev/null
"$bin" resolve --server 127.0.0.1:26440 88.100.2/PUMP-0001 >/dev/null
"$bin" resolve --server 127.0.0.1:26450 88.100.1/PUMP-0002 >/dev/null
"$bin" resolve --server 127.0.0.1:26450 88.100.2/PUMP-0002 >/dev/null

cat <<TXT
demo hierarchy is up (state in $demo_dir):
  top-level   88        127.0.0.1:26410
  secondary   88.100    127.0.0.1:26420
  enterprise1 88.100.1  127.0.0.1:26430   e.g. 88.100.1/PUMP-0001 .. 88.100.1/PUMP-0020
  enterprise2 88.100.2  127.0.0.1:26440   e.g. 88.100.2/PUMP-0001 .. 88.100.2/PUMP-0020
  recursive   root=top  127.0.0.1:26450
try:
  $bin resolve --server 127.0.0.1:26450 88.100.1/PUMP-0001            # through the recursive node
  $bin resolve --server 127.0.0.1:26450 --transport tcp 88.100.2/PUMP-0007
  $bin resolve --server 127.0.0.1:26410 0.NA/88.100.1                 # the top-level node refers the prefix lookup (303)
  $bin resolve --server 127.0.0.1:26420 0.NA/88.100.1                 # the delegation record: enterprise1's site
  $bin resolve --server 127.0.0.1:26430 88.100.1/PUMP-0001 --certified # an answer signed by enterprise1
TXT
echo ready
wait
