"""`idnode status`: a running node's role, listeners, store, caches and the
rates of its UDP listeners, checked against known traffic."""
import json
import os
import re
import subprocess

import dns.message
import dns.query
import dns.rcode
import handle_client as hc
from conftest import ROOT, idnode_bin

SEEDS = [json.loads(l) for l in (ROOT / "seeds/identifiers.jsonl").read_text().splitlines() if l]


def status(node):
    return json.loads(node.cli("status", "--json").stdout)


def surface(s, name):
    (found,) = [u for u in s["surfaces"] if u["surface"] == name]
    return found


def code(u, label):
    (found,) = [c for c in u["responses"] if c["code"] == label]
    return found


def test_status_shows_the_node(node):
    s = status(node)
    listeners = {l["name"]: l["address"] for l in s["listeners"]}
    assert listeners["handle udp"].endswith(f":{node.udp[1]}"), listeners
    assert listeners["grpc"] == node.grpc, listeners
    assert listeners["http"] == node.http, listeners
    assert {"handle tcp", "dns udp", "dns tcp"} <= listeners.keys(), listeners
    assert "88.100.1" in s["homed_prefixes"], s["homed_prefixes"]
    assert s["recursion_roots"] == [] and s["site_servers"] == 1
    assert s["store_bytes"] > 0
    assert s["response_cache"]["enabled"] and s["response_cache"]["budget_bytes"] == 512 << 20
    text = node.cli("status").stdout
    assert "handle udp" in text and "change sequence" in text, text


def test_the_figures_move_with_known_traffic(node):
    before = status(node)
    known = SEEDS[0]["identifier"]
    for _ in range(40):
        assert hc.udp_resolve(node.udp, known).code == hc.SUCCESS
    for i in range(10):
        assert hc.udp_resolve(node.udp, f"88.100.1/NO-SUCH-{i}").code == 100
    node.cli("id", "create", "88.100.1/STATUS-1", "-v", "1:URL:https://example.com/s1")
    after = status(node)

    handle_before, handle = surface(before, "handle-udp"), surface(after, "handle-udp")
    assert handle["requests"] - handle_before["requests"] == 50
    assert code(handle, "1")["count"] - code(handle_before, "1")["count"] == 40
    assert code(handle, "100")["count"] - code(handle_before, "100")["count"] == 10
    # The 50 requests were sent within the window of the rates.
    assert 0 < handle["window_secs"] <= 66, handle
    assert handle["requests_per_sec"] * handle["window_secs"] >= 50 - 0.01, handle
    assert code(handle, "100")["per_sec"] * handle["window_secs"] >= 10 - 0.01, handle
    assert surface(after, "dns-udp")["requests"] == surface(before, "dns-udp")["requests"]
    # The known identifier was answered from the response cache.
    cache_before, cache = before["response_cache"], after["response_cache"]
    assert cache["hits"] - cache_before["hits"] >= 39, (cache_before, cache)
    assert 0 < cache["used_bytes"] <= cache["budget_bytes"] and cache["entries"] > 0
    # The write moved the change sequence.
    assert after["change_sequence"] > before["change_sequence"]
    assert after["uptime_secs"] >= before["uptime_secs"]


def test_status_needs_the_operator_scope(node):
    made = node.cli("token", "create", "--name", "reader", "--prefix", "88.100.1",
                    "--perm", "read_value").stdout
    secret = re.search(r"export IDNODE_TOKEN=(\S+)", made).group(1)
    env = {**os.environ, "IDNODE_GRPC": f"http://{node.grpc}", "IDNODE_TOKEN": secret}
    r = subprocess.run([idnode_bin(), "status"], capture_output=True, text=True, env=env,
                       timeout=60)
    assert r.returncode != 0 and "operator scope" in r.stderr, (r.returncode, r.stderr)


def scrape(node):
    import urllib.request
    text = urllib.request.urlopen(f"http://{node.http}/metrics", timeout=10).read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def test_metrics_carry_the_store_and_cache_figures(node):
    before = scrape(node)
    for _ in range(5):
        assert hc.udp_resolve(node.udp, SEEDS[1]["identifier"]).code == hc.SUCCESS
    after = scrape(node)
    s = status(node)
    assert after["idnode_store_bytes"] > 0
    assert after['idnode_cache_budget_bytes{cache="response"}'] == 512 << 20
    # The DNS has no cache of its own any more.
    assert not any('cache="dns"' in name for name in after), after
    assert "dns_cache" not in s
    assert after['idnode_cache_entries{cache="response"}'] > 0
    assert after['idnode_cache_bytes{cache="response"}'] > 0
    hits = 'idnode_response_cache_lookups_total{result="hit"}'
    assert after[hits] - before[hits] >= 5
    assert s["response_cache"]["hits"] >= after[hits]

    # A TXT question over the DNS is answered from the same cache: the
    # second one of another identifier is a hit there.
    identifier = SEEDS[2]["identifier"]
    prefix, suffix = identifier.split("/", 1)
    name = ".".join([suffix, "_"] + list(reversed(prefix.split(".")))) + ".idnode.internal."
    for _ in range(2):
        r = dns.query.udp(dns.message.make_query(name, "TXT"), node.dns_udp[0],
                          port=node.dns_udp[1], timeout=5)
        assert r.rcode() == dns.rcode.NOERROR and r.answer, r
    again = scrape(node)
    assert again[hits] - after[hits] >= 1
