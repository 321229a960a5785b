#!/usr/bin/env python3
"""A UDP flood against a node, and a bystander: what response rate
limiting gives back to a flooding source, and whether a client at another
address still gets every answer meanwhile.

Starts a node with the demo data on free loopback ports, loopback not
exempt from rate limiting and sources grouped by /32 (127.0.0.1 and
127.0.0.2 share a /24, the default grouping, and would be one source).
Then, at once:
  - `idnode bench` floods from 127.0.0.1 in open loop at --rate (default
    300,000 a second, more than the node answers) with the demo
    identifiers, whose answers are several times their questions;
  - a client bound to 127.0.0.2 resolves one demo identifier --every
    seconds (default 0.1) and counts its answers.
The bytes come from the node's own counters (/metrics): what its Handle
UDP listener received and sent during the flood. Prints the ratio sent /
received (the bar: at most 1) and the bystander's answers.

Usage: benches/flood.py [--rate N] [--duration S] [--every S]
Needs the release idnode ($CARGO_TARGET_DIR/release/idnode, or $IDNODE_BIN).
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


def scrape(http):
    with urllib.request.urlopen(f"http://{http}/metrics", timeout=10) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        m = re.match(r'^(idnode_udp_(?:request|response)_bytes_total)\{surface="handle-udp"\} (\S+)$',
                     line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rate", type=int, default=300_000)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--every", type=float, default=0.1)
    args = p.parse_args()
    work = pathlib.Path(tempfile.mkdtemp(prefix="idnode-flood."))
    config = work / "node.toml"
    config.write_text("[rate_limit]\nexempt = []\nipv4_prefix = 32\n")
    ready = work / "ready.json"
    node = subprocess.Popen(
        [idnode_bin(), "serve", "--demo", "--data-dir", str(work / "data"), "--config", str(config),
         "--ready-file", str(ready), "--handle-listen", "127.0.0.1:0", "--no-quic", "--no-dns",
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
        answered, asked = 0, 0
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
                                answered += 1
                                break
                    except socket.timeout:
                        pass
                    time.sleep(args.every)

        before = scrape(addresses["http"])
        watcher = threading.Thread(target=bystander)
        watcher.start()
        flood = subprocess.run(
            [idnode_bin(), "bench", "--server", udp, "--ids", str(ids), "--rate", str(args.rate),
             "--duration", f"{args.duration}s", "--json"],
            capture_output=True, text=True)
        stop.set()
        watcher.join()
        after = scrape(addresses["http"])
        received = after["idnode_udp_request_bytes_total"] - before["idnode_udp_request_bytes_total"]
        sent = after["idnode_udp_response_bytes_total"] - before["idnode_udp_response_bytes_total"]
        report = json.loads(flood.stdout) if flood.stdout.strip().startswith("{") else {}
        print(f"flood: idnode bench from 127.0.0.1, open loop at {args.rate:,}/s for "
              f"{args.duration:g} s: {report.get('sent', '?')} questions sent, "
              f"{report.get('received', report.get('answers', '?'))} answers back")
        print(f"node, Handle over UDP: received {received:,.0f} bytes, sent {sent:,.0f} bytes: "
              f"sent / received = {sent / received:.3f}" if received else "node received nothing")
        print(f"bystander from 127.0.0.2, one question every {args.every:g} s: "
              f"{answered} of {asked} answered")
    finally:
        node.terminate()
        node.wait(timeout=30)


if __name__ == "__main__":
    main()
