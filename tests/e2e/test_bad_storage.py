"""A damaged store against the real binary: SST files with corrupted bytes,
and an SST file gone. `idnode serve` refuses to start (exit 2) naming the
file and the way out, never serving what it cannot read whole; `idnode
repair` keeps what is readable and says what it set aside; the node then
starts with the records of the intact files."""
import os
import shutil
import subprocess
import urllib.request

import grpc

from conftest import Node, idnode_bin

PREFIX = "88.779"


def meta(node):
    return [("authorization", f"Bearer {node.token}")]


def url(identifier):
    return f"https://example.com/{identifier}".encode()


def create(node, pb, names):
    pb2, pb2_grpc = pb
    ids = pb2_grpc.IdentifiersStub(grpc.insecure_channel(node.grpc))
    results = list(ids.BatchCreate(iter([
        pb2.CreateIdentifierRequest(identifier=i, values=[
            pb2.Value(index=1, type="URL", data=url(i)),
            pb2.Value(index=2, type="DESC", data=(i * 20).encode())])
        for i in names]), metadata=meta(node), timeout=60))
    assert [r.code for r in results] == [0] * len(names)


def stored(node, pb, identifier):
    """{index: data} of the identifier, or None when it is not there."""
    pb2, pb2_grpc = pb
    ids = pb2_grpc.IdentifiersStub(grpc.insecure_channel(node.grpc))
    try:
        record = ids.GetIdentifier(pb2.GetIdentifierRequest(identifier=identifier),
                                   metadata=meta(node), timeout=30)
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.NOT_FOUND, e
        return None
    return {v.index: v.data for v in record.values}


def ssts(data):
    return {p.name for p in (data / "db").glob("*.sst")}


def serve(data):
    """`idnode serve` on a damaged store: it must exit by itself."""
    return subprocess.run(
        [idnode_bin(), "serve", "--data-dir", str(data), "--handle-listen", "127.0.0.1:0",
         "--grpc-listen", "127.0.0.1:0", "--dns-listen", "127.0.0.1:0",
         "--dns-quic-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"],
        capture_output=True, text=True, timeout=120)


def repair(data):
    return subprocess.run([idnode_bin(), "repair", "--data-dir", str(data)],
                          capture_output=True, text=True, timeout=120)


def corrupt(path):
    """Overwrites bytes inside the file's first data block. Written to a
    copy renamed over the original, so that a hard link (a backup) keeps
    the good bytes."""
    raw = bytearray(path.read_bytes())
    for at in range(40, 72):
        raw[at] ^= 0x5A
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(bytes(raw))
    os.replace(tmp, path)


def written_store(tmp_path, pb):
    """A stopped node's data directory whose records of batch A are in SST
    files of their own (compacted), and those of batch B in newer ones
    (flushed by a backup): {batch: identifiers}, the data directory, and
    the SST files batch B's flush wrote."""
    data = tmp_path / "node"
    node = Node(data, demo=False).start()
    try:
        node.cli("prefix", "create", PREFIX)
        a = [f"{PREFIX}/A-{n}" for n in range(300)]
        create(node, pb, a)
        node.cli("compact")
        before = ssts(data)
        b = [f"{PREFIX}/B-{n}" for n in range(300)]
        create(node, pb, b)
        node.cli("backup", str(tmp_path / "backup"))
        newer = ssts(data) - before
        assert newer, "the backup's flush wrote no SST file"
        sequence = change_sequence(node)
    finally:
        assert node.stop() == 0
    return {"A": a, "B": b, "sequence": sequence}, data, sorted(newer)


