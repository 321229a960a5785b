"""End-to-end: a value without public read is readable on no surface
without credentials, against the real binary.

One node homes 88.100.1 and 88.100.2 and holds 88.100.1/SECRET-1: a public
URL at index 1, a private `costPrice` at index 7 and a private URL at
index 8 (permissions 0x0c, admin read and write only), both carrying a
random marker. A second node recurses to it (`--root`). The marker is
searched for in the raw bytes of every answer: Handle over UDP, TCP and
QUIC (all values, by index, by type, with and without the PO flag),
GET_SITE_INFO, the DNS (TXT, URI, NAPTR, ANY over UDP, TCP and QUIC; dig
too), AXFR and IXFR, the recursive node's answers (fresh, cached, and
with the authority stopped), and the gRPC API for callers without
read_value on 88.100.1 (GetIdentifier, ListIdentifiers, the prefixes, and
the records AddValues, ModifyValues and RemoveValues answer). The marker
must show to the operator and to a token holding read_value on 88.100.1,
and the public URL must show on every surface, so that a surface that
answers nothing cannot pass."""
import asyncio
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import types

import grpc
import pytest

import handle_client as hc
from conftest import Node

APEX = "idnode.internal."
IDENTIFIER = "88.100.1/SECRET-1"
NAME = "SECRET-1._.1.100.88." + APEX
PRIVATE = 0x0C  # admin read, admin write; no public read
TAG = os.urandom(6).hex()
MARKER = f"PRIVATE-MARKER-{TAG}"
SECRET_1 = f"{MARKER}-v1".encode()  # index 7 as created
SECRET_2 = f"{MARKER}-v2".encode()  # index 7 after ModifyValues
PRIVATE_URL = f"https://private.example/{MARKER}".encode()  # index 8
PUBLIC_URL = f"https://public.example/{TAG}/secret-1".encode()  # index 1
MARK = MARKER.encode()


def assert_private_absent(raw, where):
    """The raw answer carries neither the marker nor the private type name."""
    if isinstance(raw, str):
        raw = raw.encode()
    assert MARK not in raw, f"PRIVATE VALUE LEAKED via {where}: {raw[:3000]!r}"
    assert b"costPrice" not in raw, f"private value type leaked via {where}: {raw[:3000]!r}"


def assert_public_present(raw, where):
    if isinstance(raw, str):
        raw = raw.encode()
    assert PUBLIC_URL in raw, f"the public URL is missing from {where}: {raw[:3000]!r}"


# --- setup -------------------------------------------------------------------

def rpc(node, service, method, request, token=None):
    """A unary call whose answer comes back as its raw protobuf bytes."""
    channel = grpc.insecure_channel(node.grpc)
    try:
        call = channel.unary_unary(f"/idnode.v1.{service}/{method}",
                                   request_serializer=type(request).SerializeToString,
                                   response_deserializer=None)
        meta = [("authorization", f"Bearer {token}")] if token else []
        return call(request, metadata=meta, timeout=30)
    finally:
        channel.close()


def make_token(node, *args):
    r = node.cli("token", "create", *args)
    match = re.search(r"export IDNODE_TOKEN=(\S+)", r.stdout)
    assert match, r.stdout + r.stderr
    return match.group(1)


def soa_serial(node):
    import dns.message
    import dns.query
    r = dns.query.tcp(dns.message.make_query(APEX, "SOA"), node.dns_tcp[0],
                      port=node.dns_tcp[1], timeout=5)
    return r.answer[0][0].serial


