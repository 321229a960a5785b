"""End-to-end: QR codes of proxy URLs (docs/http.md), decoded by a reader
that is not ours (zbar's `zbarimg`; SVGs rendered to PNG by cairosvg).
`idnode id qr` for one identifier (PNG and SVG), for a JSONL file and for
a prefix; bad input exits 2; the record page's QR code carries its proxy
URL, from the request's host or from `[http] base_url`."""
import json
import re
import shutil
import subprocess
import urllib.error
import urllib.request

import pytest

from conftest import Node, ROOT, idnode_bin

SEEDS = [json.loads(l) for l in (ROOT / "seeds/identifiers.jsonl").read_text().splitlines() if l]
ID = SEEDS[0]["identifier"]
BASE = "https://id.example.com"


@pytest.fixture(scope="module", autouse=True)
def zbar():
    assert shutil.which("zbarimg"), "zbarimg is missing: scripts/setup.sh installs zbar-tools"


def decode_png(path):
    """The text of the one QR code in a PNG, read by zbar."""
    r = subprocess.run(["zbarimg", "--raw", "-q", str(path)], capture_output=True, timeout=30)
    assert r.returncode == 0, f"zbarimg found no code in {path}: {r.stderr!r}"
    lines = r.stdout.decode().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def decode_svg(svg, tmp_path, name="code"):
    import cairosvg
    png = tmp_path / f"{name}.png"
    cairosvg.svg2png(bytestring=svg.encode(), write_to=str(png))
    return decode_png(png)


def page(node, path):
    with urllib.request.urlopen(f"http://{node.http}{path}", timeout=10) as r:
        return r.status, r.read().decode()


def test_cli_png_decodes_to_the_proxy_url(node, tmp_path):
    out = tmp_path / "label.png"
    r = node.cli("id", "qr", ID, "--base-url", BASE + "/", "--out", str(out), "--png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert decode_png(out) == f"{BASE}/{ID}"
    assert f"{BASE}/{ID}" in r.stdout
    # The identifier is percent-encoded as a path.
    odd = tmp_path / "odd.png"
    node.cli("id", "qr", "88.100.1/ÄBC 1?", "--base-url", BASE, "--out", str(odd), "--png",
             "--size", "600")
    assert decode_png(odd) == f"{BASE}/88.100.1/%C3%84BC%201%3F"


def test_cli_svg_to_stdout(node, tmp_path):
    r = node.cli("id", "qr", ID, "--base-url", BASE)
    assert r.stdout.startswith("<svg xmlns=\"http://www.w3.org/2000/svg\"")
    assert decode_svg(r.stdout, tmp_path) == f"{BASE}/{ID}"


def test_record_page_carries_its_proxy_url(node, tmp_path):
    status, html = page(node, f"/{ID}?noredirect")
    assert status == 200
    svgs = re.findall(r"<svg.*?</svg>", html, re.S)
    assert len(svgs) == 1, html
    url = f"http://{node.http}/{ID}"
    assert decode_svg(svgs[0], tmp_path) == url
    assert f'href="{url}"' in html
    # The CLI draws the same code for the same URL (the page asks for 200 px).
    cli = node.cli("id", "qr", ID, "--base-url", f"http://{node.http}", "--size", "200")
    assert cli.stdout.strip() == svgs[0]
    # Not-found pages have none.
    with pytest.raises(urllib.error.HTTPError) as missing:
        page(node, "/88.100.1/NO-SUCH-ID?noredirect")
    assert missing.value.code == 404 and b"<svg" not in missing.value.read()


def test_configured_base_url(tmp_path):
    config = tmp_path / "idnode.toml"
    config.write_text('[http]\nbase_url = "https://id.example.com/resolve/"\n')
    n = Node(tmp_path / "based", extra=["--config", str(config), "--no-quic"]).start()
    try:
        status, html = page(n, f"/{ID}?noredirect")
        assert status == 200
        svg = re.search(r"<svg.*?</svg>", html, re.S).group(0)
        assert decode_svg(svg, tmp_path) == f"https://id.example.com/resolve/{ID}"
    finally:
        n.stop()
    # A base that is not an http(s) URL stops the node before it starts.
    config.write_text('[http]\nbase_url = "id.example.com"\n')
    r = subprocess.run([idnode_bin(), "serve", "--config", str(config),
                        "--data-dir", str(tmp_path / "bad")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert "[http] base URL" in r.stderr


def test_batch_from_jsonl(node, tmp_path):
    ids = tmp_path / "ids.jsonl"
    lines = [json.dumps(SEEDS[1]), "", "# a comment",
             json.dumps({"identifier": "88.100.1/LABEL_1"}),
             json.dumps({"identifier": "88.100.1/a/b"})]
    ids.write_text("\n".join(lines) + "\n")
    out = tmp_path / "labels"
    r = node.cli("id", "qr", "--from", str(ids), "--dir", str(out), "--png", "--base-url", BASE)
    assert "wrote 3 QR codes" in r.stdout
    names = {p.name: p for p in out.iterdir()}
    expected = {
        SEEDS[1]["identifier"].replace("/", "_") + ".png": SEEDS[1]["identifier"],
        "88.100.1_LABEL%5F1.png": "88.100.1/LABEL_1",
        "88.100.1_a%2Fb.png": "88.100.1/a/b",
    }
    assert set(names) == set(expected)
    for name, handle in expected.items():
        assert decode_png(names[name]) == f"{BASE}/{handle}"
    # A bad line: exit 2, naming it, and nothing written.
    ids.write_text(json.dumps({"identifier": "88.100.1/X"}) + "\n{\"identifier\": \"no-slash\"}\n")
    empty = tmp_path / "none"
    r = node.cli("id", "qr", "--from", str(ids), "--dir", str(empty), check=False)
    assert r.returncode == 2 and "line 2" in r.stderr, r.stderr
    assert not empty.exists()


def test_batch_by_prefix(node, tmp_path):
    listed = node.cli("id", "list", "88.100.1", "--limit", "0").stdout.split()
    out = tmp_path / "prefix"
    r = node.cli("id", "qr", "--prefix", "88.100.1", "--dir", str(out), "--base-url", BASE)
    files = sorted(out.glob("*.svg"))
    assert len(files) == len(listed) > 100, r.stdout
    assert f"wrote {len(listed)} QR codes" in r.stdout
    one = listed[len(listed) // 2]
    svg = (out / (one.replace("/", "_") + ".svg")).read_text()
    assert decode_svg(svg, tmp_path) == f"{BASE}/{one}"
    r = node.cli("id", "qr", "--prefix", "99.404", "--dir", str(tmp_path / "x"), check=False)
    assert r.returncode == 2, r.stderr


@pytest.mark.parametrize("args", [
    ["not-an-identifier"],
    [ID, "--base-url", "ftp://id.example.com"],
    [ID, "--base-url", "id.example.com"],
    [ID, "--size", "0"],
    [ID, "--size", "100000"],
    ["88.100.1/" + "X" * 2400],
    ["--from", "/nonexistent/ids.jsonl", "--dir", "/tmp"],
    ["--prefix", "88.100.1"],
    [ID, "--out", "/nonexistent/dir/label.svg"],
])
def test_bad_input_exits_2(node, args):
    r = node.cli("id", "qr", *args, check=False)
    assert r.returncode == 2, (args, r.stdout, r.stderr)
    assert r.stderr.strip(), args
