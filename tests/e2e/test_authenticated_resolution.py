"""End-to-end: authenticated resolution (docs/handle-admin.md,
"Authenticated resolution") against the real binary, with the
spec-written client of hdl_admin.py and aioquic.

One node homes 88.400 and holds 88.400/SECRET-1: a public URL (1), a
private costPrice (7) and a private URL (8), both with a random marker, and
HS_ADMIN values naming 0.NA/88.400 index 300 (HS_SECKEY `reader`, read
value only) and index 301 (HS_SECKEY `writer`, every permission but read
value). A RESOLUTION with PO clear over TCP or QUIC is challenged (402);
the reader's answer brings the private values back, the writer gets 400,
a wrong secret 403. UDP, PO, the DNS and a recursive node in front of the
authority answer public values only, before and after an authenticated
read."""
import asyncio
import os
import struct
import types

import dns.message
import dns.name
import dns.query
import grpc
import pytest

import handle_client as hc
import hdl_admin as ha
from conftest import Node

PREFIX = "88.400"
NA = f"0.NA/{PREFIX}"
IDENTIFIER = f"{PREFIX}/SECRET-1"
APEX = "idnode.internal."
PRIVATE = 0x0C  # admin read, admin write; no public read
TAG = os.urandom(6).hex()
MARKER = f"AUTH-READ-MARKER-{TAG}".encode()
COST = MARKER + b"-cost"
PRIVATE_URL = b"https://private.example/" + MARKER
PUBLIC_URL = f"https://public.example/{TAG}".encode()
READ_VALUE = 0x0400

READER = ha.SecretKey(NA, 300, b"reader")
WRITER = ha.SecretKey(NA, 301, b"writer")


@pytest.fixture(scope="module")
def world(tmp_path_factory, pb):
    pb2, pb2_grpc = pb
    base = tmp_path_factory.mktemp("authread")
    node = Node(base / "authority", demo=False,
                extra=["--quic-listen", "127.0.0.1:0"]).start()
    rec = None
    try:
        channel = grpc.insecure_channel(node.grpc)
        meta = (("authorization", f"Bearer {node.token}"),)
        prefixes = pb2_grpc.PrefixesStub(channel)
        ids = pb2_grpc.IdentifiersStub(channel)
        prefixes.CreatePrefix(pb2.CreatePrefixRequest(prefix=PREFIX), metadata=meta)
        ids.AddValues(pb2.AddValuesRequest(identifier=NA, values=[
            pb2.Value(index=300, type="HS_SECKEY", data=b"reader", permissions=PRIVATE),
            pb2.Value(index=301, type="HS_SECKEY", data=b"writer", permissions=PRIVATE),
        ]), metadata=meta)
        ids.CreateIdentifier(pb2.CreateIdentifierRequest(identifier=IDENTIFIER, values=[
            pb2.Value(index=1, type="URL", data=PUBLIC_URL),
            pb2.Value(index=7, type="costPrice", data=COST, permissions=PRIVATE),
            pb2.Value(index=8, type="URL", data=PRIVATE_URL, permissions=PRIVATE),
            pb2.Value(index=100, type="HS_ADMIN", data=ha.hs_admin(READ_VALUE, NA, 300)),
            pb2.Value(index=101, type="HS_ADMIN",
                      data=ha.hs_admin(0x0FFF & ~READ_VALUE, NA, 301)),
        ]), metadata=meta)
        channel.close()
        root = f"udp://{node.udp[0]}:{node.udp[1]},tcp://{node.tcp[0]}:{node.tcp[1]}"
        rec = Node(base / "recursive", demo=False, extra=["--root", root]).start()
        yield types.SimpleNamespace(node=node, rec=rec)
    finally:
        if rec:
            rec.stop()
        node.stop()


def leaks(raw):
    return MARKER in raw or b"costPrice" in raw


