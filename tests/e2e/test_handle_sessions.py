"""End-to-end: Handle sessions as CNRI's client opens them before its first
admin request (docs/handle-admin.md, "Sessions"), with a client written in
hdl_admin.py from the wire description (Python's pow for Diffie-Hellman,
hmac for HS_MAC, `cryptography` for AES-128-CBC and the server signature):
the setup over UDP and TCP, signed with the key the site advertises; the
first request challenged under the session's id; later ones, encrypted or
not, served without a challenge; replays, bad MACs, wrong identities and
ended sessions refused with the spec's codes, changing nothing."""
import hashlib
import hmac
import struct

import grpc
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

import handle_client as hc
import hdl_admin as ha
import hdl_resolver as hr
from conftest import Node

PREFIX = "88.310"
NA = f"0.NA/{PREFIX}"
SECRET = b"s3ss10n"


@pytest.fixture(scope="module")
def node(tmp_path_factory, pb):
    """A node homing 88.310 whose prefix record names 300 (HS_SECKEY, every
    permission) and 301 (HS_SECKEY, list only)."""
    n = Node(tmp_path_factory.mktemp("hsess"), demo=False).start()
    pb2, pb2_grpc = pb
    channel = grpc.insecure_channel(n.grpc)
    meta = (("authorization", f"Bearer {n.token}"),)
    pb2_grpc.PrefixesStub(channel).CreatePrefix(pb2.CreatePrefixRequest(prefix=PREFIX),
                                                metadata=meta)
    ids = pb2_grpc.IdentifiersStub(channel)
    ids.AddValues(pb2.AddValuesRequest(identifier=NA, values=[
        pb2.Value(index=300, type="HS_SECKEY", data=SECRET, permissions=0x0C),
        pb2.Value(index=110, type="HS_ADMIN", data=ha.hs_admin(ha.HS_ADMIN_ALL, NA, 300)),
        pb2.Value(index=301, type="HS_SECKEY", data=b"lister", permissions=0x0C),
        pb2.Value(index=111, type="HS_ADMIN", data=ha.hs_admin(ha.LIST_PERMISSION, NA, 301)),
    ]), metadata=meta)
    n.pb2, n.ids, n.meta = pb2, ids, meta
    yield n
    n.stop()


def values(node, handle):
    try:
        r = node.ids.GetIdentifier(node.pb2.GetIdentifierRequest(identifier=handle),
                                   metadata=node.meta)
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.NOT_FOUND
        return None
    return {v.index: v.data for v in r.values}


def credential(raw):
    """The credential of a whole message, decoded."""
    body_len, = struct.unpack_from(">I", raw, 40)
    length, = struct.unpack_from(">I", raw, 44 + body_len)
    return hr.decode_credential(raw[48 + body_len:48 + body_len + length])


def over_udp(node):
    return lambda raw: hc.udp_exchange(node.udp, raw, timeout=5)[0]


def over_tcp(node):
    return lambda raw: ha.exchange_raw(node.tcp, raw)[0]


def server_key(node):
    rid = hc.new_request_id()
    site = hc.Response(hc.udp_exchange(node.udp, hc.site_info_request(rid))[0]).site
    return hr.decode_public_key(site["servers"][0]["public_key"])


def create_body(handle, url):
    return ha.create_body(handle, [
        ha.value(100, "HS_ADMIN", ha.hs_admin(ha.HS_ADMIN_ALL, NA, 300)),
        ha.value(1, "URL", url),
    ])


def authenticated(node):
    """A session set up over UDP and authenticated by its first request
    (a create, challenged and answered with the PBKDF2 answer CNRI sends)."""
    session = ha.Session.setup(over_udp(node), NA, 300)
    assert isinstance(session, ha.Session), session
    handle = f"{PREFIX}/FIRST-{session.id:x}"
    first = session.send(node.tcp, session.request(ha.CREATE_HANDLE,
                                                   create_body(handle, "https://first")))
    assert first[0].code == ha.AUTHENTICATION_NEEDED, first
    assert first[0].session_id == session.id
    result = session.send(node.tcp, session.answer(first[0], ha.SecretKey(NA, 300, SECRET, 0x22)))
    assert result[0].code == ha.SUCCESS, result
    return session, handle


def test_setup_over_udp_and_tcp_is_signed_by_the_advertised_key(node):
    key = server_key(node)
    for send in (over_udp(node), over_tcp(node)):
        session = ha.Session.setup(send, NA, 300)
        assert isinstance(session, ha.Session), session
        reply = session.setup_reply
        assert session.id != 0 and len(session.key) == 32
        assert reply.digest_alg == 3 and reply.flags & ha.AT
        c = credential(session.setup_raw)
        assert c["type"] == b"HS_SIGNED" and c["hash"] == b"SHA-256", c
        key.verify(c["signature"], ha.mac_bytes(session.setup_raw, c["signer_index"]),
                   padding.PKCS1v15(), hashes.SHA256())


