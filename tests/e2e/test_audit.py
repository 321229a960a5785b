"""End-to-end: the audit trail (docs/credentials.md, "Audit trail"). Changes
made with a scoped token over gRPC (grpcio), by a Handle administrator over
TCP (hdl_admin), and by the operator each record who, over which surface,
from which address; `idnode audit` shows an identifier's history and what
one credential changed, to the credentials allowed to see it, and never a
value's data."""
import json
import os
import re
import subprocess
import time

import grpc
import pytest

import hdl_admin as ha
from conftest import Node, idnode_bin

PREFIX = "88.320"
NA = f"0.NA/{PREFIX}"
PRIVATE = b"private-data-7f3a"


def cli(node, *args, token=None):
    env = {**os.environ, "IDNODE_GRPC": f"http://{node.grpc}",
           "IDNODE_TOKEN_FILE": str(node.data_dir / "admin.token")}
    env.pop("IDNODE_TOKEN", None)
    if token:
        env["IDNODE_TOKEN"] = token
    return subprocess.run([idnode_bin(), *args], capture_output=True, text=True, env=env,
                          timeout=120)


@pytest.fixture(scope="module")
def trail(tmp_path_factory, pb):
    """A node where 88.320/AUD-1 was created and changed by a token, changed
    by a Handle administrator, and deleted by the operator."""
    node = Node(tmp_path_factory.mktemp("audit"), demo=False).start()
    pb2, pb2_grpc = pb
    channel = grpc.insecure_channel(node.grpc)
    op_meta = (("authorization", f"Bearer {node.token}"),)
    pb2_grpc.PrefixesStub(channel).CreatePrefix(pb2.CreatePrefixRequest(prefix=PREFIX),
                                                metadata=op_meta)
    pb2_grpc.PrefixesStub(channel).CreatePrefix(pb2.CreatePrefixRequest(prefix="88.321"),
                                                metadata=op_meta)
    r = cli(node, "token", "create", "--prefix", PREFIX,
            "--perm", "add_handle,add_value,read_value,list_handles")
    assert r.returncode == 0, r.stderr
    token_id = re.search(r"created token ([0-9a-f]+)", r.stdout).group(1)
    secret = re.search(r"export IDNODE_TOKEN=(\S+)", r.stdout).group(1)
    ids = pb2_grpc.IdentifiersStub(channel)
    meta = (("authorization", f"Bearer {secret}"),)
    handle = f"{PREFIX}/AUD-1"
    ids.CreateIdentifier(pb2.CreateIdentifierRequest(identifier=handle, values=[
        pb2.Value(index=1, type="URL", data=b"https://example.com/aud/1"),
        pb2.Value(index=2, type="NOTE", data=PRIVATE, permissions=0x0C),
    ]), metadata=meta)
    ids.AddValues(pb2.AddValuesRequest(identifier=handle, values=[
        pb2.Value(index=3, type="EMAIL", data=b"ops@example.com")]), metadata=meta)
    # A Handle administrator (HS_SECKEY at 300 of the prefix record).
    ids.AddValues(pb2.AddValuesRequest(identifier=NA, values=[
        pb2.Value(index=300, type="HS_SECKEY", data=b"audit-secret", permissions=0x0C),
        pb2.Value(index=120, type="HS_ADMIN", data=ha.hs_admin(ha.HS_ADMIN_ALL, NA, 300)),
    ]), metadata=op_meta)
    ids.AddValues(pb2.AddValuesRequest(identifier=handle, values=[
        pb2.Value(index=100, type="HS_ADMIN", data=ha.hs_admin(ha.HS_ADMIN_ALL, NA, 300))]),
        metadata=op_meta)
    body = ha.modify_body(handle, [ha.value(1, "URL", "https://example.com/aud/one")])
    out = ha.run(node.tcp, ha.MODIFY_VALUE, body, ha.SecretKey(NA, 300, b"audit-secret"))
    assert out.code == ha.SUCCESS, out.replies
    ids.DeleteIdentifier(pb2.DeleteIdentifierRequest(identifier=handle), metadata=op_meta)
    node.token_id, node.secret, node.handle = token_id, secret, handle
    yield node
    node.stop()


def rows(stdout):
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def test_an_identifiers_history_says_who_did_what_from_where(trail):
    r = cli(trail, "audit", trail.handle, "--json")
    assert r.returncode == 0, r.stderr
    history = rows(r.stdout)
    seen = [(e["action"], e["actor"], e["surface"]) for e in history]
    assert seen == [
        ("created", f"token:{trail.token_id}", "grpc"),
        ("updated", f"token:{trail.token_id}", "grpc"),
        ("updated", "token:admin", "grpc"),
        ("updated", f"handle:300:{NA}", "handle-tcp"),
        ("deleted", "token:admin", "grpc"),
    ], seen
    now = time.time()
    for e in history:
        assert e["subject"] == trail.handle.upper()
        assert re.fullmatch(r"127\.0\.0\.1:\d+", e["address"]), e
        assert now - 600 < e["time"] <= now + 5
    assert [e["sequence"] for e in history] == sorted(e["sequence"] for e in history)
    # The table form says the same, and no value's data is anywhere.
    table = cli(trail, "audit", trail.handle)
    assert table.returncode == 0 and "handle-tcp" in table.stdout, table.stdout
    assert PRIVATE.decode() not in r.stdout + table.stdout
    assert "aud/one" not in r.stdout + table.stdout


def test_what_one_credential_changed(trail):
    r = cli(trail, "audit", "--by", trail.token_id, "--since", "1h", "--json")
    assert r.returncode == 0, r.stderr
    changes = rows(r.stdout)
    assert [e["action"] for e in changes] == ["created", "updated"]
    assert all(e["actor"] == f"token:{trail.token_id}" for e in changes)
    # The Handle administrator's changes, by its identity.
    r = cli(trail, "audit", "--by", f"handle:300:{NA}", "--json")
    assert [e["surface"] for e in rows(r.stdout)] == ["handle-tcp"]


def test_who_may_read_the_trail(trail):
    # The token may read the history of its own prefix and its own changes.
    r = cli(trail, "audit", trail.handle, token=trail.secret)
    assert r.returncode == 0, r.stderr
    r = cli(trail, "audit", "--by", trail.token_id, token=trail.secret)
    assert r.returncode == 0, r.stderr
    # Not another credential's, nor another prefix's history.
    r = cli(trail, "audit", "--by", "admin", token=trail.secret)
    assert r.returncode == 2 and "PermissionDenied" in r.stderr, r.stderr
    r = cli(trail, "audit", "88.321/X", token=trail.secret)
    assert r.returncode == 2 and "PermissionDenied" in r.stderr, r.stderr
    # Bad input is a usage error, before any connection.
    assert cli(trail, "audit").returncode == 2
    assert cli(trail, "audit", "no-slash").returncode == 2
    assert cli(trail, "audit", trail.handle, "--since", "soon").returncode == 2

