"""End-to-end: identifiers in the DNS (docs/dns-mapping.md), asked of the
real idnode binary by DNS clients that are not ours: dig (BIND's) over UDP
and TCP, dnspython over UDP, TCP and QUIC (RFC 9250, through aioquic)."""
import base64
import json
import os
import random
import re
import shutil
import socket
import struct
import subprocess

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.quic
import dns.rcode
import dns.rdatatype
import grpc
import pytest

from conftest import ROOT

SEEDS = [json.loads(l) for l in (ROOT / "seeds/identifiers.jsonl").read_text().splitlines() if l]
APEX = "idnode.internal."
SECRET_SEEDS = [s for s in SEEDS if any(v.get("permissions") == 12 for v in s["values"])]


def dns_name(identifier, apex=APEX):
    """The spec's mapping, written here on its own: the suffix's octets in
    labels of at most 63, then `_`, then the prefix segments reversed."""
    prefix, suffix = identifier.split("/", 1)
    raw = suffix.encode()
    labels = [raw[i:i + 63] for i in range(0, len(raw), 63)]
    labels.append(b"_")
    labels += [seg.encode() for seg in reversed(prefix.split("."))]
    return dns.name.Name(labels + list(dns.name.from_text(apex).labels))


def public_values(seed):
    return sorted((v for v in seed["values"] if v.get("permissions", 14) & 0x02),
                  key=lambda v: v["index"])


def expected_txt(seed):
    return [["idx=%d" % v["index"], "type=%s" % v["type"], "data=%s" % v["data"]]
            for v in public_values(seed)]


def dig(addr, *args, tcp=False):
    """Runs dig against `addr`; its whole output."""
    assert shutil.which("dig"), "dig is missing: run scripts/setup.sh (package bind9-dnsutils)"
    cmd = ["dig", "@%s" % addr[0], "-p", str(addr[1]), "+time=5", "+tries=1", *args]
    if tcp:
        cmd.append("+tcp")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def status(out):
    return re.search(r"status: (\w+)", out).group(1)


def flags(out):
    return re.search(r";; flags: ([a-z ]*);", out).group(1).split()


def section(out, name):
    """The records dig printed under `;; <NAME> SECTION:`, as lists of fields."""
    m = re.search(r";; %s SECTION:\n(.*?)(?:\n\n|\Z)" % name, out, re.S)
    return [line.split(None, 4) for line in m.group(1).splitlines()] if m else []


def strings(rdata_text):
    """The character-strings of a TXT record as dig prints them."""
    return [re.sub(r"\\(.)", r"\1", s) for s in re.findall(r'"((?:[^"\\]|\\.)*)"', rdata_text)]


def txt_of(out):
    return sorted((strings(r[4]) for r in section(out, "ANSWER")), key=lambda s: int(s[0][4:]))


def txt_of_message(message):
    rrset = message.answer[0] if message.answer else []
    got = [[s.decode() for s in r.strings] for r in rrset]
    return sorted(got, key=lambda s: int(s[0][4:]))


def stub(node, pb):
    pb2, pb2_grpc = pb
    channel = grpc.insecure_channel(node.grpc)
    return pb2, pb2_grpc.IdentifiersStub(channel)


def auth(node):
    return (("authorization", f"Bearer {node.token}"),)


