#!/usr/bin/env bash
# Sets everything up and runs every test: formatting, lints, the Rust unit,
# integration and end-to-end tests, and the Python end-to-end tests that
# drive the real binary with clients that are not ours (grpcio, raw sockets).
# Uses the release profile, like the node and the benches, so that RocksDB
# is compiled once per machine.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
scripts/setup.sh
echo "== cargo fmt --check"
cargo fmt --all --check
echo "== links: every reference to a file in the repository resolves"
python3 scripts/check-links.py
echo "== cargo clippy"
cargo clippy --release --workspace --all-targets -- -D warnings
echo "== cargo test"
cargo test --release --workspace
echo "== end-to-end tests (Python clients against the real binary)"
cargo build --release --bin idnode
IDNODE_BIN="$CARGO_TARGET_DIR/release/idnode" "$IDNODE_VENV/bin/python" -m pytest -q tests/e2e
echo "== all tests passed"
