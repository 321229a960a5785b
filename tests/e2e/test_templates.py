"""End-to-end: metadata templates per prefix (docs/templates.md) against the
real binary. A template set with `idnode prefix template set` is enforced on
every write path: gRPC CreateIdentifier, AddValues, ModifyValues and
RemoveValues, BatchCreate and `idnode import`, Handle-protocol
administration (hdl_admin.py) and the HTTP REST API. A write that breaks a rule is refused with the
identifier, the field and the rule named, and nothing is stored; a valid one
lands. A sub-prefix inherits its parent's template unless it has its own; the
demo data satisfies the demo templates."""
import json
import re
import urllib.error
import urllib.request

import grpc
import pytest

import handle_client as hc
import hdl_admin as ha
from conftest import Node

PREFIX = "88.500"
CHILD = "88.500.1"
OWN = "88.500.2"
NA = f"0.NA/{PREFIX}"
SECRET = b"t3mplate"
INVALID_VALUE = 202  # Handle response code, protocol 2.5 and later

TEMPLATE = {
    "strict": False,
    "fields": [
        {"type": "URL", "kind": "url", "required": True, "max_count": 1},
        {"type": "productName", "kind": "text", "required": True, "max_length": 20},
        {"type": "quantity", "kind": "integer", "min": 1, "max": 1000},
        {"type": "weight", "kind": "decimal", "min": "0", "max": "99.5"},
        {"type": "productionDate", "kind": "date", "min": "2000-01-01"},
        {"type": "status", "kind": "enum", "values": ["active", "recalled"]},
    ],
}

GOOD = [
    (1, "URL", "https://example.com/p/1"),
    (2, "productName", "Gear pump"),
    (3, "quantity", "12"),
    (4, "weight", "7.25"),
    (5, "productionDate", "2026-03-24"),
    (6, "status", "active"),
]


def replaced(at, value):
    values = list(GOOD)
    values[at] = value
    return values


# For each kind of rule: values that break it, the field named, words of the rule.
BROKEN = [
    ("url", replaced(0, (1, "URL", "not a url")), "values[0].data", "absolute http or https URL"),
    ("text", replaced(1, (2, "productName", "a name far longer than twenty")), "values[1].data",
     "at most 20 characters"),
    ("integer", replaced(2, (3, "quantity", "1001")), "values[2].data", "integer from 1 to 1000"),
    ("decimal", replaced(3, (4, "weight", "99.51")), "values[3].data", "decimal number"),
    ("date", replaced(4, (5, "productionDate", "2026-02-30")), "values[4].data", "YYYY-MM-DD"),
    ("enum", replaced(5, (6, "status", "lost")), "values[5].data", "one of"),
    ("max_count", GOOD + [(7, "URL", "https://example.com/other")], "values[6].type",
     "at most 1 value of type URL"),
    ("required", GOOD[:1] + GOOD[2:], "values", "a value of type productName is required"),
]
IDS = [b[0] for b in BROKEN]


@pytest.fixture(scope="module")
def world(tmp_path_factory, pb):
    """A node homing 88.500 (template set with the CLI), 88.500.1 (none of
    its own: inherits) and 88.500.2 (a looser one of its own); the prefix
    record of 88.500 holds an HS_SECKEY admin for Handle administration."""
    tmp = tmp_path_factory.mktemp("templates")
    node = Node(tmp / "node", demo=False).start()
    pb2, pb2_grpc = pb
    channel = grpc.insecure_channel(node.grpc)
    node.pb2 = pb2
    node.meta = (("authorization", f"Bearer {node.token}"),)
    node.prefixes = pb2_grpc.PrefixesStub(channel)
    node.ids = pb2_grpc.IdentifiersStub(channel)
    for p in (PREFIX, CHILD, OWN):
        node.cli("prefix", "create", p)
    path = tmp / "template.json"
    path.write_text(json.dumps(TEMPLATE))
    out = node.cli("prefix", "template", "set", PREFIX, "--file", str(path)).stdout
    assert "set the template of prefix 88.500 (6 fields)" in out
    own = tmp / "own.json"
    own.write_text(json.dumps({"fields": [{"type": "URL", "kind": "url", "schemes": ["urn"]}]}))
    node.cli("prefix", "template", "set", OWN, "--file", str(own))
    node.ids.AddValues(pb2.AddValuesRequest(identifier=NA, values=[
        pb2.Value(index=300, type="HS_SECKEY", data=SECRET, permissions=0x0C),
        pb2.Value(index=101, type="HS_ADMIN", data=ha.hs_admin(ha.HS_ADMIN_ALL, NA, 300)),
    ]), metadata=node.meta)
    node.tmp = tmp
    yield node
    node.stop()