def change_sequence(node):
    with urllib.request.urlopen(f"http://{node.http}/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("idnode_change_sequence "):
                return int(line.split()[1])
    raise AssertionError("no idnode_change_sequence in /metrics")


def lookup_family(path):
    """Whether an SST file belongs to a lookup key space (records,
    prefixes, meta: they have bloom filters) rather than the change log."""
    return b"rocksdb.BuiltinBloomFilter" in path.read_bytes()


def test_a_corrupted_sst_stops_the_start_and_repair_keeps_the_intact_files(tmp_path, pb):
    batches, data, newer = written_store(tmp_path, pb)
    # Batch B's records (not its change-log entries: the change sequence
    # lives there, and a repair that lost it would count from lower).
    newer = [name for name in newer if lookup_family(data / "db" / name)]
    assert newer, "no SST file of the records among the newer ones"
    for name in newer:
        corrupt(data / "db" / name)

    refused = serve(data)
    assert refused.returncode == 2, (refused.returncode, refused.stderr)
    # The message names a damaged file and the ways out.
    assert any(name in refused.stderr for name in newer), refused.stderr
    assert "idnode repair --data-dir" in refused.stderr and "backup" in refused.stderr
    assert "ready" not in refused.stdout

    fixed = repair(data)
    assert fixed.returncode == 0, fixed.stderr
    assert "records" in fixed.stdout and "change sequence" in fixed.stdout, fixed.stdout
    set_aside = [line.strip() for line in fixed.stdout.splitlines() if "/lost/" in line]
    assert sorted(os.path.basename(line) for line in set_aside) == sorted(newer), fixed.stdout

    node = Node(data, demo=False).start()
    try:
        # Every record of the intact files is there, whole.
        for identifier in batches["A"]:
            assert stored(node, pb, identifier) == {
                1: url(identifier), 2: (identifier * 20).encode()}, identifier
        # What was in the damaged files is gone, never served altered.
        for identifier in batches["B"][::30]:
            assert stored(node, pb, identifier) in (
                None, {1: url(identifier), 2: (identifier * 20).encode()})
        # The change sequence did not go back; the node takes writes again.
        assert change_sequence(node) >= batches["sequence"]
        create(node, pb, [f"{PREFIX}/C-1"])
        assert change_sequence(node) > batches["sequence"]
    finally:
        node.stop()


def test_a_missing_sst_stops_the_start_and_repair_recovers(tmp_path, pb):
    batches, data, newer = written_store(tmp_path, pb)
    gone = newer[0]
    shutil.move(data / "db" / gone, tmp_path / gone)

    refused = serve(data)
    assert refused.returncode == 2, (refused.returncode, refused.stderr)
    assert gone in refused.stderr and "idnode repair --data-dir" in refused.stderr, refused.stderr

    fixed = repair(data)
    assert fixed.returncode == 0, fixed.stderr
    node = Node(data, demo=False).start()
    try:
        for identifier in batches["A"][::10]:
            assert stored(node, pb, identifier) == {
                1: url(identifier), 2: (identifier * 20).encode()}, identifier
    finally:
        node.stop()


def test_repair_of_a_directory_without_a_store_is_refused(tmp_path):
    r = repair(tmp_path / "nothing")
    assert r.returncode == 2 and "holds no store" in r.stderr, (r.returncode, r.stderr)


def test_repair_says_when_the_change_log_lost_entries(tmp_path, pb):
    batches, data, newer = written_store(tmp_path, pb)
    # The change log's newer file (no bloom filter): batch B's entries.
    log = [name for name in newer if not lookup_family(data / "db" / name)]
    assert log, "no change-log SST file among the newer ones"
    for name in log:
        corrupt(data / "db" / name)
    assert serve(data).returncode == 2

    fixed = repair(data)
    assert fixed.returncode == 0, fixed.stderr
    # The records are whole, but the change sequence would count from
    # lower than before: the repair says so.
    assert "warning: records were written up to change" in fixed.stdout, fixed.stdout
    assert "AXFR" in fixed.stdout
    node = Node(data, demo=False).start()
    try:
        for identifier in (batches["A"] + batches["B"])[::25]:
            assert stored(node, pb, identifier) == {
                1: url(identifier), 2: (identifier * 20).encode()}, identifier
    finally:
        node.stop()
