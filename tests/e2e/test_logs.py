"""The node's log: `[log] format = "json"` writes one JSON object a line on
stderr, at the `[log] level` of the configuration unless RUST_LOG says
otherwise; a value's data never appears at info."""
import json
import shutil
import subprocess

import handle_client as hc
from conftest import ROOT, Node

SEEDS = [json.loads(l) for l in (ROOT / "seeds/identifiers.jsonl").read_text().splitlines() if l]


def start(tmp_path, config_text, env):
    config = tmp_path / "idnode.toml"
    # Zone transfers only to an address that is not this machine: a
    # transfer asked from loopback is refused, and that refusal is logged.
    config.write_text(config_text + '[dns]\nallow_transfer = ["192.0.2.1"]\n')
    return Node(tmp_path / "data", extra=["--no-quic", "--config", str(config)],
                env=env).start()


def refused_transfer(node):
    assert shutil.which("dig"), "dig is missing: run scripts/setup.sh (package bind9-dnsutils)"
    host, port = node.dns_tcp
    out = subprocess.run(["dig", f"@{host}", "-p", str(port), "+time=10", "+tries=1",
                          "AXFR", "idnode.internal."],
                         capture_output=True, text=True, timeout=60).stdout
    assert "Transfer failed" in out or "REFUSED" in out, out[-1000:]


def stop_and_read_log(node):
    assert node.stop() == 0
    return node.proc.stderr.read().splitlines()


def test_json_lines_at_the_configured_level(tmp_path):
    n = start(tmp_path, '[log]\nlevel = "info"\nformat = "json"\n', {"RUST_LOG": None})
    try:
        seed = SEEDS[0]
        r = hc.udp_resolve(n.udp, seed["identifier"])
        assert r.code == hc.SUCCESS, r.message
        refused_transfer(n)
    finally:
        lines = stop_and_read_log(n)
    assert lines, "nothing was logged"
    events = []
    for line in lines:
        event = json.loads(line)  # every line is one JSON object
        assert {"timestamp", "level", "target", "message"} <= event.keys(), event
        assert event["level"] in ("ERROR", "WARN", "INFO"), event
        events.append(event)
    # The level of the configuration: info lines are there.
    assert any(e["message"] == "wrote a new admin token" for e in events), events
    refusal = [e for e in events if e["message"].startswith("zone transfer refused")]
    assert refusal, events
    assert refusal[0]["level"] == "INFO" and refusal[0]["peer"].startswith("127.0.0.1"), refusal
    assert refusal[0]["target"].startswith("idnode_dns"), refusal
    # A value's data is not logged at info.
    text = "\n".join(lines)
    for value in seed["values"]:
        if value.get("data") and len(value["data"]) > 3:
            assert value["data"] not in text, value


def test_rust_log_wins_over_the_configured_level(tmp_path):
    n = start(tmp_path, '[log]\nlevel = "info"\nformat = "json"\n', {"RUST_LOG": "warn"})
    try:
        refused_transfer(n)
    finally:
        lines = stop_and_read_log(n)
    events = [json.loads(line) for line in lines]
    assert all(e["level"] in ("WARN", "ERROR") for e in events), events
    assert not any(e["message"].startswith("zone transfer refused") for e in events), events


def test_plain_text_is_the_default(tmp_path):
    n = start(tmp_path, "", {"RUST_LOG": "info"})
    try:
        refused_transfer(n)
    finally:
        lines = stop_and_read_log(n)
    refusal = [l for l in lines if "zone transfer refused" in l]
    assert refusal and " INFO " in refusal[0], lines
    assert not refusal[0].startswith("{"), refusal
    # Not a terminal: no colour escape codes.
    assert not any("\x1b[" in l for l in lines), lines[:3]
