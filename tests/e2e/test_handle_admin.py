"""End-to-end: Handle administration (docs/handle-admin.md) against the real
binary, with a client written from the wire description (hdl_admin.py):
admin requests over TCP, their 402 challenges, HS_SECKEY and HS_PUBKEY
answers; the created identifier resolves at once over UDP, in the DNS and
over gRPC; the refusals carry the spec's codes and change nothing."""
import shutil
import struct
import subprocess

import dns.name
import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

import handle_client as hc
import hdl_admin as ha
from conftest import Node

PREFIX = "88.300"
NA = f"0.NA/{PREFIX}"
APEX = "idnode.internal."
SECRET = b"s3cret"


@pytest.fixture(scope="module")
def admin(tmp_path_factory, pb):
    """A node homing 88.300 whose prefix record names, through HS_ADMIN:
    200 (HS_SECKEY `s3cret`, the admin that creating the prefix names),
    201 (an RSA HS_PUBKEY, every permission) and 202 (HS_SECKEY `lister`,
    list handles only)."""
    node = Node(tmp_path_factory.mktemp("hadm"), demo=False).start()
    pb2, pb2_grpc = pb
    channel = grpc.insecure_channel(node.grpc)
    meta = (("authorization", f"Bearer {node.token}"),)
    prefixes = pb2_grpc.PrefixesStub(channel)
    ids = pb2_grpc.IdentifiersStub(channel)
    prefixes.CreatePrefix(pb2.CreatePrefixRequest(prefix=PREFIX), metadata=meta)
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    secret_perms = 0x0C  # admin read and write: never public
    ids.AddValues(pb2.AddValuesRequest(identifier=NA, values=[
        pb2.Value(index=200, type="HS_SECKEY", data=SECRET, permissions=secret_perms),
        pb2.Value(index=201, type="HS_PUBKEY", data=ha.rsa_pub_key(private.public_key())),
        pb2.Value(index=101, type="HS_ADMIN", data=ha.hs_admin(ha.HS_ADMIN_ALL, NA, 201)),
        pb2.Value(index=202, type="HS_SECKEY", data=b"lister", permissions=secret_perms),
        pb2.Value(index=102, type="HS_ADMIN", data=ha.hs_admin(ha.LIST_PERMISSION, NA, 202)),
    ]), metadata=meta)
    node.pb2, node.ids, node.meta = pb2, ids, meta
    node.rsa = private
    yield node
    node.stop()


def seckey(index=200, secret=SECRET, algorithm=0x13):
    return ha.SecretKey(NA, index, secret, algorithm)


def grpc_values(node, handle):
    """{index: data} over gRPC, or None when the identifier is not there."""
    try:
        r = node.ids.GetIdentifier(node.pb2.GetIdentifierRequest(identifier=handle),
                                   metadata=node.meta)
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.NOT_FOUND
        return None
    return {v.index: v.data for v in r.values}


def udp_values(node, handle):
    r = hc.udp_resolve(node.udp, handle)
    return r.code, {v["index"]: v["data"] for v in r.values}


def dns_name(identifier):
    prefix, suffix = identifier.split("/", 1)
    labels = [suffix.encode()[i:i + 63] for i in range(0, len(suffix.encode()), 63)]
    labels.append(b"_")
    labels += [seg.encode() for seg in reversed(prefix.split("."))]
    return dns.name.Name(labels + list(dns.name.from_text(APEX).labels)).to_text()


