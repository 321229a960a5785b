#!/usr/bin/env bash
# Measures a node's memory and disk per identifier, as docs/operations.md
# reports them: a node on the default configuration (its own ports, so it
# does not meet another node on this machine) is given COUNT generated
# identifiers of three values with `idnode import`, then asked each of them
# many times over UDP, then restarted; its resident memory (VmRSS, VmHWM)
# and the size of its store are printed after each step. Needs a release build:
#   IDNODE_BIN=target/release/idnode scripts/footprint.sh [COUNT] [WORKDIR]
# FOOTPRINT_CONFIG=file.toml starts the node with that configuration
# (its listen addresses are overridden); FOOTPRINT_LOAD=60s is how long the
# resolution load runs.
set -euo pipefail
count="${1:-1000000}"
work="${2:-$(mktemp -d)}"
bin="${IDNODE_BIN:?set IDNODE_BIN to a release idnode binary}"
mkdir -p "$work"
data="$work/data"
port_base="${FOOTPRINT_PORT_BASE:-27641}"
handle="127.0.0.1:$port_base"
grpc="http://127.0.0.1:$((port_base + 1))"

echo "generating $count identifiers of three values in $work/ids.jsonl"
python3 - "$count" "$work/ids.jsonl" <<'EOF'
import json, sys
count, path = int(sys.argv[1]), sys.argv[2]
with open(path, "w") as out:
    for i in range(count):
        ident = f"88.900.{i % 100 + 1}/PART-{i:08d}"
        out.write(json.dumps({"identifier": ident, "values": [
            {"index": 1, "type": "URL", "data": f"https://example.com/parts/PART-{i:08d}"},
            {"index": 2, "type": "productName", "data": f"Gear pump series {i % 997}"},
            {"index": 3, "type": "batch", "data": f"B2601{i % 28 + 1:02d}-{i % 10000}"},
        ]}, separators=(",", ":")) + "\n")
EOF
cut -d'"' -f4 "$work/ids.jsonl" > "$work/ids.txt"

config=()
[ -n "${FOOTPRINT_CONFIG:-}" ] && config=(--config "$FOOTPRINT_CONFIG")
"$bin" serve "${config[@]}" --data-dir "$data" --handle-listen "$handle" \
    --grpc-listen "127.0.0.1:$((port_base + 1))" --no-http --no-quic --no-dns \
    --ready-file "$work/ready.json" > "$work/serve.out" 2> "$work/serve.err" &
pid=$!
trap 'kill "$pid" 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -f "$work/ready.json" ] && break; sleep 0.2; done

report() {
    local rss hwm disk
    rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
    hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status")
    disk=$(du -sk "$data/db" | cut -f1)
    printf '%-28s RSS %5d MiB  peak %5d MiB  store %5d MiB\n' \
        "$1" $((rss / 1024)) $((hwm / 1024)) $((disk / 1024))
}

report "started, empty"
cli=(--grpc "$grpc" --token-file "$data/admin.token")
for p in $(seq 100); do "$bin" prefix create "${cli[@]}" "88.900.$p" > /dev/null; done
start=$(date +%s)
"$bin" import "${cli[@]}" --quiet "$work/ids.jsonl"
echo "import took $(($(date +%s) - start)) s"
report "after import"
"$bin" compact "${cli[@]}" > /dev/null
sleep 2
report "after compact"
"$bin" bench --server "$handle" --ids "$work/ids.txt" --concurrency 64 --duration "${FOOTPRINT_LOAD:-60s}" \
    | tail -n 4
report "after resolution load"
kill "$pid"
wait "$pid" 2>/dev/null || true
report_disk=$(du -sk "$data/db" | cut -f1)
echo "store on disk after stop: $((report_disk / 1024)) MiB ($data/db)"

# Restarted on the same store: the response cache is filled from the
# stored records in the background (`[cache] prewarm`).
rm -f "$work/ready.json"
"$bin" serve "${config[@]}" --data-dir "$data" --handle-listen "$handle" \
    --grpc-listen "127.0.0.1:$((port_base + 1))" --no-http --no-quic --no-dns \
    --ready-file "$work/ready.json" > "$work/serve2.out" 2> "$work/serve2.err" &
pid=$!
for _ in $(seq 100); do [ -f "$work/ready.json" ] && break; sleep 0.2; done
for _ in $(seq 120); do grep -q "prewarm" "$work/serve2.err" && break; sleep 0.5; done
grep -o "response cache prewarm.*" "$work/serve2.err" || true
report "restarted, cache prewarmed"
kill "$pid"
wait "$pid" 2>/dev/null || true
trap - EXIT
