#!/usr/bin/env python3
"""A UDP flood against a node, and a bystander: what response rate
limiting gives back to a flooding source, and whether a client at another
address still gets every answer meanwhile.

Starts a node with the demo data on free loopback ports, loopback not
exempt from rate limiting and sources grouped by /32 (127.0.0.1 and
127.0.0.2 share a /24, the default grouping, and would be one source).
Then, at once, for the Handle protocol:
  - `idnode bench` floods from 127.0.0.1 in open loop at --rate (default
    300,000 a second, more than the node answers) with the demo
    identifiers, whose answers are several times their questions;
  - a client bound to 127.0.0.2 resolves one demo identifier --every
    seconds (default 0.1) and counts its whole answers (it asked over
    TCP once first, as a client does after an "ask over TCP" answer, so
    the amplification cap does not apply to it);
and the same for the DNS: dnsperf floods from 127.0.0.1 (one client, up
to 60,000 queries outstanding, TXT of the demo names), a dnspython client
on 127.0.0.2 asks for one name's TXT with a DNS cookie (the server cookie
from its first answer).
The bytes come from the node's own counters (/metrics): what each UDP
listener received and sent during its flood. Prints the ratio sent /
received (the bar: at most 1) and the bystanders' answers.

Usage: benches/flood.py [--rate N] [--duration S] [--every S] [--no-dns]
Needs the release idnode ($CARGO_TARGET_DIR/release/idnode, or $IDNODE_BIN),
and for the DNS part dnsperf and dnspython (the tests' virtualenv).
"""
import argparse
import json
import os
import pathlib
import re
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[1]
SEED = "88.100.1/CNC-LATHE-202600000"
# The Handle client of the end-to-end tests: written from the wire
# description, not ours to the node.
sys.path.insert(0, str(ROOT / "tests/e2e"))
import handle_client  # noqa: E402


def idnode_bin():
    if os.environ.get("IDNODE_BIN"):
        return os.environ["IDNODE_BIN"]
    target = os.environ.get("CARGO_TARGET_DIR", str(pathlib.Path.home() / ".cache/idnode-target"))
    return str(pathlib.Path(target) / "release/idnode")


