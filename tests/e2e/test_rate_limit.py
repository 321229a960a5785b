"""End-to-end: UDP answers under a flood (response rate limiting, in the
manner of DNS RRL) and long answers to sources that never connected (no
amplification), against the real binary with raw sockets and dnspython.
Loopback is exempt by default; these nodes are configured without
exemptions so that 127.0.0.1 and 127.0.0.2 stand for internet sources."""
import socket
import struct
import threading
import time

import dns.flags
import dns.message
import dns.query
import grpc
import pytest

import handle_client as hc
from conftest import Node

SEED = "88.100.1/CNC-LATHE-202600000"
OTHER = "88.100.1/SPINDLE-202600000"


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    base = tmp_path_factory.mktemp("rrl")
    config = base / "idnode.toml"
    config.write_text("[rate_limit]\nresponses_per_second = 20\nslip = 2\nexempt = []\n"
                      "amplification = 0\n")
    n = Node(base / "data", extra=["--config", str(config)]).start()
    yield n
    n.stop()


def flood(addr, message, count, source="127.0.0.1"):
    """Sends `count` copies of `message` as fast as possible from one
    socket; returns (bytes sent, datagrams received, their bytes, the
    datagrams)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((source, 0))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        for _ in range(count):
            s.sendto(message, addr)
        got = []
        s.settimeout(1.0)
        try:
            while True:
                got.append(s.recvfrom(65535)[0])
        except socket.timeout:
            pass
    return len(message) * count, len(got), sum(map(len, got)), got


def test_a_flood_draws_less_than_it_sends_and_others_are_served(node):
    rid = hc.new_request_id()
    question = hc.resolution_request(SEED, rid)
    answers = []

    def second_client():
        # Another source, another identifier, at a modest rate.
        for _ in range(20):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.bind(("127.0.0.2", 0))
                s.settimeout(3)
                s.sendto(hc.resolution_request(OTHER, hc.new_request_id()), node.udp)
                answers.append(hc.Response(s.recvfrom(65535)[0]).code)
            time.sleep(0.05)

    other = threading.Thread(target=second_client)
    other.start()
    sent, count, received, got = flood(node.udp, question, 3000)
    other.join()
    assert received <= sent, (sent, received)
    # Answers while the bucket lasted (20, refilling at 20 a second), then
    # every second refused answer slips as a small "ask over TCP".
    codes = [hc.Response(d).code for d in got]
    assert 0 < codes.count(hc.SUCCESS) <= 100, codes.count(hc.SUCCESS)
    assert codes.count(3) > 100 and count <= 1600, (count, codes.count(3))
    assert all(len(d) <= len(question) for d in got if hc.Response(d).code == 3)
    assert answers == [hc.SUCCESS] * 20, answers


def test_dns_floods_are_limited_with_truncated_slips(node):
    q = dns.message.make_query("CNC-LATHE-202600000._.1.100.88.idnode.internal.", "TXT")
    wire = q.to_wire()
    sent, count, received, got = flood(node.dns_udp, wire, 2000)
    assert received <= sent * 3, (sent, received)
    assert count < 2000
    parsed = [dns.message.from_wire(d) for d in got]
    assert any(m.flags & dns.flags.TC and not m.answer for m in parsed)
    # Over TCP the same query is answered whole.
    r = dns.query.tcp(q, node.dns_tcp[0], port=node.dns_tcp[1], timeout=5)
    assert r.answer


def test_long_answers_go_whole_only_to_sources_that_connected(node, pb):
    pb2, pb2_grpc = pb
    ids = pb2_grpc.IdentifiersStub(grpc.insecure_channel(node.grpc))
    meta = (("authorization", f"Bearer {node.token}"),)
    big = "88.100.1/BIG-RECORD"
    ids.CreateIdentifier(pb2.CreateIdentifierRequest(identifier=big, values=[
        pb2.Value(index=i, type="DOC", data=bytes([65 + i]) * 6000) for i in range(1, 5)
    ]), metadata=meta)
    question = hc.resolution_request(big, hc.new_request_id())
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.3", 0))
        s.settimeout(1.0)
        s.sendto(question, node.udp)
        got = []
        try:
            while True:
                got.append(s.recvfrom(65535)[0])
        except socket.timeout:
            pass
    # One datagram of a message of about 24 KB: its reassembly cannot end.
    assert len(got) == 1 and len(got[0]) <= 512, [len(d) for d in got]
    total, = struct.unpack_from(">I", got[0], 16)
    assert total > 20000
    # Over TCP it is whole; after that, UDP sends it whole too.
    r = hc.tcp_resolve(node.tcp, big)
    assert r.code == hc.SUCCESS and len(r.values) == 4
    r = hc.udp_resolve(node.udp, big)
    assert r.code == hc.SUCCESS and len(r.values) == 4


def scrape(node):
    """The node's metrics: {(name, labels text): value}."""
    import re
    import urllib.request
    with urllib.request.urlopen(f"http://{node.http}/metrics", timeout=10) as r:
        assert r.headers["Content-Type"].startswith("application/openmetrics-text")
        text = r.read().decode()
    assert text.rstrip().endswith("# EOF"), text[-200:]
    out = {}
    for line in text.splitlines():
        m = re.match(r"^([a-z_]+)(\{[^}]*\})? (\S+)$", line)
        if m:
            out[(m.group(1), m.group(2) or "")] = float(m.group(3))
    return out


