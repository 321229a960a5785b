"""Global resolution the way CNRI's hdllib 9.2 does it, against three real
idnode nodes: T homes 88 (the client's only global site), S homes 88.100
(delegated by T), E homes 88.100.1 (delegated by S) and holds
88.100.1/PUMP-0001. The client is hdl_resolver.py, written from the
protocol as docs/hierarchy.md describes it; its encoder, decoder and verifier are
first checked against the hdllib-made vectors in
crates/handle/tests/vectors/hierarchy/."""
import base64
import re
import socket
import threading
import time

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

import hdl_resolver as hr
from conftest import ROOT, Node

VECTORS = ROOT / "crates/handle/tests/vectors/hierarchy"
PUMP, URL = "88.100.1/PUMP-0001", b"https://example.com/pump/1"
TRANSPORTS = ["udp", "tcp"]


def vector(name):
    text = (VECTORS / f"{name}.hex").read_text()
    hexdigits = "".join(re.sub(r"\s", "", line) for line in text.splitlines()
                        if not line.lstrip().startswith("#"))
    return bytes.fromhex(hexdigits)


# ---------------------------------------------------------------- the vectors

VECTOR_EXPIRATION = 0x6553F100
REQUESTS = {
    # name: (opcode, handle, request id, flags, serial, recursion, version, types)
    "seq-1-top-request": (1, "0.NA/88.100.1", 0x0A0A0A01, 0x19000000, 1, 1, (2, 11),
                          hr.PREFIX_LOOKUP_TYPES),
    "seq-2-secondary-request": (1, "0.NA/88.100.1", 0x0A0A0A01, 0x19000000, 1, 1, (2, 11),
                                hr.PREFIX_LOOKUP_TYPES),
    "seq-3-enterprise-request": (1, "88.100.1/PUMP-1", 0x0A0A0A02, 0x19000000, 3, 0, (2, 11),
                                 ()),
    "cert-1-top-request": (1, "0.NA/88.100.1", 0x0B0B0B01, 0x59000000, 1, 1, (2, 11),
                           hr.PREFIX_LOOKUP_TYPES),
    "cert-2-secondary-request": (1, "0.NA/88.100.1", 0x0B0B0B01, 0x59000000, 1, 1, (2, 11),
                                 hr.PREFIX_LOOKUP_TYPES),
    "cert-3-enterprise-request": (1, "88.100.1/PUMP-1", 0x0B0B0B02, 0x59000000, 3, 0, (2, 11),
                                  ()),
    "certrd-3-enterprise-request": (1, "88.100.1/PUMP-1", 0x0C0C0C02, 0x59800000, 3, 0,
                                    (2, 11), ()),
    "get-site-info-request": (2, "/", 0x0D0D0D01, 0x19000000, -1, 0, (2, 3), ()),
    "notfound-1-top-request": (1, "0.NA/88.100.1", 0x0F0F0F01, 0x19000000, 1, 1, (2, 11),
                               hr.PREFIX_LOOKUP_TYPES),
    "notfound-2-top-authoritative-retry-request": (1, "0.NA/88.100.1", 0x0F0F0F01,
                                                   0x99000000, 1, 1, (2, 11),
                                                   hr.PREFIX_LOOKUP_TYPES),
    "serv-3-top-88.100-request": (1, "0.NA/88.100", 0x0E0E0E03, 0x19000000, 1, 3, (2, 11),
                                  hr.PREFIX_LOOKUP_TYPES),
    "serv-4-secondary-service-handle-request": (1, "88.100/SERVICE-1", 0x0E0E0E04,
                                                0x19000000, 2, 2, (2, 11),
                                                ("HS_SITE", "HS_SITE.6", "HS_SERV")),
}
RESPONSES = ["seq-1-top-response-303", "seq-2-secondary-response", "seq-3-enterprise-response",
             "cert-1-top-response-303-rsa", "cert-2-secondary-response-dsa",
             "cert-3-enterprise-response-rsa", "certrd-3-enterprise-response-rsa",
             "get-site-info-response"]
