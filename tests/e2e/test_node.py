"""End-to-end: the real idnode binary, driven by clients that are not ours."""
import json
import os
import socket
import struct
import subprocess
import time
from pathlib import Path

import grpc
import pytest

import handle_client as hc
from conftest import ROOT, Node, idnode_bin

SEEDS = [json.loads(l) for l in (ROOT / "seeds/identifiers.jsonl").read_text().splitlines() if l]


def stub(node, pb):
    pb2, pb2_grpc = pb
    channel = grpc.insecure_channel(node.grpc)
    return pb2, pb2_grpc.IdentifiersStub(channel), pb2_grpc.PrefixesStub(channel)


def auth(node):
    return (("authorization", f"Bearer {node.token}"),)


def public_values(seed):
    return {v["index"]: v for v in seed["values"] if v.get("permissions", 14) & 0x02}


@pytest.mark.parametrize("resolve", [hc.udp_resolve, hc.tcp_resolve], ids=["udp", "tcp"])
def test_seeded_identifiers_resolve_with_public_values_only(node, resolve):
    addr = node.udp if resolve is hc.udp_resolve else node.tcp
    secret = next(s for s in SEEDS if any(v.get("permissions") == 12 for v in s["values"]))
    for seed in [SEEDS[1], SEEDS[-1], secret]:
        r = resolve(addr, seed["identifier"])
        assert r.code == hc.SUCCESS, r.message
        assert r.handle.decode() == seed["identifier"]
        expected = public_values(seed)
        assert [v["index"] for v in r.values] == sorted(expected)
        for v in r.values:
            assert v["type"] == expected[v["index"]]["type"]
            assert v["data"].decode() == expected[v["index"]]["data"]
            assert v["permissions"] & 0x02
    # The secret value exists but never leaves the node to this client.
    assert any(v.get("permissions") == 12 for v in secret["values"])


def test_response_fields_real_clients_check(node):
    seed = SEEDS[0]
    rid = 0x12345678
    before = int(time.time())
    raw, _ = hc.udp_exchange(node.udp, hc.resolution_request(seed["identifier"], rid,
                                                              version=(2, 3), suggested=(2, 11)))
    r = hc.Response(raw)
    assert r.request_id == rid
    assert (r.major, r.minor) == (2, 11)
    assert r.expiration > before
    assert r.opcode == hc.RESOLUTION


def test_cnri_captured_request_is_answered(node, pb):
    pb2, ids, _ = stub(node, pb)
    ids.CreateIdentifier(pb2.CreateIdentifierRequest(
        identifier="88.100.1/ABC-123", overwrite=True,
        values=[pb2.Value(index=1, type="URL", data=b"https://example.com/abc-123")]),
        metadata=auth(node))
    for name in ["cnri-9.2-resolution-request-site.hex", "cnri-9.2-resolution-request-direct.hex"]:
        text = (ROOT / "crates/handle/tests/vectors" / name).read_text()
        hexdigits = "".join(l.split("#")[0] for l in text.splitlines()).replace(" ", "")
        request = bytes.fromhex(hexdigits)
        for exchange, addr in [(hc.udp_exchange, node.udp), (hc.tcp_exchange, node.tcp)]:
            raw = exchange(addr, request)
            if isinstance(raw, tuple):
                raw = raw[0]
            r = hc.Response(raw)
            assert r.request_id == 0x12345678
            assert r.code == hc.SUCCESS, r.message
            assert r.expiration > time.time()
            assert [(v["type"], v["data"]) for v in r.values] == [("URL", b"https://example.com/abc-123")]


def test_filters_and_not_found(node):
    seed = SEEDS[0]
    r = hc.udp_resolve(node.udp, seed["identifier"], types=("URL",))
    assert [v["type"] for v in r.values] == ["URL"]
    r = hc.udp_resolve(node.udp, seed["identifier"], indexes=(2, 3))
    assert [v["index"] for v in r.values] == [2, 3]
    r = hc.udp_resolve(node.udp, seed["identifier"], types=("nosuchtype",))
    assert r.code == hc.VALUES_NOT_FOUND
    # ASCII case-insensitive; the answer names the handle as it was asked
    # (as CNRI's server does).
    r = hc.udp_resolve(node.udp, seed["identifier"].lower())
    assert r.code == hc.SUCCESS and r.handle.decode() == seed["identifier"].lower()
    assert len(r.values) >= 5
    r = hc.tcp_resolve(node.tcp, "88.100.1/NO-SUCH-THING")
    assert r.code == hc.HANDLE_NOT_FOUND and r.message


