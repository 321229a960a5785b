"""End-to-end: the node under attack and under faults. Look-alike
identifiers are refused on every write path, the CLI never prints a
terminal control character raw, the data directory is the node's alone, an
interrupted import says where to resume, and a log on a full disk does not
stop the node."""
import base64
import json
import os
import re
import stat
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

import grpc
import pytest

import handle_client as hc
from conftest import ROOT, Node, idnode_bin

SEEDS = [json.loads(l) for l in (ROOT / "seeds/identifiers.jsonl").read_text().splitlines() if l]
PREFIX = "88.100.1"

# (identifier, what the refusal must name)
LOOK_ALIKES = [
    (f"{PREFIX}/ABC\u200b-1", "U+200B ZERO WIDTH SPACE at byte 12"),
    (f"{PREFIX}/ABC\u202e1-", "U+202E RIGHT-TO-LEFT OVERRIDE at byte 12"),
    (f"{PREFIX}/A\u0085B", "U+0085 NEXT LINE at byte 10"),
    (f"{PREFIX}/A\u009b31m", "U+009B CONTROL SEQUENCE INTRODUCER at byte 10"),
    (f"{PREFIX}/\ufeffA", "U+FEFF ZERO WIDTH NO-BREAK SPACE at byte 9"),
    (f"{PREFIX}/A\u00adB", "U+00AD SOFT HYPHEN at byte 10"),
    ("88.\uff11\uff10\uff10/X", "did you mean `88.100`?"),
]


def api(node, pb):
    pb2, pb2_grpc = pb
    channel = grpc.insecure_channel(node.grpc)
    meta = (("authorization", f"Bearer {node.token}"),)
    return pb2, pb2_grpc.IdentifiersStub(channel), pb2_grpc.PrefixesStub(channel), meta


def absent(ids, pb2, meta, identifier):
    """Whether the node holds no such identifier."""
    try:
        ids.GetIdentifier(pb2.GetIdentifierRequest(identifier=identifier), metadata=meta)
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.NOT_FOUND, e
        return True
    return False


