"""TLS for the gRPC management API, against the real binary with grpcio
(not our client) and the `idnode` command:

- `[grpc] tls = true` without files: the node's self-signed certificate
  (`<data_dir>/tls/cert.pem`, shared with QUIC), its SHA-256 fingerprint in
  the banner and the ready file; grpcio trusting that certificate and the
  CLI with --grpc-ca-file or --grpc-pin get through; plaintext does not;
- `cert` / `key` files: those are served;
- `client_ca`: only a client holding a certificate it signed is served;
- gRPC on 0.0.0.0 without TLS: the node refuses to start (exit 2) unless
  --insecure-grpc or `[grpc] insecure = true`.

The certificates of the tests are made here with `cryptography`."""
import datetime
import ipaddress
import os
import subprocess

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from conftest import Node, idnode_bin


# --- certificates -----------------------------------------------------------

def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject, key, issuer=None, issuer_key=None, ca=False, server=False, client=False):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder()
               .subject_name(_name(subject))
               .issuer_name(_name(issuer or subject))
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                          content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False,
                          encipher_only=False, decipher_only=False), critical=True)
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    if client:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    return builder.sign(issuer_key or key, hashes.SHA256())


def _write(dir, name, cert, key):
    """Writes `name.pem` and `name.key`; returns their paths."""
    cert_path, key_path = dir / f"{name}.pem", dir / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def fingerprint(cert_pem_bytes):
    """SHA-256 of the DER, as idnode prints it (AB:CD:...)."""
    cert = x509.load_pem_x509_certificate(cert_pem_bytes)
    return ":".join(f"{b:02X}" for b in cert.fingerprint(hashes.SHA256()))


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A client CA with a client certificate it signed, a stranger's
    self-signed client certificate, and a server certificate for 127.0.0.1."""
    d = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("idnode test CA", ca_key, ca=True)
    paths = {"ca": _write(d, "ca", ca, ca_key)[0]}
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = _cert("operator", client_key, issuer="idnode test CA", issuer_key=ca_key,
                   client=True)
    paths["client"] = _write(d, "client", client, client_key)
    stranger_key = ec.generate_private_key(ec.SECP256R1())
    stranger = _cert("stranger", stranger_key, client=True)
    paths["stranger"] = _write(d, "stranger", stranger, stranger_key)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _cert("grpc.test", server_key, server=True)
    paths["server"] = _write(d, "server", server, server_key)
    return paths


# --- helpers ----------------------------------------------------------------

def config(dir, text):
    path = dir / "idnode.toml"
    path.write_text(text)
    return path


def port(node):
    return int(node.grpc.rsplit(":", 1)[1])


def tls_channel(node, root, client=None):
    creds = grpc.ssl_channel_credentials(
        root_certificates=root.read_bytes(),
        private_key=client[1].read_bytes() if client else None,
        certificate_chain=client[0].read_bytes() if client else None)
    return grpc.secure_channel(f"127.0.0.1:{port(node)}", creds)


def list_prefixes(channel, pb, node):
    pb2, pb2_grpc = pb
    stub = pb2_grpc.PrefixesStub(channel)
    reply = stub.ListPrefixes(pb2.ListPrefixesRequest(),
                              metadata=[("authorization", f"Bearer {node.token}")], timeout=15)
    return sorted(p.prefix for p in reply.prefixes)


def cli(node, *args, grpc_url=None):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("IDNODE_GRPC") and k != "IDNODE_TOKEN"}
    env["IDNODE_GRPC"] = grpc_url or f"https://127.0.0.1:{port(node)}"
    env["IDNODE_TOKEN_FILE"] = str(node.data_dir / "admin.token")
    return subprocess.run([idnode_bin(), *args], capture_output=True, text=True, env=env,
                          timeout=60)


def serve(data_dir, *args, timeout=60):
    """Runs `idnode serve` expecting it to stop by itself."""
    return subprocess.run(
        [idnode_bin(), "serve", "--data-dir", str(data_dir), "--handle-listen", "127.0.0.1:0",
         "--quic-listen", "127.0.0.1:0", "--dns-listen", "127.0.0.1:0",
         "--dns-quic-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0",
         "--udp-workers", "1", *args],
        capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "RUST_LOG": "warn"})


# --- a node with TLS and its own certificate --------------------------------

@pytest.fixture(scope="module")
def tls_node(tmp_path_factory):
    d = tmp_path_factory.mktemp("grpc-tls")
    cfg = config(d, "[grpc]\ntls = true\n")
    n = Node(d / "data", extra=["--config", str(cfg), "--quic-listen", "127.0.0.1:0"],
             demo=False).start()
    yield n
    n.stop()


def test_generated_certificate_is_announced_and_shared_with_quic(tls_node):
    cert = tls_node.data_dir / "tls" / "cert.pem"
    assert cert.exists()
    a = tls_node.addresses
    assert a["grpc_tls_certificate"] == str(cert)
    assert a["grpc_tls_sha256"] == fingerprint(cert.read_bytes())
    # One certificate for the node: QUIC presents the same.
    assert a["tls_sha256"] == a["grpc_tls_sha256"]
    banner = "\n".join(tls_node.lines)
    assert f"grpc        https://{tls_node.grpc}" in banner
    assert f"grpc sha256 {a['grpc_tls_sha256']}" in banner


def test_grpcio_trusting_the_node_certificate_gets_through(tls_node, pb):
    cert = tls_node.data_dir / "tls" / "cert.pem"
    with tls_channel(tls_node, cert) as channel:
        assert isinstance(list_prefixes(channel, pb, tls_node), list)


def test_plaintext_to_the_tls_port_fails(tls_node, pb):
    with grpc.insecure_channel(f"127.0.0.1:{port(tls_node)}") as channel:
        with pytest.raises(grpc.RpcError) as e:
            list_prefixes(channel, pb, tls_node)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    r = cli(tls_node, "prefix", "list", grpc_url=f"http://127.0.0.1:{port(tls_node)}")
    assert r.returncode != 0, r.stdout


def test_grpcio_with_another_root_fails(tls_node, pb, pki):
    with tls_channel(tls_node, pki["ca"]) as channel:
        with pytest.raises(grpc.RpcError) as e:
            list_prefixes(channel, pb, tls_node)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE


def test_cli_with_ca_file_or_pin(tls_node, pb):
    cert = tls_node.data_dir / "tls" / "cert.pem"
    sha = tls_node.addresses["grpc_tls_sha256"]
    r = cli(tls_node, "--grpc-ca-file", str(cert), "prefix", "create", "88.300")
    assert r.returncode == 0, r.stdout + r.stderr
    # Pinned, with or without colons, in any case.
    for pin in (sha, sha.replace(":", "").lower()):
        r = cli(tls_node, "--grpc-pin", pin, "prefix", "list")
        assert r.returncode == 0, r.stdout + r.stderr
        assert "88.300" in r.stdout
    r = cli(tls_node, "--grpc-pin", sha, "token", "list")
    assert r.returncode == 0, r.stdout + r.stderr
    with tls_channel(tls_node, cert) as channel:
        assert "88.300" in list_prefixes(channel, pb, tls_node)


def test_cli_fails_clearly_without_a_way_to_check_the_node(tls_node):
    r = cli(tls_node, "prefix", "list")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "--grpc-ca-file" in r.stderr and "--grpc-pin" in r.stderr, r.stderr
    r = cli(tls_node, "--grpc-pin", "00" * 32, "prefix", "list")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "not the pinned one" in r.stderr, r.stderr
    r = cli(tls_node, "--grpc-pin", "nonsense", "prefix", "list")
    assert r.returncode == 2 and "fingerprint" in r.stderr, r.stderr
    r = cli(tls_node, "--grpc-ca-file", "/nonexistent/ca.pem", "prefix", "list")
    assert r.returncode == 2 and "/nonexistent/ca.pem" in r.stderr, r.stderr


# --- certificate files, client certificates ---------------------------------

def test_configured_certificate_files_are_served(tmp_path, pb, pki):
    cert, key = pki["server"]
    cfg = config(tmp_path, f'[grpc]\ntls = true\ncert = "{cert}"\nkey = "{key}"\n')
    n = Node(tmp_path / "data", extra=["--config", str(cfg), "--no-quic"], demo=False).start()
    try:
        assert n.addresses["grpc_tls_sha256"] == fingerprint(cert.read_bytes())
        assert n.addresses["grpc_tls_certificate"] == str(cert)
        with tls_channel(n, cert) as channel:
            list_prefixes(channel, pb, n)
        r = cli(n, "--grpc-ca-file", str(cert), "prefix", "list")
        assert r.returncode == 0, r.stdout + r.stderr
    finally:
        n.stop()


def test_client_ca_requires_a_certificate_it_signed(tmp_path, pb, pki):
    cfg = config(tmp_path, f'[grpc]\ntls = true\nclient_ca = "{pki["ca"]}"\n')
    n = Node(tmp_path / "data", extra=["--config", str(cfg), "--no-quic"], demo=False).start()
    try:
        root = n.data_dir / "tls" / "cert.pem"
        with tls_channel(n, root, client=pki["client"]) as channel:
            list_prefixes(channel, pb, n)
        for client in (None, pki["stranger"]):
            with tls_channel(n, root, client=client) as channel:
                with pytest.raises(grpc.RpcError) as e:
                    list_prefixes(channel, pb, n)
            assert e.value.code() == grpc.StatusCode.UNAVAILABLE, client
        sha = n.addresses["grpc_tls_sha256"]
        cert, key = pki["client"]
        r = cli(n, "--grpc-pin", sha, "--grpc-cert", str(cert), "--grpc-key", str(key),
                "prefix", "list")
        assert r.returncode == 0, r.stdout + r.stderr
        r = cli(n, "--grpc-pin", sha, "prefix", "list")
        assert r.returncode == 1, r.stdout + r.stderr
    finally:
        n.stop()


# --- refusing plain gRPC off loopback ---------------------------------------

def test_plain_grpc_on_all_addresses_is_refused(tmp_path):
    r = serve(tmp_path / "data", "--grpc-listen", "0.0.0.0:0")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "refusing to serve gRPC without TLS on 0.0.0.0:0" in r.stderr, r.stderr
    assert "--insecure-grpc" in r.stderr and "tls = true" in r.stderr, r.stderr
    assert "ready" not in r.stdout.split()
    # Refused before anything was opened.
    assert not (tmp_path / "data" / "db").exists()


def test_insecure_grpc_starts_off_loopback(tmp_path, pb):
    n = Node(tmp_path / "flag", grpc_listen="0.0.0.0:0", extra=["--insecure-grpc"],
             demo=False).start()
    try:
        assert n.grpc.startswith("0.0.0.0:")
        assert n.addresses["grpc_tls_sha256"] is None
        with grpc.insecure_channel(f"127.0.0.1:{port(n)}") as channel:
            list_prefixes(channel, pb, n)
    finally:
        n.stop()
    cfg = config(tmp_path, "[grpc]\ninsecure = true\n")
    n = Node(tmp_path / "config", grpc_listen="0.0.0.0:0", extra=["--config", str(cfg)],
             demo=False).start()
    n.stop()


def test_tls_on_all_addresses_starts(tmp_path, pb):
    cfg = config(tmp_path, "[grpc]\ntls = true\n")
    n = Node(tmp_path / "data", grpc_listen="0.0.0.0:0",
             extra=["--config", str(cfg), "--no-quic"], demo=False).start()
    try:
        with tls_channel(n, n.data_dir / "tls" / "cert.pem") as channel:
            list_prefixes(channel, pb, n)
    finally:
        n.stop()