def test_request_digest(node):
    seed = SEEDS[0]
    request = hc.resolution_request(seed["identifier"], 77, flags=hc.PO | hc.RD)
    r = hc.Response(hc.udp_exchange(node.udp, request)[0])
    algorithm, value = r.digest
    assert algorithm == 3  # SHA-256 for protocol 2.11
    header_and_body = request[20:-4]
    assert value == hc.digest(3, header_and_body)
    assert r.code == hc.SUCCESS and len(r.values) >= 5


def test_grpc_registration_resolves_at_once_and_large_record_spans_datagrams(node, pb):
    pb2, ids, _ = stub(node, pb)
    big = [pb2.Value(index=i, type="spec", data=(f"{i}:" + "x" * 3000).encode()) for i in range(1, 6)]
    created = ids.CreateIdentifier(pb2.CreateIdentifierRequest(
        identifier="88.100.2/BIG-1", values=big), metadata=auth(node))
    assert created.version > 0
    r = hc.udp_resolve(node.udp, "88.100.2/BIG-1")
    assert r.code == hc.SUCCESS
    assert [v["data"] for v in r.values] == [v.data for v in big]
    assert len(r.datagram_sizes) > 1 and max(r.datagram_sizes) <= 512
    r = hc.tcp_resolve(node.tcp, "88.100.2/BIG-1")
    assert [v["data"] for v in r.values] == [v.data for v in big]
    # A change is visible on the next resolve.
    ids.ModifyValues(pb2.ModifyValuesRequest(identifier="88.100.2/BIG-1",
                                             values=[pb2.Value(index=1, type="URL", data=b"https://new")]),
                     metadata=auth(node))
    r = hc.udp_resolve(node.udp, "88.100.2/BIG-1", indexes=(1,))
    assert [(v["type"], v["data"]) for v in r.values] == [("URL", b"https://new")]


def test_batch_stream_one_bad_item_fails_alone_and_retry_is_idempotent(node, pb):
    pb2, ids, _ = stub(node, pb)
    items = [pb2.CreateIdentifierRequest(identifier=f"88.200.7/BATCH-{n}",
                                         values=[pb2.Value(index=1, type="URL", data=f"https://b/{n}".encode())])
             for n in range(50)]
    items[17] = pb2.CreateIdentifierRequest(identifier="88.200.7/BAD", values=[pb2.Value(index=0, type="URL")])
    results = list(ids.BatchCreate(iter(items), metadata=auth(node)))
    assert len(results) == 50
    assert [r.item for r in results] == list(range(50))
    failed = [r for r in results if r.code != 0]
    assert [r.item for r in failed] == [17] and failed[0].message
    again = list(ids.BatchCreate(iter(items), metadata=auth(node)))
    assert [r.code == 0 for r in again] == [r.code == 0 for r in results]
    assert hc.udp_resolve(node.udp, "88.200.7/BATCH-49").values[0]["data"] == b"https://b/49"


def test_mutation_without_token_is_unauthenticated_and_changes_nothing(node, pb):
    pb2, ids, prefixes = stub(node, pb)
    seed = SEEDS[2]
    with pytest.raises(grpc.RpcError) as e:
        ids.DeleteIdentifier(pb2.DeleteIdentifierRequest(identifier=seed["identifier"]))
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as e:
        ids.DeleteIdentifier(pb2.DeleteIdentifierRequest(identifier=seed["identifier"]),
                             metadata=(("authorization", "Bearer wrong"),))
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as e:
        prefixes.CreatePrefix(pb2.CreatePrefixRequest(prefix="99"))
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert hc.udp_resolve(node.udp, seed["identifier"]).code == hc.SUCCESS


