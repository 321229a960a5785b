"""Scoped tokens against the real binary, with grpcio: an enterprise token
for 88.100.1 changes nothing under 88.100.2 on any call, and works under
88.100.1; the `idnode token` command makes, lists and revokes them."""
import os
import re
import subprocess

import grpc
import pytest

from conftest import Node, idnode_bin

PRIVATE = 0x0C  # admin read and write only


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    n = Node(tmp_path_factory.mktemp("tokens"), demo=False).start()
    yield n
    n.stop()


class Api:
    """The three services on one channel, sending `token` (if any)."""

    def __init__(self, node, pb, token=None):
        self.pb2, pb2_grpc = pb
        channel = grpc.insecure_channel(node.grpc)
        self.prefixes = pb2_grpc.PrefixesStub(channel)
        self.ids = pb2_grpc.IdentifiersStub(channel)
        self.tokens = pb2_grpc.TokensStub(channel)
        self.meta = [("authorization", f"Bearer {token}")] if token else []

    def call(self, stub, method, request):
        return getattr(stub, method)(request, metadata=self.meta, timeout=30)

    def url(self, index, data, permissions=None):
        v = self.pb2.Value(index=index, type="URL", data=data.encode())
        if permissions is not None:
            v.permissions = permissions
        return v

    def create(self, identifier, *values, overwrite=False):
        return self.pb2.CreateIdentifierRequest(identifier=identifier, values=list(values),
                                                overwrite=overwrite)

    def get(self, identifier):
        return self.call(self.ids, "GetIdentifier",
                         self.pb2.GetIdentifierRequest(identifier=identifier))

    def listing(self, prefix):
        return list(self.call(self.ids, "ListIdentifiers",
                              self.pb2.ListIdentifiersRequest(prefix=prefix, page_size=1000))
                    .identifiers)

    def batch(self, *items):
        return list(self.ids.BatchCreate(iter(items), metadata=self.meta, timeout=30))


def cli(node, *args, token=None):
    env = {**os.environ, "IDNODE_GRPC": f"http://{node.grpc}",
           "IDNODE_TOKEN_FILE": str(node.data_dir / "admin.token")}
    env.pop("IDNODE_TOKEN", None)
    if token:
        env["IDNODE_TOKEN"] = token
    return subprocess.run([idnode_bin(), *args], capture_output=True, text=True, env=env,
                          timeout=120)


def make_token(node, *args):
    r = cli(node, "token", "create", *args)
    assert r.returncode == 0, r.stdout + r.stderr
    match = re.search(r"export IDNODE_TOKEN=(\S+)", r.stdout)
    assert match, r.stdout
    secret = match.group(1)
    token_id = re.search(r"created token ([0-9a-f]+)", r.stdout).group(1)
    assert secret.startswith(token_id + ".")
    assert "shown only now" in r.stdout
    return token_id, secret


def snapshot(op, prefix):
    """Everything an operator sees under `prefix`: records and the list."""
    ids = op.listing(prefix)
    return ids, [op.get(i) for i in ids], sorted(
        (p.prefix, p.homed) for p in op.call(op.prefixes, "ListPrefixes",
                                             op.pb2.ListPrefixesRequest()).prefixes)