@pytest.fixture(scope="module")
def world(tmp_path_factory, pb):
    pb2, _ = pb
    base = tmp_path_factory.mktemp("private")
    node = Node(base / "authority", demo=False,
                extra=["--quic-listen", "127.0.0.1:0"]).start()
    rec = None
    try:
        op = node.token
        for prefix in ("88.100.1", "88.100.2"):
            rpc(node, "Prefixes", "CreatePrefix", pb2.CreatePrefixRequest(prefix=prefix), op)
        serial_before = soa_serial(node)
        rpc(node, "Identifiers", "CreateIdentifier", pb2.CreateIdentifierRequest(
            identifier=IDENTIFIER, values=[
                pb2.Value(index=1, type="URL", data=PUBLIC_URL),
                pb2.Value(index=7, type="costPrice", data=SECRET_1, permissions=PRIVATE),
                pb2.Value(index=8, type="URL", data=PRIVATE_URL, permissions=PRIVATE),
            ]), op)
        # A change of the private value, so that the change log (IXFR, the
        # caches) has seen it twice.
        rpc(node, "Identifiers", "ModifyValues", pb2.ModifyValuesRequest(
            identifier=IDENTIFIER,
            values=[pb2.Value(index=7, type="costPrice", data=SECRET_2, permissions=PRIVATE)]),
            op)
        # A neighbour under the other prefix, so a token there has something.
        rpc(node, "Identifiers", "CreateIdentifier", pb2.CreateIdentifierRequest(
            identifier="88.100.2/OTHER-1",
            values=[pb2.Value(index=1, type="URL", data=b"https://public.example/other")]), op)
        tokens = types.SimpleNamespace(
            reader=make_token(node, "--prefix", "88.100.1", "--perm", "read_value,list_handles",
                              "--name", "reader"),
            other=make_token(node, "--prefix", "88.100.2", "--perm", "all", "--name", "other"),
            writer=make_token(node, "--prefix", "88.100.1", "--perm",
                              "add_handle,add_value,modify_value,remove_value,list_handles",
                              "--name", "writer without read"),
        )
        handle = f"udp://{node.udp[0]}:{node.udp[1]},tcp://{node.tcp[0]}:{node.tcp[1]}"
        rec = Node(base / "recursive", demo=False,
                   extra=["--quic-listen", "127.0.0.1:0", "--root", handle]).start()
        yield types.SimpleNamespace(node=node, rec=rec, pb2=pb2, tokens=tokens,
                                    serial_before=serial_before)
    finally:
        if rec:
            rec.stop()
        node.stop()


# --- gRPC: the positive controls first ----------------------------------------

def get(world, token=None):
    pb2 = world.pb2
    raw = rpc(world.node, "Identifiers", "GetIdentifier",
              pb2.GetIdentifierRequest(identifier=IDENTIFIER), token)
    return raw, pb2.Identifier.FromString(raw)


def test_the_private_values_are_stored_and_shown_to_readers(world):
    for who, token in (("operator", world.node.token), ("read_value on 88.100.1",
                                                        world.tokens.reader)):
        raw, record = get(world, token)
        assert SECRET_2 in raw and PRIVATE_URL in raw and PUBLIC_URL in raw, who
        assert SECRET_1 not in raw, who
        values = {v.index: v for v in record.values}
        assert sorted(values) == [1, 7, 8], who
        assert values[7].type == "costPrice" and values[7].data == SECRET_2
        assert values[7].permissions == PRIVATE and values[8].permissions == PRIVATE


def test_grpc_callers_without_read_value_see_only_public_values(world):
    pb2 = world.pb2
    for who, token in (("no token", None),
                       ("a token for 88.100.2 with every permission", world.tokens.other),
                       ("a token for 88.100.1 without read_value", world.tokens.writer)):
        raw, record = get(world, token)
        assert_private_absent(raw, f"gRPC GetIdentifier with {who}")
        assert_public_present(raw, f"gRPC GetIdentifier with {who}")
        assert [v.index for v in record.values] == [1], who
    # Not the record in another spelling of the identifier either.
    raw = rpc(world.node, "Identifiers", "GetIdentifier",
              pb2.GetIdentifierRequest(identifier=IDENTIFIER.lower()))
    assert_private_absent(raw, "gRPC GetIdentifier of the lower-case spelling")
    # A forged token: refused, and the refusal names nothing private.
    with pytest.raises(grpc.RpcError) as e:
        get(world, world.node.token[:-4] + "0000")
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert_private_absent(e.value.details() or "", "a refused GetIdentifier")
    # Listing gives names only, to whoever may list.
    for who, token in (("operator", world.node.token), ("writer", world.tokens.writer),
                       ("reader", world.tokens.reader)):
        raw = rpc(world.node, "Identifiers", "ListIdentifiers",
                  pb2.ListIdentifiersRequest(prefix="88.100.1", page_size=1000), token)
        assert IDENTIFIER.encode() in raw, who
        assert_private_absent(raw, f"gRPC ListIdentifiers as {who}")
    with pytest.raises(grpc.RpcError) as e:
        rpc(world.node, "Identifiers", "ListIdentifiers",
            pb2.ListIdentifiersRequest(prefix="88.100.1"))
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as e:
        rpc(world.node, "Identifiers", "ListIdentifiers",
            pb2.ListIdentifiersRequest(prefix="88.100.1"), world.tokens.other)
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert_private_absent(e.value.details() or "", "a refused ListIdentifiers")
    for method, request in (("GetPrefix", pb2.GetPrefixRequest(prefix="88.100.1")),
                            ("ListPrefixes", pb2.ListPrefixesRequest())):
        raw = rpc(world.node, "Prefixes", method, request)
        assert b"88.100.1" in raw
        assert_private_absent(raw, f"gRPC {method}")