def test_first_request_is_challenged_then_the_session_needs_none(node):
    session, handle = authenticated(node)
    assert values(node, handle)[1] == b"https://first"
    assert hc.udp_resolve(node.udp, handle).code == hc.SUCCESS
    # Authenticated: an encrypted ADD_VALUE of a value without public read
    # (as CNRI sends it) is applied at once, without a 402.
    body = ha.add_body(handle, [ha.value(5, "HS_SECKEY", "n3w", permissions=0x0C)])
    replies = session.send(node.tcp, session.request(ha.ADD_VALUE, body, encrypted=True))
    assert replies[0].code == ha.SUCCESS, replies
    assert values(node, handle)[5] == b"n3w"
    # The value stays private over UDP.
    assert 5 not in {v["index"] for v in hc.udp_resolve(node.udp, handle).values}
    # A plain (unencrypted) request in the session works too.
    body = ha.modify_body(handle, [ha.value(1, "URL", "https://second")])
    assert session.send(node.tcp, session.request(ha.MODIFY_VALUE, body))[0].code == ha.SUCCESS
    assert values(node, handle)[1] == b"https://second"
    # A resolution in the session reads the private value; the answer is
    # encrypted, since it carries a value without public read.
    raw = session.request(ha.RESOLUTION, ha.resolution_body(handle), flags=ha.READ_FLAGS)
    replies = session.send(node.tcp, raw)
    assert session.last_frames[0][2] & ha.ENCRYPTED
    assert replies[0].code == ha.SUCCESS, replies
    assert (5, "HS_SECKEY", b"n3w", 0x0C) in replies[0].values
    # A certified request gets an HS_MAC by the session key back.
    body = ha.remove_body(handle, [5])
    raw = session.request(ha.REMOVE_VALUE, body, flags=ha.CLIENT_FLAGS | ha.CT)
    replies = session.send(node.tcp, raw)
    assert replies[0].code == ha.SUCCESS
    frame = session.last_frames[0]
    c = credential(frame)
    assert c["type"] == b"HS_MAC"
    want = hmac.new(session.key, ha.mac_bytes(frame, c["signer_index"]), hashlib.sha256).digest()
    assert c["signature"] == want
    assert 5 not in values(node, handle)


def test_replays_bad_macs_and_missing_macs_change_nothing(node):
    session, handle = authenticated(node)
    body = ha.add_body(handle, [ha.value(7, "EMAIL", "a@example.com")])
    raw = session.request(ha.ADD_VALUE, body, encrypted=True)
    assert session.send(node.tcp, raw)[0].code == ha.SUCCESS
    session.send(node.tcp, session.request(ha.REMOVE_VALUE, ha.remove_body(handle, [7])))
    assert 7 not in values(node, handle)
    # The same bytes again: the counter was used, 505, nothing re-added.
    replay = session.send(node.tcp, raw)
    assert replay[0].code == ha.SESSION_MESSAGE_REJECTED, replay
    assert 7 not in values(node, handle)
    # A MAC made with another key: 502.
    bad = session.request(ha.ADD_VALUE, body, key=bytes(32))
    assert session.send(node.tcp, bad)[0].code == ha.INVALID_SESSION_KEY
    # No MAC at all: 404.
    bare = session.request(ha.ADD_VALUE, body, mac=False)
    assert session.send(node.tcp, bare)[0].code == ha.INVALID_CREDENTIAL
    assert 7 not in values(node, handle)


def test_a_wrong_identity_is_refused_and_the_session_stays_unauthenticated(node):
    # The session names 301 (list only): creating is refused after the
    # answer (400), and nothing is created.
    session = ha.Session.setup(over_tcp(node), NA, 301)
    handle = f"{PREFIX}/NOT-BY-LISTER"
    first = session.send(node.tcp, session.request(ha.CREATE_HANDLE,
                                                   create_body(handle, "https://x")))
    assert first[0].code == ha.AUTHENTICATION_NEEDED
    result = session.send(node.tcp, session.answer(first[0], ha.SecretKey(NA, 301, b"lister")))
    assert result[0].code == ha.INVALID_ADMIN, result
    assert values(node, handle) is None
    # An answer by another identity than the session's authenticates that
    # operation only: the next request is challenged again.
    session = ha.Session.setup(over_tcp(node), NA, 301)
    first = session.send(node.tcp, session.request(ha.CREATE_HANDLE,
                                                   create_body(handle, "https://x")))
    result = session.send(node.tcp, session.answer(first[0], ha.SecretKey(NA, 300, SECRET)))
    assert result[0].code == ha.SUCCESS, result
    body = ha.add_body(handle, [ha.value(9, "EMAIL", "b@example.com")])
    again = session.send(node.tcp, session.request(ha.ADD_VALUE, body))
    assert again[0].code == ha.AUTHENTICATION_NEEDED, again
    # A wrong secret: 403, and the session is not authenticated either.
    result = session.send(node.tcp, session.answer(again[0], ha.SecretKey(NA, 300, b"nope")))
    assert result[0].code == ha.AUTHENTICATION_FAILED
    assert 9 not in values(node, handle)


def test_terminated_and_unknown_sessions_get_500(node):
    session, handle = authenticated(node)
    assert session.terminate(node.tcp)[0].code == ha.SUCCESS
    body = ha.add_body(handle, [ha.value(8, "EMAIL", "c@example.com")])
    after = session.send(node.tcp, session.request(ha.ADD_VALUE, body, encrypted=True))
    assert after[0].code == ha.SESSION_TIMEOUT, after
    session.id = 0x1234567
    unknown = session.send(node.tcp, session.request(ha.ADD_VALUE, body))
    assert unknown[0].code == ha.SESSION_TIMEOUT
    assert 8 not in values(node, handle)


def test_malformed_setups_are_504(node):
    for body in (b"", struct.pack(">HI", 4, 60) + ha.s(NA),
                 struct.pack(">HI", 4, 60) + ha.s(NA) + struct.pack(">I", 300)
                 + ha.s(ha.dh_pub_key(1, ha.DH_P, 2)) + b"\0\0",
                 struct.pack(">HI", 2, 60) + ha.s(NA) + struct.pack(">I", 300) + b"\0\0"):
        raw = ha.message(ha.SESSION_SETUP, body, ha.new_request_id(), flags=ha.SETUP_FLAGS)
        reply = ha.Reply(over_tcp(node)(raw))
        assert reply.code == ha.INVALID_SESSIONSETUP_REQUEST, (body, reply)