def test_grpc_errors_name_what_was_wrong(node, pb):
    pb2, ids, _ = stub(node, pb)
    with pytest.raises(grpc.RpcError) as e:
        ids.CreateIdentifier(pb2.CreateIdentifierRequest(identifier="no-slash", values=[]),
                             metadata=auth(node))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "identifier" in e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        ids.CreateIdentifier(pb2.CreateIdentifierRequest(identifier=SEEDS[0]["identifier"],
                                                         values=[pb2.Value(index=1, type="URL", data=b"x")]),
                             metadata=auth(node))
    assert e.value.code() == grpc.StatusCode.ALREADY_EXISTS
    with pytest.raises(grpc.RpcError) as e:
        ids.GetIdentifier(pb2.GetIdentifierRequest(identifier="88.100.1/NOPE"))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


def test_malformed_datagrams_are_dropped_or_refused_and_node_keeps_answering(node):
    rng = __import__("random").Random(7)
    valid = hc.resolution_request(SEEDS[0]["identifier"], 5)
    junk = [b"", b"\x00", os.urandom(19), valid[:30], valid[:-3], valid + b"extra",
            valid[:16] + b"\xff\xff\xff\xff" + valid[20:]]
    junk += [bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 600))) for _ in range(200)]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.2)
        for j in junk:
            s.sendto(j, node.udp)
        answers = []
        try:
            while True:
                answers.append(s.recvfrom(65535)[0])
        except socket.timeout:
            pass
    for a in answers:
        assert hc.Response(a).code in (hc.PROTOCOL_ERROR, hc.NOT_SUPPORTED, hc.INVALID_HANDLE,
                                       hc.HANDLE_NOT_FOUND, hc.SUCCESS, hc.VALUES_NOT_FOUND)
    # Truncated TCP input is refused without harm too.
    with socket.create_connection(node.tcp, timeout=3) as s:
        s.sendall(valid[:16] + b"\x7f\xff\xff\xff" + valid[20:])
        try:
            s.recv(65536)
        except (ConnectionError, socket.timeout):
            pass
    assert hc.udp_resolve(node.udp, SEEDS[0]["identifier"]).code == hc.SUCCESS
    assert hc.tcp_resolve(node.tcp, SEEDS[0]["identifier"]).code == hc.SUCCESS


def test_cli_register_resolve_and_import(node, tmp_path):
    r = node.cli("id", "create", "88.100.1/CLI-1", "-v", "1:URL:https://cli.example/1",
                 "-v", "2:productName:Gear pump")
    assert "88.100.1/CLI-1" in r.stdout
    out = node.cli("resolve", "--server", "%s:%d" % node.udp, "88.100.1/CLI-1").stdout
    assert "https://cli.example/1" in out and "Gear pump" in out
    out = node.cli("resolve", "--server", "%s:%d" % node.tcp, "-t", "tcp", "--json",
                   "--type", "URL", "88.100.1/CLI-1").stdout
    doc = json.loads(out)
    assert [v["data"]["value"] for v in doc["values"]] == ["https://cli.example/1"]
    out = node.cli("resolve", "--server", "%s:%d" % node.udp, "--index", "2", "88.100.1/CLI-1").stdout
    assert "Gear pump" in out and "cli.example" not in out
    bad = node.cli("resolve", "--server", "%s:%d" % node.udp, "not-an-identifier", check=False)
    assert bad.returncode == 2 and "not an identifier" in bad.stderr
    missing = node.cli("resolve", "--server", "%s:%d" % node.udp, "88.100.1/NOPE", check=False)
    assert missing.returncode == 1 and "100" in missing.stderr

    lines = [json.dumps({"identifier": f"88.100.2/IMP-{n}",
                         "values": [{"index": 1, "type": "URL", "data": f"https://imp/{n}"}]})
             for n in range(3000)]
    lines.insert(10, "{broken json")
    lines.insert(20, json.dumps({"identifier": "99.9/NOT-HOMED", "values": [{"index": 1, "type": "URL", "data": "x"}]}))
    path = tmp_path / "import.jsonl"
    path.write_text("\n".join(lines) + "\n")
    r = node.cli("import", "--quiet", str(path), check=False)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "imported 3000 identifiers" in r.stdout
    assert "line 11:" in r.stdout and "line 21:" in r.stdout
    assert hc.udp_resolve(node.udp, "88.100.2/IMP-2999").values[0]["data"] == b"https://imp/2999"