def test_grpc_write_answers_to_a_token_without_read_value(world):
    """AddValues, ModifyValues and RemoveValues answer with the record: a
    token that may write values under 88.100.1 but not read_value must get
    the public view of it, as GetIdentifier gives, not the private values
    it could not read."""
    pb2, writer = world.pb2, world.tokens.writer
    note = pb2.Value(index=20, type="note", data=b"public note")
    calls = [
        ("AddValues", pb2.AddValuesRequest(identifier=IDENTIFIER, values=[note])),
        ("ModifyValues", pb2.ModifyValuesRequest(
            identifier=IDENTIFIER,
            values=[pb2.Value(index=20, type="note", data=b"changed note")])),
        ("RemoveValues", pb2.RemoveValuesRequest(identifier=IDENTIFIER, indexes=[20])),
    ]
    leaks = []
    for method, request in calls:
        raw = rpc(world.node, "Identifiers", method, request, writer)
        assert_public_present(raw, f"gRPC {method}")
        if MARK in raw or b"costPrice" in raw:
            got = sorted(v.index for v in pb2.Identifier.FromString(raw).values)
            leaks.append(f"{method} as a token for 88.100.1 holding add_value, modify_value, "
                         f"remove_value but not read_value answered indexes {got} with "
                         f"{MARKER!r} in its bytes")
    # The record is as before (index 20 came and went).
    _, record = get(world, world.node.token)
    assert sorted(v.index for v in record.values) == [1, 7, 8]
    assert not leaks, "PRIVATE VALUE LEAKED:\n" + "\n".join(leaks)


# --- Handle protocol ---------------------------------------------------------

PO_FLAGS = hc.REC | hc.CA | hc.PO
# Requests over the Handle protocol, as (description, keyword arguments).
# Those with PO ("public only") must answer as the table says; without
# PO a client asks for everything, and the node (without authentication)
# must still hold the private values back.
QUESTIONS = [
    ("all values", {}),
    ("index 7", {"indexes": (7,)}),
    ("index 8", {"indexes": (8,)}),
    ("indexes 1, 7, 8", {"indexes": (1, 7, 8)}),
    ("type costPrice", {"types": ("costPrice",)}),
    ("type URL", {"types": ("URL",)}),
    ("types costPrice and URL, index 7", {"types": ("costPrice", "URL"), "indexes": (7,)}),
]
FLAG_SETS = [("REC CA PO", PO_FLAGS), ("REC CA (no PO)", hc.REC | hc.CA),
             ("AT REC CA (no PO)", hc.AT | hc.REC | hc.CA), ("no flags", 0)]


def requests():
    for flag_name, flag_bits in FLAG_SETS:
        for name, kw in QUESTIONS:
            yield f"{name}, flags {flag_name}", flag_bits, kw


def check_handle_answer(raw, where, flag_bits, kw):
    """No marker in the bytes; where the answer is a SUCCESS, only index 1
    and its URL, and with PO the expected code."""
    assert_private_absent(raw, where)
    try:
        r = hc.Response(raw)
    except Exception:  # noqa: BLE001 - a challenge or an error we do not decode
        assert flag_bits & hc.PO == 0, f"{where}: undecodable answer {raw!r}"
        return
    # A value is asked for when its index or its type is (RFC 3652: the
    # two lists are alternatives); no list asks for every value.
    indexes, kinds = kw.get("indexes", ()), kw.get("types", ())
    wants_public = (not indexes and not kinds) or 1 in indexes or "URL" in kinds
    if r.code == hc.SUCCESS:
        assert [v["index"] for v in r.values] == [1], (where, r.values)
        assert r.values[0]["data"] == PUBLIC_URL
    if flag_bits & hc.PO or r.code == hc.SUCCESS:
        expected = hc.SUCCESS if wants_public else hc.VALUES_NOT_FOUND
        if flag_bits & hc.PO:
            assert r.code == expected, (where, r.code, r.message)
        if wants_public:
            assert_public_present(raw, where)