def public_only(raw, where):
    """A SUCCESS that carries the public URL and nothing private."""
    assert not leaks(raw), f"PRIVATE VALUE LEAKED via {where}: {raw!r}"
    r = hc.Response(raw)
    assert r.code == hc.SUCCESS, (where, r.code, r.message)
    assert [v["index"] for v in r.values if v["type"] != "HS_ADMIN"] == [1], (where, r.values)
    assert r.values[0]["data"] == PUBLIC_URL


def indexes(reply):
    return [v[0] for v in reply.values]


def data_of(reply):
    return {v[0]: v[2] for v in reply.values}


# --- TCP ----------------------------------------------------------------------

def test_reader_gets_the_private_values_over_tcp(world):
    out = ha.resolve(world.node.tcp, IDENTIFIER, READER)
    assert out.challenge is not None, f"no 402 for a PO-clear resolution: {out.replies}"
    assert out.challenge.opcode == ha.RESOLUTION
    assert out.code == ha.SUCCESS, out.replies
    r = out.replies[0]
    assert r.opcode == ha.RESOLUTION and r.handle == IDENTIFIER
    assert indexes(r) == [1, 7, 8, 100, 101]
    got = data_of(r)
    assert got[7] == COST and got[8] == PRIVATE_URL and got[1] == PUBLIC_URL
    assert [v[3] for v in r.values if v[0] in (7, 8)] == [PRIVATE, PRIVATE]


def test_reader_filters_and_pbkdf2(world):
    # By index, answered with PBKDF2-HMAC-SHA1 (what CNRI 9.x sends).
    key = ha.SecretKey(NA, 300, b"reader", algorithm=0x22)
    out = ha.resolve(world.node.tcp, IDENTIFIER, key, indexes=(7,))
    assert out.code == ha.SUCCESS, out.replies
    assert data_of(out.replies[0]) == {7: COST}
    # By type: both URLs, the private one included.
    out = ha.resolve(world.node.tcp, IDENTIFIER, READER, types=("URL",))
    assert out.code == ha.SUCCESS, out.replies
    assert indexes(out.replies[0]) == [1, 8]


def test_no_private_value_without_read_value_or_the_right_key(world):
    out = ha.resolve(world.node.tcp, IDENTIFIER, WRITER)
    assert out.challenge is not None
    assert out.code == ha.INVALID_ADMIN, out.replies
    assert not out.replies[0].values
    wrong = ha.SecretKey(NA, 300, b"not-the-secret")
    out = ha.resolve(world.node.tcp, IDENTIFIER, wrong)
    assert out.code == ha.AUTHENTICATION_FAILED, out.replies
    assert not out.replies[0].values
    for reply in out.replies:
        assert not leaks(reply.body)


def test_a_challenge_answer_is_one_shot(world):
    out = ha.resolve(world.node.tcp, IDENTIFIER, READER)
    assert out.code == ha.SUCCESS
    again = ha.exchange(world.node.tcp, out.answer)
    assert again[0].code == ha.SESSION_TIMEOUT, again
    assert not leaks(again[0].body)


def test_public_only_without_authentication(world):
    node = world.node
    # A first authenticated read, so that any cache would have seen it.
    assert ha.resolve(node.tcp, IDENTIFIER, READER).code == ha.SUCCESS
    for flags in (hc.REC | hc.CA | hc.PO, hc.REC | hc.CA, 0, hc.AT | ha.CT | hc.REC):
        msg = hc.resolution_request(IDENTIFIER, hc.new_request_id(), flags=flags)
        # UDP never challenges: public values, whatever the flags.
        public_only(hc.udp_exchange(node.udp, msg)[0], f"UDP, flags {flags:#x}")
        if flags & hc.PO:
            public_only(hc.tcp_exchange(node.tcp, msg), f"TCP, flags {flags:#x}")
        else:
            raw = hc.tcp_exchange(node.tcp, msg)
            assert not leaks(raw), raw
            assert ha.Reply(raw).code == ha.AUTHENTICATION_NEEDED
    # A public index only, PO clear over TCP: no challenge needed.
    raw = hc.tcp_exchange(node.tcp, hc.resolution_request(
        IDENTIFIER, hc.new_request_id(), flags=hc.REC | hc.CA, indexes=(1,)))
    public_only(raw, "TCP, PO clear, index 1")


