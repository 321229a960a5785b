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
# On an x86-64 CPU with SSE 4.2 and PCLMUL (every one since about 2010)
# RocksDB is compiled for them: its CRC32C (the checksum of every write-ahead
# log record and table block) then runs on the CPU's instructions instead of
# a table-driven loop, which took 6 % of a bulk load. A library built so
# gets a directory of its own.
if [ "$(uname -m)" = x86_64 ] && grep -qw sse4_2 /proc/cpuinfo 2>/dev/null &&
  grep -qw pclmulqdq /proc/cpuinfo 2>/dev/null; then
  export IDNODE_ROCKSDB_CXXFLAGS="-msse4.2 -mpclmul"
  _idnode_rocksdb_flavor="-sse42"
else
  export IDNODE_ROCKSDB_CXXFLAGS=""
  _idnode_rocksdb_flavor=""
fi
export IDNODE_ROCKSDB_DIR="${IDNODE_ROCKSDB_DIR:-${HOME}/.cache/idnode-rocksdb/${IDNODE_ROCKSDB_VERSION}${_idnode_rocksdb_flavor}}"
if [ -f "$IDNODE_ROCKSDB_DIR/librocksdb.a" ]; then
  export ROCKSDB_LIB_DIR="$IDNODE_ROCKSDB_DIR" ROCKSDB_STATIC=1
fi
# Python virtualenv for the end-to-end tests' clients, shared like the target.
export IDNODE_VENV="${IDNODE_VENV:-${HOME}/.cache/idnode-venv}"