def test_handle_udp_and_tcp(world):
    node = world.node
    for desc, flag_bits, kw in requests():
        for transport, exchange, addr in (("UDP", lambda a, m: hc.udp_exchange(a, m)[0],
                                           node.udp),
                                          ("TCP", hc.tcp_exchange, node.tcp)):
            rid = hc.new_request_id()
            raw = exchange(addr, hc.resolution_request(IDENTIFIER, rid, flags=flag_bits, **kw))
            check_handle_answer(raw, f"Handle {transport} resolution ({desc})", flag_bits, kw)
    # Other spellings of the identifier reach the same record.
    for spelling in (IDENTIFIER.lower(), "88.100.1/Secret-1"):
        r = hc.udp_resolve(node.udp, spelling)
        assert_private_absent(r.raw, f"Handle UDP resolution of {spelling}")
        if r.code == hc.SUCCESS:
            assert [v["index"] for v in r.values] == [1]


def test_get_site_info(world):
    node = world.node
    rid = hc.new_request_id()
    raw = hc.udp_exchange(node.udp, hc.site_info_request(rid))[0]
    assert_private_absent(raw, "GET_SITE_INFO over UDP")
    site = hc.Response(raw).site
    assert site["servers"] and site["servers"][0]["public_key"]
    raw = hc.tcp_exchange(node.tcp, hc.site_info_request(hc.new_request_id()))
    assert_private_absent(raw, "GET_SITE_INFO over TCP")
    assert hc.Response(raw).site["servers"]


def quic_exchanges(addr, alpn, payloads, complete, cafile):
    """Sends each payload on its own bidirectional stream of one QUIC
    connection (aioquic, not ours); the raw bytes each stream answered."""
    try:
        from aioquic.asyncio import connect
        from aioquic.quic.configuration import QuicConfiguration
    except ImportError:
        pytest.skip("aioquic is not installed in this Python")

    async def run():
        config = QuicConfiguration(is_client=True, alpn_protocols=[alpn],
                                   server_name="localhost")
        config.load_verify_locations(cafile)
        answers = []
        async with connect(addr[0], addr[1], configuration=config) as client:
            for payload in payloads:
                reader, writer = await client.create_stream()
                writer.write(payload)
                writer.write_eof()
                data = b""
                while not complete(data):
                    chunk = await asyncio.wait_for(reader.read(65536), 10)
                    if not chunk:
                        break
                    data += chunk
                answers.append(data)
        return answers

    return asyncio.run(asyncio.wait_for(run(), 60))


def handle_complete(data):
    return len(data) >= 20 and len(data) >= 20 + struct.unpack_from(">I", data, 16)[0]


def handle_quic_addr(node):
    value = node.addresses.get("handle_quic")
    assert value, f"the node listens on no Handle QUIC port: {node.addresses}"
    host, port = value.rsplit(":", 1)
    return host.strip("[]"), int(port)


def cert_of(node):
    return node.addresses.get("tls_certificate") or str(node.data_dir / "tls" / "cert.pem")


def test_handle_over_quic(world):
    node = world.node
    asked = list(requests())
    payloads = [hc.resolution_request(IDENTIFIER, hc.new_request_id(), flags=f, **kw)
                for _, f, kw in asked]
    answers = quic_exchanges(handle_quic_addr(node), "hdl", payloads, handle_complete,
                             cert_of(node))
    for (desc, flag_bits, kw), raw in zip(asked, answers):
        assert raw, f"no answer over Handle QUIC to {desc}"
        check_handle_answer(raw, f"Handle QUIC resolution ({desc})", flag_bits, kw)
    # The command-line client over QUIC, as a user would ask.
    r = node.cli("resolve", IDENTIFIER, "--transport", "quic", "--server",
                 node.addresses["handle_quic"], "--ca-file", cert_of(node), "--json")
    assert_private_absent(r.stdout + r.stderr, "idnode resolve --transport quic --json")
    assert_public_present(r.stdout, "idnode resolve --transport quic --json")