def test_an_enterprise_token_stays_in_its_prefix(node, pb):
    op = Api(node, pb, node.token)
    pb2 = op.pb2
    for p in ["88.100.1", "88.100.2"]:
        op.call(op.prefixes, "CreatePrefix", pb2.CreatePrefixRequest(prefix=p))
        op.call(op.ids, "CreateIdentifier",
                op.create(f"{p}/ORDER-1", op.url(1, "public"), op.url(2, "secret", PRIVATE)))
    token_id, secret = make_token(
        node, "--prefix", "88.100.1", "--perm",
        "add_handle,delete_handle,add_value,modify_value,remove_value",
        "--perm", "read,list,add_derived_prefix", "--name", "ACME plant 1",
        "--expires", "30d", "--max-identifiers", "100")
    acme = Api(node, pb, secret)

    # Against 88.100.2: every call is refused and nothing changes.
    before = snapshot(op, "88.100.2")
    other = "88.100.2/ORDER-1"
    refused = [
        (acme.ids, "CreateIdentifier", acme.create("88.100.2/NEW", acme.url(1, "x")),
         "add_handle"),
        (acme.ids, "CreateIdentifier", acme.create(other, acme.url(1, "x"), overwrite=True),
         "add_handle"),
        (acme.ids, "AddValues", pb2.AddValuesRequest(identifier=other,
                                                     values=[acme.url(3, "x")]), "add_value"),
        (acme.ids, "ModifyValues", pb2.ModifyValuesRequest(identifier=other,
                                                           values=[acme.url(1, "changed")]),
         "modify_value"),
        (acme.ids, "RemoveValues", pb2.RemoveValuesRequest(identifier=other, indexes=[1]),
         "remove_value"),
        (acme.ids, "DeleteIdentifier", pb2.DeleteIdentifierRequest(identifier=other),
         "delete_handle"),
        (acme.ids, "ListIdentifiers", pb2.ListIdentifiersRequest(prefix="88.100.2"),
         "list_handles"),
        (acme.prefixes, "CreatePrefix", pb2.CreatePrefixRequest(prefix="88.100.2.5"),
         "add_derived_prefix"),
        (acme.prefixes, "DeletePrefix", pb2.DeletePrefixRequest(prefix="88.100.2"),
         "delete_derived_prefix"),
        (acme.prefixes, "CreatePrefix", pb2.CreatePrefixRequest(prefix="88.100.3"),
         "add_derived_prefix"),
        (acme.ids, "Compact", pb2.CompactRequest(), "operator"),
    ]
    for stub, method, request, permission in refused:
        with pytest.raises(grpc.RpcError) as e:
            acme.call(stub, method, request)
        assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED, (method, e.value.details())
        assert f"token {token_id} lacks {permission}" in e.value.details(), e.value.details()
    # Private values stay hidden: the token's read covers 88.100.1 only.
    seen = acme.get(other)
    assert [v.index for v in seen.values] == [1]
    # A batch item under 88.100.2 fails alone.
    results = acme.batch(acme.create("88.100.2/B", acme.url(1, "x")),
                         acme.create("88.100.1/B", acme.url(1, "x")))
    assert [r.code for r in results] == [7, 0]
    assert "lacks add_handle on 88.100.2" in results[0].message
    assert snapshot(op, "88.100.2") == before

    # Under 88.100.1 the same calls work.
    mine = "88.100.1/ORDER-1"
    assert [v.index for v in acme.get(mine).values] == [1, 2]
    acme.call(acme.ids, "CreateIdentifier", acme.create("88.100.1/NEW", acme.url(1, "x")))
    acme.call(acme.ids, "AddValues", pb2.AddValuesRequest(identifier=mine,
                                                          values=[acme.url(3, "x")]))
    acme.call(acme.ids, "ModifyValues", pb2.ModifyValuesRequest(identifier=mine,
                                                                values=[acme.url(1, "new")]))
    acme.call(acme.ids, "RemoveValues", pb2.RemoveValuesRequest(identifier=mine, indexes=[3]))
    assert acme.listing("88.100.1") == ["88.100.1/B", "88.100.1/NEW", "88.100.1/ORDER-1"]
    acme.call(acme.prefixes, "CreatePrefix", pb2.CreatePrefixRequest(prefix="88.100.1.5"))
    acme.call(acme.ids, "CreateIdentifier", acme.create("88.100.1.5/X", acme.url(1, "x")))
    acme.call(acme.ids, "DeleteIdentifier", pb2.DeleteIdentifierRequest(identifier="88.100.1/NEW"))
    assert op.get(mine).values[0].data == b"new"

    # Anonymous callers may read public values, not list.
    anonymous = Api(node, pb)
    assert [v.index for v in anonymous.get(mine).values] == [1]
    with pytest.raises(grpc.RpcError) as e:
        anonymous.listing("88.100.1")
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED

    # The token counts what it created; the operator sees it, not its secret.
    listed = cli(node, "token", "list")
    assert listed.returncode == 0, listed.stderr
    line = next(l for l in listed.stdout.splitlines() if l.startswith(token_id))
    assert "3/100" in line and "ACME plant 1" in line and "active" in line
    assert secret.split(".", 1)[1] not in listed.stdout
    tokens = op.call(op.tokens, "ListTokens", pb2.ListTokensRequest()).tokens
    ids = [t.id for t in tokens]
    assert "admin" in ids and token_id in ids, ids

    # The token works through the command line too (IDNODE_TOKEN).
    r = cli(node, "id", "create", "88.100.1/CLI", "-v", "1:URL:https://example.com", token=secret)
    assert r.returncode == 0, r.stderr
    r = cli(node, "id", "create", "88.100.2/CLI", "-v", "1:URL:https://example.com", token=secret)
    assert r.returncode == 2 and "lacks add_handle on 88.100.2" in r.stderr, r.stderr
    # A scoped token may not manage tokens.
    r = cli(node, "token", "list", token=secret)
    assert r.returncode == 2 and "lacks operator" in r.stderr, r.stderr

    # Revoked: the next call is refused, on the open channel too.
    r = cli(node, "token", "revoke", token_id)
    assert r.returncode == 0 and f"revoked token {token_id}" in r.stdout, r.stdout + r.stderr
    with pytest.raises(grpc.RpcError) as e:
        acme.get(mine)
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "revoked" in e.value.details()
    assert "revoked" in next(l for l in cli(node, "token", "list").stdout.splitlines()
                             if l.startswith(token_id))


