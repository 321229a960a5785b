"""End-to-end: the gRPC listener's limits ([grpc] in the config) with
grpcio, a client that is not ours: a scoped token over its write rate gets
RESOURCE_EXHAUSTED naming the limit (unary calls and batch items alike)
and what it was refused is not stored, while the operator is not limited;
a message over the size limit is refused and nothing is stored."""
import re

import grpc
import pytest

from conftest import Node

PREFIX = "88.350"
RATE = 5


@pytest.fixture(scope="module")
def node(tmp_path_factory, pb):
    d = tmp_path_factory.mktemp("limits")
    cfg = d / "node.toml"
    cfg.write_text(f"[grpc]\ntoken_writes_per_second = {RATE}\nmax_message_bytes = 65536\n")
    n = Node(d / "data", extra=["--config", str(cfg)], demo=False).start()
    pb2, pb2_grpc = pb
    channel = grpc.insecure_channel(n.grpc)
    n.pb2, n.ids = pb2, pb2_grpc.IdentifiersStub(channel)
    n.operator = (("authorization", f"Bearer {n.token}"),)
    pb2_grpc.PrefixesStub(channel).CreatePrefix(pb2.CreatePrefixRequest(prefix=PREFIX),
                                                metadata=n.operator)
    r = n.cli("token", "create", "--prefix", PREFIX, "--perm", "all")
    token = re.search(r"export IDNODE_TOKEN=(\S+)", r.stdout).group(1)
    n.scoped = (("authorization", f"Bearer {token}"),)
    yield n
    n.stop()


def item(node, identifier, data=b"https://example.com/x"):
    return node.pb2.CreateIdentifierRequest(
        identifier=identifier, values=[node.pb2.Value(index=1, type="URL", data=data)])


def exists(node, identifier):
    try:
        node.ids.GetIdentifier(node.pb2.GetIdentifierRequest(identifier=identifier),
                               metadata=node.operator)
        return True
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.NOT_FOUND
        return False


def test_a_scoped_token_over_its_write_rate_is_refused(node):
    made, refused = [], []
    for i in range(4 * RATE):
        name = f"{PREFIX}/RATE-{i}"
        try:
            node.ids.CreateIdentifier(item(node, name), metadata=node.scoped, timeout=10)
            made.append(name)
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, e
            assert "token_writes_per_second" in e.details()
            refused.append(name)
    # A second's worth of burst passes; twenty calls in a row cannot all.
    assert len(made) >= RATE and refused, (made, refused)
    assert all(exists(node, n) for n in made)
    assert not any(exists(node, n) for n in refused)


def test_batch_items_over_the_rate_are_refused_one_by_one(node):
    items = [item(node, f"{PREFIX}/BATCH-{i}") for i in range(50)]
    results = list(node.ids.BatchCreate(iter(items), metadata=node.scoped, timeout=30))
    assert [r.item for r in results] == list(range(50))
    ok = [r for r in results if r.code == 0]
    limited = [r for r in results if r.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]]
    assert len(ok) + len(limited) == 50 and limited, results
    assert all("token_writes_per_second" in r.message for r in limited)
    for r in results:
        assert exists(node, f"{PREFIX}/BATCH-{r.item}") == (r.code == 0)


def test_the_operator_is_not_limited(node):
    for i in range(4 * RATE):
        node.ids.CreateIdentifier(item(node, f"{PREFIX}/OP-{i}"), metadata=node.operator,
                                  timeout=10)


def test_a_message_over_the_size_limit_is_refused(node):
    big = item(node, f"{PREFIX}/BIG", data=b"x" * 100_000)
    with pytest.raises(grpc.RpcError) as e:
        node.ids.CreateIdentifier(big, metadata=node.operator, timeout=10)
    assert e.value.code() == grpc.StatusCode.OUT_OF_RANGE
    assert "65536" in e.value.details()
    assert not exists(node, f"{PREFIX}/BIG")