# --- DNS ---------------------------------------------------------------------

def dns_raw_udp(addr, wire):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.sendto(wire, addr)
        return s.recvfrom(65535)[0]


def read_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return buf


def dns_raw_tcp(addr, wire):
    with socket.create_connection(addr, timeout=5) as s:
        s.sendall(struct.pack(">H", len(wire)) + wire)
        n, = struct.unpack(">H", read_exact(s, 2))
        return read_exact(s, n)


def xfr_raw(addr, wire, idle=1.5):
    """Every message a zone transfer sent, raw, until the stream ends or
    stays quiet for `idle` seconds."""
    import dns.message
    import dns.rdatatype
    frames = []
    with socket.create_connection(addr, timeout=10) as s:
        s.sendall(struct.pack(">H", len(wire)) + wire)
        soas, first = 0, None
        while True:
            try:
                s.settimeout(idle if frames else 10)
                n, = struct.unpack(">H", read_exact(s, 2))
            except (ConnectionError, socket.timeout):
                break
            frame = read_exact(s, n)
            frames.append(frame)
            m = dns.message.from_wire(frame, one_rr_per_rrset=True)
            for rrset in m.answer:
                if rrset.rdtype == dns.rdatatype.SOA:
                    serial = rrset[0].serial
                    first = serial if first is None else first
                    soas += 1
                    # The transfer ends with the first SOA again.
                    if soas > 1 and serial == first and rrset is m.answer[-1]:
                        return b"".join(frames)
    return b"".join(frames)


def dig(addr, *args, tcp=False):
    cmd = ["dig", "@%s" % addr[0], "-p", str(addr[1]), "+time=5", "+tries=1", *args]
    if tcp:
        cmd.append("+tcp")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def dns_wire(qtype):
    import dns.message
    return dns.message.make_query(NAME, qtype, use_edns=0, payload=4096)


DNS_QTYPES = ["TXT", "URI", "NAPTR", "ANY", "TYPE65535"]


def test_dns_udp_and_tcp(world):
    import dns.message
    import dns.rcode
    node = world.node
    for qtype in DNS_QTYPES:
        wire = dns_wire(qtype).to_wire()
        for transport, raw in (("UDP", dns_raw_udp(node.dns_udp, wire)),
                               ("TCP", dns_raw_tcp(node.dns_tcp, wire))):
            where = f"DNS {qtype} {NAME} over {transport}"
            assert_private_absent(raw, where)
            m = dns.message.from_wire(raw)
            assert m.rcode() == dns.rcode.NOERROR, (where, m)
            if qtype in ("TXT", "URI", "NAPTR"):
                assert_public_present(raw, where)
                assert len(m.answer[0]) == 1, (where, m.to_text())
            if qtype == "TXT":
                assert [b"idx=1", b"type=URL", b"data=" + PUBLIC_URL] == \
                    list(m.answer[0][0].strings)


def test_dns_over_quic(world):
    """RFC 9250: one query a stream, two-octet length, message id 0."""
    node = world.node
    queries = []
    for qtype in DNS_QTYPES:
        q = dns_wire(qtype)
        q.id = 0
        wire = q.to_wire()
        queries.append(struct.pack(">H", len(wire)) + wire)

    def doq_complete(data):
        return len(data) >= 2 and len(data) >= 2 + struct.unpack_from(">H", data)[0]

    answers = quic_exchanges(node.dns_quic, "doq", queries, doq_complete, cert_of(node))
    for qtype, raw in zip(DNS_QTYPES, answers):
        where = f"DNS {qtype} {NAME} over QUIC"
        assert raw, where
        assert_private_absent(raw, where)
        if qtype in ("TXT", "URI", "NAPTR"):
            assert_public_present(raw, where)


def need_dig():
    if not shutil.which("dig"):
        pytest.skip("dig is missing (scripts/setup.sh installs bind9-dnsutils)")


def test_dig_over_udp_and_tcp(world):
    need_dig()
    node = world.node
    for qtype in ("TXT", "URI", "NAPTR", "ANY"):
        for tcp in (False, True):
            out = dig(node.dns_tcp if tcp else node.dns_udp, NAME, qtype, tcp=tcp)
            where = f"dig {NAME} {qtype}{' +tcp' if tcp else ''}"
            assert_private_absent(out, where)
            assert "status: NOERROR" in out, out
            if qtype != "ANY":
                assert_public_present(out, where)