@pytest.mark.parametrize("args, message", [
    (["--prefix", "88.100.1", "--perm", "fly"], "unknown permission `fly`"),
    (["--perm", "read"], "--prefix"),
    (["--prefix", "88..1", "--perm", "read"], "--prefix `88..1`"),
    (["--prefix", "88.100.1", "--perm", "read", "--expires", "3x"], "--expires `3x`"),
    (["--prefix", "88.100.1", "--perm", "operator"], "operator"),
])
def test_bad_token_input_exits_2(node, args, message):
    r = cli(node, "token", "create", *args)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert message in r.stderr, r.stderr


def test_operator_tokens_and_quotas(node, pb):
    op = Api(node, pb, node.token)
    op.call(op.prefixes, "CreatePrefix", op.pb2.CreatePrefixRequest(prefix="88.200"))
    _, ops = make_token(node, "--perm", "operator", "--name", "second operator")
    second = Api(node, pb, ops)
    second.call(second.ids, "Compact", second.pb2.CompactRequest())
    _, limited = make_token(node, "--prefix", "88.200", "--perm", "create", "--max-identifiers", "2")
    api = Api(node, pb, limited)
    results = api.batch(*[api.create(f"88.200/Q{i}", api.url(1, "x")) for i in range(3)])
    assert [r.code for r in results] == [0, 0, 8]
    with pytest.raises(grpc.RpcError) as e:
        api.call(api.ids, "CreateIdentifier", api.create("88.200/Q9", api.url(1, "x")))
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_the_operator_token_is_rotated_in_place(tmp_path, pb):
    """`idnode token rotate-operator`: the node writes a new operator token
    over admin.token (0600), the old one is refused at once and after a
    restart, the new one works."""
    pb2, pb2_grpc = pb
    n = Node(tmp_path / "data", demo=False).start()
    try:
        old = n.token
        out = n.cli("token", "rotate-operator").stdout
        file = n.data_dir / "admin.token"
        assert str(file) in out and "refused" in out, out
        new = file.read_text().strip()
        assert new and new != old and new not in out
        assert oct(os.stat(file).st_mode & 0o777) == "0o600"
        tokens = pb2_grpc.TokensStub(grpc.insecure_channel(n.grpc))
        with pytest.raises(grpc.RpcError) as e:
            tokens.ListTokens(pb2.ListTokensRequest(),
                              metadata=(("authorization", f"Bearer {old}"),))
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
        listed = tokens.ListTokens(pb2.ListTokensRequest(),
                                   metadata=(("authorization", f"Bearer {new}"),))
        assert any(t.id == "admin" for t in listed.tokens)
        # A scoped token cannot rotate it.
        scoped = tokens.CreateToken(pb2.CreateTokenRequest(
            name="reader", prefixes=["88.100"], permissions=["read"]),
            metadata=(("authorization", f"Bearer {new}"),)).secret
        with pytest.raises(grpc.RpcError) as e:
            tokens.RotateOperatorToken(pb2.RotateOperatorTokenRequest(),
                                       metadata=(("authorization", f"Bearer {scoped}"),))
        assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert file.read_text().strip() == new
        # After a restart: the same.
        assert n.stop() == 0
        n.start()
        assert n.token == new
        with pytest.raises(grpc.RpcError) as e:
            pb2_grpc.TokensStub(grpc.insecure_channel(n.grpc)).ListTokens(
                pb2.ListTokensRequest(), metadata=(("authorization", f"Bearer {old}"),))
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
        shown = n.cli("token", "rotate-operator", "--show").stdout.strip().splitlines()[-1]
        assert shown == (n.data_dir / "admin.token").read_text().strip() != new
    finally:
        n.stop()