def test_compaction_after_an_import_keeps_every_record(node, pb, tmp_path):
    pb2, ids, _ = stub(node, pb)
    lines = [json.dumps({"identifier": f"88.100.2/CMP-{n}",
                         "values": [{"index": 1, "type": "URL", "data": f"https://cmp/{n}"}]})
             for n in range(2000)]
    path = tmp_path / "compact.jsonl"
    path.write_text("\n".join(lines) + "\n")
    r = node.cli("import", "--quiet", "--compact", str(path))
    assert "imported 2000 identifiers" in r.stdout
    assert "compacted the store in" in r.stdout, r.stdout
    # The same identifiers again with new data, then a compaction on its own:
    # the newer records must win.
    newer = [line.replace("https://cmp/", "https://cmp2/") for line in lines[:100]]
    path.write_text("\n".join(newer) + "\n")
    node.cli("import", "--quiet", "--overwrite", str(path))
    r = node.cli("compact")
    assert "compacted the store in" in r.stdout

    for n in list(range(0, 2000, 37)) + [99, 100, 1999]:
        want = f"https://cmp{'2' if n < 100 else ''}/{n}".encode()
        got = hc.udp_resolve(node.udp, f"88.100.2/CMP-{n}")
        assert got.code == hc.SUCCESS and got.values[0]["data"] == want, n
    for seed in SEEDS[:20]:
        assert hc.udp_resolve(node.udp, seed["identifier"]).code == hc.SUCCESS

    done = ids.Compact(pb2.CompactRequest(), metadata=auth(node))
    assert done.duration_ms < 60_000
    with pytest.raises(grpc.RpcError) as e:
        ids.Compact(pb2.CompactRequest())
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    r = node.cli("compact", "--token-file", str(tmp_path / "missing.token"), check=False)
    assert r.returncode == 2 and "admin token" in r.stderr


def test_restart_keeps_everything(tmp_path, pb):
    node = Node(tmp_path / "n").start()
    try:
        pb2, ids, _ = stub(node, pb)
        ids.CreateIdentifier(pb2.CreateIdentifierRequest(
            identifier="88.100.1/DURABLE-1", values=[pb2.Value(index=1, type="URL", data=b"https://d/1")]),
            metadata=auth(node))
        token = node.token
    finally:
        assert node.stop() == 0
    node.start()
    try:
        assert node.token == token
        assert "seeded" not in "\n".join(node.lines)  # seeding happens once
        r = hc.udp_resolve(node.udp, "88.100.1/DURABLE-1")
        assert r.values[0]["data"] == b"https://d/1"
        assert hc.tcp_resolve(node.tcp, SEEDS[5]["identifier"]).code == hc.SUCCESS
        mode = (tmp_path / "n" / "admin.token").stat().st_mode & 0o777
        assert mode == 0o600
    finally:
        node.stop()


def test_no_stale_answer_after_a_grpc_write_is_acknowledged(node, pb):
    """Writes through gRPC while several threads resolve over UDP: once a
    write is acknowledged, no answer received afterwards is older."""
    import threading
    pb2, ids, _ = stub(node, pb)
    name = "88.100.1/CACHE-HOT"

    def write(version):
        ids.CreateIdentifier(pb2.CreateIdentifierRequest(
            identifier=name, overwrite=True,
            values=[pb2.Value(index=1, type="version", data=str(version).encode())]),
            metadata=auth(node))

    write(0)
    acknowledged = [0]
    stop = threading.Event()
    problems, checked = [], [0]

    def reader():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(2)
            while not stop.is_set():
                floor = acknowledged[0]  # read before the request is sent
                rid = hc.new_request_id()
                s.sendto(hc.resolution_request(name, rid), node.udp)
                while True:
                    r = hc.Response(s.recvfrom(65535)[0])
                    if r.request_id == rid:
                        break
                seen = int(r.values[0]["data"])
                if seen < floor:
                    problems.append((seen, floor))
                checked[0] += 1

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    # Write until the readers have checked enough answers, however the
    # threads get scheduled on a loaded machine (bounded, not timed).
    version = 0
    while (version < 300 or checked[0] < 100) and version < 20000:
        version += 1
        write(version)
        acknowledged[0] = version
    stop.set()
    for t in threads:
        t.join()
    assert not problems, problems[:5]
    assert checked[0] >= 100
    assert int(hc.udp_resolve(node.udp, name).values[0]["data"]) == version