def test_zone_transfers(world):
    import dns.message
    import dns.rdatatype
    import dns.rrset
    node = world.node
    serial = soa_serial(node)
    assert serial > world.serial_before
    axfr = dns.message.make_query(APEX, dns.rdatatype.AXFR).to_wire()
    raw = xfr_raw(node.dns_tcp, axfr)
    assert_private_absent(raw, "AXFR (raw)")
    assert_public_present(raw, "AXFR (raw)")
    ixfr = dns.message.make_query(APEX, dns.rdatatype.IXFR)
    ixfr.authority.append(dns.rrset.from_text(
        APEX, 0, "IN", "SOA", f"ns1.{APEX} hostmaster.{APEX} {world.serial_before} 0 0 0 0"))
    raw = xfr_raw(node.dns_tcp, ixfr.to_wire())
    assert_private_absent(raw, f"IXFR from serial {world.serial_before} (raw)")
    assert_public_present(raw, f"IXFR from serial {world.serial_before} (raw)")


def test_dig_axfr_and_ixfr(world):
    need_dig()
    node = world.node
    serial = soa_serial(node)
    out = dig(node.dns_tcp, "AXFR", APEX)
    assert "Transfer failed" not in out, out
    assert_private_absent(out, "dig AXFR")
    assert_public_present(out, "dig AXFR")
    # From before the identifier, and from each serial since: every
    # incremental answer that covers the create and the change.
    for since in range(world.serial_before, serial):
        out = dig(node.dns_tcp, f"IXFR={since}", APEX)
        assert "Transfer failed" not in out, out
        assert_private_absent(out, f"dig IXFR={since}")
    out = dig(node.dns_tcp, f"IXFR={world.serial_before}", APEX)
    assert_public_present(out, f"dig IXFR={world.serial_before}")


# --- the recursive node ------------------------------------------------------

def test_recursive_node_fresh_and_cached(world):
    node, rec = world.node, world.rec
    for round_ in ("first (fresh)", "second (cached)"):
        for transport, exchange, addr in (("UDP", lambda a, m: hc.udp_exchange(a, m, 10)[0],
                                           rec.udp),
                                          ("TCP", lambda a, m: hc.tcp_exchange(a, m, 10),
                                           rec.tcp)):
            for desc, flag_bits, kw in requests():
                raw = exchange(addr, hc.resolution_request(
                    IDENTIFIER, hc.new_request_id(), flags=flag_bits, **kw))
                where = f"recursive node, {round_} {transport} resolution ({desc})"
                check_handle_answer(raw, where, flag_bits, kw)
    # Its DNS listeners home no zone; whatever they say carries nothing.
    raw = dns_raw_udp(rec.dns_udp, dns_wire("TXT").to_wire())
    assert_private_absent(raw, "the recursive node's DNS")
    # With the authority stopped, the answers come from the cache alone.
    node.proc.send_signal(signal.SIGSTOP)
    try:
        for transport, exchange, addr in (("UDP", lambda a, m: hc.udp_exchange(a, m, 10)[0],
                                           rec.udp),
                                          ("TCP", lambda a, m: hc.tcp_exchange(a, m, 10),
                                           rec.tcp)):
            for desc, flag_bits, kw in requests():
                if flag_bits != PO_FLAGS:
                    continue
                raw = exchange(addr, hc.resolution_request(
                    IDENTIFIER, hc.new_request_id(), flags=flag_bits, **kw))
                where = f"recursive node, cache only, {transport} resolution ({desc})"
                check_handle_answer(raw, where, flag_bits, kw)
    finally:
        node.proc.send_signal(signal.SIGCONT)


def test_recursive_node_over_quic(world):
    rec = world.rec
    asked = list(requests())
    payloads = [hc.resolution_request(IDENTIFIER, hc.new_request_id(), flags=f, **kw)
                for _, f, kw in asked]
    answers = quic_exchanges(handle_quic_addr(rec), "hdl", payloads, handle_complete,
                             cert_of(rec))
    for (desc, flag_bits, kw), raw in zip(asked, answers):
        check_handle_answer(raw, f"recursive node, QUIC resolution ({desc})", flag_bits, kw)
