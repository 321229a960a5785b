"""End-to-end: the web listener over TLS (`[http] tls`, docs/http.md) with
clients that are not ours: pyhandle writing and reading through HTTPS with
the node's certificate as its trust anchor, curl negotiating HTTP/2 by
ALPN, Python's ssl module refusing the certificate without that anchor, a
plain-HTTP request that gets no answer, and a client that opens a
connection and never starts the handshake being dropped while others are
served."""
import json
import shutil
import socket
import ssl
import subprocess
import urllib.error
import urllib.request

import grpc
import pytest

import hdl_admin as ha
from conftest import Node, ROOT

PREFIX, SECRET = "88.340", b"tls-s3cret"
SEEDS = [json.loads(l) for l in (ROOT / "seeds/identifiers.jsonl").read_text().splitlines() if l]


@pytest.fixture(scope="module")
def node(tmp_path_factory, pb):
    d = tmp_path_factory.mktemp("https")
    cfg = d / "node.toml"
    cfg.write_text("[http]\ntls = true\nheader_timeout_secs = 1\nrequest_timeout_secs = 1\n")
    n = Node(d / "data", extra=["--config", str(cfg)]).start()
    a = n.addresses
    assert a["http_tls_sha256"] and a["http_tls_certificate"], a
    # The banner names the scheme.
    assert any(l.strip().startswith("http ") and "https://" in l for l in n.lines), n.lines
    pb2, pb2_grpc = pb
    channel = grpc.insecure_channel(n.grpc)
    meta = (("authorization", f"Bearer {n.token}"),)
    pb2_grpc.PrefixesStub(channel).CreatePrefix(pb2.CreatePrefixRequest(prefix=PREFIX),
                                                metadata=meta)
    na = f"0.NA/{PREFIX}"
    pb2_grpc.IdentifiersStub(channel).AddValues(pb2.AddValuesRequest(identifier=na, values=[
        pb2.Value(index=300, type="HS_SECKEY", data=SECRET, permissions=0x0C),
        pb2.Value(index=130, type="HS_ADMIN", data=ha.hs_admin(ha.HS_ADMIN_ALL, na, 300)),
    ]), metadata=meta)
    n.cert = a["http_tls_certificate"]
    yield n
    n.stop()


def context(node):
    ctx = ssl.create_default_context(cafile=node.cert)
    ctx.check_hostname = False  # the self-signed certificate names localhost
    return ctx


def test_pyhandle_over_https(node):
    from pyhandle.handleclient import PyHandleClient
    client = PyHandleClient("rest").instantiate_with_username_and_password(
        f"https://{node.http}", f"300:0.NA/{PREFIX}", SECRET.decode(),
        HTTPS_verify=node.cert, handleowner=f"300:0.NA/{PREFIX}")
    handle = f"{PREFIX}/TLS-1"
    # The certificate names localhost and 127.0.0.1: verification is real.
    assert client.register_handle(handle, "https://example.com/tls/1") == handle
    assert client.get_value_from_handle(handle, "URL") == "https://example.com/tls/1"
    client.delete_handle(handle)
    assert client.retrieve_handle_record_json(handle) is None


def test_record_and_redirect_over_https(node):
    seed = next(s for s in SEEDS if s["identifier"].startswith("88.100.1/"))
    url = next(v["data"] for v in seed["values"] if v["type"] == "URL")
    with urllib.request.urlopen(f"https://{node.http}/api/handles/{seed['identifier']}",
                                context=context(node), timeout=10) as r:
        assert r.status == 200
        assert json.loads(r.read())["handle"] == seed["identifier"]

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirect,
                                         urllib.request.HTTPSHandler(context=context(node)))
    with pytest.raises(urllib.error.HTTPError) as e:
        opener.open(f"https://{node.http}/{seed['identifier']}", timeout=10)
    assert e.value.code == 302 and e.value.headers["Location"] == url


def test_untrusted_certificate_is_refused_by_the_client(node):
    with pytest.raises(urllib.error.URLError) as e:
        urllib.request.urlopen(f"https://{node.http}/", context=ssl.create_default_context(),
                               timeout=10)
    assert isinstance(e.value.reason, ssl.SSLCertVerificationError)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_negotiates_http2_and_http11(node):
    for flag, version in (("--http2", "2"), ("--http1.1", "1.1")):
        r = subprocess.run(["curl", "-sS", flag, "--cacert", node.cert,
                            "--resolve", f"localhost:{node.http.rsplit(':', 1)[1]}:127.0.0.1",
                            "-o", "/dev/null", "-w", "%{http_version} %{http_code}",
                            f"https://localhost:{node.http.rsplit(':', 1)[1]}/"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        assert r.stdout == f"{version} 200", r.stdout


def test_plain_http_gets_no_answer(node):
    host, port = node.http.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        try:
            while chunk := s.recv(4096):
                data += chunk
        except (ConnectionResetError, socket.timeout):
            pass
    assert not data.startswith(b"HTTP/"), data[:64]


def test_a_stalled_handshake_is_dropped_while_others_are_served(node):
    host, port = node.http.rsplit(":", 1)
    stalled = socket.create_connection((host, int(port)), timeout=10)
    try:
        # Another client meanwhile gets its answer.
        with urllib.request.urlopen(f"https://{node.http}/", context=context(node),
                                    timeout=10) as r:
            assert r.status == 200
        # The stalled one is closed once the handshake's time (the header
        # timeout, 1 s here) is up: recv sees the end, not its own timeout.
        assert stalled.recv(1) == b""
    finally:
        stalled.close()


def test_a_stalled_body_gets_408(node):
    host, port = node.http.rsplit(":", 1)
    raw = socket.create_connection((host, int(port)), timeout=10)
    with context(node).wrap_socket(raw) as s:
        s.sendall(f"PUT /api/handles/{PREFIX}/SLOW HTTP/1.1\r\nHost: x\r\n"
                  "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{".encode())
        # The rest of the body never comes: the request's time (1 s here)
        # runs out and the node answers 408.
        answer = s.recv(4096)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:80]
