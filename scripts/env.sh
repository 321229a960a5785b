# Sourced by the other scripts: one target directory outside the clone, shared
# by every clone on this machine.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${HOME}/.cache/idnode-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# Cap parallel C++ jobs at the core count (the build is CPU bound).
export NUM_JOBS="${NUM_JOBS:-$(nproc)}"
# RocksDB's C++ is compiled once per machine into a static library kept
# outside cargo's target dir (scripts/setup.sh makes it), and linked from
# there. Cargo would otherwise compile it again whenever the set of packages
# in a build changes the features of a build dependency (syn, for bindgen).
_idnode_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
IDNODE_ROCKSDB_VERSION="$(sed -n '/^name = "librocksdb-sys"$/{n;s/^version = "\(.*\)"$/\1/p}' "$_idnode_root/Cargo.lock")"
export IDNODE_ROCKSDB_VERSION
export IDNODE_ROCKSDB_DIR="${IDNODE_ROCKSDB_DIR:-${HOME}/.cache/idnode-rocksdb/${IDNODE_ROCKSDB_VERSION}}"
if [ -f "$IDNODE_ROCKSDB_DIR/librocksdb.a" ]; then
  export ROCKSDB_LIB_DIR="$IDNODE_ROCKSDB_DIR" ROCKSDB_STATIC=1
fi
# Python virtualenv for the end-to-end tests' clients, shared like the target.
export IDNODE_VENV="${IDNODE_VENV:-${HOME}/.cache/idnode-venv}"
