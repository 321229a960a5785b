"""Mirrors (`idnode serve --mirror-of`): a mirror follows its primary's
change log through 100,000 writes while each side is killed with SIGKILL
and started again, and ends with the same records, byte for byte, and the
same change sequence; it serves Handle, DNS and HTTP reads and refuses
writes naming the primary (gRPC, HTTP, Handle); it catches up from a copy
of the primary's store when the primary no longer holds the changes it
misses; it follows over TLS checked by pin; a recursive node resolves
through it while the primary is down; and it can be promoted."""
import json
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import dns.message
import dns.name
import dns.query
import dns.rcode
import grpc
import pytest

import handle_client as hc
import hdl_admin as ha
from conftest import Node

PREFIX = "88.555"
TOTAL = 100_000


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def meta(node):
    return (("authorization", f"Bearer {node.token}"),)


def urls(node):
    return f"udp://{node.udp[0]}:{node.udp[1]},tcp://{node.tcp[0]}:{node.tcp[1]}"


def primary(path, extra=()):
    """A primary on fixed ports, so that it comes back where its mirrors
    look for it after a restart."""
    return Node(path, demo=False, grpc_listen=f"127.0.0.1:{free_port()}",
                handle_listen=f"127.0.0.1:{free_port()}", extra=["--no-quic", *extra])


def mirror_of(path, of, tmp_path, extra=()):
    token_file = tmp_path / f"{path.name}.primary-token"
    token_file.write_text(of.token + "\n")
    token_file.chmod(0o600)
    return Node(path, demo=False, extra=["--no-quic", "--mirror-of", of.grpc,
                                         "--mirror-token-file", str(token_file), *extra])


def metrics(node):
    with urllib.request.urlopen(f"http://{node.http}/metrics", timeout=10) as r:
        out = {}
        for line in r.read().decode().splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out


def sequence(node):
    return int(metrics(node)["idnode_change_sequence"])


