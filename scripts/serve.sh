#!/usr/bin/env bash
# Sets everything up, builds idnode and starts a node on the embedded
# default: RocksDB in ./data, seeded with the demo data on first start (--demo),
# Handle on UDP+TCP 2641, gRPC on 127.0.0.1:50051. Extra arguments go to
# `idnode serve` (see `idnode serve --help`). The first build compiles
# RocksDB (about 30 minutes on 2 cores); later ones take seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
IDNODE_SKIP_PYTHON=1 scripts/setup.sh
cargo build --release --bin idnode
exec "$CARGO_TARGET_DIR/release/idnode" serve --demo "$@"