def test_never_in_the_dns_or_site_info(world):
    node = world.node
    assert ha.resolve(node.tcp, IDENTIFIER, READER).code == ha.SUCCESS
    name = dns.name.from_text(f"SECRET-1._.400.88.{APEX}")
    for qtype in ("TXT", "URI", "ANY"):
        r = dns.query.udp(dns.message.make_query(name, qtype), node.dns_udp[0],
                          port=node.dns_udp[1], timeout=5)
        assert not leaks(r.to_wire()), f"DNS {qtype}: {r}"
    raw = hc.udp_exchange(node.udp, hc.site_info_request(hc.new_request_id()))[0]
    assert not leaks(raw)


def test_a_recursive_node_returns_public_values_only(world):
    rec = world.rec
    for flags in (hc.REC | hc.CA | hc.PO, hc.REC | hc.CA):
        msg = hc.resolution_request(IDENTIFIER, hc.new_request_id(), flags=flags)
        public_only(hc.tcp_exchange(rec.tcp, msg), f"recursive node TCP, flags {flags:#x}")
        public_only(hc.udp_exchange(rec.udp, msg)[0], f"recursive node UDP, flags {flags:#x}")
    # The spec client at the recursive node: nothing to challenge there (it
    # holds no record), public values only, from its cache or upstream.
    out = ha.resolve(rec.tcp, IDENTIFIER, READER)
    assert out.challenge is None
    assert out.code == ha.SUCCESS
    assert [i for i in indexes(out.replies[0]) if i < 100] == [1]
    assert not leaks(out.replies[0].body)


# --- QUIC ---------------------------------------------------------------------

def handle_quic_addr(node):
    host, port = node.addresses["handle_quic"].rsplit(":", 1)
    return host.strip("[]"), int(port)


def cert_of(node):
    return node.addresses.get("tls_certificate") or str(node.data_dir / "tls" / "cert.pem")


def test_reader_gets_the_private_values_over_quic(world):
    try:
        from aioquic.asyncio import connect
        from aioquic.quic.configuration import QuicConfiguration
    except ImportError:
        pytest.skip("aioquic is not installed in this Python")
    node = world.node

    async def ask(client, payload):
        reader, writer = await client.create_stream()
        writer.write(payload)
        writer.write_eof()
        data = b""
        while len(data) < 20 or len(data) < 20 + struct.unpack_from(">I", data, 16)[0]:
            chunk = await asyncio.wait_for(reader.read(65536), 10)
            if not chunk:
                break
            data += chunk
        return data

    async def run():
        config = QuicConfiguration(is_client=True, alpn_protocols=["hdl"],
                                   server_name="localhost")
        config.load_verify_locations(cert_of(node))
        async with connect(*handle_quic_addr(node), configuration=config) as client:
            rid = ha.new_request_id()
            body = ha.resolution_body(IDENTIFIER, indexes=(1, 8))
            challenge = ha.Reply(await ask(client, ha.message(
                ha.RESOLUTION, body, rid, flags=ha.READ_FLAGS)))
            assert challenge.code == ha.AUTHENTICATION_NEEDED and challenge.request_id == rid
            rid2 = ha.new_request_id()
            result = ha.Reply(await ask(client, ha.answer_message(challenge, READER, rid2)))
            assert result.request_id == rid2 and result.opcode == ha.RESOLUTION
            # Without authentication on the same connection: public only.
            public = await ask(client, hc.resolution_request(
                IDENTIFIER, hc.new_request_id(), flags=hc.REC | hc.CA | hc.PO))
            return result, public

    result, public = asyncio.run(asyncio.wait_for(run(), 60))
    assert result.code == ha.SUCCESS, result
    assert data_of(result) == {1: PUBLIC_URL, 8: PRIVATE_URL}
    public_only(public, "QUIC with PO")
