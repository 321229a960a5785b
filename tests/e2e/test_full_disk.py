"""A full disk against the real binary: the data directory on a small
tmpfs, filled up while identifiers are written. The node keeps resolving,
refuses writes with RESOURCE_EXHAUSTED and a message (gRPC, per item of a
BatchCreate stream; an error answer with a message over the Handle
protocol; HTTP 507), loses nothing it acknowledged, and takes writes again
once space is freed, without a restart."""
import hashlib
import json
import os
import subprocess
import time
import urllib.error
import urllib.request

import grpc
import pytest

import handle_client as hc
import hdl_admin as ha
from conftest import Node

PREFIX = "88.778"
NA = f"0.NA/{PREFIX}"
SECRET = b"disk-s3cret"
DISK_MB = 48


@pytest.fixture
def disk(tmp_path):
    """A tmpfs of DISK_MB MiB, unmounted afterwards."""
    mount = tmp_path / "disk"
    mount.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_MB}m", "tmpfs", str(mount)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {r.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def meta(node):
    return [("authorization", f"Bearer {node.token}")]


def values(pb2, identifier, size):
    blob = (hashlib.sha256(identifier.encode()).digest() * (size // 32 + 1))[:size]
    return [pb2.Value(index=1, type="URL", data=f"https://example.com/{identifier}".encode()),
            pb2.Value(index=2, type="blob", data=blob)]


def http_put(node, identifier):
    """(status, JSON body) of an HTTP PUT of `identifier` with the operator token."""
    body = json.dumps({"values": [{"index": 1, "type": "URL", "data": "https://w/1"}]}).encode()
    req = urllib.request.Request(f"http://{node.http}/api/handles/{identifier}", data=body,
                                 method="PUT", headers={"Content-Type": "application/json",
                                                        "Authorization": f"Bearer {node.token}"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def fill(path, leave):
    """Fills the file system of `path` with a file until `leave` bytes are free."""
    filler = path / "filler"
    with open(filler, "wb") as f:
        chunk = b"\0" * (1 << 20)
        while True:
            st = os.statvfs(path)
            free = st.f_bavail * st.f_frsize
            if free <= leave:
                break
            try:
                f.write(chunk[: min(len(chunk), free - leave)])
                f.flush()
            except OSError:
                break
    return filler


def test_a_full_disk_refuses_writes_keeps_resolving_and_recovers(disk, pb, tmp_path):
    pb2, pb2_grpc = pb
    # RocksDB takes writes again once a memtable's worth of space is free:
    # 2 MiB here, where the default 64 MiB would not fit the disk.
    config = tmp_path / "idnode.toml"
    config.write_text("[storage]\nwrite_buffer_mb = 2\n")
    log = open(tmp_path / "node.log", "w")
    node = Node(disk / "node", extra=["--config", str(config)], stderr=log).start()
    try:
        ids = pb2_grpc.IdentifiersStub(grpc.insecure_channel(node.grpc))
        prefixes = pb2_grpc.PrefixesStub(grpc.insecure_channel(node.grpc))
        prefixes.CreatePrefix(pb2.CreatePrefixRequest(prefix=PREFIX), metadata=meta(node))
        ids.AddValues(pb2.AddValuesRequest(identifier=NA, values=[
            pb2.Value(index=300, type="HS_SECKEY", data=SECRET, permissions=0x0C),
            pb2.Value(index=130, type="HS_ADMIN", data=ha.hs_admin(ha.HS_ADMIN_ALL, NA, 300)),
        ]), metadata=meta(node))
        ids.CreateIdentifier(pb2.CreateIdentifierRequest(
            identifier=f"{PREFIX}/BEFORE", values=values(pb2, f"{PREFIX}/BEFORE", 100)),
            metadata=meta(node), timeout=30)

        filler = fill(disk, 2 << 20)

        # Stream items of 16 KiB until the disk is full; a few rounds, since
        # one stream may end on a full disk part of the way through.
        acked, refused, n = [], [], 0
        for _ in range(20):
            batch = [f"{PREFIX}/FULL-{n + k}" for k in range(200)]
            n += len(batch)
            try:
                results = list(ids.BatchCreate(
                    iter([pb2.CreateIdentifierRequest(identifier=i, values=values(pb2, i, 16384))
                          for i in batch]), metadata=meta(node), timeout=120))
            except grpc.RpcError as e:
                # A failed stream says why, with the status of a full disk.
                assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, (e.code(), e.details())
                assert "disk" in e.details() or "space" in e.details(), e.details()
                refused.append(e.details())
                break
            # A stream that ends OK has a result for every item.
            assert [r.item for r in results] == list(range(len(batch)))
            for r in results:
                if r.code == 0:
                    acked.append(r.identifier)
                else:
                    assert r.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0], (r.code, r.message)
                    assert "space" in r.message, r.message
                    refused.append(r.message)
            if refused:
                break
        assert refused, "the disk never filled up"
        assert acked, "nothing was written before the disk filled up"

        # While full: a unary write is refused the same way...
        with pytest.raises(grpc.RpcError) as e:
            ids.CreateIdentifier(pb2.CreateIdentifierRequest(
                identifier=f"{PREFIX}/WHILE-FULL", values=values(pb2, "x", 10)),
                metadata=meta(node), timeout=30)
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, e.value.details()
        full_message = e.value.details()
        assert "space" in full_message, full_message
        # ...so is a Handle-protocol admin write, with a message...
        key = ha.SecretKey(NA, 300, SECRET, 0x13)
        body = ha.create_body(f"{PREFIX}/HDL-FULL", [ha.value(1, "URL", "https://h/full")])
        out = ha.run(node.tcp, ha.CREATE_HANDLE, body, key)
        assert out.code == 2, out.replies  # ERROR, with what happened
        assert out.replies[0].message == full_message, out.replies
        # ...and an HTTP write: 507 Insufficient Storage.
        status, answer = http_put(node, f"{PREFIX}/HTTP-FULL")
        assert status == 507 and answer["message"] == full_message, (status, answer)
        # ...and resolution goes on: a demo record, and what was acknowledged.
        assert hc.udp_resolve(node.udp, "88.100.1/CNC-LATHE-202600000").code == hc.SUCCESS
        for identifier in acked[-3:] + [f"{PREFIX}/BEFORE"]:
            answer = hc.udp_resolve(node.udp, identifier)
            assert answer.code == hc.SUCCESS, identifier
        assert hc.udp_resolve(node.udp, f"{PREFIX}/WHILE-FULL").code == hc.HANDLE_NOT_FOUND

        # Space comes back: writes are taken again, without a restart.
        filler.unlink()
        deadline = time.monotonic() + 60
        while True:
            try:
                ids.CreateIdentifier(pb2.CreateIdentifierRequest(
                    identifier=f"{PREFIX}/AFTER", values=values(pb2, f"{PREFIX}/AFTER", 100)),
                    metadata=meta(node), timeout=30)
                break
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, (e.code(), e.details())
                assert time.monotonic() < deadline, "writes were still refused a minute later"
                time.sleep(0.5)
        out = ha.run(node.tcp, ha.CREATE_HANDLE, body, key)
        assert out.code == ha.SUCCESS, out.replies
        assert http_put(node, f"{PREFIX}/HTTP-FULL")[0] in (200, 201)
        assert hc.udp_resolve(node.udp, f"{PREFIX}/AFTER").code == hc.SUCCESS
        assert node.proc.poll() is None
        pid = node.proc.pid
    finally:
        node.stop()
    # Nothing acknowledged was lost: after a restart every record is there.
    again = Node(disk / "node", demo=False, extra=["--config", str(config)], stderr=log).start()
    try:
        assert again.proc.pid != pid
        ids = pb2_grpc.IdentifiersStub(grpc.insecure_channel(again.grpc))
        for identifier in acked + [f"{PREFIX}/BEFORE", f"{PREFIX}/AFTER", f"{PREFIX}/HDL-FULL",
                                   f"{PREFIX}/HTTP-FULL"]:
            record = ids.GetIdentifier(pb2.GetIdentifierRequest(identifier=identifier),
                                       metadata=meta(again), timeout=30)
            got = {v.index: v.data for v in record.values}
            if "/FULL-" in identifier or identifier.endswith(("BEFORE", "AFTER")):
                want = {v.index: v.data for v in values(pb2, identifier, len(got[2]))}
                assert got == want, identifier
    finally:
        again.stop()