def http_put(node, identifier, body):
    """The status of a PUT of the REST API, with the admin token."""
    path = urllib.parse.quote(f"/api/handles/{identifier}")
    req = urllib.request.Request(f"http://{node.http}{path}", data=json.dumps(body).encode(),
                                 method="PUT",
                                 headers={"Content-Type": "application/json",
                                          "Authorization": f"Bearer {node.token}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def cli_env(node):
    env = {**os.environ, "IDNODE_GRPC": f"http://{node.grpc}",
           "IDNODE_TOKEN_FILE": str(node.data_dir / "admin.token")}
    env.pop("IDNODE_TOKEN", None)
    return env


def test_look_alike_identifiers_are_refused_on_every_write_path(node, pb):
    pb2, ids, prefixes, meta = api(node, pb)
    url = pb2.Value(index=1, type="URL", data=b"https://example.com/x")
    for identifier, named in LOOK_ALIKES:
        # gRPC, one identifier.
        with pytest.raises(grpc.RpcError) as e:
            ids.CreateIdentifier(pb2.CreateIdentifierRequest(identifier=identifier, values=[url]),
                                 metadata=meta)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, identifier
        assert named in e.value.details(), e.value.details()
        # The HTTP REST API.
        status, body = http_put(node, identifier,
                                {"values": [{"index": 1, "type": "URL", "data": "https://x"}]})
        assert status == 400, (identifier, status, body)
        # The command line: exit 2, the character named, nothing raw.
        r = subprocess.run([idnode_bin(), "id", "create", identifier, "-v", "1:URL:https://x"],
                           capture_output=True, text=True, env=cli_env(node), timeout=60)
        assert r.returncode == 2, (r.stdout, r.stderr)
        assert named in r.stderr, r.stderr
        assert not any(c in r.stderr for c in "\u200b\u202e\u0085\u009b\ufeff\u00ad"), r.stderr
        assert absent(ids, pb2, meta, identifier)
    # Batches (what `idnode import` sends): the bad items fail alone.
    good = f"{PREFIX}/HYGIENE-OK"
    items = [pb2.CreateIdentifierRequest(identifier=i, values=[url]) for i, _ in LOOK_ALIKES]
    items.append(pb2.CreateIdentifierRequest(identifier=good, values=[url]))
    results = list(ids.BatchCreate(iter(items), metadata=meta, timeout=30))
    assert [r.code for r in results] == [3] * len(LOOK_ALIKES) + [0], results
    for result, (_, named) in zip(results, LOOK_ALIKES):
        assert named in result.message, result.message
    assert not absent(ids, pb2, meta, good)
    # A type carrying escape codes.
    with pytest.raises(grpc.RpcError) as e:
        ids.CreateIdentifier(pb2.CreateIdentifierRequest(
            identifier=f"{PREFIX}/HYGIENE-TYPE",
            values=[pb2.Value(index=1, type="URL\x1b[2J", data=b"x")]), metadata=meta)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "values[0].type" in e.value.details() and "U+001B ESCAPE" in e.value.details()
    assert absent(ids, pb2, meta, f"{PREFIX}/HYGIENE-TYPE")
    # Prefixes: ASCII only, full-width digits refused with a hint.
    with pytest.raises(grpc.RpcError) as e:
        prefixes.CreatePrefix(pb2.CreatePrefixRequest(prefix="88.\uff12\uff10\uff10"),
                              metadata=meta)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "U+FF12 FULLWIDTH DIGIT TWO at byte 3" in e.value.details(), e.value.details()
    assert "did you mean `88.200`?" in e.value.details()
    listed = prefixes.ListPrefixes(pb2.ListPrefixesRequest(), metadata=meta).prefixes
    assert all(p.prefix.isascii() for p in listed), listed
    # Two spellings of one text are one identifier, kept in NFC: written
    # decomposed, it is found either way, listed composed, and a second
    # create in the other spelling finds it there.
    ids.CreateIdentifier(pb2.CreateIdentifierRequest(identifier=f"{PREFIX}/Ba\u0308r",
                                                     values=[url]), metadata=meta)
    assert hc.udp_resolve(node.udp, f"{PREFIX}/B\u00e4r").code == hc.SUCCESS
    assert hc.udp_resolve(node.udp, f"{PREFIX}/Ba\u0308r").code == hc.SUCCESS
    got = ids.GetIdentifier(pb2.GetIdentifierRequest(identifier=f"{PREFIX}/Ba\u0308r"),
                            metadata=meta)
    assert got.identifier == f"{PREFIX}/B\u00e4r"
    with pytest.raises(grpc.RpcError) as e:
        ids.CreateIdentifier(pb2.CreateIdentifierRequest(identifier=f"{PREFIX}/B\u00e4r",
                                                         values=[url]), metadata=meta)
    assert e.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert hc.udp_resolve(node.udp, SEEDS[0]["identifier"]).code == hc.SUCCESS


def test_the_cli_prints_no_control_character_raw(node, pb):
    pb2, ids, _, meta = api(node, pb)
    identifier = f"{PREFIX}/HYGIENE-DATA"
    hostile = "\x1b]0;owned\x07\x1b[2J\u009b31m\u202eevil"
    ids.CreateIdentifier(pb2.CreateIdentifierRequest(identifier=identifier, values=[
        pb2.Value(index=1, type="URL", data=b"https://example.com/ok"),
        pb2.Value(index=2, type="note", data=hostile.encode()),
        pb2.Value(index=3, type="bidi", data="abc\u202edef".encode()),
    ]), metadata=meta)
    raw = set("\x1b\x07\u009b\u202e")
    outputs = {
        "id get": node.cli("id", "get", identifier).stdout,
        "id get --json": node.cli("id", "get", identifier, "--json").stdout,
        "resolve": node.cli("resolve", "--server", f"{node.udp[0]}:{node.udp[1]}",
                            identifier).stdout,
        "resolve --json": node.cli("resolve", "--server", f"{node.udp[0]}:{node.udp[1]}",
                                   identifier, "--json").stdout,
        "audit": node.cli("audit", identifier).stdout,
        "audit --json": node.cli("audit", identifier, "--json").stdout,
    }
    for command, out in outputs.items():
        assert not raw & set(out), (command, out)
    assert "\\u{1b}]0;owned\\u{7}\\u{1b}[2J\\u{9b}31m\\u{202e}evil" in outputs["id get"]
    assert "abc\\u{202e}def" in outputs["resolve"]
    # JSON stays JSON and means the same.
    for command in ("id get --json", "resolve --json"):
        values = {v["index"]: v for v in json.loads(outputs[command])["values"]}
        assert values[2]["data"]["format"] == "base64"  # controls: not text
        assert base64.b64decode(values[2]["data"]["value"]) == hostile.encode()
        assert values[3]["data"] == {"format": "string", "value": "abc\u202edef"}
        assert "\\u202e" in outputs[command]


def modes(root):
    """Every path under root with its permission bits."""
    found = {root: stat.S_IMODE(os.stat(root).st_mode)}
    for parent, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(parent, name)
            found[path] = stat.S_IMODE(os.lstat(path).st_mode)
    return found


def test_the_data_directory_is_the_nodes_alone(tmp_path):
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    os.chmod(data, 0o755)
    n = Node(data).start()
    try:
        lines = tmp_path / "ids.jsonl"
        lines.write_text("".join(
            json.dumps({"identifier": f"{PREFIX}/PERM-{i}",
                        "values": [{"index": 1, "type": "URL", "data": f"https://example.com/perm/{i}"}]}) + "\n"
            for i in range(100)))
        n.cli("import", str(lines), "--quiet")
        found = modes(str(data))
        assert any(p.endswith(".log") for p in found), found  # the WAL is there
        assert found[str(data)] == 0o700, oct(found[str(data)])
        loose = {p: oct(m) for p, m in found.items() if m & 0o077}
        assert not loose, loose
    finally:
        assert n.stop() == 0
    assert "made it 0700" in n.proc.stderr.read()


def test_a_log_on_a_full_disk_does_not_stop_the_node(tmp_path):
    with open("/dev/full", "w") as full:
        n = Node(tmp_path / "full", stderr=full, env={"RUST_LOG": "debug"}).start()
    try:
        r = hc.udp_resolve(n.udp, SEEDS[0]["identifier"])
        assert r.code == hc.SUCCESS, r.message
        assert n.proc.poll() is None
    finally:
        code = n.stop()
    assert code == 0
    deadline = time.monotonic() + 30
    while not any("log lines could not be written" in l for l in n.lines) \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "stopped" in n.lines, n.lines
    assert any(re.match(r"\d+ log lines could not be written to stderr", l)
               for l in n.lines), n.lines


def count_identifiers(node, pb, prefix):
    pb2, ids, _, meta = api(node, pb)
    total, token = 0, ""
    while True:
        page = ids.ListIdentifiers(pb2.ListIdentifiersRequest(prefix=prefix, page_size=1000,
                                                              page_token=token), metadata=meta)
        total += len(page.identifiers)
        token = page.next_page_token
        if not token:
            return total


def test_an_interrupted_import_says_how_far_it_got_and_resumes(tmp_path, pb):
    prefix, count = "88.7", 200_000
    data = tmp_path / "import"
    n = Node(data, demo=False).start()
    try:
        n.cli("prefix", "create", prefix)
        ids_file = tmp_path / "ids.jsonl"
        with open(ids_file, "w") as f:
            for i in range(count):
                f.write(f'{{"identifier":"{prefix}/I{i}","values":'
                        f'[{{"index":1,"type":"URL","data":"u{i}"}}]}}\n')
        importer = subprocess.Popen([idnode_bin(), "import", str(ids_file), "--quiet"],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    env=cli_env(n))
        pb2, ids, _, meta = api(n, pb)
        # Kill the node once the import is under way (several chunks of up
        # to 4000 committed), far from done.
        while True:
            assert importer.poll() is None, importer.communicate()
            try:
                ids.GetIdentifier(pb2.GetIdentifierRequest(identifier=f"{prefix}/I40000"),
                                  metadata=meta)
                break
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.NOT_FOUND, e
        n.proc.kill()
        n.proc.wait()
        out, err = importer.communicate(timeout=120)
    finally:
        n.stop()
    assert importer.returncode == 1, (out, err)
    found = re.search(
        r"import interrupted after ([\d,]+) acknowledged identifiers \(([\d,]+) imported, 0 "
        r"refused\) \(line ([\d,]+) of .*ids\.jsonl is the first not acknowledged\): the "
        r"connection to the node broke .*; run again with --skip (\d+)", err)
    assert found, err
    acknowledged, imported, line, skip = (int(g.replace(",", "")) for g in found.groups())
    assert acknowledged == imported == skip == line - 1, found.groups()
    # Usually some thousands; 0 if the node died before the importer read
    # a result, which the same checks cover.
    assert 0 <= skip < count

    again = Node(data, demo=False).start()
    try:
        held = count_identifiers(again, pb, prefix)
        assert imported <= held < count, (imported, held)
        r = again.cli("import", str(ids_file), "--quiet", "--skip", str(skip))
        assert f"imported {count - skip} identifiers" in r.stdout, r.stdout
        assert count_identifiers(again, pb, prefix) == count
        # A --skip beyond the file is a usage error.
        r = again.cli("import", str(ids_file), "--skip", str(count + 1), check=False)
        assert r.returncode == 2 and "has only 200000 lines" in r.stderr, r.stderr
    finally:
        assert again.stop() == 0


def on_disk(root, needle):
    """The files under `root` that hold `needle`."""
    found = []
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            try:
                with open(path, "rb") as f:
                    if needle in f.read():
                        found.append(path)
            except OSError:
                pass
    return found


def test_replaced_private_values_leave_the_disk_with_the_change_log(tmp_path, pb):
    """A private value overwritten and a record deleted stay in the change
    log until its retention lets them go; `idnode compact` then trims the
    log and compacts, and no file of the data folder holds them."""
    config = tmp_path / "node.toml"
    config.write_text("[storage]\nchange_log_hours = 0\nchange_log_min_entries = 1\n")
    n = Node(tmp_path / "data", demo=False, extra=["--config", str(config)]).start()
    try:
        pb2, ids, prefixes, meta = api(n, pb)
        prefixes.CreatePrefix(pb2.CreatePrefixRequest(prefix=PREFIX), metadata=meta)
        secret = os.urandom(24).hex().encode()
        gone = os.urandom(24).hex().encode()
        ident = f"{PREFIX}/SECRET-1"
        ids.CreateIdentifier(pb2.CreateIdentifierRequest(identifier=ident, values=[
            pb2.Value(index=1, type="URL", data=b"https://example.com/1"),
            # Admin read and write only: not public.
            pb2.Value(index=2, type="costPrice", data=secret, permissions=0x0C),
        ]), metadata=meta)
        ids.CreateIdentifier(pb2.CreateIdentifierRequest(identifier=f"{PREFIX}/GONE-1", values=[
            pb2.Value(index=1, type="note", data=gone, permissions=0x0C),
        ]), metadata=meta)
        ids.ModifyValues(pb2.ModifyValuesRequest(identifier=ident, values=[
            pb2.Value(index=2, type="costPrice", data=b"withdrawn", permissions=0x0C),
        ]), metadata=meta)
        ids.DeleteIdentifier(pb2.DeleteIdentifierRequest(identifier=f"{PREFIX}/GONE-1"),
                             metadata=meta)
        # The change log holds both still (the WAL at least).
        assert on_disk(n.data_dir, secret) and on_disk(n.data_dir, gone)
        n.cli("compact")
        assert not on_disk(n.data_dir, secret), on_disk(n.data_dir, secret)
        assert not on_disk(n.data_dir, gone), on_disk(n.data_dir, gone)
        # What is current is all there; writes go on from the same sequence.
        got = ids.GetIdentifier(pb2.GetIdentifierRequest(identifier=ident), metadata=meta)
        assert {v.index: v.data for v in got.values}[2] == b"withdrawn"
        ids.CreateIdentifier(pb2.CreateIdentifierRequest(identifier=f"{PREFIX}/AFTER-1", values=[
            pb2.Value(index=1, type="URL", data=b"https://example.com/after"),
        ]), metadata=meta)
    finally:
        n.stop()