def soa_serial(node):
    out = dig(node.dns_udp, APEX, "SOA", "+short")
    return int(out.split()[2])


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_dig_reads_txt_uri_naptr_of_seeded_identifiers(node, tcp):
    addr = node.dns_tcp if tcp else node.dns_udp
    for seed in [SEEDS[0], SEEDS[1], SEEDS[450], SEEDS[-1]]:
        name = dns_name(seed["identifier"]).to_text()
        out = dig(addr, name, "TXT", tcp=tcp)
        assert status(out) == "NOERROR"
        assert "aa" in flags(out) and "tc" not in flags(out) and "ra" not in flags(out)
        assert txt_of(out) == expected_txt(seed)
        ttl = {r[1] for r in section(out, "ANSWER")}
        assert ttl == {"86400"}
        urls = [v for v in public_values(seed) if v["type"] == "URL"]
        # URI (RFC 7553), by name and by number.
        for qtype in ["URI", "TYPE256"]:
            out = dig(addr, name, qtype, "+short", tcp=tcp).splitlines()
            assert out == ['%d 1 "%s"' % (v["index"], v["data"]) for v in urls]
        out = dig(addr, name, "NAPTR", "+short", tcp=tcp).splitlines()
        assert out == ['%d 0 "u" "URL" "!^.*$!%s!" .' % (v["index"], v["data"]) for v in urls]
    # The seeded example of the docs, spelled out, in another letter case.
    out = dig(addr, "cnc-lathe-202600000._.1.100.88.IDNODE.internal.", "TXT", tcp=tcp)
    assert status(out) == "NOERROR" and len(section(out, "ANSWER")) >= 5


def test_values_without_public_read_never_appear(node):
    assert SECRET_SEEDS
    for seed in SECRET_SEEDS[:5]:
        secrets = [v for v in seed["values"] if v.get("permissions") == 12]
        name = dns_name(seed["identifier"]).to_text()
        outputs = [dig(node.dns_udp, name, qtype, tcp=tcp)
                   for qtype in ["TXT", "URI", "NAPTR", "ANY"] for tcp in [False, True]]
        q = dns.message.make_query(name, "TXT")
        outputs.append(dns.query.quic(q, node.dns_quic[0], port=node.dns_quic[1],
                                      verify=False, timeout=10).to_text())
        outputs.append(dns.query.udp(q, node.dns_udp[0], port=node.dns_udp[1], timeout=5).to_text())
        for out in outputs:
            for v in secrets:
                assert v["data"] not in out and "type=%s" % v["type"] not in out
        assert txt_of(outputs[0]) == expected_txt(seed)


def test_soa_ns_nxdomain_nodata_refused(node):
    out = dig(node.dns_udp, APEX, "SOA")
    assert status(out) == "NOERROR" and "aa" in flags(out)
    mname, rname, serial, refresh, retry, expire, minimum = section(out, "ANSWER")[0][4].split()
    assert (mname, rname) == ("ns1.idnode.internal.", "hostmaster.idnode.internal.")
    assert (int(refresh), int(retry), int(expire), int(minimum)) == (3600, 600, 1209600, 300)
    assert int(serial) >= len(SEEDS)
    out = dig(node.dns_tcp, APEX, "NS", tcp=True)
    assert [r[4] for r in section(out, "ANSWER")] == ["ns1.idnode.internal."]
    assert [r[4] for r in section(out, "ADDITIONAL") if r[3] == "A"] == ["127.0.0.1"]

    for tcp in [False, True]:
        addr = node.dns_tcp if tcp else node.dns_udp
        # NXDOMAIN: no such identifier; the SOA in the authority section.
        out = dig(addr, dns_name("88.100.1/NO-SUCH-THING").to_text(), "TXT", tcp=tcp)
        assert status(out) == "NXDOMAIN" and "aa" in flags(out)
        assert not section(out, "ANSWER")
        assert [r[3] for r in section(out, "AUTHORITY")] == ["SOA"]
        # NODATA: the name exists, no record of that type.
        out = dig(addr, dns_name(SEEDS[0]["identifier"]).to_text(), "A", tcp=tcp)
        assert status(out) == "NOERROR" and not section(out, "ANSWER")
        assert [r[3] for r in section(out, "AUTHORITY")] == ["SOA"]
        # A prefix's name exists too (empty non-terminal): NODATA.
        out = dig(addr, "1.100.88." + APEX, "TXT", tcp=tcp)
        assert status(out) == "NOERROR" and not section(out, "ANSWER")
        # This node is no resolver: names outside its apexes are refused.
        out = dig(addr, "example.com.", "A", tcp=tcp)
        assert status(out) == "REFUSED" and "aa" not in flags(out)
    # ANY is answered minimally (RFC 8482), never with every record.
    out = dig(node.dns_udp, dns_name(SEEDS[0]["identifier"]).to_text(), "ANY")
    assert [r[3] for r in section(out, "ANSWER")] == ["HINFO"]
    # Zone transfers are served over TCP only (RFC 5936): over UDP, NOTIMP.
    q = dns.message.make_query(APEX, "AXFR")
    r = dns.query.udp(q, node.dns_udp[0], port=node.dns_udp[1], timeout=5)
    assert r.rcode() == dns.rcode.NOTIMP