# Signed vector -> the site record whose key signed it.
SIGNED = {"cert-1-top-response-303-rsa": "hs-site-top-rsa",
          "cert-2-secondary-response-dsa": "hs-site-prefix-secondary-dsa",
          "cert-3-enterprise-response-rsa": "hs-site-enterprise-rsa",
          "certrd-3-enterprise-response-rsa": "hs-site-enterprise-rsa"}


@pytest.mark.parametrize("name", sorted(REQUESTS))
def test_vector_requests_encode_byte_for_byte(name):
    opcode, handle, rid, flags, serial, recursion, version, types = REQUESTS[name]
    raw = vector(name)
    assert hr.encode_request(opcode, handle, rid, flags, serial, recursion, version=version,
                             expiration=VECTOR_EXPIRATION, types=types) == raw
    m = hr.Message(raw)
    assert (m.opcode, m.code, m.handle, m.request_id, m.flags, m.serial, m.recursion) == (
        opcode, 0, handle, rid, flags, serial, recursion)
    assert list(m.types) == list(types) and m.indexes == [] and m.credential == b""
    assert vector("seq-2-secondary-request") == vector("seq-1-top-request")
    assert vector("cert-2-secondary-request") == vector("cert-1-top-request")


@pytest.mark.parametrize("name", RESPONSES)
def test_vector_responses_decode(name):
    m = hr.Message(vector(name))
    assert m.code in (hr.SUCCESS, hr.PREFIX_REFERRAL)
    assert m.flags & hr.AT and m.flags & hr.REC
    assert m.expiration == VECTOR_EXPIRATION
    assert bool(m.credential) == (name in SIGNED)
    top, sec, ent = (vector(n) for n in ("hs-site-top-rsa", "hs-site-prefix-secondary-dsa",
                                         "hs-site-enterprise-rsa"))
    if m.code == hr.PREFIX_REFERRAL:
        assert m.handle == "" and [v["type"] for v in m.values] == ["HS_SITE.PREFIX"]
        assert m.values[0]["index"] == 2 and m.values[0]["data"] == sec
    elif name.startswith(("seq-2", "cert-2")):
        assert [v["type"] for v in m.values] == ["HS_SITE"] and m.values[0]["data"] == ent
    elif m.opcode == hr.GET_SITE_INFO:
        assert m.site.raw == ent and m.site.serial == 3
    else:
        assert m.handle == "88.100.1/PUMP-1"
        assert m.typed("URL")[0]["data"] == URL
    # The site records decode, with their keys and interfaces.
    for data, port, serial in ((top, 36411, 1), (sec, 36412, 2), (ent, 36413, 3)):
        site = hr.Site.decode(data)
        server = site.servers[0]
        assert (site.serial, site.protocol, site.primary) == (serial, (2, 11), 0x80)
        assert server.udp == ("127.0.0.1", port) and server.tcp == ("127.0.0.1", port)
        server.key()


@pytest.mark.parametrize("name", sorted(SIGNED))
def test_vector_signatures_verify(name):
    m = hr.Message(vector(name))
    key = hr.Site.decode(vector(SIGNED[name])).servers[0].public_key
    credential = hr.verify(m, key)
    assert (credential["type"], credential["hash"], credential["signer_index"]) == (
        b"HS_SIGNED", b"SHA-256", 0)
    # Signed bytes as section 1.2 spells them out.
    assert hr.signed_bytes(m, 0)[:16] == bytes.fromhex("020b020b00000000") + vector(name)[8:12] \
        + bytes(4)
    assert hr.signed_bytes(m, 0)[16:] == vector(name)[20:44 + len(m.body)]
    # Another key, or one flipped byte in the header or body: refused.
    other = [k for k in set(SIGNED.values()) if k != SIGNED[name]][0]
    with pytest.raises(hr.SignatureError):
        hr.verify(m, hr.Site.decode(vector(other)).servers[0].public_key)
    raw = vector(name)
    text = raw.find(URL) if URL in raw else raw.find(b"test ")
    for at in (28, 39, text + 3):  # flags, expiration, inside a value's data
        bad = bytearray(vector(name))
        bad[at] ^= 0x01
        with pytest.raises(hr.SignatureError):
            hr.verify(hr.Message(bytes(bad)), key)
    # The envelope's sequence number and length are not covered.
    moved = bytearray(vector(name))
    moved[15] = 7
    hr.verify(hr.Message(bytes(moved)), key)