def test_metrics_count_answers_and_rate_limiting(node):
    key = ("idnode_udp_responses_total", '{surface="handle-udp",code="1"}')
    requests = ("idnode_udp_requests_total", '{surface="handle-udp"}')
    # The floods above may still have datagrams in the sockets' buffers:
    # wait until the node has taken them all (the count stands still).
    before = scrape(node)
    for _ in range(50):
        time.sleep(0.2)
        again = scrape(node)
        if again[requests] == before[requests]:
            break
        before = again
    for _ in range(10):
        assert hc.udp_resolve(node.udp, OTHER).code == hc.SUCCESS
    after = scrape(node)
    assert after[key] - before.get(key, 0) == 10, (before.get(key), after[key])
    assert after[requests] - before[requests] == 10
    # The floods of the tests above were limited, and counted.
    for surface in ("handle-udp", "dns-udp"):
        for action in ("dropped", "slipped"):
            name = ("idnode_rate_limited_responses_total",
                    f'{{surface="{surface}",action="{action}"}}')
            assert after[name] > 0, (name, after.get(name))
    assert after[("idnode_udp_responses_total", '{surface="dns-udp",code="truncated"}')] > 0
    assert after[("idnode_change_sequence", "")] >= 1


def test_metrics_count_http_grpc_and_the_store(node, pb):
    import urllib.error
    import urllib.request
    import grpc
    before = scrape(node)
    for _ in range(5):
        with urllib.request.urlopen(f"http://{node.http}/api/handles/{SEED}", timeout=10) as r:
            assert r.status == 200
    for _ in range(3):
        try:
            urllib.request.urlopen(f"http://{node.http}/api/handles/{SEED}-MISSING", timeout=10)
        except urllib.error.HTTPError as e:
            assert e.code == 404
    pb2, pb2_grpc = pb
    stub = pb2_grpc.IdentifiersStub(grpc.insecure_channel(node.grpc))
    for _ in range(4):
        stub.GetIdentifier(pb2.GetIdentifierRequest(identifier=SEED), timeout=10)
    after = scrape(node)

    def moved(name, labels=""):
        return after[(name, labels)] - before.get((name, labels), 0)
    # The scrape before is counted once it is answered: 5 reads and it.
    assert moved("idnode_http_responses_total", '{class="2xx"}') == 6
    assert moved("idnode_http_responses_total", '{class="4xx"}') == 3
    assert moved("idnode_http_request_duration_seconds_count") == 9
    assert moved("idnode_http_request_duration_seconds_bucket", '{le="+Inf"}') == 9
    assert moved("idnode_grpc_calls_total", '{result="served"}') == 4
    assert after[("idnode_grpc_calls_in_flight", "")] == 0
    assert after[("idnode_store_records_estimate", "")] > 0
    hits = ("idnode_response_cache_lookups_total", '{result="hit"}')
    assert after[hits] > before.get(hits, 0)


def test_a_recursive_node_resolves_only_for_its_clients(node, tmp_path):
    """A recursive node answers REC questions for the ranges it serves and
    301 to everyone else (never an open resolver)."""
    roots = "udp://%s:%d,tcp://%s:%d" % (*node.udp, *node.tcp)
    config = tmp_path / "recursive.toml"
    config.write_text('[recursion]\nclients = ["127.0.0.1/32"]\n'
                      '[rate_limit]\nexempt = ["127.0.0.0/8"]\n')
    rec = Node(tmp_path / "rec", demo=False,
               extra=["--config", str(config), "--root", roots]).start()
    try:
        assert hc.udp_resolve(rec.udp, SEED).code == hc.SUCCESS
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.2", 0))
            s.settimeout(5)
            s.sendto(hc.resolution_request(SEED, hc.new_request_id()), rec.udp)
            refused = hc.Response(s.recvfrom(65535)[0])
        assert refused.code == 301, refused.code
    finally:
        rec.stop()