def test_large_record_truncates_over_udp_and_comes_whole_over_tcp(node, pb):
    pb2, ids = stub(node, pb)
    big = [pb2.Value(index=i, type="spec", data=(f"{i}:" + "x" * 700).encode()) for i in range(1, 7)]
    ids.CreateIdentifier(pb2.CreateIdentifierRequest(identifier="88.100.2/DNS-BIG-1", values=big),
                         metadata=auth(node))
    name = dns_name("88.100.2/DNS-BIG-1").to_text()
    # dig's default EDNS buffer (1232): the answer does not fit; +ignore
    # keeps dig from retrying over TCP on its own.
    out = dig(node.dns_udp, name, "TXT", "+ignore")
    assert "tc" in flags(out) and status(out) == "NOERROR"
    assert not section(out, "ANSWER")
    out = dig(node.dns_udp, name, "TXT", "+ignore", "+noedns")
    assert "tc" in flags(out)
    expected = [["idx=%d" % v.index, "type=spec", "data=" + v.data.decode()] for v in big]
    out = dig(node.dns_tcp, name, "TXT", tcp=True)
    assert "tc" not in flags(out) and status(out) == "NOERROR"
    # Data past 255 octets continues in further strings (RFC 1035).
    got = [s[:2] + ["".join(s[2:])] for s in txt_of(out)]
    assert got == expected
    # dig on its own: UDP, TC, then TCP.
    out = dig(node.dns_udp, name, "TXT")
    assert "Truncated, retrying in TCP mode" in out
    assert len(section(out, "ANSWER")) == 6
    # dnspython over TCP and QUIC, whole.
    q = dns.message.make_query(name, "TXT")
    r = dns.query.tcp(q, node.dns_tcp[0], port=node.dns_tcp[1], timeout=5)
    assert [s[:2] + ["".join(s[2:])] for s in txt_of_message(r)] == expected
    r = dns.query.quic(q, node.dns_quic[0], port=node.dns_quic[1], verify=False, timeout=10)
    assert not r.flags & dns.flags.TC
    assert [s[:2] + ["".join(s[2:])] for s in txt_of_message(r)] == expected


def test_dnspython_over_udp_tcp_and_quic(node):
    seed = SEEDS[3]
    q = dns.message.make_query(dns_name(seed["identifier"]), "TXT", use_edns=0)
    answers = [
        dns.query.udp(q, node.dns_udp[0], port=node.dns_udp[1], timeout=5),
        dns.query.tcp(q, node.dns_tcp[0], port=node.dns_tcp[1], timeout=5),
        dns.query.quic(q, node.dns_quic[0], port=node.dns_quic[1], verify=False, timeout=10),
    ]
    for r in answers:
        assert r.rcode() == dns.rcode.NOERROR and r.flags & dns.flags.AA
        assert txt_of_message(r) == expected_txt(seed)
        assert r.edns == 0 and r.payload == 1232
    # Over QUIC the message id is 0 both ways.
    assert answers[2].id == 0
    # Several queries on one QUIC connection, one stream each, with the
    # node's certificate checked against its cert.pem.
    cert = str(node.data_dir / "tls" / "cert.pem")
    with dns.quic.SyncQuicManager(verify_mode=cert, server_name="localhost") as manager:
        connection = manager.connect(node.dns_quic[0], node.dns_quic[1])
        for seed in SEEDS[10:20]:
            q = dns.message.make_query(dns_name(seed["identifier"]), "URI")
            r = dns.query.quic(q, node.dns_quic[0], port=node.dns_quic[1],
                               connection=connection, timeout=10)
            assert [rd.target.decode() for rd in r.answer[0]] == \
                [v["data"] for v in public_values(seed) if v["type"] == "URL"]
    q = dns.message.make_query(dns_name("88.100.1/NOPE-QUIC"), "TXT")
    r = dns.query.quic(q, node.dns_quic[0], port=node.dns_quic[1], verify=False, timeout=10)
    assert r.rcode() == dns.rcode.NXDOMAIN