def test_vector_request_digest_and_keys():
    request = hr.Message(vector("certrd-3-enterprise-request"))
    response = hr.Message(vector("certrd-3-enterprise-response-rsa"), rd=True)
    assert response.digest == (3, hr.digest(3, request.hb))
    # The test-only private keys are the halves of the published ones.
    for pem, site in (("test-only-top-rsa", "hs-site-top-rsa"),
                      ("test-only-secondary-dsa", "hs-site-prefix-secondary-dsa"),
                      ("test-only-enterprise-rsa", "hs-site-enterprise-rsa")):
        private = serialization.load_pem_private_key((VECTORS / f"{pem}.pem").read_bytes(), None)
        published = hr.Site.decode(vector(site)).servers[0].public_key
        assert hr.decode_public_key(published).public_numbers() == \
            private.public_key().public_numbers()
        # Our encoder writes what CNRI writes (RSA: with its 4 zero bytes).
        assert hr.encode_public_key(private.public_key()) == published


class VectorNetwork(hr.HandleResolver):
    """The resolver against the vectors: each address answers with the
    vector response; the requests it sends are recorded."""

    def __init__(self, answers, **kw):
        site = hr.Site.decode(vector("hs-site-top-rsa"))
        super().__init__(site=site, clock=lambda: VECTOR_EXPIRATION - hr.REQUEST_LIFETIME,
                         **kw)
        self.answers, self.sent = answers, []

    def exchange(self, transport, addr, request):
        self.sent.append((addr[1], request))
        return vector(self.answers[addr[1]]), [0]


@pytest.mark.parametrize("certify", [False, True], ids=["plain", "certified"])
def test_resolver_walks_the_vector_chain_like_hdllib(certify):
    kind = "cert" if certify else "seq"
    suffix = {True: ("-rsa", "-dsa", "-rsa"), False: ("", "", "")}[certify]
    answers = {36411: f"{kind}-1-top-response-303{suffix[0]}",
               36412: f"{kind}-2-secondary-response{suffix[1]}",
               36413: f"{kind}-3-enterprise-response{suffix[2]}"}
    ids = (0x0B0B0B01, 0x0B0B0B02) if certify else (0x0A0A0A01, 0x0A0A0A02)
    r = VectorNetwork(answers, request_ids=iter(ids))
    answer = r.resolve("88.100.1/PUMP-1", certify=certify)
    assert answer.typed("URL")[0]["data"] == URL
    # Byte for byte what hdllib sent.
    assert r.sent == [(36411, vector(f"{kind}-1-top-request")),
                      (36412, vector(f"{kind}-2-secondary-request")),
                      (36413, vector(f"{kind}-3-enterprise-request"))]
    keys = [vector(n) for n in ("hs-site-top-rsa", "hs-site-prefix-secondary-dsa",
                                "hs-site-enterprise-rsa")]
    want = [hr.Site.decode(k).servers[0].public_key for k in keys] if certify else [None] * 3
    assert [hop.verified_with for hop in r.trace] == want
    if certify:
        # A wrong key for T, or a changed answer, is refused.
        wrong = VectorNetwork(answers, request_ids=iter(ids))
        wrong.global_site.servers[0].public_key = want[2]  # E's key configured for T
        with pytest.raises(hr.SignatureError):
            wrong.resolve("88.100.1/PUMP-1", certify=True)

        def flip(raw, hop):
            return raw.replace(URL, URL.upper()) if hop.number == 2 else raw

        tampered = VectorNetwork(answers, request_ids=iter(ids), tamper=flip)
        with pytest.raises(hr.SignatureError):
            tampered.resolve("88.100.1/PUMP-1", certify=True)