def dig_txt(node, identifier):
    assert shutil.which("dig"), "dig is missing: run scripts/setup.sh (package bind9-dnsutils)"
    r = subprocess.run(["dig", "@%s" % node.dns_udp[0], "-p", str(node.dns_udp[1]), "+time=5",
                        "+tries=1", dns_name(identifier), "TXT"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def create(handle, url, admin_index=200):
    return ha.create_body(handle, [
        ha.value(100, "HS_ADMIN", ha.hs_admin(ha.HS_ADMIN_ALL, NA, admin_index)),
        ha.value(1, "URL", url),
    ])


def test_site_advertises_admin_over_tcp_only(admin):
    rid = hc.new_request_id()
    site = hc.Response(hc.udp_exchange(admin.udp, hc.site_info_request(rid))[0]).site
    kinds = {i["protocol"]: i["kind"] for i in site["servers"][0]["interfaces"]}
    assert kinds == {0: 2, 1: 3}  # UDP query only, TCP admin and query


def test_create_resolves_at_once_over_udp_dns_and_grpc(admin):
    handle = f"{PREFIX}/PUMP-1"
    url = "https://example.com/pump/1"
    out = ha.run(admin.tcp, ha.CREATE_HANDLE, create(handle, url), seckey())
    assert out.code == ha.SUCCESS, out.replies
    assert out.replies[0].handle == handle
    code, values = udp_values(admin, handle)
    assert code == hc.SUCCESS and values[1] == url.encode()
    txt = dig_txt(admin, handle)
    assert "status: NOERROR" in txt and f"data={url}" in txt
    assert grpc_values(admin, handle)[1] == url.encode()


def test_value_operations_list_and_delete_with_cnri_pbkdf2(admin):
    key = seckey(algorithm=0x22)
    handle = f"{PREFIX}/VALVE-7"
    assert ha.run(admin.tcp, ha.CREATE_HANDLE, create(handle, "https://v/7"), key).code == ha.SUCCESS
    body = ha.add_body(handle, [ha.value(2, "EMAIL", "ops@example.com")])
    assert ha.run(admin.tcp, ha.ADD_VALUE, body, key).code == ha.SUCCESS
    assert udp_values(admin, handle)[1][2] == b"ops@example.com"
    body = ha.modify_body(handle, [ha.value(1, "URL", "https://v/seven")])
    assert ha.run(admin.tcp, ha.MODIFY_VALUE, body, key).code == ha.SUCCESS
    assert udp_values(admin, handle)[1][1] == b"https://v/seven"
    assert "data=https://v/seven" in dig_txt(admin, handle)
    body = ha.remove_body(handle, [2])
    assert ha.run(admin.tcp, ha.REMOVE_VALUE, body, key).code == ha.SUCCESS
    assert 2 not in udp_values(admin, handle)[1]
    assert 2 not in grpc_values(admin, handle)

    out = ha.run(admin.tcp, ha.LIST_HANDLES, ha.list_body(NA), key)
    assert out.code == ha.SUCCESS
    listed = [h for r in out.replies for h in r.handles]
    assert handle in listed

    assert ha.run(admin.tcp, ha.DELETE_HANDLE, ha.delete_body(handle), key).code == ha.SUCCESS
    assert udp_values(admin, handle)[0] == hc.HANDLE_NOT_FOUND
    assert grpc_values(admin, handle) is None


def test_rsa_key_creates(admin):
    handle = f"{PREFIX}/RSA-1"
    key = ha.RsaKey(NA, 201, admin.rsa)
    out = ha.run(admin.tcp, ha.CREATE_HANDLE, create(handle, "https://rsa/1", 201), key)
    assert out.code == ha.SUCCESS, out.replies
    assert udp_values(admin, handle)[1][1] == b"https://rsa/1"
    # Key index 0: any HS_PUBKEY of the key handle; the one that verifies
    # (201) is the identity the handle's HS_ADMIN must name.
    key0 = ha.RsaKey(NA, 0, admin.rsa)
    out = ha.run(admin.tcp, ha.DELETE_HANDLE, ha.delete_body(handle), key0)
    assert out.code == ha.SUCCESS, out.replies
    assert grpc_values(admin, handle) is None


def test_wrong_secret_is_403_and_changes_nothing(admin):
    handle = f"{PREFIX}/WRONG"
    out = ha.run(admin.tcp, ha.CREATE_HANDLE, create(handle, "https://w"),
                 seckey(secret=b"wrong"))
    assert out.challenge is not None
    assert out.code == ha.AUTHENTICATION_FAILED, out.replies
    assert grpc_values(admin, handle) is None
    assert udp_values(admin, handle)[0] == hc.HANDLE_NOT_FOUND


def test_admin_without_permission_is_400_and_changes_nothing(admin):
    handle = f"{PREFIX}/NOPE"
    lister = seckey(index=202, secret=b"lister")
    out = ha.run(admin.tcp, ha.CREATE_HANDLE, create(handle, "https://n"), lister)
    assert out.code == ha.INVALID_ADMIN, out.replies
    assert grpc_values(admin, handle) is None
    # Listing is what it may do.
    assert ha.run(admin.tcp, ha.LIST_HANDLES, ha.list_body(PREFIX), lister).code == ha.SUCCESS


def test_replayed_answer_is_refused_and_changes_nothing(admin):
    handle = f"{PREFIX}/ONCE"
    out = ha.run(admin.tcp, ha.CREATE_HANDLE, create(handle, "https://once"), seckey())
    assert out.code == ha.SUCCESS
    admin.ids.DeleteIdentifier(admin.pb2.DeleteIdentifierRequest(identifier=handle),
                               metadata=admin.meta)
    replay = ha.exchange(admin.tcp, out.answer)
    assert replay[0].code == ha.SESSION_TIMEOUT, replay
    assert grpc_values(admin, handle) is None


def test_checks_before_the_challenge(admin):
    key = seckey()
    # Exists already: 101 without a challenge.
    handle = f"{PREFIX}/TWICE"
    assert ha.run(admin.tcp, ha.CREATE_HANDLE, create(handle, "https://t"), key).code == ha.SUCCESS
    out = ha.run(admin.tcp, ha.CREATE_HANDLE, create(handle, "https://t"), key)
    assert out.challenge is None and out.code == ha.HANDLE_ALREADY_EXISTS
    # A prefix this node does not home: 301.
    out = ha.run(admin.tcp, ha.CREATE_HANDLE, create("99.9/X", "https://x"), key)
    assert out.challenge is None and out.code == ha.SERVER_NOT_RESP


def test_udp_is_query_only(admin):
    rid = hc.new_request_id()
    raw = ha.message(ha.CREATE_HANDLE, create(f"{PREFIX}/UDP", "https://u"), rid)
    r = ha.Reply(hc.udp_exchange(admin.udp, raw)[0])
    assert r.request_id == rid and r.code == ha.PROTOCOL_ERROR
    assert grpc_values(admin, f"{PREFIX}/UDP") is None


def test_prefix_admin_sets_up_an_sdk_identity_from_the_cli(admin, tmp_path):
    """`idnode prefix admin` writes the HS_SECKEY and the HS_ADMIN an SDK
    user needs; the secret then creates over TCP, and is never resolvable."""
    secret_file = tmp_path / "sdk.key"
    secret_file.write_text("sdk-secret\n")
    admin_handle = f"{PREFIX}/SDK-ADMIN"
    out = admin.cli("prefix", "admin", PREFIX, "--handle", admin_handle, "--index", "300",
                    "--secret-file", str(secret_file),
                    "--perm", "add_handle,add_value,list_handles").stdout
    assert f"names {admin_handle} index 300" in out, out
    # Running it again changes nothing.
    again = admin.cli("prefix", "admin", PREFIX, "--handle", admin_handle, "--index", "300",
                      "--secret-file", str(secret_file),
                      "--perm", "add_handle,add_value,list_handles").stdout
    assert "already names" in again, again
    key = ha.SecretKey(admin_handle, 300, b"sdk-secret")
    handle = f"{PREFIX}/BY-SDK"
    body = ha.create_body(handle, [
        ha.value(100, "HS_ADMIN", ha.hs_admin(ha.HS_ADMIN_ALL, admin_handle, 300)),
        ha.value(1, "URL", "https://example.com/sdk")])
    outcome = ha.run(admin.tcp, ha.CREATE_HANDLE, body, key)
    assert outcome.code == ha.SUCCESS, outcome.replies
    assert udp_values(admin, handle)[1][1] == b"https://example.com/sdk"
    # The permissions given do not include deleting, and the secret stays
    # private: resolving the admin handle shows no HS_SECKEY.
    refused = ha.run(admin.tcp, ha.DELETE_HANDLE, ha.delete_body(handle),
                     ha.SecretKey(admin_handle, 300, b"wrong"))
    assert refused.code != ha.SUCCESS
    code, values = udp_values(admin, admin_handle)
    assert b"sdk-secret" not in b"".join(values.values())
    # Bad input is a usage error.
    bad = admin.cli("prefix", "admin", PREFIX, "--handle", admin_handle,
                    "--secret-file", str(tmp_path / "missing"), check=False)
    assert bad.returncode == 2 and "cannot read" in bad.stderr