def test_soa_serial_rises_after_a_grpc_write_and_the_new_name_answers_at_once(node, pb):
    pb2, ids = stub(node, pb)
    name = dns_name("88.100.1/DNS-NEW-1").to_text()
    # Asked before it exists: NXDOMAIN (and now in the answer cache).
    assert status(dig(node.dns_udp, name, "TXT")) == "NXDOMAIN"
    before = soa_serial(node)
    ids.CreateIdentifier(pb2.CreateIdentifierRequest(
        identifier="88.100.1/DNS-NEW-1",
        values=[pb2.Value(index=1, type="URL", data=b"https://example.com/dns-new-1")]),
        metadata=auth(node))
    after = soa_serial(node)
    assert after > before
    assert dig(node.dns_udp, name, "URI", "+short").split() == ["1", "1", '"https://example.com/dns-new-1"']
    ids.ModifyValues(pb2.ModifyValuesRequest(
        identifier="88.100.1/DNS-NEW-1",
        values=[pb2.Value(index=1, type="URL", data=b"https://example.com/changed")]),
        metadata=auth(node))
    assert soa_serial(node) > after
    q = dns.message.make_query(name, "URI")
    r = dns.query.quic(q, node.dns_quic[0], port=node.dns_quic[1], verify=False, timeout=10)
    assert [rd.target.decode() for rd in r.answer[0]] == ["https://example.com/changed"]
    # The negative answer the NXDOMAIN carries has the new serial as well.
    out = dig(node.dns_tcp, dns_name("88.100.1/STILL-NOT-THERE").to_text(), "TXT", tcp=True)
    assert int(section(out, "AUTHORITY")[0][4].split()[2]) == soa_serial(node)


def xfr_records(out):
    """The records dig printed for an AXFR or IXFR, as lists of fields."""
    assert "Transfer failed" not in out, out
    return [line.split(None, 4) for line in out.splitlines() if line and not line.startswith(";")]


def test_dig_axfr_lists_the_zone_between_two_soas(node):
    out = dig(node.dns_tcp, "AXFR", APEX)
    records = xfr_records(out)
    assert records[0][3] == "SOA" and records[-1][3] == "SOA", out[:2000]
    assert [r[3] for r in records].count("SOA") == 2
    assert records[0][4] == records[-1][4]
    assert int(records[0][4].split()[2]) == soa_serial(node)
    assert any(r[3] == "NS" for r in records)
    for seed in [SEEDS[0], SEEDS[450], SEEDS[-1]]:
        name = dns_name(seed["identifier"]).to_text().lower()
        txt = sorted((strings(r[4]) for r in records if r[0].lower() == name and r[3] == "TXT"),
                     key=lambda s: int(s[0][4:]))
        assert txt == expected_txt(seed), name
    # Values without public read are not in the zone either.
    for seed in SECRET_SEEDS[:5]:
        for v in seed["values"]:
            if v.get("permissions") == 12:
                assert "data=%s" % v["data"] not in out
    # A zone that is no apex of this node: NOTAUTH, no transfer.
    q = dns.message.make_query("1.100.88." + APEX, "AXFR")
    r = dns.query.tcp(q, node.dns_tcp[0], port=node.dns_tcp[1], timeout=5)
    assert r.rcode() == dns.rcode.NOTAUTH