def test_udp_reassembly_of_a_split_answer():
    """The 1337-byte signed 303 split as the spec says (492 payload bytes a
    datagram, each with a full envelope), sent in reverse order after a
    stray datagram of another request: reassembled and verified."""
    raw = vector("cert-1-top-response-303-rsa")
    payload, parts = raw[20:], []
    for seq in range(0, (len(payload) + hr.UDP_PAYLOAD - 1) // hr.UDP_PAYLOAD):
        envelope = bytearray(raw[:20])
        envelope[12:16] = seq.to_bytes(4, "big")
        parts.append(bytes(envelope) + payload[seq * hr.UDP_PAYLOAD:(seq + 1) * hr.UDP_PAYLOAD])
    assert len(parts) == 3 and all(len(p) <= 512 for p in parts)
    stray = bytearray(parts[0])
    stray[8:12] = b"\x7f\x7f\x7f\x7f"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", 0))

        def answer():
            request, peer = server.recvfrom(1024)
            assert request == vector("cert-1-top-request")
            for datagram in [bytes(stray)] + parts[::-1]:
                server.sendto(datagram, peer)

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        got, sizes = hr.udp_exchange(server.getsockname(), vector("cert-1-top-request"), 5)
        thread.join(5)
    assert got == raw and sorted(sizes) == sorted(len(p) for p in parts)
    hr.verify(hr.Message(got), hr.Site.decode(vector("hs-site-top-rsa")).servers[0].public_key)


# ---------------------------------------------------------------- three nodes

def urls(node):
    return f"udp://{node.udp[0]}:{node.udp[1]},tcp://{node.tcp[0]}:{node.tcp[1]}"


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    base = tmp_path_factory.mktemp("global")
    nodes = {}
    try:
        for name in ("T", "S", "E"):
            nodes[name] = Node(base / name, demo=False, extra=["--no-dns", "--no-quic"]).start()
        t, s, e = nodes["T"], nodes["S"], nodes["E"]
        t.cli("prefix", "create", "88")
        s.cli("prefix", "create", "88.100")
        e.cli("prefix", "create", "88.100.1")
        e.cli("id", "create", PUMP, "-v", f"1:URL:{URL.decode()}")
        t.cli("prefix", "delegate", "88.100", "--to", urls(s))
        s.cli("prefix", "delegate", "88.100.1", "--to", urls(e))
        # Each node's own record, the way CNRI tools learn it the first time.
        for n in nodes.values():
            probe = hr.HandleResolver(n.udp[0], n.udp[1], n.tcp[1], transport="tcp")
            n.site = probe.get_site_info().site
            n.key = n.site.servers[0].public_key
        yield nodes
    finally:
        for n in nodes.values():
            n.stop()


def resolver(tree, transport, key="T", **kw):
    t = tree["T"]
    public_key = tree["T"].key if key == "T" else key
    return hr.HandleResolver(t.udp[0], t.udp[1], t.tcp[1], public_key=public_key,
                             serial=t.site.serial, transport=transport, **kw)


def node_at(tree, addr):
    for n in tree.values():
        if addr in (n.udp, n.tcp):
            return n
    raise AssertionError(f"no node at {addr}")


def check_header(tree, hop):
    """Section 1.1: what every answer's header carries."""
    req, got = hr.Message(hop.request), hop.response
    n = node_at(tree, hop.addr)
    assert (got.request_id, got.session_id) == (req.request_id, req.session_id)
    assert (got.major, got.minor) == min((req.suggested_major, req.suggested_minor), (2, 11))
    assert got.opcode == req.opcode and got.recursion == req.recursion
    copied = hr.CT | hr.CA | hr.PO | hr.RD | hr.ENC | hr.DNR
    assert got.flags & copied == req.flags & copied, (hex(got.flags), hex(req.flags))
    assert got.flags & hr.REC
    assert not got.flags & (hr.CN | hr.KC)
    # The node's site is primary: AT whatever the request said.
    assert n.site.primary & 0x80
    assert got.flags & hr.AT, f"no AT from {hop!r}: {got.flags:#x}"
    assert got.serial == n.site.serial, (hop, got.serial, n.site.serial)
    assert got.expiration > time.time()
    if hop.transport == "udp":
        assert all(size <= 512 for size in hop.datagrams), hop.datagrams


def test_ready_file_and_site_info_publish_the_same_key(tree):
    for name, n in tree.items():
        assert n.key == base64.b64decode(n.addresses["public_key"]), name
        key = hr.decode_public_key(n.key)
        assert isinstance(key, rsa.RSAPublicKey) and key.key_size == 2048, name
        server = n.site.servers[0]
        assert (server.udp, server.tcp) == (n.udp, n.tcp), name


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_uncertified_resolution(tree, transport):
    r = resolver(tree, transport)
    answer = r.resolve(PUMP)
    assert answer.handle == PUMP
    assert answer.typed("URL")[0]["data"] == URL
    assert [hop.verified_with for hop in r.trace] == [None] * 3
    assert all(not hop.response.credential for hop in r.trace)
    for hop in r.trace:
        check_header(tree, hop)


@pytest.mark.parametrize("rd", [False, True], ids=["ct", "ct-rd"])
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_certified_resolution_verifies_every_hop(tree, transport, rd):
    r = resolver(tree, transport)
    answer = r.resolve(PUMP, certify=True, rd=rd)
    assert answer.typed("URL")[0]["data"] == URL
    t, s, e = tree["T"], tree["S"], tree["E"]
    assert [node_at(tree, hop.addr) for hop in r.trace] == [t, s, e]
    # T with the configured key; S with the key in T's HS_SITE.PREFIX; E
    # with the key in S's HS_SITE. Each is that node's own key.
    referral_key = hr.Site.decode(r.trace[0].response.typed("HS_SITE.PREFIX")[0]["data"]) \
        .servers[0].public_key
    site_key = hr.Site.decode(r.trace[1].response.typed("HS_SITE")[0]["data"]) \
        .servers[0].public_key
    assert [hop.verified_with for hop in r.trace] == [t.key, referral_key, site_key]
    assert [t.key, referral_key, site_key] == [t.key, s.key, e.key]
    for hop in r.trace:
        assert hop.credential["type"] == b"HS_SIGNED"
        assert hop.credential["hash"] in (b"SHA-256", b"SHA256")
        assert hop.request[8:12] == hop.raw[8:12]
        check_header(tree, hop)
        if rd:
            assert hop.response.digest == (3, hr.digest(3, hr.Message(hop.request).hb))


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("certify", [False, True], ids=["plain", "certified"])
def test_the_request_sequence_is_hdllibs(tree, transport, certify):
    r = resolver(tree, transport)
    r.resolve(PUMP, certify=certify)
    t, s, e = tree["T"], tree["S"], tree["E"]
    first, second, third = r.trace
    # 1: the prefix lookup at T, answered 303 with an empty handle and S's
    # HS_SITE.PREFIX.
    req = hr.Message(first.request)
    ct = hr.CT if certify else 0
    assert node_at(tree, first.addr) is t
    assert (req.handle, req.types, req.indexes) == ("0.NA/88.100.1",
                                                    list(hr.PREFIX_LOOKUP_TYPES), [])
    assert (req.flags, req.serial, req.recursion) == (0x19000000 | ct, t.site.serial, 1)
    got = first.response
    assert got.code == hr.PREFIX_REFERRAL, (got.code, got.message)
    assert got.handle == ""
    assert [v["type"] for v in got.values] == ["HS_SITE.PREFIX"], got.values
    assert all(v["permissions"] & 0x02 for v in got.values)
    referred = hr.Site.decode(got.values[0]["data"])
    assert [(x.udp, x.tcp) for x in referred.servers] == [(s.udp, s.tcp)]
    if transport == "udp":
        # Over 512 bytes (the signed 303 with a 2048-bit key in its site
        # record is): one datagram per 492 payload bytes.
        assert len(first.datagrams) == -(-(len(first.raw) - 20) // hr.UDP_PAYLOAD)
        assert len(first.datagrams) > 1 or not certify
    # 2: the same bytes to S, answered SUCCESS with E's HS_SITE only.
    assert node_at(tree, second.addr) is s
    assert second.request == first.request
    got = second.response
    assert got.code == hr.SUCCESS, (got.code, got.message)
    assert got.handle == "0.NA/88.100.1"
    assert {v["type"] for v in got.values} <= set(hr.PREFIX_LOOKUP_TYPES), got.values
    sites = [hr.Site.decode(v["data"]) for v in got.typed("HS_SITE")]
    assert [(x.udp, x.tcp) for x in sites[0].servers] == [(e.udp, e.tcp)]
    # 3: the identifier at E, recursion 0, E's serial from that HS_SITE.
    assert node_at(tree, third.addr) is e
    req = hr.Message(third.request)
    assert (req.handle, req.types, req.indexes) == (PUMP, [], [])
    assert (req.flags, req.serial, req.recursion) == (0x19000000 | ct, sites[0].serial, 0)
    assert third.response.code == hr.SUCCESS
    assert req.request_id != hr.Message(first.request).request_id
    for hop in r.trace:
        check_header(tree, hop)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_stale_key_for_the_global_site_is_refused(tree, transport):
    stale = hr.encode_public_key(rsa.generate_private_key(65537, 2048).public_key())
    r = resolver(tree, transport, key=stale)
    with pytest.raises(hr.SignatureError):
        r.resolve(PUMP, certify=True)
    assert len(r.trace) == 1 and r.trace[0].response.code == hr.PREFIX_REFERRAL
    # Uncertified, nothing is checked: the key is not used.
    assert r.resolve(PUMP).typed("URL")[0]["data"] == URL
    # No key at all: a certified request cannot be checked, so it fails.
    with pytest.raises(hr.SignatureError):
        resolver(tree, transport, key=None).resolve(PUMP, certify=True)


@pytest.mark.parametrize("hop_number", [0, 1, 2])
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_tampered_answer_is_refused(tree, transport, hop_number):
    def flip_expiration(raw, hop):
        if hop.number != hop_number:
            return raw
        bad = bytearray(raw)
        bad[20 + 16 + 3] ^= 0x01  # the last byte of the header's expiration
        return bytes(bad)

    r = resolver(tree, transport, tamper=flip_expiration)
    with pytest.raises(hr.SignatureError):
        r.resolve(PUMP, certify=True)
    assert len(r.trace) == hop_number + 1
    # The URL changed in E's answer: refused when certified, taken when not.
    if hop_number == 2:
        def change_url(raw, hop):
            return raw.replace(b"example.com", b"examp1e.com") if hop.number == 2 else raw

        with pytest.raises(hr.SignatureError):
            resolver(tree, transport, tamper=change_url).resolve(PUMP, certify=True)
        plain = resolver(tree, transport, tamper=change_url).resolve(PUMP)
        assert plain.typed("URL")[0]["data"] == b"https://examp1e.com/pump/1"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_site_info_key_verifies_each_nodes_signed_answers(tree, transport):
    asks = {"T": "0.NA/88", "S": "0.NA/88.100.1", "E": PUMP}
    for name, n in tree.items():
        r = hr.HandleResolver(n.udp[0], n.udp[1], n.tcp[1], transport=transport)
        plain = r.get_site_info()
        assert plain.site.raw == n.site.raw and not plain.credential
        check_header(tree, r.trace[-1])
        # Signed when asked with CT, by the key the record carries.
        signed = r.get_site_info(certify=True, key=n.key)
        assert signed.site.raw == n.site.raw
        assert r.trace[-1].verified_with == n.key
        check_header(tree, r.trace[-1])
        # A certified resolution at that node checks out with that key.
        answer = r.query(n.site, asks[name], certify=True)
        assert answer.code == hr.SUCCESS, (name, answer.code, answer.message)
        assert r.trace[-1].verified_with == n.key
        check_header(tree, r.trace[-1])


def test_parents_publish_the_childs_own_site_record(tree):
    t, s, e = tree["T"], tree["S"], tree["E"]
    r = hr.HandleResolver(site=t.site)
    own = r.query(t.site, "0.NA/88", certify=True)
    assert [v["data"] for v in own.typed("HS_SITE")] == [t.site.raw]
    delegated = r.query(t.site, "0.NA/88.100", certify=True)
    assert delegated.code == hr.SUCCESS
    by_index = {v["index"]: (v["type"], v["data"]) for v in delegated.values}
    assert by_index[1] == ("HS_SITE", s.site.raw), by_index
    assert by_index[2] == ("HS_SITE.PREFIX", s.site.raw), by_index
    below = hr.HandleResolver(site=s.site).query(s.site, "0.NA/88.100.1", certify=True)
    assert [v["data"] for v in below.typed("HS_SITE")] == [e.site.raw]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_prefix_handles_go_to_the_global_site_and_follow_303(tree, transport):
    r = resolver(tree, transport)
    answer = r.resolve("0.NA/88.100.1", certify=True)
    assert [node_at(tree, hop.addr) for hop in r.trace] == [tree["T"], tree["S"]]
    assert hr.Message(r.trace[0].request).recursion == 0
    assert answer.typed("HS_SITE")[0]["data"] == tree["E"].site.raw


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_errors_are_signed_too(tree, transport):
    t, e = tree["T"], tree["E"]
    r = resolver(tree, transport)
    with pytest.raises(hr.HandleError) as missing:
        r.resolve("88.100.1/NO-SUCH-PUMP", certify=True)
    assert missing.value.code == hr.HANDLE_NOT_FOUND
    assert [hop.verified_with for hop in r.trace] == [t.key, tree["S"].key, e.key]
    check_header(tree, r.trace[-1])
    # An identifier under a prefix T does not home: 301, signed.
    answer = r.query(t.site, "99.1/X", certify=True)
    assert answer.code == hr.SERVER_NOT_RESP, (answer.code, answer.message)
    assert r.trace[-1].verified_with == t.key
    check_header(tree, r.trace[-1])


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_an_unknown_prefix_is_retried_once_with_at(tree, transport):
    r = resolver(tree, transport)
    with pytest.raises(hr.ServiceNotFound):
        r.resolve("88.200/X", certify=True)
    first, retry = r.trace
    assert node_at(tree, first.addr) is node_at(tree, retry.addr) is tree["T"]
    a, b = hr.Message(first.request), hr.Message(retry.request)
    assert (a.request_id, a.handle) == (b.request_id, b.handle) == (a.request_id, "0.NA/88.200")
    assert (a.flags & hr.AT, b.flags & hr.AT) == (0, hr.AT)
    # T homes 88, so 0.NA/88.200 is its to answer: not found.
    assert [hop.response.code for hop in r.trace] == [hr.HANDLE_NOT_FOUND] * 2
    assert all(hop.verified_with == tree["T"].key for hop in r.trace)