def pb_values(node, values):
    return [node.pb2.Value(index=i, type=t, data=d.encode()) for i, t, d in values]


def stored(node, identifier):
    """{index: data} over gRPC, or None when the identifier is not there."""
    try:
        r = node.ids.GetIdentifier(node.pb2.GetIdentifierRequest(identifier=identifier),
                                   metadata=node.meta)
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.NOT_FOUND, e
        return None
    return {v.index: v.data for v in r.values}


def refused(call, field, identifier, rule, defined_at=PREFIX):
    with pytest.raises(grpc.RpcError) as e:
        call()
    details = e.value.details()
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, details
    assert details.startswith(f"{field}: identifier {identifier}: "), details
    assert rule in details, details
    assert f"(template of prefix {defined_at})" in details, details
    return details


def test_the_cli_shows_the_template_and_where_it_comes_from(world):
    out = world.cli("prefix", "template", "get", PREFIX)
    assert json.loads(out.stdout) == {
        "strict": False,
        "fields": [dict(f, **{"required": True}) if f.get("required") else f
                   for f in TEMPLATE["fields"]],
    }
    assert out.stderr == ""
    child = world.cli("prefix", "template", "get", CHILD)
    assert json.loads(child.stdout) == json.loads(out.stdout)
    assert "inherits this one from 88.500" in child.stderr
    assert "template: its own" in world.cli("prefix", "get", PREFIX).stdout
    bad = world.tmp / "bad.json"
    bad.write_text(json.dumps({"fields": [{"type": "n", "kind": "integer", "min": 5, "max": 1}]}))
    r = world.cli("prefix", "template", "set", PREFIX, "--file", str(bad), check=False)
    assert r.returncode == 2 and "fields[0].max: 1 is below min 5" in r.stderr, r.stderr
    r = world.cli("prefix", "template", "get", "88", check=False)
    assert r.returncode == 2 and "no template applies to prefix 88" in r.stderr, r.stderr


@pytest.mark.parametrize("rule,values,field,words", BROKEN, ids=IDS)
def test_grpc_create_refuses_each_rule(world, rule, values, field, words):
    identifier = f"{CHILD}/C-{rule}"
    refused(lambda: world.ids.CreateIdentifier(world.pb2.CreateIdentifierRequest(
        identifier=identifier, values=pb_values(world, values)), metadata=world.meta),
        field, identifier, words)
    assert stored(world, identifier) is None
    assert hc.udp_resolve(world.udp, identifier).code == hc.HANDLE_NOT_FOUND


def test_grpc_value_changes_are_checked(world):
    pb2, ids, meta = world.pb2, world.ids, world.meta
    identifier = f"{PREFIX}/VALUES"
    ids.CreateIdentifier(pb2.CreateIdentifierRequest(identifier=identifier,
                                                     values=pb_values(world, GOOD)), metadata=meta)
    before = stored(world, identifier)
    refused(lambda: ids.AddValues(pb2.AddValuesRequest(identifier=identifier, values=pb_values(
        world, [(8, "note", "free"), (9, "quantity", "0")])), metadata=meta),
        "values[1].data", identifier, "integer from 1 to 1000")
    refused(lambda: ids.ModifyValues(pb2.ModifyValuesRequest(identifier=identifier, values=pb_values(
        world, [(5, "productionDate", "1999-12-31")])), metadata=meta),
        "values[0].data", identifier, "of at least 2000-01-01")
    refused(lambda: ids.RemoveValues(pb2.RemoveValuesRequest(identifier=identifier, indexes=[6, 1]),
                                     metadata=meta),
            "indexes[1]", identifier, "a value of type URL is required")
    assert stored(world, identifier) == before
    # Valid changes land.
    ids.AddValues(pb2.AddValuesRequest(identifier=identifier, values=pb_values(
        world, [(8, "note", "free")])), metadata=meta)
    ids.ModifyValues(pb2.ModifyValuesRequest(identifier=identifier, values=pb_values(
        world, [(6, "status", "recalled")])), metadata=meta)
    ids.RemoveValues(pb2.RemoveValuesRequest(identifier=identifier, indexes=[3]), metadata=meta)
    after = stored(world, identifier)
    assert after[6] == b"recalled" and after[8] == b"free" and 3 not in after


