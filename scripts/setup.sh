#!/usr/bin/env bash
# Installs what building and testing idnode needs, and nothing twice:
# system packages (libclang for RocksDB's bindings, protoc for the gRPC
# code, dig, zbar's QR reader and cairo for the tests, Chromium for the
# browser test) and a Python virtualenv with the test clients (grpcio,
# dnspython with aioquic for DNS over QUIC, pytest, Playwright, cairosvg).
# Safe to run again; quick when everything is there.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

need=()
command -v protoc >/dev/null || need+=(protobuf-compiler)
ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 || need+=(libclang-dev)
command -v clang >/dev/null || need+=(clang)
command -v g++ >/dev/null || need+=(g++)
command -v dig >/dev/null || need+=(bind9-dnsutils)
command -v zbarimg >/dev/null || need+=(zbar-tools)
ldconfig -p 2>/dev/null | grep 'libcairo\.so\.2' >/dev/null || need+=(libcairo2)
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
updated=0
if ((${#need[@]})); then
  echo "setup: installing system packages: ${need[*]}"
  $SUDO apt-get update -qq
  updated=1
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
# Headless Chromium for tests/e2e/test_browser.py (driven by Playwright, which
# downloads no browser of its own). Large, so apart: when it cannot be
# installed, that test skips and says so.
if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
  echo "setup: installing chromium for the browser test"
  { ((updated)) || $SUDO apt-get update -qq; } &&
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null ||
    echo "setup: chromium could not be installed; tests/e2e/test_browser.py will skip"
fi

# RocksDB's C++, once per machine (see scripts/env.sh).
if [ ! -f "$IDNODE_ROCKSDB_DIR/librocksdb.a" ]; then
  echo "setup: compiling RocksDB $IDNODE_ROCKSDB_VERSION once for this machine (about 30 minutes on 2 cores)"
  (
    unset ROCKSDB_LIB_DIR ROCKSDB_STATIC
    # The cc crate adds CXXFLAGS to every C++ file it compiles.
    [ -z "$IDNODE_ROCKSDB_CXXFLAGS" ] || export CXXFLAGS="${CXXFLAGS:+$CXXFLAGS }$IDNODE_ROCKSDB_CXXFLAGS"
    cargo build --release -p librocksdb-sys
  )
  built=$(ls -t "$CARGO_TARGET_DIR"/release/build/librocksdb-sys-*/out/librocksdb.a | head -n 1)
  mkdir -p "$IDNODE_ROCKSDB_DIR"
  cp "$built" "$IDNODE_ROCKSDB_DIR/librocksdb.a.tmp"
  mv "$IDNODE_ROCKSDB_DIR/librocksdb.a.tmp" "$IDNODE_ROCKSDB_DIR/librocksdb.a"
  export ROCKSDB_LIB_DIR="$IDNODE_ROCKSDB_DIR" ROCKSDB_STATIC=1
fi

if [ "${IDNODE_SKIP_PYTHON:-0}" != 1 ]; then
  if [ ! -x "$IDNODE_VENV/bin/python" ]; then
    echo "setup: creating Python virtualenv for the end-to-end tests in $IDNODE_VENV"
    python3 -m venv "$IDNODE_VENV"
  fi
  if ! "$IDNODE_VENV/bin/python" -c "import grpc, grpc_tools, pytest, dns.quic, aioquic, cryptography, pyhandle, playwright.sync_api, cairosvg" 2>/dev/null; then
    echo "setup: installing Python test clients (grpcio, grpcio-tools, dnspython, aioquic, pytest, pyhandle, playwright, cairosvg)"
    "$IDNODE_VENV/bin/pip" install -q --disable-pip-version-check \
      'grpcio>=1.60' 'grpcio-tools>=1.60' 'dnspython>=2.6' 'aioquic>=1.0' 'pytest>=8' 'cryptography>=42' \
      'pyhandle>=1.3' 'playwright>=1.40' 'cairosvg>=2.7'
  fi
fi
