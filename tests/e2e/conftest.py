"""Fixtures: start the real idnode binary on free loopback ports, and the
Python gRPC client generated from proto/ (grpcio, not ours)."""
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def idnode_bin():
    explicit = os.environ.get("IDNODE_BIN")
    if explicit:
        return explicit
    target = os.environ.get("CARGO_TARGET_DIR", str(Path.home() / ".cache/idnode-target"))
    return str(Path(target) / "release" / "idnode")


class Node:
    """One idnode process; `start` waits for its `ready` line, then reads
    where it listens from the JSON of `--ready-file`. `demo` loads the demo
    data into a new node."""

    def __init__(self, data_dir, extra=(), handle_listen="127.0.0.1:0",
                 grpc_listen="127.0.0.1:0", demo=True, stderr=subprocess.PIPE, env=None):
        self.data_dir = Path(data_dir)
        # Where the node's log goes (a pipe, or a file such as /dev/full),
        # and environment variables over RUST_LOG=warn (None: unset it).
        self.stderr, self.env = stderr, env or {}
        self.extra = (["--demo"] if demo else []) + list(extra)
        self.handle_listen, self.grpc_listen = handle_listen, grpc_listen
        self.proc = None
        self.lines = []

    def start(self, timeout=120):
        self.data_dir.mkdir(parents=True, exist_ok=True)
        ready_file = self.data_dir.parent / f"{self.data_dir.name}.ready.json"
        if ready_file.exists():
            ready_file.unlink()
        cmd = [idnode_bin(), "serve", "--data-dir", str(self.data_dir),
               "--ready-file", str(ready_file),
               "--handle-listen", self.handle_listen, "--grpc-listen", self.grpc_listen,
               "--udp-workers", "2", "--dns-listen", "127.0.0.1:0",
               "--dns-quic-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", *self.extra]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.stderr,
                                     text=True,
                                     env={k: v for k, v in {**os.environ, "RUST_LOG": "warn",
                                                            **self.env}.items()
                                          if v is not None})
        ready = threading.Event()
        self.lines = []

        def pump():
            for line in self.proc.stdout:
                self.lines.append(line.rstrip("\n"))
                if line.strip() == "ready":
                    ready.set()
            ready.set()

        threading.Thread(target=pump, daemon=True).start()
        if not ready.wait(timeout) or self.proc.poll() is not None:
            err = self.proc.stderr.read() if self.proc.stderr and self.proc.poll() is not None else ""
            raise RuntimeError(f"idnode did not start: {self.lines} {err}")
        # The ready file is written before `ready` is printed.
        addresses = json.loads(ready_file.read_text())
        self.addresses = addresses

        def host_port(key):
            value = addresses.get(key)
            if value is None:
                return None
            host, port = value.rsplit(":", 1)
            return (host.strip("[]"), int(port))

        self.udp = host_port("handle_udp")
        self.tcp = host_port("handle_tcp")
        self.grpc = addresses["grpc"]
        # The web listener (REST API, browser proxy), absent with --no-http.
        self.http = addresses.get("http")
        # DNS listeners, absent with --no-dns (then None).
        self.dns_udp = host_port("dns_udp")
        self.dns_tcp = host_port("dns_tcp")
        self.dns_quic = host_port("dns_quic")
        self.token = (self.data_dir / "admin.token").read_text().strip()
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode if self.proc else None

    def cli(self, *args, check=True, input=None):
        env = {**os.environ, "IDNODE_GRPC": f"http://{self.grpc}",
               "IDNODE_TOKEN_FILE": str(self.data_dir / "admin.token")}
        env.pop("IDNODE_TOKEN", None)
        r = subprocess.run([idnode_bin(), *args], capture_output=True, text=True, env=env,
                           input=input, timeout=120)
        if check and r.returncode != 0:
            raise AssertionError(f"idnode {args} exited {r.returncode}: {r.stdout} {r.stderr}")
        return r


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    n = Node(tmp_path_factory.mktemp("node")).start()
    yield n
    n.stop()


@pytest.fixture(scope="session")
def pb(tmp_path_factory):
    """Modules generated from proto/idnode/v1/admin.proto by grpc_tools."""
    from grpc_tools import protoc
    out = tmp_path_factory.mktemp("gen")
    rc = protoc.main(["protoc", f"-I{ROOT / 'proto'}", f"--python_out={out}",
                      f"--grpc_python_out={out}", str(ROOT / "proto/idnode/v1/admin.proto")])
    assert rc == 0
    sys.path.insert(0, str(out))
    from idnode.v1 import admin_pb2, admin_pb2_grpc
    return admin_pb2, admin_pb2_grpc