def test_bench_refuses_bad_options_with_exit_code_2_and_drives_the_node(node, tmp_path):
    """`idnode bench` as an operator runs it: bad options or files are
    refused before anything is sent (exit code 2, a message naming the
    option), and a short paced open loop against the node reports its
    answers and what it cost the machine."""
    binary = idnode_bin()
    server = ["--server", f"127.0.0.1:{node.udp[1]}"]
    for args, says in [
        ([*server, "--miss-ratio", "2"], "--miss-ratio"),
        ([*server, "-t", "tcp", "--rate", "100", "--pace", "1ms"], "--pace"),
        ([*server, "--pace", "1ms"], "--rate"),
        ([*server, "--ids", str(tmp_path / "missing.txt")], "missing.txt"),
        (["sweep", *server, "--rates", "0"], "--rate"),
        (["load", "--count", "0"], "--count"),
    ]:
        r = subprocess.run([binary, "bench", *args],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert says in r.stderr, (args, r.stderr)

    r = subprocess.run([binary, "bench", *server,
                        "--ids", str(write_ids(tmp_path)), "--rate", "600", "--pace", "5ms",
                        "--duration", "1s", "--warmup", "200ms", "--json"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["answered"] == report["sent"] > 500, report
    assert report["pace_secs"] == 0.005
    assert report["cpu"]["generator_cores"] > 0, report
    # Nothing goes out before its tick: at a 5 ms pace a request (due
    # every 3.3 ms on each socket, off the ticks) waits about 2.5 ms on
    # average.
    assert report["send_lag"]["mean_us"] > 1000, report


def write_ids(tmp_path):
    path = tmp_path / "ids.txt"
    path.write_text("88.100.1/CNC-LATHE-202600000\n")
    return path


def thread_cpus(pid, prefix):
    """The CPUs each of a process's threads named `prefix`* may run on."""
    found = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        name = (task / "comm").read_text().strip()
        if name.startswith(prefix):
            status = (task / "status").read_text()
            mask = next(l for l in status.splitlines() if l.startswith("Cpus_allowed_list"))
            found[name] = cpu_list(mask.split(":", 1)[1].strip())
    return found


def cpu_list(text):
    cpus = set()
    for part in text.split(","):
        first, _, last = part.partition("-")
        cpus.update(range(int(first), int(last or first) + 1))
    return cpus


def test_udp_workers_are_pinned_to_the_cpus_steered_to_them(tmp_path):
    """With `--udp-pin` each UDP worker (Handle and DNS) runs only on the
    CPUs whose datagrams the SO_REUSEPORT steering hands it
    (`cpu % workers`), and answers; by default the scheduler places them."""
    allowed = os.sched_getaffinity(0)
    if len(allowed) < 2:
        pytest.skip("this process may run on one CPU only")
    n = Node(tmp_path / "pinned", extra=["--udp-pin"]).start()
    try:
        for prefix in ("idnode-udp-", "idnode-dns-"):
            workers = thread_cpus(n.proc.pid, prefix)
            assert sorted(workers) == [f"{prefix}0", f"{prefix}1"], workers
            for w in range(2):
                want = {c for c in allowed if c % 2 == w}
                assert workers[f"{prefix}{w}"] == want, (prefix, workers)
        answer = hc.udp_resolve(n.udp, SEEDS[0]["identifier"])
        assert answer.code == hc.SUCCESS, answer.message
        assert answer.handle.decode() == SEEDS[0]["identifier"]
    finally:
        n.stop()
    n = Node(tmp_path / "unpinned").start()
    try:
        workers = thread_cpus(n.proc.pid, "idnode-udp-")
        assert len(workers) == 2 and all(c == allowed for c in workers.values()), workers
    finally:
        n.stop()
