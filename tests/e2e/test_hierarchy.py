"""The hierarchy end to end: deploy/hierarchy-demo.sh's five real nodes
(top 88, secondary 88.100, enterprises 88.100.1 and 88.100.2, a recursive
node), checked with the struct-packed Handle client (not our codec)."""
import os
import signal
import socket
import subprocess
import threading
import time

import grpc
import pytest

import handle_client as hc
from conftest import ROOT, Node, idnode_bin

TOP, SECONDARY, E1, E2, RECURSIVE = (("127.0.0.1", p) for p in (26410, 26420, 26430, 26440, 26450))


@pytest.fixture(scope="module")
def hierarchy(tmp_path_factory):
    demo_dir = tmp_path_factory.mktemp("hierarchy")
    proc = subprocess.Popen(
        [str(ROOT / "deploy/hierarchy-demo.sh")], stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, cwd=demo_dir,
        env={**os.environ, "IDNODE_BIN": idnode_bin(), "IDNODE_DEMO_DIR": str(demo_dir / "state")})
    lines, ready = [], threading.Event()

    def pump():
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if line.strip() == "ready":
                ready.set()
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    if not ready.wait(180) or proc.poll() is not None:
        proc.kill()
        raise RuntimeError("the demo did not start:\n" + "\n".join(lines))
    yield {"dir": demo_dir / "state", "lines": lines}
    proc.send_signal(signal.SIGINT)
    assert proc.wait(60) == 0, "\n".join(lines)
    # Every node it started is gone: the ports are free again.
    for addr in (TOP, SECONDARY, E1, E2, RECURSIVE):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(addr)


def grpc_stub(pb, state_dir, name, port):
    pb2, pb2_grpc = pb
    token = (state_dir / name / "admin.token").read_text().strip()
    channel = grpc.insecure_channel(f"127.0.0.1:{port + 1}")
    return pb2, pb2_grpc.IdentifiersStub(channel), (("authorization", f"Bearer {token}"),)


def data(r):
    return {v["index"]: (v["type"], v["data"]) for v in r.values}


def site_of(r, kind="HS_SITE.PREFIX"):
    sites = [hc.decode_site(v["data"]) for v in r.values if v["type"] == kind]
    assert sites, r.values
    return sites[0]


def udp_port(server):
    return [i["port"] for i in server["interfaces"] if i["protocol"] == 0][0]


def test_demo_prints_its_identifiers_and_commands(hierarchy):
    text = "\n".join(hierarchy["lines"])
    assert "88.100.1/PUMP-0001" in text and "resolve --server 127.0.0.1:26450" in text


@pytest.mark.parametrize("resolve", [hc.udp_resolve, hc.tcp_resolve], ids=["udp", "tcp"])
def test_the_recursive_node_returns_the_enterprise_record(hierarchy, resolve):
    for enterprise, handle in ((E1, "88.100.1/PUMP-0003"), (E2, "88.100.2/pump-0004")):
        direct = resolve(enterprise, handle)
        assert direct.code == hc.SUCCESS
        through = resolve(RECURSIVE, handle)
        assert through.code == hc.SUCCESS, through.message
        assert through.handle == handle.encode()
        assert data(through) == data(direct)
        assert data(through)[1][1].startswith(b"https://enterprise")
    missing = resolve(RECURSIVE, "88.100.1/NO-SUCH-PUMP")
    assert missing.code == hc.HANDLE_NOT_FOUND
    # A prefix nobody holds: the top-level node (homing 88) answers the
    # prefix lookup 0.NA/88.300 with 100, so the identifier does not exist.
    unknown = resolve(RECURSIVE, "88.300/X")
    assert unknown.code == hc.HANDLE_NOT_FOUND and "88.300" in unknown.message