def read_framed(s):
    """One length-prefixed DNS message from a TCP socket."""
    def exactly(n):
        data = b""
        while len(data) < n:
            chunk = s.recv(n - len(data))
            assert chunk, "the connection closed"
            data += chunk
        return data
    (length,) = struct.unpack("!H", exactly(2))
    return exactly(length)


def test_axfr_streams_and_dnspython_gets_every_record_dig_lists(node):
    # The first message, alone off the socket: the question, then the SOA.
    q = dns.message.make_query(APEX, "AXFR")
    wire = q.to_wire()
    with socket.create_connection(node.dns_tcp, timeout=10) as s:
        s.sendall(struct.pack("!H", len(wire)) + wire)
        first = dns.message.from_wire(read_framed(s), xfr=True)
    assert first.id == q.id and first.rcode() == dns.rcode.NOERROR
    assert first.question and first.question[0].name == dns.name.from_text(APEX)
    assert first.answer[0].rdtype == dns.rdatatype.SOA
    # dnspython's transfer (it checks the SOA at both ends) gets, over
    # several messages, the very records dig lists.
    messages = list(dns.query.xfr(node.dns_tcp[0], APEX, port=node.dns_tcp[1], timeout=30,
                                  lifetime=120, relativize=False))
    assert len(messages) > 1
    assert all(not m.question for m in messages[1:])
    got = sorted((rrset.name.to_text().lower(), dns.rdatatype.to_text(rrset.rdtype), rd.to_text())
                 for m in messages for rrset in m.answer for rd in rrset)
    listed = sorted((r[0].lower(), r[3], r[4]) for r in xfr_records(dig(node.dns_tcp, "AXFR", APEX)))
    assert len(got) == len(listed) and len(got) > 3000, (len(got), len(listed))
    assert got == listed


def test_dig_ixfr_after_a_grpc_write_shows_the_new_record(node, pb):
    pb2, ids = stub(node, pb)
    before = soa_serial(node)
    # Up to date: the current SOA alone.
    records = xfr_records(dig(node.dns_tcp, "IXFR=%d" % before, APEX))
    assert [r[3] for r in records] == ["SOA"]
    ids.CreateIdentifier(pb2.CreateIdentifierRequest(
        identifier="88.100.1/DNS-IXFR-1",
        values=[pb2.Value(index=1, type="URL", data=b"https://example.com/ixfr-1")]),
        metadata=auth(node))
    after = soa_serial(node)
    assert after > before
    out = dig(node.dns_tcp, "IXFR=%d" % before, APEX)
    records = xfr_records(out)
    serials = [int(r[4].split()[2]) for r in records if r[3] == "SOA"]
    # The incremental form: current, (old, new) per change, current.
    assert serials[0] == after and serials[-1] == after, out
    assert serials[1] == before and records[1][3] == "SOA", out
    name = dns_name("88.100.1/DNS-IXFR-1").to_text().lower()
    assert [r[4] for r in records if r[0].lower() == name and r[3] == "URI"] == \
        ['1 1 "https://example.com/ixfr-1"'], out
    assert len(records) < 50, "an incremental answer, not the whole zone"


def hostile_datagrams():
    valid = dns.message.make_query(dns_name(SEEDS[0]["identifier"]), "TXT").to_wire()
    rng = random.Random(7)
    header = valid[:12]
    junk = [
        b"", b"\x00", valid[:5], valid[:11], valid[:12], valid[:20], valid[:-3],
        # The question name is a compression pointer to itself.
        header + b"\xc0\x0c\x00\x10\x00\x01",
        # Two pointers pointing at each other.
        header + b"\xc0\x0e\xc0\x0c\x00\x10\x00\x01",
        # A pointer past the end; a label longer than the message.
        header + b"\xc0\xff\x00\x10\x00\x01",
        header + b"\x3fabc",
        # A response: never answered.
        valid[:2] + bytes([valid[2] | 0x80]) + valid[3:],
        # 65535 records announced, none there.
        valid[:6] + b"\xff\xff\xff\xff\xff\xff" + valid[12:],
    ]
    junk += [bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 600))) for _ in range(300)]
    junk += [header + bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 300))) for _ in range(300)]
    return junk