def test_batch_create_judges_each_item(world):
    pb2 = world.pb2
    items = [pb2.CreateIdentifierRequest(identifier=f"{CHILD}/B-{rule}",
                                         values=pb_values(world, values))
             for rule, values, _, _ in BROKEN]
    items.append(pb2.CreateIdentifierRequest(identifier=f"{CHILD}/B-GOOD",
                                             values=pb_values(world, GOOD)))
    results = list(world.ids.BatchCreate(iter(items), metadata=world.meta, timeout=30))
    assert len(results) == len(items)
    for (rule, _, field, words), result in zip(BROKEN, results):
        identifier = f"{CHILD}/B-{rule}"
        assert result.code == 3, result  # INVALID_ARGUMENT
        assert result.identifier == identifier
        assert result.message.startswith(f"{field}: identifier {identifier}: "), result.message
        assert words in result.message, result.message
        assert stored(world, identifier) is None
    assert results[-1].code == 0, results[-1]
    assert stored(world, f"{CHILD}/B-GOOD")[1] == b"https://example.com/p/1"


def test_import_reports_the_refused_lines(world):
    lines = [json.dumps({"identifier": f"{CHILD}/IMP-{rule}",
                         "values": [{"index": i, "type": t, "data": d} for i, t, d in values]})
             for rule, values, _, _ in BROKEN]
    lines.append(json.dumps({"identifier": f"{CHILD}/IMP-GOOD",
                             "values": [{"index": i, "type": t, "data": d} for i, t, d in GOOD]}))
    path = world.tmp / "import.jsonl"
    path.write_text("\n".join(lines) + "\n")
    r = world.cli("import", "--quiet", str(path), check=False)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "imported 1 identifiers" in r.stdout, r.stdout
    for n, (rule, _, field, words) in enumerate(BROKEN, start=1):
        identifier = f"{CHILD}/IMP-{rule}"
        assert f"line {n}: {identifier}: {field}: identifier {identifier}: " in r.stdout, r.stdout
        assert stored(world, identifier) is None
    assert stored(world, f"{CHILD}/IMP-GOOD") is not None


def handle_values(values):
    return [ha.value(i, t, d) for i, t, d in values]


def seckey():
    return ha.SecretKey(NA, 300, SECRET)


@pytest.mark.parametrize("rule,values,field,words", BROKEN, ids=IDS)
def test_handle_admin_create_refuses_each_rule(world, rule, values, field, words):
    identifier = f"{PREFIX}/H-{rule}"
    out = ha.run(world.tcp, ha.CREATE_HANDLE,
                 ha.create_body(identifier, handle_values(values)), seckey())
    reply = out.replies[0]
    assert reply.code == INVALID_VALUE, out.replies
    assert reply.message.startswith(f"{field}: identifier {identifier}: "), reply.message
    assert words in reply.message, reply.message
    assert stored(world, identifier) is None


def test_handle_admin_value_changes_are_checked_and_valid_ones_land(world):
    identifier = f"{PREFIX}/H-VALUES"
    # The record's own HS_ADMIN governs its values; system types pass any template.
    admin = ha.value(100, "HS_ADMIN", ha.hs_admin(ha.HS_ADMIN_ALL, NA, 300))
    out = ha.run(world.tcp, ha.CREATE_HANDLE,
                 ha.create_body(identifier, handle_values(GOOD) + [admin]), seckey())
    assert out.code == ha.SUCCESS, out.replies
    before = stored(world, identifier)
    bad = [
        (ha.ADD_VALUE, ha.add_body(identifier, handle_values([(9, "weight", "heavy")])),
         "values[0].data", "decimal number"),
        (ha.MODIFY_VALUE, ha.modify_body(identifier, handle_values([(6, "status", "lost")])),
         "values[0].data", "one of"),
        (ha.REMOVE_VALUE, ha.remove_body(identifier, [2]), "indexes[0]",
         "a value of type productName is required"),
    ]
    for opcode, body, field, words in bad:
        reply = ha.run(world.tcp, opcode, body, seckey()).replies[0]
        assert reply.code == INVALID_VALUE, reply
        assert reply.message.startswith(f"{field}: identifier {identifier}: "), reply.message
        assert words in reply.message, reply.message
    assert stored(world, identifier) == before
    body = ha.modify_body(identifier, handle_values([(6, "status", "recalled")]))
    assert ha.run(world.tcp, ha.MODIFY_VALUE, body, seckey()).code == ha.SUCCESS
    assert stored(world, identifier)[6] == b"recalled"


