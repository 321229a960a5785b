"""End-to-end: the web side (docs/http.md) against the real binary. The
REST API with pyhandle from PyPI (a Handle client that is not ours):
create, resolve, modify, add, delete, and a write refused to another
prefix's administrator; Bearer tokens with plain HTTP requests; the browser
proxy's redirect, record page, not-found, malformed and delegated pages."""
import base64
import json
import re
import urllib.error
import urllib.request

import grpc
import pytest

import handle_client as hc
import hdl_admin as ha
from conftest import Node, ROOT

PREFIX, OTHER = "88.330", "88.331"
SECRET, OTHER_SECRET = b"rest-s3cret", b"other-s3cret"
SEEDS = [json.loads(l) for l in (ROOT / "seeds/identifiers.jsonl").read_text().splitlines() if l]


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def http(node, method, path, body=None, headers=None):
    """(status, headers, body bytes) of one request, redirects not followed."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://{node.http}{path}", data=data, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(req, timeout=10) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def web(tmp_path_factory, pb):
    node = Node(tmp_path_factory.mktemp("web")).start()
    assert node.http, node.addresses
    pb2, pb2_grpc = pb
    channel = grpc.insecure_channel(node.grpc)
    meta = (("authorization", f"Bearer {node.token}"),)
    prefixes = pb2_grpc.PrefixesStub(channel)
    ids = pb2_grpc.IdentifiersStub(channel)
    for prefix, secret in ((PREFIX, SECRET), (OTHER, OTHER_SECRET)):
        prefixes.CreatePrefix(pb2.CreatePrefixRequest(prefix=prefix), metadata=meta)
        na = f"0.NA/{prefix}"
        ids.AddValues(pb2.AddValuesRequest(identifier=na, values=[
            pb2.Value(index=300, type="HS_SECKEY", data=secret, permissions=0x0C),
            pb2.Value(index=130, type="HS_ADMIN", data=ha.hs_admin(ha.HS_ADMIN_ALL, na, 300)),
        ]), metadata=meta)
    r = node.cli("token", "create", "--prefix", OTHER, "--perm", "all")
    node.other_token = re.search(r"export IDNODE_TOKEN=(\S+)", r.stdout).group(1)
    r = node.cli("token", "create", "--prefix", PREFIX, "--perm", "all")
    node.own_token = re.search(r"export IDNODE_TOKEN=(\S+)", r.stdout).group(1)
    node.ids, node.pb2, node.meta = ids, pb2, meta
    yield node
    node.stop()


def stored(node, handle):
    try:
        r = node.ids.GetIdentifier(node.pb2.GetIdentifierRequest(identifier=handle),
                                   metadata=node.meta)
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.NOT_FOUND
        return None
    return {v.index: (v.type, v.data) for v in r.values}


def pyhandle_client(node, prefix, secret):
    from pyhandle.handleclient import PyHandleClient
    return PyHandleClient("rest").instantiate_with_username_and_password(
        f"http://{node.http}", f"300:0.NA/{prefix}", secret.decode(), HTTPS_verify=False,
        # The HS_ADMIN of the handles it creates names this administrator
        # (pyhandle's default is index 200 of the prefix record).
        handleowner=f"300:0.NA/{prefix}")


def test_pyhandle_round_trip(web):
    client = pyhandle_client(web, PREFIX, SECRET)
    handle = f"{PREFIX}/PH-1"
    assert client.register_handle(handle, "https://example.com/ph/1") == handle
    assert hc.udp_resolve(web.udp, handle).code == hc.SUCCESS
    record = client.retrieve_handle_record_json(handle)
    assert record["handle"] == handle
    urls = [v for v in record["values"] if v["type"] == "URL"]
    assert urls and urls[0]["data"]["value"] == "https://example.com/ph/1"
    # Modify a value, add one, remove one: each seen at once over UDP.
    client.modify_handle_value(handle, URL="https://example.com/ph/one")
    values = {v["type"]: v["data"] for v in hc.udp_resolve(web.udp, handle).values}
    assert values["URL"] == b"https://example.com/ph/one"
    client.modify_handle_value(handle, EMAIL="ops@example.com")
    assert client.get_value_from_handle(handle, "EMAIL") == "ops@example.com"
    client.delete_handle_value(handle, "EMAIL")
    assert "EMAIL" not in {t for t, _ in stored(web, handle).values()}
    client.delete_handle(handle)
    assert stored(web, handle) is None
    assert hc.udp_resolve(web.udp, handle).code == hc.HANDLE_NOT_FOUND


def test_another_prefixs_administrator_is_refused(web):
    from pyhandle.handleexceptions import GenericHandleError
    intruder = pyhandle_client(web, OTHER, OTHER_SECRET)
    handle = f"{PREFIX}/NOT-YOURS"
    # 400 INVALID_ADMIN as HTTP 403, as Handle.Net maps it.
    with pytest.raises(GenericHandleError, match="403"):
        intruder.register_handle(handle, "https://example.com/x")
    assert stored(web, handle) is None
    # A wrong secret is refused too.
    status, _, body = http(web, "PUT", f"/api/handles/{handle}",
                           {"values": [{"index": 1, "type": "URL", "data": "https://x"}]},
                           {"Authorization": "Basic " + base64.b64encode(
                               f"300%3A0.NA%2F{PREFIX}:wrong".encode()).decode()})
    assert status == 401 and json.loads(body)["responseCode"] == 403
    assert stored(web, handle) is None


def test_tokens_write_only_inside_their_prefixes(web):
    handle = f"{PREFIX}/TOKEN-1"
    body = {"values": [{"index": 1, "type": "URL", "data": {"format": "string",
                                                            "value": "https://t/1"}},
                       {"index": 2, "type": "NOTE", "data": "private note",
                        "permissions": "1100"}]}
    status, _, out = http(web, "PUT", f"/api/handles/{handle}", body, bearer(web.other_token))
    assert status == 403, out
    assert json.loads(out)["responseCode"] == 401 and OTHER in json.loads(out)["message"]
    assert stored(web, handle) is None
    status, _, out = http(web, "PUT", f"/api/handles/{handle}", body)
    assert status == 401 and stored(web, handle) is None
    status, _, out = http(web, "PUT", f"/api/handles/{handle}", body, bearer(web.own_token))
    assert status == 201, out
    # Anonymous reads see public values only; the token reads everything.
    status, _, out = http(web, "GET", f"/api/handles/{handle}")
    assert status == 200
    assert [v["index"] for v in json.loads(out)["values"]] == [1]
    status, _, out = http(web, "GET", f"/api/handles/{handle}", headers=bearer(web.own_token))
    assert sorted(v["index"] for v in json.loads(out)["values"]) == [1, 2]
    status, _, out = http(web, "GET", f"/api/handles/{handle}?index=2")
    assert status == 200 and json.loads(out)["responseCode"] == 200
    # Listing needs list_handles on the prefix.
    status, _, out = http(web, "GET", f"/api/handles?prefix={PREFIX}", headers=bearer(web.own_token))
    assert status == 200 and handle in json.loads(out)["handles"]
    status, _, _ = http(web, "GET", f"/api/handles?prefix={PREFIX}", headers=bearer(web.other_token))
    assert status == 403
    # Create without overwrite: 409; then delete by index and whole.
    status, _, out = http(web, "PUT", f"/api/handles/{handle}?overwrite=false", body,
                          bearer(web.own_token))
    assert status == 409 and json.loads(out)["responseCode"] == 101
    status, _, _ = http(web, "DELETE", f"/api/handles/{handle}?index=2", headers=bearer(web.own_token))
    assert status == 200 and 2 not in stored(web, handle)
    status, _, _ = http(web, "DELETE", f"/api/handles/{handle}", headers=bearer(web.own_token))
    assert status == 200 and stored(web, handle) is None
    status, _, out = http(web, "GET", f"/api/handles/{handle}")
    assert status == 404 and json.loads(out)["responseCode"] == 100
    # Malformed input: 400 with the field named.
    status, _, out = http(web, "PUT", f"/api/handles/{handle}",
                          {"values": [{"index": "x", "type": "URL", "data": "a"}]},
                          bearer(web.own_token))
    assert status == 400 and "values[0].index" in json.loads(out)["message"]


def test_the_proxy_redirects_and_shows_public_pages(web):
    seed = next(s for s in SEEDS if s["identifier"].startswith("88.100.1/"))
    url = next(v["data"] for v in seed["values"] if v["type"] == "URL")
    status, headers, _ = http(web, "GET", "/" + seed["identifier"])
    assert status == 302 and headers["Location"] == url
    status, headers, page = http(web, "GET", "/" + seed["identifier"] + "?noredirect")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    text = page.decode()
    assert seed["identifier"] in text and "productName" in text
    secret = [s for s in SEEDS if any(v.get("permissions") == 12 for v in s["values"])]
    if secret:
        s = secret[0]
        hidden = [v["data"] for v in s["values"] if v.get("permissions") == 12]
        _, _, page = http(web, "GET", "/" + s["identifier"] + "?noredirect")
        assert not any(h in page.decode() for h in hidden)
    status, _, page = http(web, "GET", "/88.100.1/NO-SUCH-THING")
    assert status == 404 and "Not found" in page.decode()
    status, _, page = http(web, "GET", "/not-an-identifier")
    assert status == 400 and "Not an identifier" in page.decode()
    status, _, page = http(web, "GET", "/")
    assert status == 200 and 'name="id"' in page.decode()
    status, headers, _ = http(web, "GET", "/?id=" + seed["identifier"])
    assert status == 302 and headers["Location"] == "/" + seed["identifier"]


def test_non_ascii_suffixes_round_trip(web):
    handle = f"{PREFIX}/ÄBC-ü 1"
    quoted = urllib.request.quote(handle)
    body = {"values": [{"index": 1, "type": "URL", "data": "https://example.com/ä"}]}
    status, _, out = http(web, "PUT", f"/api/handles/{quoted}", body, bearer(web.own_token))
    assert status == 201, out
    status, _, out = http(web, "GET", f"/api/handles/{quoted}")
    assert status == 200 and json.loads(out)["handle"] == handle
    status, _, page = http(web, "GET", f"/{quoted}?noredirect")
    assert status == 200 and handle in page.decode()
    status, headers, _ = http(web, "GET", f"/{quoted}")
    assert status == 302 and headers["Location"] == "https://example.com/%C3%A4"


def test_delegated_prefixes_name_their_site(web):
    web.cli("prefix", "delegate", f"{PREFIX}.9", "--to", "udp://192.0.2.7:2641,tcp://192.0.2.7:2641")
    status, _, out = http(web, "GET", f"/api/handles/{PREFIX}.9/ITEM-1")
    assert status == 300, out
    answer = json.loads(out)
    assert answer["responseCode"] == 303
    assert "192.0.2.7" in json.dumps(answer["sites"])
    status, _, page = http(web, "GET", f"/{PREFIX}.9/ITEM-1")
    assert status == 200 and "192.0.2.7" in page.decode() and "another site" in page.decode()