def test_each_level_answers_as_the_global_handle_system(hierarchy):
    # An identifier under a prefix delegated elsewhere: not here (CNRI's
    # client follows referrals only for prefix records), with or without
    # REC on a node that does not recurse.
    for flags in (hc.REC | hc.CA | hc.PO, hc.PO):
        r = hc.udp_resolve(TOP, "88.100.1/PUMP-0001", flags=flags)
        assert r.code == hc.SERVER_NOT_RESP, r.code
        assert "0.NA/88.100" in r.message
    # The prefix lookup below a delegation: 303 with an empty handle and
    # the delegation's HS_SITE.PREFIX.
    r = hc.udp_resolve(TOP, "0.NA/88.100.1", flags=hc.REC | hc.CA | hc.PO)
    assert r.code == hc.PREFIX_REFERRAL and r.handle == b""
    assert [v["type"] for v in r.values] == ["HS_SITE.PREFIX"]
    server = site_of(r)["servers"][0]
    assert (server["address"], udp_port(server)) == SECONDARY
    # The delegated prefix's own record: its HS_SITE, the child's record as
    # the child publishes it (same public key as its GET_SITE_INFO).
    r = hc.udp_resolve(TOP, "0.NA/88.100")
    assert r.code == hc.SUCCESS
    published = site_of(r, "HS_SITE")
    rid = hc.new_request_id()
    own = hc.Response(hc.udp_exchange(SECONDARY, hc.site_info_request(rid))[0]).site
    assert published["servers"][0]["public_key"] == own["servers"][0]["public_key"]
    assert len(own["servers"][0]["public_key"]) > 200
    r = hc.tcp_resolve(SECONDARY, "0.NA/88.100.2")
    assert r.code == hc.SUCCESS
    server = site_of(r, "HS_SITE")["servers"][0]
    assert (server["address"], udp_port(server)) == E2
    # Answers of a primary carry AT.
    assert r.flags & hc.AT
    # DNR: no referral; and a prefix nobody delegated: not responsible.
    r = hc.udp_resolve(TOP, "0.NA/88.100.1", flags=hc.DNR)
    assert r.code == hc.SERVER_NOT_RESP and "DNR" in r.message
    r = hc.udp_resolve(TOP, "86.1/X")
    assert r.code == hc.SERVER_NOT_RESP


def test_get_site_info(hierarchy):
    for addr in (TOP, E1, RECURSIVE):
        rid = hc.new_request_id()
        raw, _ = hc.udp_exchange(addr, hc.site_info_request(rid))
        r = hc.Response(raw)
        assert (r.request_id, r.code, r.opcode) == (rid, hc.SUCCESS, hc.GET_SITE_INFO)
        server = r.site["servers"][0]
        assert (server["address"], udp_port(server)) == addr
        # Its public key; administration on TCP only (query on UDP).
        assert len(server["public_key"]) > 200
        assert {(i["protocol"], i["kind"]) for i in server["interfaces"]} == {(0, 2), (1, 3)}
        assert r.flags & hc.AT


def test_updates_are_seen_through_the_recursive_node_by_ttl(hierarchy, pb):
    pb2, ids, auth = grpc_stub(pb, hierarchy["dir"], "enterprise1", E1[1])
    # 4 s: long enough that the write and the next question fit inside it
    # on a loaded machine.
    for name, ttl in (("TTL-4", 4), ("TTL-0", 0)):
        handle = f"88.100.1/{name}"
        value = pb2.Value(index=1, type="URL", data=b"https://v1", ttl=pb2.Ttl(relative=ttl))
        ids.CreateIdentifier(pb2.CreateIdentifierRequest(identifier=handle, values=[value]),
                             metadata=auth)
        assert data(hc.udp_resolve(RECURSIVE, handle))[1][1] == b"https://v1"
        value = pb2.Value(index=1, type="URL", data=b"https://v2", ttl=pb2.Ttl(relative=ttl))
        ids.ModifyValues(pb2.ModifyValuesRequest(identifier=handle, values=[value]),
                         metadata=auth)
        if ttl == 0:
            # Never cached: the next answer is the new value.
            assert data(hc.udp_resolve(RECURSIVE, handle))[1][1] == b"https://v2"
            continue
        # Cached until the TTL passes, then the new value.
        assert data(hc.udp_resolve(RECURSIVE, handle))[1][1] == b"https://v1"
        time.sleep(ttl + 1.5)
        assert data(hc.udp_resolve(RECURSIVE, handle))[1][1] == b"https://v2"