def drain_until_marker(s, addr, marker_id):
    """Sends a valid query with `marker_id` after a burst and collects the
    answers that come before its own. The kernel hashes one client socket
    to one worker, which takes its datagrams in order, so every answer to
    the burst precedes the marker's. The marker is sent again while its
    answer does not come (a datagram may be dropped under a burst)."""
    marker = dns.message.make_query(APEX, "SOA")
    marker.id = marker_id
    answers = []
    s.settimeout(1)
    for _ in range(60):
        s.sendto(marker.to_wire(), addr)
        try:
            while True:
                a = s.recvfrom(65535)[0]
                if a[:2] == struct.pack(">H", marker_id):
                    try:
                        m = dns.message.from_wire(a)
                    except dns.exception.DNSException:
                        m = None
                    if m is not None and m.rcode() == dns.rcode.NOERROR and m.answer:
                        return answers
                answers.append(a)
        except socket.timeout:
            continue
    raise AssertionError("the node stopped answering")


def test_hostile_datagrams_and_streams_do_not_stop_the_node(node):
    answers = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        junk = hostile_datagrams()
        for n, start in enumerate(range(0, len(junk), 50)):
            for j in junk[start:start + 50]:
                s.sendto(j, node.dns_udp)
            answers += drain_until_marker(s, node.dns_udp, 0x4a00 + n)
    for a in answers:
        # Whatever came back is a response a real client can read.
        m = dns.message.from_wire(a, question_only=True)
        assert m.flags & dns.flags.QR
    assert answers, "the readable headers get FORMERR answers"
    # Garbage on TCP: a frame that is no query closes the connection.
    with socket.create_connection(node.dns_tcp, timeout=5) as s:
        s.sendall(struct.pack(">H", 3) + b"abc")
        try:
            assert s.recv(65536) == b""
        except (ConnectionError, socket.timeout):
            pass
    # A frame whose length promises more than comes, then silence: the
    # node keeps answering others meanwhile.
    hung = socket.create_connection(node.dns_tcp, timeout=5)
    hung.sendall(struct.pack(">H", 500) + b"\x00" * 10)
    try:
        seed = SEEDS[0]
        out = dig(node.dns_udp, dns_name(seed["identifier"]).to_text(), "TXT")
        assert txt_of(out) == expected_txt(seed)
        out = dig(node.dns_tcp, dns_name(seed["identifier"]).to_text(), "TXT", tcp=True)
        assert txt_of(out) == expected_txt(seed)
        q = dns.message.make_query(dns_name(seed["identifier"]), "TXT")
        r = dns.query.quic(q, node.dns_quic[0], port=node.dns_quic[1], verify=False, timeout=10)
        assert txt_of_message(r) == expected_txt(seed)
    finally:
        hung.close()


def test_a_node_without_dns(tmp_path):
    from conftest import Node
    n = Node(tmp_path / "n", demo=False, extra=["--no-dns"]).start()
    try:
        assert n.dns_udp is None and n.dns_tcp is None and n.dns_quic is None
        assert not [l for l in n.lines if re.match(r"\s+dns ", l)]
    finally:
        assert n.stop() == 0