def wait_for(what, check, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def caught_up(m, p, timeout=60):
    target = sequence(p)
    wait_for(f"the mirror to reach {target}", lambda: sequence(m) == target, timeout)
    assert sequence(m) == sequence(p)


def exported(node, pb):
    """Every record, as the Export stream encodes it, by identifier."""
    pb2, pb2_grpc = pb
    stub = pb2_grpc.IdentifiersStub(grpc.insecure_channel(node.grpc))
    out = {}
    for page in stub.Export(pb2.ExportRequest(), metadata=meta(node), timeout=300):
        for record in page.identifiers:
            out[record.identifier] = record.SerializeToString()
    return out


def stub(node, pb, name="IdentifiersStub"):
    return getattr(pb[1], name)(grpc.insecure_channel(node.grpc))


def request(pb2, n, overwrite=False):
    identifier = f"{PREFIX}/M-{n:06d}"
    return pb2.CreateIdentifierRequest(identifier=identifier, overwrite=overwrite, values=[
        pb2.Value(index=1, type="URL", data=f"https://example.org/m/{n}".encode()),
        pb2.Value(index=2, type="serial", data=f"{n * 7919:x}".encode()),
        # Items of 256 bytes and more: HTTP/2 servers count DATA frames
        # smaller than that against a flood budget, and a client that
        # streams small items faster than the node commits them exhausts it.
        pb2.Value(index=3, type="description", data=(f"pump {n} " * 40).encode()[:240])])


def batch_create(node, pb, numbers):
    pb2 = pb[0]
    ok = 0
    for result in stub(node, pb).BatchCreate((request(pb2, n) for n in numbers),
                                             metadata=meta(node), timeout=600):
        assert result.code == 0, result
        ok += 1
    return ok


def txt(node, identifier):
    """The TXT strings of `identifier` in the node's default apex
    (docs/dns-mapping.md), or the rcode's name when it has none."""
    prefix, suffix = identifier.split("/", 1)
    labels = [suffix.encode(), b"_"] + [s.encode() for s in reversed(prefix.split("."))]
    name = dns.name.Name(labels + list(dns.name.from_text("idnode.internal.").labels))
    r = dns.query.udp(dns.message.make_query(name, "TXT"), node.dns_udp[0],
                      port=node.dns_udp[1], timeout=5)
    if r.rcode() != dns.rcode.NOERROR:
        return dns.rcode.to_text(r.rcode())
    return [b"".join(rd.strings) for rrset in r.answer for rd in rrset]


def status_json(node):
    return json.loads(node.cli("status", "--json").stdout)


def test_a_mirror_follows_100000_writes_through_restarts_of_both_sides(tmp_path, pb):
    pb2 = pb[0]
    p = primary(tmp_path / "primary").start()
    m = mirror_of(tmp_path / "mirror", p, tmp_path).start()
    try:
        p.cli("prefix", "create", PREFIX)
        writer_error = []

        def write(numbers):
            try:
                assert batch_create(p, pb, numbers) == len(numbers)
            except Exception as e:  # noqa: BLE001 - reported by the test
                writer_error.append(e)

        # The first half while the mirror is killed and comes back.
        w = threading.Thread(target=write, args=(range(0, TOTAL // 2),))
        w.start()
        wait_for("the mirror to follow", lambda: sequence(m) > 10_000, timeout=120)
        assert w.is_alive(), "the writer finished before the mirror was killed"
        m.proc.kill()
        m.proc.wait()
        time.sleep(0.5)
        m.start()
        w.join()
        assert not writer_error, writer_error
        # The primary is killed and starts again between two streams of
        # writes (what it acknowledged is durable); the mirror reconnects
        # by itself.
        p.proc.kill()
        p.proc.wait()
        time.sleep(1)
        s = status_json(m)["mirror"]
        assert s["primary"] == p.grpc and not s["connected"], s
        p.start()
        w = threading.Thread(target=write, args=(range(TOTAL // 2, TOTAL),))
        w.start()
        w.join()
        assert not writer_error, writer_error
        # Overwrites and deletes are changes like the others.
        ids = stub(p, pb)
        for n in range(0, 50):
            ids.DeleteIdentifier(pb2.DeleteIdentifierRequest(
                identifier=f"{PREFIX}/M-{n:06d}"), metadata=meta(p))
        for n in range(50, 60):
            ids.CreateIdentifier(request(pb2, n + 1, overwrite=True), metadata=meta(p))
        caught_up(m, p, timeout=120)
        mine, theirs = exported(m, pb), exported(p, pb)
        assert len(theirs) == TOTAL - 50 + 1  # and the prefix record 0.NA/88.555
        assert mine == theirs
        assert sequence(m) == sequence(p)
        s = status_json(m)["mirror"]
        assert s["connected"] and s["lag_changes"] == 0, s
        assert s["applied_sequence"] == s["primary_sequence"] == sequence(p)
        shown = m.cli("status").stdout
        assert f"mirror      of {p.grpc}, following" in shown, shown
        got = metrics(m)
        assert got["idnode_mirror_lag_changes"] == 0
        assert got["idnode_mirror_connected"] == 1
        assert 0 <= got["idnode_mirror_seconds_since_contact"] < 5
    finally:
        m.stop()
        p.stop()


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    base = tmp_path_factory.mktemp("pair")
    p = primary(base / "primary").start()
    m = None
    try:
        p.cli("prefix", "create", PREFIX)
        p.cli("id", "create", f"{PREFIX}/PUMP-1", "-v", "1:URL:https://example.org/pump-1")
        m = mirror_of(base / "mirror", p, base).start()
        caught_up(m, p)
        yield p, m
    finally:
        if m:
            m.stop()
        p.stop()


def test_the_mirror_serves_reads_on_every_surface(pair):
    p, m = pair
    r = hc.udp_resolve(m.udp, f"{PREFIX}/PUMP-1")
    assert r.code == hc.SUCCESS, r.message
    assert r.values[0]["data"] == b"https://example.org/pump-1"
    with urllib.request.urlopen(f"http://{m.http}/api/handles/{PREFIX}/PUMP-1", timeout=10) as h:
        assert json.loads(h.read())["values"][0]["data"]["value"] == "https://example.org/pump-1"
    assert any(b"https://example.org/pump-1" in t for t in txt(m, f"{PREFIX}/PUMP-1"))
    assert txt(m, f"{PREFIX}/PUMP-2") == "NXDOMAIN"
    # A write on the primary is read on the mirror moments later (the
    # caches hear of applied changes).
    p.cli("id", "create", f"{PREFIX}/PUMP-2", "-v", "1:URL:https://example.org/pump-2")
    wait_for("the new record on the mirror",
             lambda: hc.udp_resolve(m.udp, f"{PREFIX}/PUMP-2").code == hc.SUCCESS, 10)
    assert any(b"https://example.org/pump-2" in t for t in txt(m, f"{PREFIX}/PUMP-2"))
    p.cli("id", "delete", f"{PREFIX}/PUMP-2")
    wait_for("the deletion on the mirror",
             lambda: hc.udp_resolve(m.udp, f"{PREFIX}/PUMP-2").code == hc.HANDLE_NOT_FOUND, 10)
    assert txt(m, f"{PREFIX}/PUMP-2") == "NXDOMAIN"
    # The mirror's own site says it is not primary.
    site = hc.Response(hc.udp_exchange(m.udp, hc.site_info_request(hc.new_request_id()))[0]).site
    assert not site["primary"] & 0x80, site


def test_writes_on_the_mirror_are_refused_naming_the_primary(pair, pb):
    p, m = pair
    pb2 = pb[0]
    with pytest.raises(grpc.RpcError) as e:
        stub(m, pb).CreateIdentifier(request(pb2, 1), metadata=meta(m))
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert f"mirror of {p.grpc}" in e.value.details() and "primary" in e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        stub(m, pb, "PrefixesStub").CreatePrefix(pb2.CreatePrefixRequest(prefix="88.556"),
                                                 metadata=meta(m))
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION, e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        stub(m, pb, "TokensStub").CreateToken(pb2.CreateTokenRequest(
            name="w", permissions=["add_handle"], prefixes=[PREFIX]), metadata=meta(m))
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION, e.value.details()
    assert p.grpc in e.value.details()
    # BatchCreate: each item refused, naming the primary.
    results = list(stub(m, pb).BatchCreate(iter([request(pb2, 2)]), metadata=meta(m)))
    assert len(results) == 1 and p.grpc in results[0].message, results
    # HTTP: 409 with the primary named.
    req = urllib.request.Request(
        f"http://{m.http}/api/handles/{PREFIX}/W-1", method="PUT",
        data=json.dumps({"values": [{"index": 1, "type": "URL",
                                     "data": {"format": "string", "value": "https://x"}}]}).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {m.token}"})
    with pytest.raises(urllib.error.HTTPError) as h:
        urllib.request.urlopen(req, timeout=10)
    assert h.value.code == 409
    body = json.loads(h.value.read())
    assert p.grpc in body["message"], body
    # Handle administration: 301 (a site that is not primary), before any
    # challenge, naming the primary.
    key = ha.SecretKey(f"0.NA/{PREFIX}", 300, b"secret")
    out = ha.run(m.tcp, ha.CREATE_HANDLE, ha.create_body(f"{PREFIX}/H-1", [
        ha.value(1, "URL", b"https://x")]), key)
    assert out.challenge is None and out.code == ha.SERVER_NOT_RESP, out.replies
    assert p.grpc in out.replies[0].message
    # Nothing was written: the mirror's sequence is still the primary's.
    assert sequence(m) == sequence(p)
    # The CLI says the same.
    r = m.cli("id", "create", f"{PREFIX}/C-1", "-v", "1:URL:https://x", check=False)
    assert r.returncode != 0 and p.grpc in r.stderr, r.stderr


def test_following_needs_the_operator_or_a_replicate_token(pair, pb):
    p, _ = pair
    pb2 = pb[0]
    follow = stub(p, pb, "ReplicationStub").Follow
    with pytest.raises(grpc.RpcError) as e:
        next(iter(follow(pb2.FollowRequest(after=0), timeout=10)))
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    scoped = stub(p, pb, "TokensStub").CreateToken(pb2.CreateTokenRequest(
        name="reader", permissions=["read"], prefixes=[PREFIX]), metadata=meta(p)).secret
    with pytest.raises(grpc.RpcError) as e:
        next(iter(follow(pb2.FollowRequest(after=0), timeout=10,
                         metadata=(("authorization", f"Bearer {scoped}"),))))
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    first = next(iter(follow(pb2.FollowRequest(after=0), timeout=10, metadata=meta(p))))
    assert first.changes and first.changes[0].sequence == 1
    # A replicate token: made alone, with no prefix, it follows, and it
    # can do nothing else.
    tokens = stub(p, pb, "TokensStub")
    for perms, prefixes in ((["replicate", "read"], []), (["replicate"], [PREFIX])):
        with pytest.raises(grpc.RpcError) as e:
            tokens.CreateToken(pb2.CreateTokenRequest(
                name="mirror", permissions=perms, prefixes=prefixes), metadata=meta(p))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, perms
    made = tokens.CreateToken(pb2.CreateTokenRequest(name="mirror", permissions=["replicate"]),
                              metadata=meta(p))
    assert list(made.token.permissions) == ["replicate"]
    replicate = (("authorization", f"Bearer {made.secret}"),)
    first = next(iter(follow(pb2.FollowRequest(after=0), timeout=10, metadata=replicate)))
    assert first.changes and first.changes[0].sequence == 1
    ids = stub(p, pb)
    with pytest.raises(grpc.RpcError) as e:
        ids.ListIdentifiers(pb2.ListIdentifiersRequest(prefix=PREFIX), metadata=replicate)
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.RpcError) as e:
        ids.CreateIdentifier(request(pb2, 990_001), metadata=replicate)
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_a_mirror_follows_with_a_replicate_token(tmp_path, pb):
    pb2 = pb[0]
    p = primary(tmp_path / "p").start()
    m = None
    try:
        stub(p, pb, "PrefixesStub").CreatePrefix(pb2.CreatePrefixRequest(prefix=PREFIX),
                                                 metadata=meta(p))
        made = p.cli("token", "create", "--perm", "replicate", "--name", "mirror").stdout
        secret = next(w for w in made.split() if w.startswith("IDNODE_TOKEN=")).split("=", 1)[1]
        token_file = tmp_path / "replicate.token"
        token_file.write_text(secret + "\n")
        token_file.chmod(0o600)
        m = Node(tmp_path / "m", demo=False, extra=[
            "--no-quic", "--mirror-of", p.grpc, "--mirror-token-file", str(token_file)]).start()
        stub(p, pb).CreateIdentifier(request(pb2, 990_002), metadata=meta(p))
        caught_up(m, p)
        assert exported(m, pb) == exported(p, pb)
    finally:
        if m:
            m.stop()
        p.stop()


def test_a_mirror_catches_up_from_a_copy(tmp_path, pb):
    """Three ways a primary may no longer hold what a mirror misses: its
    change log was trimmed by its retention, the mirror is ahead of it (a
    primary started over, or restored from an older backup), and its log
    starts above 1 for another reason (restored from a backup of a mirror
    that loaded a copy)."""
    retention = tmp_path / "retention.toml"
    retention.write_text("[storage]\nchange_log_hours = 0\nchange_log_min_entries = 0\n")
    p1 = primary(tmp_path / "p1", extra=["--config", str(retention)]).start()
    p2 = primary(tmp_path / "p2").start()
    m = p3 = m3 = None
    try:
        p1.cli("prefix", "create", PREFIX)
        batch_create(p1, pb, range(500))
        p2.cli("prefix", "create", "88.666")
        p2.cli("id", "create", "88.666/ONLY-HERE", "-v", "1:URL:https://example.org/p2")
        # `idnode compact` trims what the retention no longer keeps: all
        # but the newest change.
        time.sleep(1.1)
        p1.cli("compact")
        follow = stub(p1, pb, "ReplicationStub").Follow(pb[0].FollowRequest(after=0),
                                                          timeout=10, metadata=meta(p1))
        first = next(iter(follow))
        assert first.snapshot.begin and not first.changes, first
        follow.cancel()
        m = mirror_of(tmp_path / "m", p1, tmp_path).start()
        caught_up(m, p1)
        assert exported(m, pb) == exported(p1, pb)
        assert status_json(m)["mirror"]["snapshots_loaded"] == 1
        batch_create(p1, pb, range(500, 510))
        caught_up(m, p1)
        assert exported(m, pb) == exported(p1, pb)
        assert sequence(p2) < sequence(m)
        m.stop()
        # The same mirror, now of p2: ahead of it, so it loads a copy.
        m = mirror_of(tmp_path / "m", p2, tmp_path).start()
        wait_for("the copy", lambda: status_json(m)["mirror"]["snapshots_loaded"] == 1)
        caught_up(m, p2)
        assert exported(m, pb) == exported(p2, pb)
        assert status_json(m)["mirror"]["snapshots_loaded"] == 1
        assert hc.udp_resolve(m.udp, f"{PREFIX}/M-000001").code != hc.SUCCESS
        assert hc.udp_resolve(m.udp, "88.666/ONLY-HERE").code == hc.SUCCESS
        # It follows p2's log from the copy on.
        p2.cli("id", "create", "88.666/AFTER", "-v", "1:URL:https://example.org/after")
        caught_up(m, p2)
        assert exported(m, pb) == exported(p2, pb)
        # A backup of that mirror holds no change log below its copy: a
        # primary restored from it starts its log above 1.
        backup = tmp_path / "backup"
        m.cli("backup", str(backup))
        p3_dir = tmp_path / "p3"
        m.cli("restore", str(backup), "--data-dir", str(p3_dir))
        (p3_dir / "admin.token").write_text(p2.token + "\n")
        (p3_dir / "admin.token").chmod(0o600)
        p3 = primary(p3_dir).start()
        m3 = mirror_of(tmp_path / "m3", p3, tmp_path).start()
        caught_up(m3, p3)
        assert exported(m3, pb) == exported(p3, pb)
        assert status_json(m3)["mirror"]["snapshots_loaded"] == 1
        p3.cli("id", "create", "88.666/ON-P3", "-v", "1:URL:https://example.org/p3")
        caught_up(m3, p3)
        assert exported(m3, pb) == exported(p3, pb)
    finally:
        for n in (m3, p3, m, p2, p1):
            if n:
                n.stop()


def test_a_recursive_node_fails_over_to_the_mirror(tmp_path):
    top = Node(tmp_path / "top", demo=False, extra=["--no-quic", "--no-dns"]).start()
    p = primary(tmp_path / "primary", extra=["--no-dns"]).start()
    nodes = [top, p]
    try:
        top.cli("prefix", "create", "88")
        p.cli("prefix", "create", PREFIX)
        for n in range(1, 4):
            p.cli("id", "create", f"{PREFIX}/FAIL-{n}", "-v", f"1:URL:https://example.org/f{n}")
        m = mirror_of(tmp_path / "mirror", p, tmp_path, extra=["--no-dns"]).start()
        nodes.append(m)
        caught_up(m, p)
        # The delegation lists the primary's site, then the mirror's.
        r = top.cli("prefix", "delegate", PREFIX, "--to", urls(p), "--mirror", urls(m))
        assert "mirrors" in r.stdout, r.stdout
        rec = Node(tmp_path / "recursive", demo=False,
                   extra=["--no-quic", "--no-dns", "--root", urls(top)]).start()
        nodes.append(rec)
        r = hc.udp_resolve(rec.udp, f"{PREFIX}/FAIL-1", timeout=10)
        assert r.code == hc.SUCCESS, r.message
        p.stop()
        for n in (2, 3):
            r = hc.udp_resolve(rec.udp, f"{PREFIX}/FAIL-{n}", timeout=20)
            assert r.code == hc.SUCCESS, r.message
            assert r.values[0]["data"] == f"https://example.org/f{n}".encode()
        r = hc.tcp_resolve(rec.tcp, f"{PREFIX}/NOT-THERE")
        assert r.code == hc.HANDLE_NOT_FOUND, r.message
    finally:
        for n in reversed(nodes):
            n.stop()


def test_a_mirror_follows_a_primary_over_tls_checked_by_pin(tmp_path):
    cfg = tmp_path / "primary.toml"
    cfg.write_text("[grpc]\ntls = true\n")
    p = Node(tmp_path / "primary", extra=["--config", str(cfg), "--no-quic"]).start()
    nodes = [p]
    try:
        pin = p.addresses["grpc_tls_sha256"]
        token_file = tmp_path / "primary.token"
        token_file.write_text(p.token)
        token_file.chmod(0o600)
        follow = ["--no-quic", "--mirror-of", f"https://{p.grpc}",
                  "--mirror-token-file", str(token_file)]
        m = Node(tmp_path / "mirror", demo=False, extra=[*follow, "--mirror-pin", pin]).start()
        nodes.append(m)
        caught_up(m, p)
        demo = "88.100.1/CNC-LATHE-202600000"
        r = hc.udp_resolve(m.udp, demo)
        assert r.code == hc.SUCCESS and r.values == hc.udp_resolve(p.udp, demo).values
        # Another pin: the mirror does not follow, and says why.
        wrong = Node(tmp_path / "wrong", demo=False,
                     extra=[*follow, "--mirror-pin", "00" * 32]).start()
        nodes.append(wrong)
        s = wait_for("the pin refusal", lambda: (status_json(wrong)["mirror"]["last_error"]
                                                 and status_json(wrong)["mirror"]), 30)
        assert not s["connected"] and s["applied_sequence"] == 0, s
        assert sequence(wrong) == 0
    finally:
        for n in reversed(nodes):
            n.stop()


def test_a_mirror_promoted_to_primary_takes_writes_and_keeps_its_sequence(tmp_path):
    p = primary(tmp_path / "primary").start()
    m = promoted = None
    try:
        p.cli("prefix", "create", PREFIX)
        p.cli("id", "create", f"{PREFIX}/KEPT", "-v", "1:URL:https://example.org/kept")
        m = mirror_of(tmp_path / "mirror", p, tmp_path).start()
        caught_up(m, p)
        last = sequence(p)
        m.stop()
        p.stop()
        # As docs/operations.md says: the old primary's token, no [mirror].
        (m.data_dir / "admin.token").write_text(p.token + "\n")
        promoted = Node(m.data_dir, demo=False, extra=["--no-quic"]).start()
        # Its own site on the prefix it homes: one change after the copy's.
        assert sequence(promoted) == last + 1
        promoted.cli("id", "create", f"{PREFIX}/NEW", "-v", "1:URL:https://example.org/new")
        assert sequence(promoted) == last + 2
        for identifier in (f"{PREFIX}/KEPT", f"{PREFIX}/NEW"):
            assert hc.udp_resolve(promoted.udp, identifier).code == hc.SUCCESS
    finally:
        for n in (promoted, m, p):
            if n:
                n.stop()