def test_a_site_of_two_servers_with_one_stopped(hierarchy, tmp_path):
    """88.100.9 is served by a site of two nodes, hashed by suffix; with one
    stopped, its identifiers fail with a clear error, the others resolve."""
    a = Node(tmp_path / "a", demo=False, extra=["--no-dns", "--no-quic"]).start()
    b = Node(tmp_path / "b", demo=False, extra=["--no-dns", "--no-quic"]).start()
    try:
        servers = [a, b]
        for n in servers:
            n.cli("prefix", "home", "88.100.9")
        owned = {0: [], 1: []}
        for i in range(12):
            suffix = f"PART-{i}"
            owner = hc.server_index(suffix, 2)
            owned[owner].append(suffix)
            servers[owner].cli("id", "create", f"88.100.9/{suffix}", "-v",
                               f"1:URL:https://site/{owner}/{suffix}")
        assert owned[0] and owned[1]
        to = [f"udp://{n.udp[0]}:{n.udp[1]},tcp://{n.tcp[0]}:{n.tcp[1]}" for n in servers]
        sec = Node(hierarchy["dir"] / "secondary")
        sec.grpc = "127.0.0.1:26421"
        sec.cli("prefix", "delegate", "88.100.9", "--to", to[0], "--to", to[1],
                "--hash", "suffix", "--ttl", "60")
        shown = sec.cli("prefix", "get", "88.100.9").stdout
        assert "delegated" in shown and f"{to[0]} | {to[1]}" in shown, shown
        for owner, suffixes in owned.items():
            for suffix in suffixes:
                r = hc.udp_resolve(RECURSIVE, f"88.100.9/{suffix}")
                assert r.code == hc.SUCCESS, r.message
                assert data(r)[1][1] == f"https://site/{owner}/{suffix}".encode()
        b.stop()
        for suffix in owned[0]:
            r = hc.udp_resolve(RECURSIVE, f"88.100.9/{suffix}")
            assert r.code == hc.SUCCESS, r.message
        # Identifiers the recursive node has not cached, owned by the
        # stopped server.
        fresh = [s for s in (f"NEW-{i}" for i in range(40)) if hc.server_index(s, 2) == 1]
        for suffix in fresh[:2]:
            start = time.monotonic()
            r = hc.udp_resolve(RECURSIVE, f"88.100.9/{suffix}", timeout=15)
            assert r.code == hc.SERVER_NOT_RESP, r.message
            assert f"{b.udp[1]}" in r.message, r.message
            assert time.monotonic() - start < 15
    finally:
        a.stop()
        b.stop()


def test_a_referral_loop_ends_with_an_error(tmp_path):
    """Two nodes that each delegate 77.1 to the other: the prefix lookup of
    77.1.5 is referred back and forth, and a recursive node asking them
    gets an error, not a hang."""
    x = Node(tmp_path / "x", demo=False, extra=["--no-dns", "--no-quic"]).start()
    y = Node(tmp_path / "y", demo=False, extra=["--no-dns", "--no-quic"]).start()
    rec = None
    try:
        urls = {n: f"udp://{n.udp[0]}:{n.udp[1]},tcp://{n.tcp[0]}:{n.tcp[1]}" for n in (x, y)}
        for n, other in ((x, y), (y, x)):
            n.cli("prefix", "home", "77")
            n.cli("prefix", "delegate", "77.1", "--to", urls[other])
        rec = Node(tmp_path / "rec", demo=False, extra=["--no-dns", "--no-quic",
                                            "--root", urls[x]]).start()
        start = time.monotonic()
        r = hc.udp_resolve(rec.udp, "77.1.5/ANYTHING", timeout=10)
        assert r.code in (hc.ERROR, hc.RECURSION_COUNT_TOO_HIGH), (r.code, r.message)
        assert "loop" in r.message
        assert time.monotonic() - start < 10
    finally:
        for n in (x, y, rec):
            if n:
                n.stop()


