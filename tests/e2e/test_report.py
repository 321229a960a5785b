"""`idnode report`: the daily report of a node, read from the minute files
in its data directory, checked against known traffic sent over two runs of
the node on the same data directory (stopped gracefully in between)."""
import datetime
import json
import subprocess
import urllib.request

import dns.message
import dns.query
import dns.rcode

import handle_client as hc
from conftest import ROOT, Node, idnode_bin
from test_dns import dns_name

SEEDS = [json.loads(l) for l in (ROOT / "seeds/identifiers.jsonl").read_text().splitlines() if l]


def today():
    return datetime.datetime.now(datetime.timezone.utc).date()


def report(data_dir, day, *extra, json_out=True):
    args = [idnode_bin(), "report", "--day", str(day), "--data-dir", str(data_dir), *extra]
    if json_out:
        args.append("--json")
    return subprocess.run(args, capture_output=True, text=True, timeout=60)


def drive(node, found, missing, tcp, registrations, run):
    """Sends known traffic: `found` UDP resolutions of existing identifiers,
    `missing` of absent ones, `tcp` resolutions over TCP, a DNS query over
    UDP, TCP and QUIC each, two reads of the REST API (5 requests, all
    successful, besides), `registrations` identifiers created through
    gRPC."""
    for i in range(found):
        known = SEEDS[i % len(SEEDS)]["identifier"]
        assert hc.udp_resolve(node.udp, known).code == hc.SUCCESS
    for i in range(missing):
        r = hc.udp_resolve(node.udp, f"88.100.1/REPORT-MISSING-{run}-{i}")
        assert r.code == hc.HANDLE_NOT_FOUND
    for i in range(tcp):
        assert hc.tcp_resolve(node.tcp, SEEDS[0]["identifier"]).code == hc.SUCCESS
    q = dns.message.make_query(dns_name(SEEDS[1]["identifier"]), "TXT")
    for answer in (dns.query.udp(q, node.dns_udp[0], port=node.dns_udp[1], timeout=5),
                   dns.query.tcp(q, node.dns_tcp[0], port=node.dns_tcp[1], timeout=5),
                   dns.query.quic(q, node.dns_quic[0], port=node.dns_quic[1], verify=False,
                                  timeout=10)):
        assert answer.rcode() == dns.rcode.NOERROR and answer.answer, answer
    for seed in SEEDS[:2]:
        url = f"http://{node.http}/api/handles/{seed['identifier']}"
        with urllib.request.urlopen(url, timeout=10) as r:
            assert r.status == 200
    for i in range(registrations):
        node.cli("id", "create", f"88.100.1/REPORT-{run}-{i}",
                 "-v", f"1:URL:https://example.com/report/{run}/{i}")


def test_the_report_adds_up_over_a_restart(tmp_path):
    data = tmp_path / "node"
    first_day = today()
    node = Node(data).start()
    try:
        drive(node, found=30, missing=7, tcp=3, registrations=4, run="a")
        # The new identifiers resolve too.
        assert hc.udp_resolve(node.udp, "88.100.1/REPORT-a-0").code == hc.SUCCESS
    finally:
        assert node.stop() == 0
    # Written at the graceful stop, before the node is started again.
    between = report(data, first_day)
    assert between.returncode == 0, between.stderr
    if first_day == today():
        so_far = json.loads(between.stdout)
        assert so_far["resolution_requests"] == 30 + 1 + 7 + 3 + 5, so_far
        assert so_far["successful_answers"] == 30 + 1 + 3 + 5, so_far
        assert so_far["registrations"] == 4, so_far

    node = Node(data).start()
    try:
        drive(node, found=20, missing=5, tcp=2, registrations=3, run="b")
    finally:
        assert node.stop() == 0
    last_day = today()

    # The whole test within one UTC day but for a midnight in between:
    # then the two days add up.
    days = [first_day] if first_day == last_day else [first_day, last_day]
    reports = []
    for day in days:
        r = report(data, day)
        assert r.returncode == 0, r.stderr
        reports.append(json.loads(r.stdout))
    total = lambda key: sum(r[key] for r in reports)  # noqa: E731
    # 30 + 1 + 20 found over UDP, 12 missing, 5 over TCP, 2 x 5 over the
    # DNS and the web.
    assert total("resolution_requests") == 51 + 12 + 5 + 10, reports
    assert total("successful_answers") == 51 + 5 + 10, reports
    assert total("registrations") == 7, reports
    assert max(r["peak_qps"] for r in reports) >= 1, reports
    assert all(r["skipped_lines"] == 0 for r in reports), reports
    for r in reports:
        if r["resolution_requests"] == 0:
            continue
        latency = r["resolution_latency_ms"]
        assert 0 < latency["min"] <= latency["average"] <= latency["max"], latency
    for r in reports:
        if r["registrations"] == 0:
            continue
        latency = r["registration_latency_ms"]
        assert 0 < latency["min"] <= latency["average"] <= latency["max"], latency

    # The same, as text.
    text = report(data, last_day, json_out=False)
    assert text.returncode == 0, text.stderr
    for label in ("registrations", "resolution requests", "successful answers",
                  "resolution latency (ms)", "peak queries per second",
                  "registration latency (ms)"):
        assert label in text.stdout, text.stdout
    if len(days) == 1:
        assert "resolution requests         78" in text.stdout, text.stdout


def test_the_report_counts_the_web_and_a_node_that_is_running(tmp_path):
    data = tmp_path / "node"
    node = Node(data).start()
    try:
        known = SEEDS[0]["identifier"]
        with urllib.request.urlopen(f"http://{node.http}/api/handles/{known}", timeout=10) as r:
            assert r.status == 200
        # The running node writes the minute at the next minute; its report
        # so far can be read meanwhile (it may be empty).
        r = report(data, today())
        assert r.returncode == 0, r.stderr
    finally:
        assert node.stop() == 0
    r = report(data, today())
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    if got["day"] == str(today()):
        assert got["resolution_requests"] >= 1 and got["successful_answers"] >= 1, got


def test_a_bad_date_is_refused_and_an_empty_day_says_so(tmp_path):
    for bad in ("2026-13-01", "2026-02-30", "yesterday", "06/12/2026"):
        r = report(tmp_path, bad)
        assert r.returncode == 2, (bad, r.returncode, r.stdout, r.stderr)
        assert "YYYY-MM-DD" in r.stderr or "no day" in r.stderr, r.stderr
        assert bad in r.stderr, r.stderr
    r = report(tmp_path, "2001-01-01", json_out=False)
    assert r.returncode == 0, r.stderr
    assert "no data for 2001-01-01" in r.stdout, r.stdout
    r = report(tmp_path, "2001-01-01")
    assert r.returncode == 0, r.stderr
    empty = json.loads(r.stdout)
    assert empty["minutes"] == 0 and empty["resolution_requests"] == 0, empty
    assert empty["resolution_latency_ms"] is None, empty