def scrape(http, surface):
    with urllib.request.urlopen(f"http://{http}/metrics", timeout=10) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        m = re.match(r'^(idnode_udp_(?:request|response)_bytes_total)\{surface="%s"\} (\S+)$'
                     % surface, line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


def moved(before, after):
    """(bytes received, bytes sent) between two scrapes."""
    received = after["idnode_udp_request_bytes_total"] - before["idnode_udp_request_bytes_total"]
    sent = after["idnode_udp_response_bytes_total"] - before["idnode_udp_response_bytes_total"]
    return received, sent


def report(what, received, sent):
    print(f"node, {what}: received {received:,.0f} bytes, sent {sent:,.0f} bytes: "
          f"sent / received = {sent / received:.3f}" if received else f"node, {what}: received nothing")


def dns_name(identifier):
    prefix, suffix = identifier.split("/", 1)
    return f"{suffix}._.{'.'.join(reversed(prefix.split('.')))}.idnode.internal."


def dns_flood(addresses, work, args):
    """dnsperf from 127.0.0.1 and a cookie-carrying bystander on
    127.0.0.2."""
    import dns.edns
    import dns.message
    host, port = addresses["dns_udp"].rsplit(":", 1)
    names = work / "names.txt"
    ids = [json.loads(line)["identifier"]
           for line in (ROOT / "seeds/identifiers.jsonl").read_text().splitlines()]
    names.write_text("".join(f"{dns_name(i)} TXT\n" for i in ids))
    answered, asked = 0, 0
    stop = threading.Event()

    def bystander():
        nonlocal answered, asked
        client, server = os.urandom(8), b""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.2", 0))
            s.settimeout(1.0)
            while not stop.is_set():
                option = dns.edns.GenericOption(10, client + server)
                q = dns.message.make_query(dns_name(SEED), "TXT", use_edns=0, payload=1232,
                                           options=[option])
                asked += 1
                s.sendto(q.to_wire(), (host, int(port)))
                try:
                    r = dns.message.from_wire(s.recv(4096))
                    for o in r.options:
                        if o.otype == 10:
                            server = o.to_wire()[8:]
                    # The first answer is truncated: it brings the cookie.
                    if r.answer:
                        answered += 1
                except socket.timeout:
                    pass
                time.sleep(args.every)

    before = scrape(addresses["http"], "dns-udp")
    watcher = threading.Thread(target=bystander)
    watcher.start()
    flood = subprocess.run(
        ["dnsperf", "-s", host, "-p", port, "-d", str(names), "-c", "1", "-q", "60000",
         "-t", "1", "-l", f"{args.duration:g}"], capture_output=True, text=True)
    stop.set()
    watcher.join()
    received, sent = moved(before, scrape(addresses["http"], "dns-udp"))
    queries = re.search(r"Queries sent:\s+(\d+)", flood.stdout)
    completed = re.search(r"Queries completed:\s+(\d+)", flood.stdout)
    print(f"flood: dnsperf from 127.0.0.1 for {args.duration:g} s: "
          f"{queries.group(1) if queries else '?'} queries sent, "
          f"{completed.group(1) if completed else '?'} answered")
    report("DNS over UDP", received, sent)
    print(f"bystander from 127.0.0.2 with a DNS cookie, one query every {args.every:g} s: "
          f"{answered} of {asked} answered whole (the first brings the cookie)")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rate", type=int, default=300_000)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--every", type=float, default=0.1)
    p.add_argument("--no-dns", dest="dns", action="store_false", help="the Handle flood only")
    args = p.parse_args()
    work = pathlib.Path(tempfile.mkdtemp(prefix="idnode-flood."))
    config = work / "node.toml"
    config.write_text("[rate_limit]\nexempt = []\nipv4_prefix = 32\n")
    ready = work / "ready.json"
    node = subprocess.Popen(
        [idnode_bin(), "serve", "--demo", "--data-dir", str(work / "data"), "--config", str(config),
         "--ready-file", str(ready), "--handle-listen", "127.0.0.1:0", "--no-quic",
         "--dns-listen", "127.0.0.1:0",
         "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            if ready.exists() and ready.stat().st_size:
                break
            if node.poll() is not None:
                sys.exit("flood.py: the node did not start")
            time.sleep(0.1)
        addresses = json.loads(ready.read_text())
        udp = addresses["handle_udp"]
        host, port = udp.rsplit(":", 1)
        ids = work / "ids.jsonl"
        ids.write_text((ROOT / "seeds/identifiers.jsonl").read_text())
        answered, asked, codes = 0, 0, {}
        stop = threading.Event()

        def bystander():
            nonlocal answered, asked
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.bind(("127.0.0.2", 0))
                s.settimeout(1.0)
                while not stop.is_set():
                    asked += 1
                    s.sendto(handle_client.resolution_request(SEED, asked, flags=0),
                             (host, int(port)))
                    try:
                        while True:
                            data = s.recv(4096)
                            if struct.unpack(">I", data[8:12])[0] == asked:
                                # 1 SUCCESS, not an "ask over TCP".
                                code = struct.unpack(">I", data[24:28])[0]
                                codes[code] = codes.get(code, 0) + 1
                                answered += code == 1
                                break
                    except socket.timeout:
                        pass
                    time.sleep(args.every)

        before = scrape(addresses["http"], "handle-udp")
        # The bystander asked over TCP once: as a client does after "ask over TCP".
        with socket.create_connection((host, int(port)), source_address=("127.0.0.2", 0),
                                      timeout=5) as s:
            s.sendall(handle_client.resolution_request(SEED, 1))
            handle_client._read_frame(s)
        watcher = threading.Thread(target=bystander)
        watcher.start()
        flood = subprocess.run(
            [idnode_bin(), "bench", "--server", udp, "--ids", str(ids), "--rate", str(args.rate),
             "--duration", f"{args.duration}s", "--json"],
            capture_output=True, text=True)
        stop.set()
        watcher.join()
        received, sent = moved(before, scrape(addresses["http"], "handle-udp"))
        report_json = json.loads(flood.stdout) if flood.stdout.strip().startswith("{") else {}
        print(f"flood: idnode bench from 127.0.0.1, open loop at {args.rate:,}/s for "
              f"{args.duration:g} s: {report_json.get('sent', '?')} questions sent, "
              f"{report_json.get('received', report_json.get('answers', '?'))} answers back")
        report("Handle over UDP", received, sent)
        print(f"bystander from 127.0.0.2, one question every {args.every:g} s: "
              f"{answered} of {asked} answered whole"
              + (f" (other answers by code: {codes})" if len(codes) > 1 else ""))
        if args.dns:
            dns_flood(addresses, work, args)
    finally:
        node.terminate()
        node.wait(timeout=30)


if __name__ == "__main__":
    main()
