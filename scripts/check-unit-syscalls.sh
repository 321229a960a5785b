#!/usr/bin/env bash
# Checks deploy/idnode.service's hardening against what a node does: runs
# a node under strace (demo data, pinned UDP workers) while a resolution,
# `idnode status`, a registration, a backup and a compaction go through,
# then reports system calls outside the unit's SystemCallFilter
# (@system-service less @privileged), executable anonymous memory
# (MemoryDenyWriteExecute) and socket families other than the unit's
# RestrictAddressFamilies. Needs strace and systemd-analyze.
#   IDNODE_BIN=target/debug/idnode scripts/check-unit-syscalls.sh
set -euo pipefail
bin="${IDNODE_BIN:?set IDNODE_BIN to an idnode binary}"
work="$(mktemp -d)"
trace="$work/trace"
strace -f -qq -o "$trace" "$bin" serve --demo --data-dir "$work/data" \
    --handle-listen 127.0.0.1:0 --grpc-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 \
    --quic-listen 127.0.0.1:0 --dns-listen 127.0.0.1:0 --dns-quic-listen 127.0.0.1:0 \
    --udp-pin --ready-file "$work/ready.json" > "$work/out" 2> "$work/err" &
tracer=$!
for _ in $(seq 300); do [ -f "$work/ready.json" ] && break; sleep 0.2; done
field() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$work/ready.json" "$1"; }
grpc=(--grpc "http://$(field grpc)" --token-file "$work/data/admin.token")
"$bin" resolve --server "$(field handle_udp)" 88.100.1/CNC-LATHE-202600000 > /dev/null
"$bin" status "${grpc[@]}" > /dev/null
"$bin" id create 88.100.1/UNIT-CHECK-1 -v 1:URL:https://example.com/u1 "${grpc[@]}" > /dev/null
"$bin" backup "$work/backup" "${grpc[@]}" > /dev/null
"$bin" compact "${grpc[@]}" > /dev/null
# strace's child is the node: stop it as systemd would.
node=$(ps -o pid= --ppid "$tracer" | tr -d ' ')
kill -TERM "$node"
wait "$tracer" || true

expand() {
    systemd-analyze syscall-filter "$1" | sed -n '2,$p' | tr -d ' ' | grep -v -e '^#' -e '^$' |
        while read -r name; do
            case "$name" in @*) expand "$name" ;; *) echo "$name" ;; esac
        done
}
sed -E -n 's/^[0-9]+ +([a-z_0-9]+)\(.*/\1/p' "$trace" | sort -u > "$work/used"
expand @system-service | sort -u > "$work/allowed"
expand @privileged | sort -u > "$work/privileged"
status=0
outside=$(comm -23 "$work/used" "$work/allowed")
privileged=$(comm -12 "$work/used" "$work/privileged")
wx=$(grep -cE 'mprotect\(.*PROT_EXEC|mmap\(.*PROT_EXEC.*MAP_ANONYMOUS' "$trace" || true)
families=$(grep -oE 'socket\(AF_[A-Z0-9]+' "$trace" | sort -u | grep -v -e AF_INET -e AF_UNIX || true)
echo "$(wc -l < "$work/used") distinct system calls"
if [ -n "$outside$privileged" ]; then
    echo "outside the filter: $outside $privileged"; status=1
fi
if [ "$wx" != 0 ]; then echo "executable anonymous memory: $wx mappings"; status=1; fi
if [ -n "$families" ]; then echo "other socket families: $families"; status=1; fi
[ "$status" = 0 ] && echo "ok: within SystemCallFilter, MemoryDenyWriteExecute and RestrictAddressFamilies"
rm -rf "$work"
exit "$status"
