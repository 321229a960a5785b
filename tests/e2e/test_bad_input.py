"""End-to-end: bad input on every surface. Each bad message gets a clear
error or a drop, nothing stored changes, and a second client (bound to
127.0.0.2) keeps resolving over Handle UDP, Handle TCP and DNS UDP the
whole time: the fixture's bystander records every question it asked and
every answer it missed, and each test asserts it missed none.

Clients that are not ours: raw sockets with struct, dnspython, grpcio
(generic calls with hand-made protobuf bytes where grpcio's own encoder
would refuse the input), urllib and aioquic."""
import asyncio
import json
import socket
import ssl
import struct
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import dns.message
import dns.query
import dns.rcode
import grpc
import pytest

import handle_client as hc
from conftest import Node

SEED = "88.100.1/CNC-LATHE-202600000"
DNS_SEED = "CNC-LATHE-202600000._.1.100.88.idnode.internal."


class Bystander:
    """Resolves the seed every 20 ms from 127.0.0.2 over Handle UDP,
    Handle TCP and DNS UDP; counts what it asked and what it missed."""

    def __init__(self, node):
        self.node, self.asked, self.missed = node, 0, []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def one(self):
        n = self.node
        rid = hc.new_request_id()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.2", 0))
            s.settimeout(3)
            s.sendto(hc.resolution_request(SEED, rid), n.udp)
            r = hc.Response(s.recvfrom(65535)[0])
            assert r.code == hc.SUCCESS and r.request_id == rid, ("handle udp", r.code)
        with socket.create_connection(n.tcp, timeout=3, source_address=("127.0.0.2", 0)) as s:
            s.sendall(hc.resolution_request(SEED, rid))
            assert hc.Response(hc._read_frame(s)).code == hc.SUCCESS, "handle tcp"
        q = dns.message.make_query(DNS_SEED, "TXT")
        r = dns.query.udp(q, n.dns_udp[0], port=n.dns_udp[1], timeout=3, source="127.0.0.2")
        assert r.rcode() == dns.rcode.NOERROR and r.answer, "dns udp"

    def run(self):
        while not self.stop.is_set():
            self.asked += 1
            try:
                self.one()
            except Exception as e:  # noqa: BLE001 - every miss is recorded
                self.missed.append(repr(e))
            time.sleep(0.02)

    def check(self):
        """Asserts that nothing was missed since the last check."""
        missed, self.missed = self.missed, []
        assert not missed, missed


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    base = tmp_path_factory.mktemp("bad-input")
    config = base / "idnode.toml"
    config.write_text(
        "[handle]\ntcp_idle_timeout_secs = 2\nrequest_timeout_secs = 2\n"
        "[dns]\ntcp_idle_timeout_secs = 2\n"
        "[quic]\nidle_timeout_secs = 3\nrequest_timeout_secs = 2\n")
    n = Node(base / "data", extra=["--config", str(config), "--quic-listen", "127.0.0.1:0"]).start()
    n.bystander = Bystander(n)
    n.bystander.thread.start()
    yield n
    n.bystander.stop.set()
    n.bystander.thread.join()
    n.stop()


@pytest.fixture(autouse=True)
def served_meanwhile(node):
    """After each test: the bystander was answered all along, and the seed
    is as the demo data left it."""
    before = node.bystander.asked
    yield
    deadline = time.time() + 10
    while node.bystander.asked < before + 3 and time.time() < deadline:
        time.sleep(0.05)
    node.bystander.check()
    r = hc.udp_resolve(node.udp, SEED)
    assert r.code == hc.SUCCESS and len(r.values) == 6  # the seventh is private


def envelope(message, rid=7, length=None):
    return hc.ENVELOPE.pack(2, 11, 2, 11, 0, rid, 0,
                            len(message) if length is None else length) + message


def handle_message(opcode, body, body_len=None, flags=hc.PO):
    header = hc.HEADER.pack(opcode, 0, flags, 0, 0, 0, int(time.time()) + 600,
                            len(body) if body_len is None else body_len)
    return header + body + struct.pack(">I", 0)