def free_port():
    """A port free on 127.0.0.1 for both UDP and TCP (at the time asked)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port = u.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                try:
                    t.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port


def test_registrations_reach_the_server_that_owns_them(tmp_path, pb):
    """Two servers form one site hashed by suffix: whatever server a
    registration reaches, it is stored on the owner."""
    ports = [(free_port(), free_port()) for _ in range(2)]
    nodes = []
    for i in range(2):
        servers = "".join(
            f'[[site.servers]]\nhandle = "udp://127.0.0.1:{h},tcp://127.0.0.1:{h}"\n'
            f'grpc = "http://127.0.0.1:{g}"\ntoken_file = "{tmp_path / f"n{j}" / "admin.token"}"\n'
            for j, (h, g) in enumerate(ports))
        config = tmp_path / f"n{i}.toml"
        config.write_text(f'[site]\nserver_id = {i + 1}\nhash = "suffix"\n{servers}')
        nodes.append(Node(tmp_path / f"n{i}", demo=False, extra=["--no-dns", "--no-quic",
                                                    "--config", str(config)],
                          handle_listen=f"127.0.0.1:{ports[i][0]}",
                          grpc_listen=f"127.0.0.1:{ports[i][1]}"))
    try:
        for n in nodes:
            n.start()
            n.cli("prefix", "home", "88.100.9")
        # The site each node describes: both servers, suffix hashing.
        rid = hc.new_request_id()
        site = hc.Response(hc.udp_exchange(nodes[0].udp, hc.site_info_request(rid))[0]).site
        assert site["hash"] == 1
        assert [udp_port(s) for s in site["servers"]] == [p[0] for p in ports]
        # One at a time through node 0's CLI, a batch through node 1's.
        singles = [f"ONE-{i}" for i in range(8)]
        for suffix in singles:
            nodes[0].cli("id", "create", f"88.100.9/{suffix}", "-v", f"1:URL:https://one/{suffix}")
        batch = [f"MANY-{i}" for i in range(20)]
        jsonl = "".join(f'{{"identifier": "88.100.9/{s}", "values": [{{"index": 1, '
                        f'"type": "URL", "data": "https://many/{s}"}}]}}\n' for s in batch)
        (tmp_path / "batch.jsonl").write_text(jsonl)
        nodes[1].cli("import", str(tmp_path / "batch.jsonl"))
        for suffix in singles + batch:
            owner = hc.server_index(suffix, 2)
            mine = hc.udp_resolve(nodes[owner].udp, f"88.100.9/{suffix}")
            assert mine.code == hc.SUCCESS, (suffix, owner, mine.message)
            other = hc.udp_resolve(nodes[1 - owner].udp, f"88.100.9/{suffix}")
            assert other.code == hc.HANDLE_NOT_FOUND, (suffix, owner)
        assert {hc.server_index(s, 2) for s in singles + batch} == {0, 1}
        # Reads and changes are forwarded too.
        pb2, pb2_grpc = pb
        suffix = next(s for s in singles if hc.server_index(s, 2) == 1)
        ids = pb2_grpc.IdentifiersStub(grpc.insecure_channel(nodes[0].grpc))
        got = ids.GetIdentifier(pb2.GetIdentifierRequest(identifier=f"88.100.9/{suffix}"))
        assert got.values[0].data == f"https://one/{suffix}".encode()
        auth = (("authorization", f"Bearer {nodes[0].token}"),)
        ids.DeleteIdentifier(pb2.DeleteIdentifierRequest(identifier=f"88.100.9/{suffix}"),
                             metadata=auth)
        gone = hc.udp_resolve(nodes[1].udp, f"88.100.9/{suffix}")
        assert gone.code == hc.HANDLE_NOT_FOUND
    finally:
        for n in nodes:
            n.stop()