def http_put(node, identifier, values, query=""):
    """PUT /api/handles/{identifier} (docs/http.md) with the operator token:
    (HTTP status, JSON answer)."""
    body = json.dumps({"values": [{"index": i, "type": t, "data": d} for i, t, d in values]})
    req = urllib.request.Request(f"http://{node.http}/api/handles/{identifier}{query}",
                                 data=body.encode(), method="PUT",
                                 headers={"Content-Type": "application/json",
                                          "Authorization": f"Bearer {node.token}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.mark.parametrize("rule,values,field,words", BROKEN, ids=IDS)
def test_http_put_refuses_each_rule(world, rule, values, field, words):
    identifier = f"{CHILD}/W-{rule}"
    status, out = http_put(world, identifier, values)
    assert status == 400 and out["responseCode"] == INVALID_VALUE, (status, out)
    assert out["message"].startswith(f"{field}: identifier {identifier}: "), out
    assert words in out["message"], out
    assert stored(world, identifier) is None


def test_http_put_of_a_valid_record_lands(world):
    identifier = f"{CHILD}/W-GOOD"
    status, out = http_put(world, identifier, GOOD)
    assert status == 201, out
    assert stored(world, identifier)[5] == b"2026-03-24"


def test_a_sub_prefix_with_its_own_template_is_judged_by_it_alone(world):
    pb2, ids, meta = world.pb2, world.ids, world.meta
    # 88.500.2's own template: a URL must be a urn://, nothing is required.
    identifier = f"{OWN}/X"
    refused(lambda: ids.CreateIdentifier(pb2.CreateIdentifierRequest(
        identifier=identifier, values=pb_values(world, [(1, "URL", "https://a.example")])),
        metadata=meta), "values[0].data", identifier, "absolute urn URL", defined_at=OWN)
    ids.CreateIdentifier(pb2.CreateIdentifierRequest(
        identifier=identifier, values=pb_values(world, [(1, "URL", "urn://a")])), metadata=meta)
    assert stored(world, identifier) == {1: b"urn://a"}
    # Without its own, it inherits 88.500's again.
    world.cli("prefix", "template", "delete", OWN)
    r = world.cli("prefix", "template", "get", OWN)
    assert "inherits this one from 88.500" in r.stderr
    refused(lambda: ids.CreateIdentifier(pb2.CreateIdentifierRequest(
        identifier=f"{OWN}/Y", values=pb_values(world, [(1, "URL", "https://a.example")])),
        metadata=meta), "values", f"{OWN}/Y", "a value of type productName is required")
    r = world.cli("prefix", "template", "delete", OWN, check=False)
    assert r.returncode == 2 and "has no template of its own" in r.stderr


def test_a_scoped_token_needs_rights_above_the_prefix(world):
    pb2 = world.pb2

    def token(prefix):
        out = world.cli("token", "create", "--prefix", prefix, "--perm",
                        "add_derived_prefix").stdout
        match = re.search(r"export IDNODE_TOKEN=(\S+)", out)
        assert match, out
        return match.group(1)

    request = pb2.SetTemplateRequest(prefix=CHILD, template=pb2.Template(fields=[
        pb2.TemplateField(type="URL", url=pb2.UrlKind())]))
    on_child = (("authorization", f"Bearer {token(CHILD)}"),)
    with pytest.raises(grpc.RpcError) as e:
        world.prefixes.SetTemplate(request, metadata=on_child)
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED, e.value.details()
    assert world.cli("prefix", "template", "get", CHILD).stderr != ""  # still inherited
    above = (("authorization", f"Bearer {token(PREFIX)}"),)
    info = world.prefixes.SetTemplate(request, metadata=above)
    assert info.defined_at == CHILD
    world.prefixes.DeleteTemplate(pb2.DeleteTemplateRequest(prefix=CHILD), metadata=above)
    got = world.prefixes.GetTemplate(pb2.GetTemplateRequest(prefix=CHILD))
    assert got.defined_at == PREFIX and len(got.template.fields) == 6


def test_the_demo_data_satisfies_the_demo_templates(tmp_path, pb):
    node = Node(tmp_path / "demo").start()
    try:
        # Every seeded identifier was stored: the loader refuses to start
        # otherwise; spot-check one under each template.
        assert hc.udp_resolve(node.udp, "88.200.7/CELL-LFP280-202600000").code == hc.SUCCESS
        assert hc.udp_resolve(node.udp, "88.100.1/CNC-LATHE-202600000").code == hc.SUCCESS
        own = node.cli("prefix", "template", "get", "88.200.7")
        assert own.stderr == "" and json.loads(own.stdout)["fields"][0]["required"] is True
        inherited = node.cli("prefix", "template", "get", "88.100.1")
        assert "inherits this one from 88" in inherited.stderr
        # And they bite: a demo identifier may not get a malformed date.
        r = node.cli("id", "create", "88.100.1/DEMO-BAD", "-v", "1:productionDate:24/03/2026",
                     check=False)
        assert r.returncode == 2 and "values[0].data: identifier 88.100.1/DEMO-BAD" in r.stderr, \
            r.stderr
    finally:
        node.stop()