def udp_ask(node, datagram, wait=1.5):
    """The answers to one datagram (empty: dropped)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(wait)
        s.sendto(datagram, node.udp)
        try:
            return [s.recvfrom(65535)[0]]
        except socket.timeout:
            return []


def code_of(raw):
    return struct.unpack_from(">I", raw, 24)[0]


def resolution_body(handle_bytes, index_count=0, type_count=0):
    return (struct.pack(">I", len(handle_bytes)) + handle_bytes + struct.pack(">I", index_count)
            + struct.pack(">I", type_count))


def test_handle_udp_bad_messages_get_an_error_or_nothing(node):
    cases = {
        # An opcode no server knows: 5 OPERATION_NOT_SUPPORTED.
        "unknown opcode": (envelope(handle_message(9999, b"")), {hc.NOT_SUPPORTED}),
        # The body says it is longer than the message.
        "body length past the end": (envelope(handle_message(
            hc.RESOLUTION, resolution_body(SEED.encode()), body_len=60000)),
            {hc.PROTOCOL_ERROR, None}),
        # The handle's length field points past the end.
        "string length past the end": (envelope(handle_message(
            hc.RESOLUTION, struct.pack(">I", 0xFFFFFFF0) + b"88.100.1/X")),
            {hc.PROTOCOL_ERROR, None}),
        # Four billion indexes announced, none there.
        "huge count": (envelope(handle_message(
            hc.RESOLUTION, resolution_body(SEED.encode(), index_count=0xFFFFFFFF))),
            {hc.PROTOCOL_ERROR, None}),
        # Not UTF-8 where text is required.
        "invalid UTF-8": (envelope(handle_message(
            hc.RESOLUTION, resolution_body(b"88.100.1/\xff\xfe"))),
            {hc.PROTOCOL_ERROR, hc.INVALID_HANDLE, None}),
        # A control character and an identifier over the 2,048-byte limit.
        "control character": (envelope(handle_message(
            hc.RESOLUTION, resolution_body(b"88.100.1/A\x1b[31m"))),
            {hc.INVALID_HANDLE, hc.HANDLE_NOT_FOUND}),
        "oversized identifier": (envelope(handle_message(
            hc.RESOLUTION, resolution_body(b"88.100.1/" + b"A" * 5000))),
            {hc.INVALID_HANDLE, None}),
        # The envelope claims far more than the datagram holds.
        "envelope length past the end": (envelope(handle_message(
            hc.RESOLUTION, resolution_body(SEED.encode())), length=10_000_000), {None}),
        "shorter than an envelope": (b"\x02\x0b\x00", {None}),
    }
    for what, (datagram, allowed) in cases.items():
        got = udp_ask(node, datagram)
        code = code_of(got[0]) if got and len(got[0]) >= 28 else None
        assert code in allowed, (what, code, got[:1])
        # An error answer is no larger than the question (no amplification).
        assert all(len(d) <= max(len(datagram), 512) for d in got), (what, [len(d) for d in got])


def test_handle_tcp_slow_and_endless_clients_are_dropped(node):
    message = hc.resolution_request(SEED, 9)
    started = time.time()
    # One byte, then silence: closed once the request timeout passes.
    with socket.create_connection(node.tcp, timeout=15) as s:
        s.sendall(message[:1])
        assert s.recv(100) == b""
    assert time.time() - started < 12
    # A byte a second: still closed (the whole request must arrive in time).
    started = time.time()
    with socket.create_connection(node.tcp, timeout=15) as s:
        closed = False
        for b in message:
            try:
                s.sendall(bytes([b]))
            except OSError:
                closed = True
                break
            s.settimeout(1)
            try:
                if s.recv(100) == b"":
                    closed = True
                    break
            except socket.timeout:
                pass
        assert closed
    assert time.time() - started < 15
    # An envelope announcing 100 MB: refused without reading it.
    with socket.create_connection(node.tcp, timeout=10) as s:
        s.sendall(envelope(b"", length=100_000_000))
        data = s.recv(65536)
        assert data == b"" or code_of(data) in (hc.PROTOCOL_ERROR, hc.ERROR), data[:40]


def test_dns_hostile_queries_get_formerr_or_nothing(node):
    head = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
    cases = {
        # A question name that is a pointer to itself.
        "compression loop": head + b"\xc0\x0c" + struct.pack(">HH", 16, 1),
        # A pointer forward into nothing.
        "pointer past the end": head + b"\xc0\xff" + struct.pack(">HH", 16, 1),
        # 65,535 questions announced, one there.
        "huge count": struct.pack(">HHHHHH", 0x1234, 0x0100, 65535, 0, 0, 0)
        + b"\x01a\x00" + struct.pack(">HH", 16, 1),
        # A label running past the end.
        "label past the end": head + b"\x3fabc",
        # 65,535 additional records announced, none there.
        "huge additional count": struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 65535)
        + b"\x01a\x00" + struct.pack(">HH", 16, 1),
    }
    for what, wire in cases.items():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(1.5)
            s.sendto(wire, node.dns_udp)
            try:
                raw = s.recvfrom(65535)[0]
            except socket.timeout:
                continue
        r = dns.message.from_wire(raw, question_only=True)
        assert r.rcode() == dns.rcode.FORMERR and r.id == 0x1234, (what, r.rcode())
        assert len(raw) <= len(wire) + 11, what


def test_dns_tcp_clients_that_never_finish_are_closed(node):
    started = time.time()
    with socket.create_connection(node.dns_tcp, timeout=15) as s:
        s.sendall(b"\x00\x40\x12\x34")  # 64 bytes announced, 2 sent
        assert s.recv(100) == b""
    assert time.time() - started < 12


def test_quic_streams_that_stall_are_reset_and_others_answered(node):
    try:
        from aioquic.asyncio import connect
        from aioquic.quic.configuration import QuicConfiguration
    except ImportError:
        pytest.skip("aioquic is not installed in this Python")
    host, port = node.addresses["handle_quic"].rsplit(":", 1)

    async def run():
        config = QuicConfiguration(is_client=True, alpn_protocols=["hdl"],
                                   server_name="localhost", verify_mode=ssl.CERT_NONE)
        async with connect(host, int(port), configuration=config) as client:
            # Ten streams that send half a request and stall.
            stalled = []
            for _ in range(10):
                reader, writer = await client.create_stream()
                writer.write(hc.resolution_request(SEED, 5)[:10])
                stalled.append(reader)
            # A whole request on the same connection is answered meanwhile.
            reader, writer = await client.create_stream()
            writer.write(hc.resolution_request(SEED, 6))
            writer.write_eof()
            data = b""
            while len(data) < 20 or len(data) < 20 + struct.unpack_from(">I", data, 16)[0]:
                chunk = await asyncio.wait_for(reader.read(65536), 10)
                if not chunk:
                    break
                data += chunk
            answered = hc.Response(data).code
            # The stalled ones end (reset or closed) after the request timeout.
            ended = 0
            for r in stalled:
                try:
                    rest = await asyncio.wait_for(r.read(), 10)
                    ended += rest == b"" or rest is not None
                except (asyncio.TimeoutError, ConnectionError):
                    pass
                except Exception:  # noqa: BLE001 - a reset surfaces as an error
                    ended += 1
            return answered, ended

    answered, ended = asyncio.run(asyncio.wait_for(run(), 60))
    assert answered == hc.SUCCESS
    assert ended == 10


def grpc_raw(node, method, payload, token=True):
    """A unary gRPC call with hand-made request bytes."""
    channel = grpc.insecure_channel(node.grpc)
    call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
    meta = (("authorization", f"Bearer {node.token}"),) if token else ()
    try:
        call(payload, metadata=meta, timeout=10)
        return None
    except grpc.RpcError as e:
        return e


def pb_string(field, data):
    """A protobuf length-delimited field (wire type 2)."""
    key = bytes([(field << 3) | 2])
    n, varint = len(data), b""
    while True:
        if n < 0x80:
            varint += bytes([n])
            break
        varint += bytes([(n & 0x7F) | 0x80])
        n >>= 7
    return key + varint + data


def test_grpc_bad_input_is_refused_with_a_status(node, pb):
    pb2, pb2_grpc = pb
    create = "/idnode.v1.Identifiers/CreateIdentifier"
    # Invalid UTF-8 in a string field (grpcio's encoder would refuse it).
    e = grpc_raw(node, create, pb_string(1, b"88.100.1/\xff\xfe"))
    assert e is not None and e.code() in (grpc.StatusCode.INVALID_ARGUMENT,
                                          grpc.StatusCode.INTERNAL), e
    assert "UTF-8" in e.details() or "utf-8" in e.details().lower(), e.details()
    # A length field pointing past the end of the message.
    e = grpc_raw(node, create, b"\x0a\xff\xff\x03" + b"88.100.1/A")
    assert e is not None and e.code() in (grpc.StatusCode.INVALID_ARGUMENT,
                                          grpc.StatusCode.INTERNAL), e
    ids = pb2_grpc.IdentifiersStub(grpc.insecure_channel(node.grpc))
    meta = (("authorization", f"Bearer {node.token}"),)
    # An oversized identifier, a control character in a type, a value over
    # the 64 KiB limit: INVALID_ARGUMENT, naming the problem.
    for identifier, kind, data, says in [
        ("88.100.1/" + "A" * 5000, "URL", b"x", "at most 2048"),
        ("88.100.1/CTRL-1", "U\x1bRL", b"x", "U+001B"),
        ("88.100.1/BIG-1", "DOC", b"x" * 70_000, "bytes"),
    ]:
        with pytest.raises(grpc.RpcError) as err:
            ids.CreateIdentifier(pb2.CreateIdentifierRequest(
                identifier=identifier, values=[pb2.Value(index=1, type=kind, data=data)]),
                metadata=meta, timeout=10)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value
        assert says in err.value.details(), err.value.details()
    # A message over the listener's limit (4 MiB): OUT_OF_RANGE naming it,
    # tonic's answer.
    with pytest.raises(grpc.RpcError) as err:
        ids.CreateIdentifier(pb2.CreateIdentifierRequest(
            identifier="88.100.1/HUGE-1",
            values=[pb2.Value(index=i, type="DOC", data=b"x" * 60_000) for i in range(1, 200)]),
            metadata=meta, timeout=30)
    assert err.value.code() == grpc.StatusCode.OUT_OF_RANGE, err.value
    assert "4194304" in err.value.details()
    # None of them was stored.
    for identifier in ("88.100.1/CTRL-1", "88.100.1/BIG-1", "88.100.1/HUGE-1"):
        with pytest.raises(grpc.RpcError) as err:
            ids.GetIdentifier(pb2.GetIdentifierRequest(identifier=identifier), metadata=meta)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND


def http(node, method, path, body=None, headers=None):
    req = urllib.request.Request(f"http://{node.http}{path}", data=body, method=method,
                                 headers={"Authorization": f"Bearer {node.token}",
                                          "Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_http_bad_input_gets_4xx_and_changes_nothing(node):
    ident = urllib.parse.quote("88.100.1/WEB-BAD-1")
    cases = [
        ("PUT", f"/api/handles/{ident}", b"{not json", 400),
        ("PUT", f"/api/handles/{ident}", b'{"values": "no list"}', 400),
        ("PUT", f"/api/handles/{ident}",
         json.dumps({"values": [{"index": 1, "type": "U\u001bRL",
                                 "data": {"format": "string", "value": "x"}}]}).encode(), 400),
        ("PUT", f"/api/handles/{ident}", b"\xff\xfe" * 10, 400),
        ("PUT", f"/api/handles/{ident}", b"x" * (2 << 20), 413),
        ("GET", "/api/handles/88.100.1/%FF%FE", None, 400),
        ("GET", "/api/handles/" + "A" * 5000, None, 400),
        ("GET", f"/api/handles/{urllib.parse.quote(SEED)}?index=x", None, 400),
        ("GET", "/88.100.1/%FF%FE", None, 400),
    ]
    for method, path, body, want in cases:
        status, _ = http(node, method, path, body)
        assert status == want, (method, path[:60], body[:30] if body else None, status)
    status, _ = http(node, "GET", f"/api/handles/{ident}")
    assert status == 404