def free_port():
    """A port free on UDP and TCP at 127.0.0.1 when asked (another process
    could take it before use; then the test fails to start NSD, loudly)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_nsd():
    """NSD, installed through apt when missing; None when that fails."""
    if not shutil.which("nsd"):
        try:
            subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "nsd"],
                           capture_output=True, timeout=300,
                           env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        except (OSError, subprocess.SubprocessError):
            return None
    return shutil.which("nsd") or (shutil.which("nsd", path="/usr/sbin"))


def wait_for(what, check, attempts=300):
    """Asks `check` until it is true; a hang guard, not a timing test."""
    import time
    for _ in range(attempts):
        if check():
            return
        time.sleep(0.2)
    raise AssertionError("no %s after %d attempts" % (what, attempts))


@pytest.mark.parametrize("tsig", [False, True], ids=["plain", "tsig"])
def test_nsd_serves_the_zone_as_a_secondary_and_follows_notify(tmp_path, pb, tsig):
    """A real secondary: NSD transfers the zone (AXFR at start), is told of a
    gRPC write by NOTIFY, and fetches it (IXFR); with TSIG, both transfers
    are signed and NSD checks the signatures."""
    nsd = ensure_nsd()
    if not nsd:
        pytest.skip("nsd is not installed and could not be installed")
    from conftest import Node
    nsd_port = free_port()
    secret = base64.b64encode(b"the secret idnode and NSD share").decode()
    config = tmp_path / "idnode.toml"
    config.write_text('[dns]\nnotify = ["127.0.0.1:%d"]\n' % nsd_port + (
        f'[[dns.tsig_keys]]\nname = "xfr-key."\nsecret = "{secret}"\n' if tsig else ""))
    key_section = (f'key:\n    name: "xfr-key."\n    algorithm: hmac-sha256\n'
                   f'    secret: "{secret}"\n') if tsig else ""
    key_name = "xfr-key." if tsig else "NOKEY"
    n = Node(tmp_path / "n", extra=["--config", str(config)]).start()
    d = tmp_path / "nsd"
    d.mkdir()
    conf = d / "nsd.conf"
    conf.write_text(f"""server:
    ip-address: 127.0.0.1@{nsd_port}
    port: {nsd_port}
    do-ip6: no
    username: ""
    chroot: ""
    zonesdir: "{d}"
    database: ""
    zonelistfile: "{d}/zone.list"
    xfrdfile: "{d}/xfrd.state"
    xfrdir: "{d}"
    pidfile: "{d}/nsd.pid"
    logfile: "{d}/nsd.log"
    server-count: 1
    verbosity: 2
remote-control:
    control-enable: no
{key_section}zone:
    name: "{APEX}"
    zonefile: "{d}/idnode.internal.zone"
    request-xfr: 127.0.0.1@{n.dns_tcp[1]} {key_name}
    allow-notify: 127.0.0.1 NOKEY
""")
    proc = subprocess.Popen([nsd, "-d", "-c", str(conf)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    secondary = ("127.0.0.1", nsd_port)
    try:
        seed = SEEDS[0]
        name = dns_name(seed["identifier"]).to_text()

        def serves_seed():
            assert proc.poll() is None, proc.stdout.read()
            try:
                out = dig(secondary, name, "TXT")
            except AssertionError:
                return False  # NSD not listening yet: dig found no server
            return status(out) == "NOERROR" and txt_of(out) == expected_txt(seed)

        wait_for("zone at NSD", serves_seed)
        assert "aa" in flags(dig(secondary, name, "TXT"))
        pb2, ids = stub(n, pb)
        ids.CreateIdentifier(pb2.CreateIdentifierRequest(
            identifier="88.100.1/NSD-NOTIFIED-1",
            values=[pb2.Value(index=1, type="URL", data=b"https://example.com/nsd-1")]),
            metadata=auth(n))
        serial = soa_serial(n)
        new = dns_name("88.100.1/NSD-NOTIFIED-1").to_text()
        wait_for("NOTIFY-driven transfer",
                 lambda: dig(secondary, new, "URI", "+short").split()
                 == ["1", "1", '"https://example.com/nsd-1"'])
        assert int(dig(secondary, APEX, "SOA", "+short").split()[2]) == serial
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        assert n.stop() == 0
