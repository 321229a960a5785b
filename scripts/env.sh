# Sourced by the other scripts: one target directory outside the clone, shared
# by every clone on this machine, so RocksDB's C++ is compiled once per machine.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${HOME}/.cache/idnode-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# Cap parallel C++ jobs at the core count (the build is CPU bound).
export NUM_JOBS="${NUM_JOBS:-$(nproc)}"
